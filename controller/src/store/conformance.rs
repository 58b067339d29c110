//! The controller store's conformance suite: every `ControllerStore`
//! backend must pass it (`suite`, given a way to make fresh, empty stores).
//! It exercises each operation's contract through the interface alone: the
//! refusals checked inside a transaction (references, "still in use", the
//! rules of resources published per node), the compare-and-swap writes of
//! the reconciler, and a project's purge with its tombstones.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fixtures::*;
use super::{ControllerStore, StoreError};
use crate::model::{Cluster, PublicationKey, Volume};
use crate::resources::{
    BindingState, ConfigMapSpec, EipSpec, PublicationRef, ResourceDesired, ResourceKind,
    ResourcePublicationKey, ResourceSpec, RouteSpec, VolumeSpec,
};

/// Runs every section, each on a fresh store from `fresh`.
pub(crate) async fn suite(fresh: &dyn Fn() -> Arc<dyn ControllerStore>) {
    clusters_and_nodes(fresh().as_ref()).await;
    versions_and_publications(fresh().as_ref()).await;
    resources_publish_only_beside_the_apps_they_serve(fresh().as_ref()).await;
    a_purged_project_leaves_tombstones(fresh().as_ref()).await;
    resource_publications_compare_and_swap(fresh().as_ref()).await;
    volumes_bound_released_and_unbound(fresh().as_ref()).await;
    super::conformance_events::publication_changes_are_recorded_with_their_writes(fresh().as_ref())
        .await;
    super::conformance_events::resource_publication_changes_are_recorded_with_their_writes(
        fresh().as_ref(),
    )
    .await;
    a_static_eip_is_on_one_node_at_a_time(fresh().as_ref()).await;
    config_left_behind_by_a_new_version(fresh().as_ref()).await;
    records_copy_into_an_empty_store_only(fresh().as_ref(), fresh().as_ref()).await;
}

/// Records exported from one store and imported into another are the same
/// records there (publications, events and sealed credentials included);
/// a store holding records refuses an import and keeps what it holds.
async fn records_copy_into_an_empty_store_only(a: &dyn ControllerStore, b: &dyn ControllerStore) {
    site(a).await;
    a.publish("shop", "web", None, &["n1".into()], 5)
        .await
        .expect("publish");
    let records = a.export_records().await.expect("export");
    let counts = records.counts();
    assert_eq!(counts["ctl_nodes"], 2, "{counts:?}");
    assert_eq!(counts["ctl_publications"], 1, "{counts:?}");
    assert!(counts["ctl_publication_events"] >= 1, "{counts:?}");
    b.import_records(&records).await.expect("import");
    assert_eq!(b.export_records().await.expect("export").counts(), counts);
    let cluster = b.get_cluster("edge").await.expect("get").expect("copied");
    assert_eq!(cluster.kubeconfig, KC, "credentials open with the same key");
    let key = PublicationKey {
        project: "shop".into(),
        app: "web".into(),
        node: "n1".into(),
    };
    assert_eq!(
        b.get_publication(&key).await.expect("get"),
        a.get_publication(&key).await.expect("get")
    );
    // A second import lands on records: refused, nothing changed.
    let again = b.import_records(&records).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(b.export_records().await.expect("export").counts(), counts);
}

async fn nodes_of(
    s: &dyn ControllerStore,
    kind: ResourceKind,
    name: &str,
) -> Vec<(String, ResourceDesired)> {
    s.list_resource_publications("shop", kind, name)
        .await
        .expect("list")
        .into_iter()
        .map(|p| (p.node, p.desired))
        .collect()
}

/// Cluster edge with nodes n1, n2; apps web and api; a config map web
/// mounts, load balancers by label and by app, and a route on one.
async fn site(s: &dyn ControllerStore) {
    s.create_cluster(&Cluster {
        name: "edge".into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    })
    .await
    .expect("cluster");
    for n in ["n1", "n2"] {
        s.create_node(&mut node(n)).await.expect("node");
    }
    let mut web = spec("shop/web:1");
    web.labels = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    web.volumes.push(Volume {
        name: "conf".into(),
        config_map: Some("settings".into()),
        ..Volume::default()
    });
    s.create_app("shop", "web", &web, "a", None, 1)
        .await
        .expect("web");
    let mut api = spec("shop/api:1");
    api.labels = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    s.create_app("shop", "api", &api, "a", None, 1)
        .await
        .expect("api");
    s.create_resource(&resource(
        "settings",
        ResourceKind::ConfigMaps,
        ResourceSpec::ConfigMap(ConfigMapSpec::default()),
    ))
    .await
    .expect("settings");
    s.create_resource(&resource(
        "front",
        ResourceKind::LoadBalancers,
        lb(&[("tier", "front")], None),
    ))
    .await
    .expect("front");
    s.create_resource(&resource(
        "web-lb",
        ResourceKind::LoadBalancers,
        lb(&[], Some("web")),
    ))
    .await
    .expect("web-lb");
    s.create_resource(&resource(
        "www",
        ResourceKind::Routes,
        ResourceSpec::Route(RouteSpec {
            host: "shop.example.com".into(),
            path: "/".into(),
            load_balancer: "web-lb".into(),
            port: 80,
        }),
    ))
    .await
    .expect("www");
}

/// Names are unique, a node needs its cluster, a cluster with nodes stays;
/// what is stored reads back the same (sealed credentials included).
async fn clusters_and_nodes(s: &dyn ControllerStore) {
    let c = Cluster {
        name: "edge".into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    };
    s.create_cluster(&c).await.expect("create");
    assert!(matches!(
        s.create_cluster(&c).await,
        Err(StoreError::Conflict(_))
    ));
    let mut n = node("n1");
    s.create_node(&mut n).await.expect("node");
    assert_eq!(n.k8s_node_name, "n1");
    let mut orphan = node("n2");
    orphan.cluster = "nope".into();
    assert!(matches!(
        s.create_node(&mut orphan).await,
        Err(StoreError::Invalid(_))
    ));
    let err = s
        .delete_cluster("edge")
        .await
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("still has nodes n1"), "{err}");
    assert_eq!(s.list_nodes().await.expect("list").len(), 1);
    // Credentials (sealed at rest by the embedded store) read back as given.
    let mut n3 = node("n3");
    n3.edge_credentials = Some(crate::model::EdgeCredentials {
        user: "ctl".into(),
        password: "pw-Yt55".into(),
    });
    s.create_node(&mut n3).await.expect("n3");
    let got = s.get_node("n3").await.expect("read").expect("node");
    assert_eq!(got.edge_credentials, n3.edge_credentials);
    let got = s.get_cluster("edge").await.expect("read").expect("cluster");
    assert_eq!(got.kubeconfig, KC);
    assert!(s.get_node("n9").await.expect("read").is_none());
}

/// Versions only when the spec changes; publishes checked against versions
/// and nodes; compare-and-swap on the revision.
async fn versions_and_publications(s: &dyn ControllerStore) {
    s.create_cluster(&Cluster {
        name: "edge".into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    })
    .await
    .expect("cluster");
    s.create_node(&mut node("n1")).await.expect("n1");
    s.create_node(&mut node("n2")).await.expect("n2");
    let (app, v1) = s
        .create_app("shop", "web", &spec("shop/web:1"), "alice", None, 10)
        .await
        .expect("app");
    assert_eq!(app.latest_version, 1);
    assert!(v1.summary.starts_with("first version"));
    let (v2, created) = s
        .add_version("shop", "web", &spec("shop/web:2"), "bob", None, 11)
        .await
        .expect("v2");
    assert!(created);
    assert_eq!(v2.version, 2);
    assert!(v2.summary.contains("shop/web:1 -> shop/web:2"));
    let (same, created) = s
        .add_version("shop", "web", &spec("shop/web:2"), "bob", None, 12)
        .await
        .expect("same");
    assert!(!created);
    assert_eq!(same.version, 2);
    assert_eq!(
        s.list_versions("shop", "web")
            .await
            .expect("versions")
            .len(),
        2
    );
    // An app in another project with a name that sorts next to it.
    s.create_app("shop", "web2", &spec("shop/web:1"), "a", None, 1)
        .await
        .expect("web2");
    s.create_app("shopx", "web", &spec("shop/web:1"), "a", None, 1)
        .await
        .expect("shopx");
    assert_eq!(s.list_apps("shop").await.expect("apps").len(), 2);

    let pubs = s
        .publish("shop", "web", None, &["n1".into(), "n2".into()], 20)
        .await
        .expect("publish");
    assert_eq!(pubs.len(), 2);
    assert!(pubs.iter().all(|p| p.version == 2));
    let err = s
        .publish("shop", "web", Some(9), &["n1".into()], 20)
        .await
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("no version 9 (latest is 2)"), "{err}");
    let err = s
        .publish("shop", "web", None, &["n9".into()], 20)
        .await
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("no node named n9"), "{err}");
    assert_eq!(
        s.list_app_publications("shop", "web")
            .await
            .expect("l")
            .len(),
        2
    );
    assert!(s
        .list_app_publications("shop", "web2")
        .await
        .expect("l")
        .is_empty());

    let err = s
        .delete_app("shop", "web")
        .await
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("still published on n1, n2"), "{err}");
    let err = s
        .delete_node("n1")
        .await
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("shop/web"), "{err}");

    // Compare-and-swap.
    let key = pubs[0].key();
    let mut a = s.get_publication(&key).await.expect("get").expect("some");
    let mut b = a.clone();
    assert!(s.update_publication(&mut a).await.expect("cas"));
    assert!(!s.update_publication(&mut b).await.expect("stale"));
    assert!(!s
        .delete_publication(&key, b.revision)
        .await
        .expect("stale delete"));
    assert!(s
        .delete_publication(&key, a.revision)
        .await
        .expect("delete"));
    let err = s
        .unpublish("shop", "web", &["n1".into()], false, 30)
        .await
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("not published on n1"), "{err}");
}

/// The rules of resources published per node.
async fn resources_publish_only_beside_the_apps_they_serve(s: &dyn ControllerStore) {
    site(s).await;
    let lbs = ResourceKind::LoadBalancers;
    conflict(
        s.publish_resource("shop", lbs, "front", None, 2).await,
        "rule: a load balancer is published only where an app it serves is published",
    );
    // An app publish takes what travels with it: its config map, the load
    // balancers binding it (by name and by label) and the route on one.
    s.publish("shop", "web", None, &["n1".into()], 3)
        .await
        .expect("publish web");
    let pub1 = vec![("n1".to_string(), ResourceDesired::Published)];
    assert_eq!(
        nodes_of(s, ResourceKind::ConfigMaps, "settings").await,
        pub1
    );
    assert_eq!(nodes_of(s, lbs, "front").await, pub1);
    assert_eq!(nodes_of(s, lbs, "web-lb").await, pub1);
    assert_eq!(nodes_of(s, ResourceKind::Routes, "www").await, pub1);
    assert_eq!(
        s.app_resource_publications("shop", "web")
            .await
            .expect("app")
            .len(),
        4
    );
    // A selector matching several apps: published where any of them runs.
    s.publish("shop", "api", None, &["n2".into()], 4)
        .await
        .expect("publish api");
    let both = vec![
        ("n1".to_string(), ResourceDesired::Published),
        ("n2".to_string(), ResourceDesired::Published),
    ];
    assert_eq!(nodes_of(s, lbs, "front").await, both);
    conflict(
        s.publish_resource("shop", lbs, "web-lb", Some(vec!["n2".into()]), 5)
            .await,
        "none is published on n2",
    );

    // Unpublish rules, per node.
    conflict(
        s.unpublish_resource("shop", lbs, "web-lb", Some(vec!["n1".into()]), 6)
            .await,
        "rule: a load balancer a published route or EIP uses cannot be unpublished",
    );
    conflict(
        s.unpublish_resource("shop", ResourceKind::ConfigMaps, "settings", None, 6).await,
        "rule: a config map a published app uses cannot be unpublished from its node; unpublish web",
    );
    conflict(
        s.delete_resource("shop", ResourceKind::Routes, "www").await,
        "rule: a resource is deleted only when it is published nowhere",
    );
    let gone = s
        .unpublish_resource("shop", ResourceKind::Routes, "www", None, 7)
        .await
        .expect("route");
    assert_eq!(gone.len(), 1);
    // The reconciler takes it off and forgets it.
    let key = gone[0].key();
    let rev = s
        .get_resource_publication(&key)
        .await
        .expect("get")
        .expect("some")
        .revision;
    assert!(s
        .delete_resource_publication(&key, rev)
        .await
        .expect("delete"));
    s.unpublish_resource("shop", lbs, "web-lb", Some(vec!["n1".into()]), 9)
        .await
        .expect("load balancer off n1 while web runs there");
    // A route goes only where its load balancer is.
    conflict(
        s.publish_resource("shop", ResourceKind::Routes, "www", None, 10)
            .await,
        "rule: a route is published only where its load balancer is published",
    );
    s.delete_resource("shop", ResourceKind::Routes, "www")
        .await
        .expect("published nowhere: deleted");
    // A published load balancer's selector moves it: its records on both
    // nodes apply again, and where it serves no app any more (no app carries
    // `tier: back`) its own reconcile finds the rule and takes it off.
    let mut changed = resource("front", lbs, lb(&[("tier", "back")], None));
    changed.updated_at = 11;
    let again = s
        .update_resource(&changed)
        .await
        .expect("the selector moves");
    for node in ["n1", "n2"] {
        assert!(
            again.iter().any(|p| matches!(p,
                PublicationRef::Resource(k) if k.name == "front" && k.node == node)),
            "{again:?}"
        );
        let k = ResourcePublicationKey {
            project: "shop".into(),
            kind: lbs,
            name: "front".into(),
            node: node.into(),
        };
        let rp = s
            .get_resource_publication(&k)
            .await
            .expect("get")
            .expect("record");
        assert!(!rp.applied, "{rp:?}");
        conflict(
            s.resource_readiness(&k).await,
            &format!("none is published on {node}"),
        );
    }
}

/// A purge drops all a project holds, with a tombstone per node.
async fn a_purged_project_leaves_tombstones(s: &dyn ControllerStore) {
    site(s).await;
    s.publish("shop", "web", None, &["n1".into()], 2)
        .await
        .expect("publish web");
    s.publish("shop", "api", None, &["n2".into()], 3)
        .await
        .expect("publish api");
    // api comes off n2 without cascade: load balancer front stays there alone.
    let k = crate::model::PublicationKey {
        project: "shop".into(),
        app: "api".into(),
        node: "n2".into(),
    };
    let rev = s
        .get_publication(&k)
        .await
        .expect("get")
        .expect("some")
        .revision;
    assert!(s.delete_publication(&k, rev).await.expect("delete"));
    s.create_app("other", "web", &spec("other/web:1"), "a", None, 4)
        .await
        .expect("other");
    s.publish("other", "web", None, &["n1".into()], 5)
        .await
        .expect("publish other");

    let held = s.project_holdings("shop").await.expect("holdings");
    assert_eq!(
        held.names(),
        [
            "apps/api",
            "apps/web",
            "configmaps/settings",
            "loadbalancers/front",
            "loadbalancers/web-lb",
            "routes/www"
        ]
    );
    let purge = s.purge_project("shop", 6).await.expect("purge");
    assert_eq!(purge.holdings, held);
    type Stone = (String, String, Vec<(ResourceKind, String)>);
    let stones: Vec<Stone> = purge
        .tombstones
        .iter()
        .map(|f| (f.app.clone(), f.node.clone(), f.resources.clone()))
        .collect();
    let lbs = ResourceKind::LoadBalancers;
    assert_eq!(
        stones,
        vec![
            // front alone on n2 rides on a tombstone of its own name.
            ("front".into(), "n2".into(), vec![(lbs, "front".into())]),
            (
                "web".into(),
                "n1".into(),
                vec![
                    (ResourceKind::ConfigMaps, "settings".into()),
                    (lbs, "front".into()),
                    (lbs, "web-lb".into()),
                    (ResourceKind::Routes, "www".into()),
                ]
            ),
        ]
    );
    assert!(s.project_holdings("shop").await.expect("after").is_empty());
    assert!(s
        .list_versions("shop", "web")
        .await
        .expect("versions")
        .is_empty());
    let left: Vec<_> = s
        .list_publications()
        .await
        .expect("pubs")
        .into_iter()
        .map(|p| (p.project, p.app, p.node))
        .collect();
    assert_eq!(left, [("other".into(), "web".into(), "n1".into())]);
    assert!(s
        .list_all_resource_publications()
        .await
        .expect("rps")
        .iter()
        .all(|rp| rp.project != "shop"));
    assert_eq!(s.list_forced().await.expect("forced").len(), 2);
    assert!(s.get_app("other", "web").await.expect("other").is_some());
}

/// The reconciler's writes are compare-and-swap on the revision: a stale
/// write or delete changes nothing; a write answers what it replaced.
async fn resource_publications_compare_and_swap(s: &dyn ControllerStore) {
    site(s).await;
    s.publish("shop", "web", None, &["n1".into()], 2)
        .await
        .expect("publish web");
    let k = PublicationKey {
        project: "shop".into(),
        app: "web".into(),
        node: "n1".into(),
    };
    let mut p = s.get_publication(&k).await.expect("get").expect("some");
    let before = p.revision;
    let replaced = s
        .replace_publication(&mut p)
        .await
        .expect("cas")
        .expect("written");
    assert_eq!((replaced.revision, p.revision), (before, before + 1));
    let mut stale = replaced.clone();
    assert!(s
        .replace_publication(&mut stale)
        .await
        .expect("stale")
        .is_none());
    assert_eq!(
        stale.revision, before,
        "a refused write leaves the copy alone"
    );

    let rps = s
        .list_resource_publications("shop", ResourceKind::ConfigMaps, "settings")
        .await
        .expect("list");
    let mut a = rps
        .into_iter()
        .next()
        .expect("the config map travels with web");
    let mut b = a.clone();
    a.applied = !a.applied;
    assert!(s.update_resource_publication(&mut a).await.expect("cas"));
    assert_eq!(a.revision, b.revision + 1);
    assert!(!s.update_resource_publication(&mut b).await.expect("stale"));
    let stored = s
        .get_resource_publication(&a.key())
        .await
        .expect("get")
        .expect("some");
    assert_eq!((stored.applied, stored.revision), (a.applied, a.revision));
    assert!(!s
        .delete_resource_publication(&a.key(), b.revision)
        .await
        .expect("stale delete"));
    assert!(s
        .delete_resource_publication(&a.key(), a.revision)
        .await
        .expect("delete"));
    assert!(s
        .get_resource_publication(&a.key())
        .await
        .expect("get")
        .is_none());
}

/// A volume is bound where an app using it is applied, released only once
/// no app using it is published there, and unbound once released: then
/// every app naming it gets a version without it.
async fn volumes_bound_released_and_unbound(s: &dyn ControllerStore) {
    site(s).await;
    let vols = ResourceKind::Volumes;
    let volume = ResourceSpec::Volume(VolumeSpec {
        capacity: "1Gi".into(),
        storage_class: "local-storage".into(),
    });
    s.create_resource(&resource("data", vols, volume))
        .await
        .expect("volume");
    let mut db = spec("shop/db:1");
    db.volumes.push(Volume {
        name: "data".into(),
        persistent_volume_claim: Some("data".into()),
        ..Volume::default()
    });
    s.create_app("shop", "db", &db, "a", None, 1)
        .await
        .expect("db");
    let pubs = s
        .publish("shop", "db", None, &["n1".into()], 2)
        .await
        .expect("publish");
    s.bind("shop", "n1", vols, "data", 3).await.expect("bind");
    let b = s
        .get_binding("shop", "n1", vols, "data")
        .await
        .expect("get")
        .expect("bound");
    assert_eq!((b.state, b.bound_at), (BindingState::Bound, 3));
    assert_eq!(s.list_bindings("shop").await.expect("list").len(), 1);
    assert!(s.list_bindings("other").await.expect("list").is_empty());
    conflict(
        s.check_release("shop", "n1", "data").await,
        "rule: a volume cannot be released while an app using it is published on that node",
    );
    assert!(matches!(
        s.check_release("shop", "n2", "data").await,
        Err(StoreError::NotFound(_))
    ));
    conflict(
        s.unbind("shop", None, "data", "a", 4).await,
        "rule: a volume is unbound only after it is released",
    );
    // The app leaves the node (the reconciler deletes the publication).
    let p = &pubs[0];
    assert!(s
        .delete_publication(&p.key(), p.revision)
        .await
        .expect("delete"));
    s.check_release("shop", "n1", "data")
        .await
        .expect("nothing uses it there now");
    s.mark_released("shop", "n1", vols, "data")
        .await
        .expect("released");
    let b = s
        .get_binding("shop", "n1", vols, "data")
        .await
        .expect("get")
        .expect("still recorded");
    assert_eq!(b.state, BindingState::Released);
    let versions = s
        .unbind("shop", None, "data", "a", 5)
        .await
        .expect("unbind");
    assert_eq!(versions, [("db".to_string(), 2)]);
    assert!(s.list_bindings("shop").await.expect("list").is_empty());
    let v2 = s
        .get_version("shop", "db", 2)
        .await
        .expect("get")
        .expect("the version without the volume");
    assert!(v2.spec.volumes.is_empty(), "{:?}", v2.spec.volumes);
    let app = s.get_app("shop", "db").await.expect("get").expect("app");
    assert_eq!(app.latest_version, 2);
}

fn static_eip(address: &str, app: &str) -> ResourceSpec {
    ResourceSpec::Eip(EipSpec {
        address: Some(address.into()),
        selector: BTreeMap::from([("app".to_string(), app.to_string())]),
        ..EipSpec::default()
    })
}

/// A static EIP never travels with its app to a second node: created while
/// the app runs on two, or published with it to two, it is refused whole;
/// an app taken to a second node cannot take it along.
async fn a_static_eip_is_on_one_node_at_a_time(s: &dyn ControllerStore) {
    site(s).await;
    let eips = ResourceKind::Eips;
    s.publish("shop", "web", None, &["n1".into(), "n2".into()], 2)
        .await
        .expect("publish web");
    conflict(
        s.create_resource(&resource("front", eips, static_eip("203.0.113.9", "web")))
            .await,
        "rule: a static EIP address is on one node at a time; EIP shop/front (203.0.113.9) \
         would go on n1, n2 following app web",
    );
    assert!(s
        .get_resource("shop", eips, "front")
        .await
        .expect("get")
        .is_none());

    s.create_resource(&resource("api-ip", eips, static_eip("203.0.113.10", "api")))
        .await
        .expect("api is published nowhere yet");
    conflict(
        s.publish("shop", "api", None, &["n1".into(), "n2".into()], 3)
            .await,
        "EIP shop/api-ip (203.0.113.10) would go on n1, n2 with app api",
    );
    assert!(s
        .list_app_publications("shop", "api")
        .await
        .expect("list")
        .is_empty());
    assert!(nodes_of(s, eips, "api-ip").await.is_empty());
    s.publish("shop", "api", None, &["n1".into()], 4)
        .await
        .expect("one node");
    conflict(
        s.publish("shop", "api", None, &["n2".into()], 5).await,
        "rule: a static EIP address is on one node at a time; 203.0.113.10 (shop/api-ip) is on n1",
    );
    assert_eq!(
        nodes_of(s, eips, "api-ip").await,
        vec![("n1".to_string(), ResourceDesired::Published)]
    );
}

async fn left_on(s: &dyn ControllerStore, node: &str) -> Vec<String> {
    s.config_left_behind("shop", node)
        .await
        .expect("left behind")
        .into_iter()
        .map(|rp| rp.name)
        .collect()
}

/// A config map only an app carried to a node is left behind there once no
/// app published there uses it; one published on its own, or left by an
/// unpublish without cascade, never is.
async fn config_left_behind_by_a_new_version(s: &dyn ControllerStore) {
    site(s).await;
    let cms = ResourceKind::ConfigMaps;
    // Nothing published yet: the rules every apply asks find nothing.
    assert!(left_on(s, "n1").await.is_empty());
    let alone = s.network_left_alone("shop", "n1").await.expect("network");
    assert!(alone.is_empty(), "{alone:?}");
    assert!(s
        .resources_wanted_on_node("shop", "n1")
        .await
        .expect("wanted")
        .is_empty());
    s.publish("shop", "web", None, &["n1".into(), "n2".into()], 2)
        .await
        .expect("publish web");
    assert!(left_on(s, "n1").await.is_empty(), "web uses settings");
    let wanted = s
        .resources_wanted_on_node("shop", "n1")
        .await
        .expect("wanted");
    assert!(
        wanted.contains(&(cms, "settings".to_string())),
        "{wanted:?}"
    );
    let lbs: Vec<String> = s
        .list_resources("shop", ResourceKind::LoadBalancers)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(lbs, ["front", "web-lb"], "the kind's, in name order");
    // Published on its own on n2 as well.
    s.publish_resource("shop", cms, "settings", Some(vec!["n2".into()]), 3)
        .await
        .expect("explicit");
    // Version 2 drops the config map; both nodes run it.
    let (v2, _) = s
        .add_version("shop", "web", &spec("shop/web:2"), "a", None, 4)
        .await
        .expect("v2");
    s.publish(
        "shop",
        "web",
        Some(v2.version),
        &["n1".into(), "n2".into()],
        5,
    )
    .await
    .expect("v2");
    assert_eq!(left_on(s, "n1").await, vec!["settings".to_string()]);
    assert!(left_on(s, "n2").await.is_empty(), "published on its own");
    // Back to version 1 on n1, then unpublished without cascade: left on purpose.
    s.publish("shop", "web", Some(1), &["n1".into()], 6)
        .await
        .expect("v1");
    assert!(left_on(s, "n1").await.is_empty(), "version 1 uses it");
    s.unpublish("shop", "web", &["n1".into()], false, 7)
        .await
        .expect("unpublish");
    assert!(left_on(s, "n1").await.is_empty(), "left on purpose");
}
