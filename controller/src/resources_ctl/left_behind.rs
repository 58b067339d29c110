//! What an app's new version leaves on its node: the config maps and secrets
//! only apps carried there that no app published there uses any more, and
//! the load balancers, EIPs and routes no app published there is served by
//! any more.
//!
//! After the app's apply they are marked to come off the node, each by a
//! compare-and-swap on its record's revision, and their own reconciles take
//! them off and audit it. So a concurrent write to one of them — a publish of
//! an app that uses it again (which touches its record), an unpublish or
//! publish request, another reconcile marking it — is never overwritten: the
//! mark fails and what was written stands. The removal itself runs in the
//! resource's reconcile, which the scheduler never runs twice at once.
//!
//! Owns: choosing what was left behind and marking it. Must not touch: the
//! node (the resource's reconcile removes it) or the rules of requests (see
//! `store`).

use crate::clock::now_secs;
use crate::deploy::{DeployTarget, Deployer};
use crate::model::Publication;
use crate::resources::{ResourceDesired, ResourcePublication};
use crate::store::ControllerStore;

use super::{resource_selector, ResourceError};

/// What no app published on `p`'s node uses any more, as read now: config
/// maps and secrets only apps carried there, then routes, EIPs and load
/// balancers that serve none of them.
pub async fn left_behind(
    store: &dyn ControllerStore,
    p: &Publication,
) -> Result<Vec<ResourcePublication>, ResourceError> {
    let (proj, node) = (p.project.clone(), p.node.clone());
    let mut out = store.config_left_behind(&proj, &node).await?;
    let network = store.network_left_alone(&proj, &node).await?;
    out.extend(
        network
            .into_iter()
            .filter(|rp| rp.desired == ResourceDesired::Published),
    );
    Ok(out)
}

/// Marks each of `left` (as `left_behind` read it) to come off its node
/// because `why`, if its record is still at the revision read; answers those
/// marked, for their reconciles to run.
pub async fn take_down(
    store: &dyn ControllerStore,
    left: Vec<ResourcePublication>,
    why: &str,
) -> Result<Vec<ResourcePublication>, ResourceError> {
    let mut marked = Vec::new();
    for mut rp in left {
        rp.request_takedown(why, now_secs());
        if store.update_resource_publication(&mut rp).await? {
            marked.push(rp);
        } else {
            tracing::debug!(resource = %rp.key(), "changed meanwhile; not taken down");
        }
    }
    Ok(marked)
}

/// Takes each of `left` off its node now, inside the reconcile of the app
/// that leaves it (an unpublish): marked by compare-and-swap first, so a
/// record written meanwhile (the app published there again) is left as it
/// is, then removed from the node and forgotten if still at the revision
/// marked. Answers those taken off.
pub async fn take_off_now(
    store: &dyn ControllerStore,
    deployer: &dyn Deployer,
    target: &DeployTarget,
    left: Vec<ResourcePublication>,
    why: &str,
) -> Result<Vec<ResourcePublication>, ResourceError> {
    let mut gone = Vec::new();
    for rp in take_down(store, left, why).await? {
        let selector = resource_selector(&rp.project, &rp.node, rp.kind, &rp.name);
        deployer.remove(target, &selector).await?;
        if !store
            .delete_resource_publication(&rp.key(), rp.revision)
            .await?
        {
            // Published again meanwhile: applied=false on its record, so its
            // own reconcile puts it back.
            tracing::debug!(resource = %rp.key(), "changed meanwhile; its reconcile applies it");
            continue;
        }
        gone.push(rp);
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Cluster, Node, PublicationKey, Volume};
    use crate::resources::{
        ConfigMapSpec, LoadBalancerSpec, Resource, ResourceKind, ResourcePublicationKey,
        ResourceSpec, ServicePort,
    };

    const KC: &str = "current-context: c\ncontexts:\n- name: c\n  context:\n    cluster: k\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n";

    fn resource(name: &str, kind: ResourceKind, spec: ResourceSpec) -> Resource {
        Resource {
            project: "shop".into(),
            name: name.into(),
            kind,
            spec,
            description: String::new(),
            created_at: 1,
            updated_at: 1,
        }
    }

    /// A template mounting `config_maps`, labelled `labels`.
    fn spec(config_maps: &[&str], labels: &[(&str, &str)]) -> crate::model::AppSpec {
        let mut s = crate::model::fixtures::spec(crate::model::WorkloadKind::Deployment);
        s.volumes = config_maps
            .iter()
            .map(|c| Volume {
                name: c.to_string(),
                config_map: Some(c.to_string()),
                ..Volume::default()
            })
            .collect();
        s.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    async fn record(
        s: &dyn ControllerStore,
        kind: ResourceKind,
        name: &str,
    ) -> ResourcePublication {
        s.get_resource_publication(&ResourcePublicationKey {
            project: "shop".into(),
            kind,
            name: name.into(),
            node: "n1".into(),
        })
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{name} has a record on n1"))
    }

    /// web version 1 on n1 mounts settings and extra and is served by
    /// front-lb (its `tier: front` label); version 2 has none of them and
    /// runs there now. Answers web's publication.
    async fn site(s: &dyn ControllerStore) -> Publication {
        s.create_cluster(&Cluster {
            name: "edge".into(),
            kubeconfig: KC.into(),
            eip_pool: None,
            created_at: 1,
        })
        .await
        .expect("cluster");
        let mut n1 = Node {
            name: "n1".into(),
            cluster: "edge".into(),
            k8s_node_name: String::new(),
            labels: BTreeMap::new(),
            edge_url: "http://127.0.0.1:1".into(),
            edge_credentials: None,
            edge_controller_token: None,
            created_at: 0,
        };
        s.create_node(&mut n1).await.expect("node");
        for cm in ["settings", "extra"] {
            let r = resource(
                cm,
                ResourceKind::ConfigMaps,
                ResourceSpec::ConfigMap(ConfigMapSpec::default()),
            );
            s.create_resource(&r).await.expect("config map");
        }
        let web = spec(&["settings", "extra"], &[("tier", "front")]);
        s.create_app("shop", "web", &web, "a", None, 1)
            .await
            .expect("web");
        s.create_app("shop", "api", &spec(&["settings"], &[]), "a", None, 1)
            .await
            .expect("api");
        let lb = ResourceSpec::LoadBalancer(LoadBalancerSpec {
            app: None,
            selector: BTreeMap::from([("tier".to_string(), "front".to_string())]),
            service_type: Default::default(),
            ports: vec![ServicePort {
                name: None,
                port: 80,
                target_port: None,
                protocol: Default::default(),
            }],
        });
        let lb = resource("front-lb", ResourceKind::LoadBalancers, lb);
        s.create_resource(&lb).await.expect("lb");
        s.publish("shop", "web", None, &["n1".into()], 2)
            .await
            .expect("v1");
        let (v2, _) = s
            .add_version("shop", "web", &spec(&[], &[]), "a", None, 3)
            .await
            .expect("v2");
        let mut p = s
            .publish("shop", "web", Some(v2.version), &["n1".into()], 4)
            .await
            .expect("v2 on n1");
        p.pop().expect("web@n1")
    }

    fn names(rps: &[ResourcePublication]) -> Vec<String> {
        rps.iter()
            .map(|rp| format!("{}/{}", rp.kind, rp.name))
            .collect()
    }

    /// Between reading what web's new version left and marking it, another
    /// app that mounts settings is published on the node: settings stays
    /// (the publish touched its record, so the mark's compare-and-swap
    /// fails); what nothing uses is marked, once, with the reason.
    #[tokio::test]
    async fn a_concurrent_publish_keeps_what_it_uses() {
        let (_dir, store) = crate::store::temp_store();
        let s: &dyn ControllerStore = &store;
        let web = site(s).await;
        let left = left_behind(s, &web).await.expect("left behind");
        assert_eq!(
            names(&left),
            [
                "configmaps/extra",
                "configmaps/settings",
                "loadbalancers/front-lb"
            ]
        );
        // The concurrent write: api, which mounts settings, goes on n1.
        s.publish("shop", "api", None, &["n1".into()], 5)
            .await
            .expect("api on n1");
        let why = "no longer used by web version 2";
        let marked = take_down(s, left.clone(), why).await.expect("take down");
        assert_eq!(
            names(&marked),
            ["configmaps/extra", "loadbalancers/front-lb"]
        );
        let settings = record(s, ResourceKind::ConfigMaps, "settings").await;
        assert_eq!(settings.desired, ResourceDesired::Published, "{settings:?}");
        assert_eq!(settings.taken_down_because, None);
        for (kind, name) in [
            (ResourceKind::ConfigMaps, "extra"),
            (ResourceKind::LoadBalancers, "front-lb"),
        ] {
            let rp = record(s, kind, name).await;
            assert_eq!(rp.desired, ResourceDesired::Unpublished, "{rp:?}");
            assert_eq!(rp.taken_down_because.as_deref(), Some(why));
        }
        // A second reconcile that read the same: its marks all fail.
        let again = take_down(s, left, why).await.expect("again");
        assert!(again.is_empty(), "{:?}", names(&again));
        // And what was marked is no longer left behind (it is on its way out).
        let web_key = PublicationKey {
            project: "shop".into(),
            app: "web".into(),
            node: "n1".into(),
        };
        let web = s
            .get_publication(&web_key)
            .await
            .expect("read")
            .expect("web");
        let now = left_behind(s, &web).await.expect("left behind");
        assert!(
            now.iter().all(|rp| rp.kind != ResourceKind::LoadBalancers),
            "{:?}",
            names(&now)
        );
    }

    /// web leaves n1 (an unpublish) while it is published there again: the
    /// load balancer the unpublish read as left alone stays on the node with
    /// its record; once web is really gone, it goes.
    #[tokio::test]
    async fn an_unpublish_leaves_what_a_concurrent_publish_wants() {
        let (dir, store) = crate::store::temp_store();
        let s: &dyn ControllerStore = &store;
        site(s).await;
        s.publish("shop", "web", Some(1), &["n1".into()], 5)
            .await
            .expect("back to v1");
        let node = s.get_node("n1").await.expect("read").expect("n1");
        let cluster = s.get_cluster("edge").await.expect("read").expect("edge");
        let target = DeployTarget { node, cluster };
        let deployer = crate::deploy::DirectoryDeployer::new(dir.path().join("nodes"));
        let lb = s
            .get_resource("shop", ResourceKind::LoadBalancers, "front-lb")
            .await
            .expect("read")
            .expect("front-lb");
        let object = super::super::ResourceRenderer::new(None)
            .render_resource(s, &lb, &target.node)
            .await
            .expect("render");
        deployer
            .apply(&target, std::slice::from_ref(&object))
            .await
            .expect("apply");
        let on_node = || async {
            deployer
                .drifted(&target, std::slice::from_ref(&object))
                .await
                .expect("compare")
                .is_empty()
        };
        assert!(on_node().await);

        s.unpublish("shop", "web", &["n1".into()], false, 6)
            .await
            .expect("unpublish");
        let alone = s.network_left_alone("shop", "n1").await.expect("alone");
        assert_eq!(names(&alone), ["loadbalancers/front-lb"]);
        // The concurrent write: web is published on n1 again.
        s.publish("shop", "web", Some(1), &["n1".into()], 7)
            .await
            .expect("again");
        let gone = take_off_now(s, &deployer, &target, alone, "went with app web")
            .await
            .expect("take off");
        assert!(gone.is_empty(), "{:?}", names(&gone));
        assert!(on_node().await, "the load balancer stays on n1");
        let rp = record(s, ResourceKind::LoadBalancers, "front-lb").await;
        assert_eq!(rp.desired, ResourceDesired::Published, "{rp:?}");

        // Nothing concurrent: it goes, record and object.
        s.unpublish("shop", "web", &["n1".into()], false, 8)
            .await
            .expect("unpublish");
        let alone = s.network_left_alone("shop", "n1").await.expect("alone");
        let gone = take_off_now(s, &deployer, &target, alone, "went with app web")
            .await
            .expect("take off");
        assert_eq!(names(&gone), ["loadbalancers/front-lb"]);
        assert!(!on_node().await, "off n1");
        let k = ResourcePublicationKey {
            project: "shop".into(),
            kind: ResourceKind::LoadBalancers,
            name: "front-lb".into(),
            node: "n1".into(),
        };
        assert_eq!(s.get_resource_publication(&k).await.expect("read"), None);
    }
}
