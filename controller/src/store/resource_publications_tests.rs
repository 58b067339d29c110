//! The rules of resources published per node, on the store alone.

use std::collections::BTreeMap;

use crate::model::{Cluster, Volume};
use crate::resources::{
    ConfigMapSpec, LoadBalancerSpec, Resource, ResourceDesired, ResourceKind, ResourceSpec,
    RouteSpec, ServicePort,
};
use crate::store::fixtures::*;
use crate::store::{Store, StoreError};

fn resource(name: &str, kind: ResourceKind, spec: ResourceSpec) -> Resource {
    Resource {
        project: "shop".into(),
        name: name.into(),
        kind,
        spec,
        description: format!("{name} for the shop"),
        created_at: 1,
        updated_at: 1,
    }
}

fn lb(selector: &[(&str, &str)], app: Option<&str>) -> ResourceSpec {
    ResourceSpec::LoadBalancer(LoadBalancerSpec {
        app: app.map(str::to_string),
        selector: selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        service_type: Default::default(),
        ports: vec![ServicePort {
            name: None,
            port: 80,
            target_port: None,
            protocol: Default::default(),
        }],
    })
}

fn conflict(r: Result<impl std::fmt::Debug, StoreError>, rule: &str) {
    match r {
        Err(StoreError::Conflict(m)) => assert!(m.contains(rule), "{m}"),
        other => panic!("expected a conflict naming {rule:?}, got {other:?}"),
    }
}

fn site() -> (tempfile::TempDir, Store) {
    let (d, s) = temp_store();
    s.create_cluster(&Cluster {
        name: "edge".into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    })
    .expect("cluster");
    for n in ["n1", "n2"] {
        s.create_node(&mut node(n)).expect("node");
    }
    let mut web = spec("shop/web:1");
    web.labels = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    web.volumes.push(Volume {
        name: "conf".into(),
        config_map: Some("settings".into()),
        ..Volume::default()
    });
    s.create_app("shop", "web", &web, "a", None, 1)
        .expect("web");
    let mut api = spec("shop/api:1");
    api.labels = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    s.create_app("shop", "api", &api, "a", None, 1)
        .expect("api");
    s.create_resource(&resource(
        "settings",
        ResourceKind::ConfigMaps,
        ResourceSpec::ConfigMap(ConfigMapSpec::default()),
    ))
    .expect("settings");
    s.create_resource(&resource(
        "front",
        ResourceKind::LoadBalancers,
        lb(&[("tier", "front")], None),
    ))
    .expect("front");
    s.create_resource(&resource(
        "web-lb",
        ResourceKind::LoadBalancers,
        lb(&[], Some("web")),
    ))
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
    .expect("www");
    (d, s)
}

fn nodes_of(s: &Store, kind: ResourceKind, name: &str) -> Vec<(String, ResourceDesired)> {
    s.list_resource_publications("shop", kind, name)
        .expect("list")
        .into_iter()
        .map(|p| (p.node, p.desired))
        .collect()
}

#[test]
fn resources_publish_only_beside_the_apps_they_serve() {
    let (_d, s) = site();
    let lbs = ResourceKind::LoadBalancers;
    conflict(
        s.publish_resource("shop", lbs, "front", None, 2),
        "rule: a load balancer is published only where an app it serves is published",
    );
    // An app publish takes what travels with it: its config map, the load
    // balancers binding it (by name and by label) and the route on one.
    s.publish("shop", "web", None, &["n1".into()], 3)
        .expect("publish web");
    let pub1 = vec![("n1".to_string(), ResourceDesired::Published)];
    assert_eq!(nodes_of(&s, ResourceKind::ConfigMaps, "settings"), pub1);
    assert_eq!(nodes_of(&s, lbs, "front"), pub1);
    assert_eq!(nodes_of(&s, lbs, "web-lb"), pub1);
    assert_eq!(nodes_of(&s, ResourceKind::Routes, "www"), pub1);
    assert_eq!(
        s.app_resource_publications("shop", "web")
            .expect("app")
            .len(),
        4
    );
    // A selector matching several apps: published where any of them runs.
    s.publish("shop", "api", None, &["n2".into()], 4)
        .expect("publish api");
    let both = vec![
        ("n1".to_string(), ResourceDesired::Published),
        ("n2".to_string(), ResourceDesired::Published),
    ];
    assert_eq!(nodes_of(&s, lbs, "front"), both);
    conflict(
        s.publish_resource("shop", lbs, "web-lb", Some(vec!["n2".into()]), 5),
        "none is published on n2",
    );

    // Unpublish rules, per node.
    conflict(
        s.unpublish_resource("shop", lbs, "web-lb", Some(vec!["n1".into()]), 6),
        "rule: a load balancer a published route or EIP uses cannot be unpublished",
    );
    conflict(
        s.unpublish_resource("shop", ResourceKind::ConfigMaps, "settings", None, 6),
        "rule: a config map a published app uses cannot be unpublished from its node; unpublish web",
    );
    conflict(
        s.delete_resource("shop", ResourceKind::Routes, "www"),
        "rule: a resource is deleted only when it is published nowhere",
    );
    let gone = s
        .unpublish_resource("shop", ResourceKind::Routes, "www", None, 7)
        .expect("route");
    assert_eq!(gone.len(), 1);
    // The reconciler takes it off and forgets it.
    let key = gone[0].key();
    let rev = s
        .get_resource_publication(&key)
        .expect("get")
        .expect("some")
        .revision;
    assert!(s.delete_resource_publication(&key, rev).expect("delete"));
    s.unpublish_resource("shop", lbs, "web-lb", Some(vec!["n1".into()]), 9)
        .expect("load balancer off n1 while web runs there");
    // A route goes only where its load balancer is.
    conflict(
        s.publish_resource("shop", ResourceKind::Routes, "www", None, 10),
        "rule: a route is published only where its load balancer is published",
    );
    s.delete_resource("shop", ResourceKind::Routes, "www")
        .expect("published nowhere: deleted");
    // The selector of a published load balancer stays.
    let mut changed = resource("front", lbs, lb(&[("tier", "back")], None));
    changed.updated_at = 11;
    conflict(
        s.update_resource(&changed),
        "rule: a load balancer's selector cannot change while it is published",
    );
}

#[test]
fn a_load_balancer_written_with_app_only_binds_that_app() {
    // A record as the release before the selector wrote it.
    let old = r#"{"app":"web","ports":[{"port":80,"protocol":"TCP"}]}"#;
    let spec: LoadBalancerSpec = serde_json::from_str(old).expect("old record");
    assert_eq!(
        spec.app_selector(),
        BTreeMap::from([("app".to_string(), "web".to_string())])
    );
    assert_eq!(spec.owner_app(), Some("web"));
    assert!(spec.binds("web", &BTreeMap::new()));
    assert!(!spec.binds("api", &BTreeMap::new()));
    let both: LoadBalancerSpec =
        serde_json::from_str(r#"{"selector":{"tier":"front"},"ports":[{"port":80}]}"#)
            .expect("selector");
    let front = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    assert!(both.binds("web", &front) && both.binds("api", &front));
    assert!(!both.binds("db", &BTreeMap::new()));
    assert_eq!(both.owner_app(), None);
    let problems = crate::resources::validate(
        ResourceKind::LoadBalancers,
        "x",
        &lb(&[("app", "api")], Some("web")),
    )
    .expect_err("contradiction")
    .to_string();
    assert!(problems.contains("selector.app"), "{problems}");
    let problems = crate::resources::validate(ResourceKind::LoadBalancers, "x", &lb(&[], None))
        .expect_err("binds nothing")
        .to_string();
    assert!(
        problems.contains("bind the load balancer to apps"),
        "{problems}"
    );
}

#[test]
fn a_database_of_the_release_before_gets_its_records_on_open() {
    let (_d, s) = site();
    s.publish("shop", "web", None, &["n1".into()], 3)
        .expect("publish web");
    // As the release before left it: no records, no marker.
    let txn = s.database().begin_write().expect("txn");
    {
        let mut meta = txn.open_table(super::META).expect("meta");
        meta.remove("resource_publications").expect("marker");
        txn.delete_table(super::RESOURCE_PUBS).expect("drop");
    }
    txn.commit().expect("commit");
    let s = Store::open(s.database().clone(), test_sealer()).expect("reopen");
    let pub1 = vec![("n1".to_string(), ResourceDesired::Published)];
    assert_eq!(nodes_of(&s, ResourceKind::ConfigMaps, "settings"), pub1);
    assert_eq!(nodes_of(&s, ResourceKind::LoadBalancers, "web-lb"), pub1);
    assert_eq!(nodes_of(&s, ResourceKind::Routes, "www"), pub1);
    // Once: records taken down later are not made again on the next open.
    s.forget_resource_publications("shop", "n1", &[(ResourceKind::Routes, "www".into())])
        .expect("forget");
    let s = Store::open(s.database().clone(), test_sealer()).expect("reopen");
    assert!(nodes_of(&s, ResourceKind::Routes, "www").is_empty());
}

#[test]
fn a_purged_project_leaves_tombstones_for_all_it_published_and_nothing_else() {
    let (_d, s) = site();
    s.publish("shop", "web", None, &["n1".into()], 2)
        .expect("publish web");
    s.publish("shop", "api", None, &["n2".into()], 3)
        .expect("publish api");
    // api comes off n2 without cascade: load balancer front stays there alone.
    let k = crate::model::PublicationKey {
        project: "shop".into(),
        app: "api".into(),
        node: "n2".into(),
    };
    let rev = s.get_publication(&k).expect("get").expect("some").revision;
    assert!(s.delete_publication(&k, rev).expect("delete"));
    s.create_app("other", "web", &spec("other/web:1"), "a", None, 4)
        .expect("other");
    s.publish("other", "web", None, &["n1".into()], 5)
        .expect("publish other");

    let held = s.project_holdings("shop").expect("holdings");
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
    let purge = s.purge_project("shop", 6).expect("purge");
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
    assert!(s.project_holdings("shop").expect("after").is_empty());
    assert!(s.list_versions("shop", "web").expect("versions").is_empty());
    let left: Vec<_> = s
        .list_publications()
        .expect("pubs")
        .into_iter()
        .map(|p| (p.project, p.app, p.node))
        .collect();
    assert_eq!(left, [("other".into(), "web".into(), "n1".into())]);
    assert!(s
        .list_all_resource_publications()
        .expect("rps")
        .iter()
        .all(|rp| rp.project != "shop"));
    assert_eq!(s.list_forced().expect("forced").len(), 2);
    assert!(s.get_app("other", "web").expect("other").is_some());
}
