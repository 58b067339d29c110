//! The conformance section of the outbox of publication changes: every
//! publication write, an app's or a resource's on a node, records its change
//! of state in its own transaction, in order; a write that changes no state
//! records nothing; an acknowledgment takes off what it names and nothing
//! newer.

use super::fixtures::*;
use super::ControllerStore;
use crate::model::{Cluster, PublicationState};

/// (state, previous_state) of every change not yet acknowledged.
async fn pending(s: &dyn ControllerStore) -> Vec<(String, Option<String>)> {
    s.publication_events(100)
        .await
        .expect("events")
        .into_iter()
        .map(|r| (r.change.state, r.change.previous_state))
        .collect()
}

fn step(state: &str, previous: Option<&str>) -> (String, Option<String>) {
    (state.to_string(), previous.map(str::to_string))
}

pub(crate) async fn publication_changes_are_recorded_with_their_writes(s: &dyn ControllerStore) {
    s.create_cluster(&Cluster {
        name: "edge".into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    })
    .await
    .expect("cluster");
    s.create_node(&mut node("n1")).await.expect("n1");
    s.create_app("shop", "web", &spec("shop/web:1"), "alice", None, 10)
        .await
        .expect("app");
    assert!(pending(s).await.is_empty(), "no publication, no change");

    let pubs = s
        .publish("shop", "web", None, &["n1".into()], 20)
        .await
        .expect("publish");
    let mut p = pubs[0].clone();
    // Progress within a state is no change; a new state is.
    p.record(
        PublicationState::Prefetching {
            bytes_done: 0,
            bytes_total: 10,
        },
        "prefetching",
        21,
    );
    assert!(s.update_publication(&mut p).await.expect("cas"));
    p.state = PublicationState::Prefetching {
        bytes_done: 5,
        bytes_total: 10,
    };
    assert!(s.update_publication(&mut p).await.expect("cas"));
    // A stale write records nothing.
    let mut stale = pubs[0].clone();
    stale.record(PublicationState::Running, "stale", 22);
    assert!(!s.update_publication(&mut stale).await.expect("stale"));
    let first = s.publication_events(100).await.expect("events");
    assert_eq!(
        pending(s).await,
        [
            step("resolving", None),
            step("prefetching", Some("resolving"))
        ]
    );
    assert!(first[0].seq < first[1].seq);
    assert_ne!(first[0].id, first[1].id);
    assert_eq!(first[1].change.detail, "prefetching");
    assert_eq!(
        (
            first[0].change.project.as_str(),
            first[0].change.name.as_str()
        ),
        ("shop", "web")
    );

    // An acknowledgment takes off only what it names.
    s.ack_publication_events(first[0].seq).await.expect("ack");
    let unpublished = s
        .unpublish("shop", "web", &["n1".into()], false, 30)
        .await
        .expect("unpublish");
    assert_eq!(
        pending(s).await,
        [
            step("prefetching", Some("resolving")),
            step("removing", Some("prefetching"))
        ]
    );
    let k = unpublished[0].key();
    assert!(s
        .delete_publication(&k, unpublished[0].revision)
        .await
        .expect("delete"));
    let all = s.publication_events(100).await.expect("events");
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].change.state, "removed");
    assert_eq!(all[2].change.previous_state.as_deref(), Some("removing"));
    assert_eq!(all[2].change.detail, "unpublished from node n1");
    assert_eq!(s.publication_events(1).await.expect("one").len(), 1);

    // Numbers are never reused once everything is taken off.
    let last = all[2].seq;
    s.ack_publication_events(last).await.expect("ack all");
    assert!(pending(s).await.is_empty());
    s.publish("shop", "web", None, &["n1".into()], 40)
        .await
        .expect("again");
    let again = s.publication_events(100).await.expect("events");
    assert_eq!(again.len(), 1);
    assert!(again[0].seq > last, "{} after {last}", again[0].seq);

    // A force-unpublish goes to removed at once.
    s.force_unpublish("shop", "web", &["n1".into()], 50)
        .await
        .expect("force");
    let forced = s.publication_events(100).await.expect("events");
    assert_eq!(forced.len(), 2);
    assert_eq!(forced[1].change.state, "removed");
    assert_eq!(
        forced[1].change.previous_state.as_deref(),
        Some("resolving")
    );
    assert!(
        forced[1]
            .change
            .detail
            .starts_with("force-unpublished from node n1"),
        "{}",
        forced[1].change.detail
    );
}

/// (kind, name, state, previous_state) of every change not yet acknowledged.
async fn pending_of_kind(s: &dyn ControllerStore, kind: &str) -> Vec<(String, Option<String>)> {
    s.publication_events(100)
        .await
        .expect("events")
        .into_iter()
        .filter(|r| r.change.kind == kind)
        .map(|r| (r.change.state, r.change.previous_state))
        .collect()
}

/// A resource's publication on a node records its changes in the outbox
/// like an app's: a new record, each change of state the reconciler's
/// compare-and-swap makes (an attempt counted is none), an unpublish
/// request and the record's removal; each in the write that makes it.
pub(crate) async fn resource_publication_changes_are_recorded_with_their_writes(
    s: &dyn ControllerStore,
) {
    use crate::resources::{ResourceKind, ResourcePublicationKey, ResourceState};
    s.create_cluster(&Cluster {
        name: "edge".into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    })
    .await
    .expect("cluster");
    s.create_node(&mut node("n1")).await.expect("n1");
    s.create_app("shop", "web", &spec("shop/web:1"), "alice", None, 10)
        .await
        .expect("app");
    s.create_resource(&resource(
        "front",
        ResourceKind::LoadBalancers,
        lb(&[], Some("web")),
    ))
    .await
    .expect("lb");
    assert!(pending(s).await.is_empty(), "nothing published yet");

    // Published with its app: a new record, from nothing.
    s.publish("shop", "web", None, &["n1".into()], 20)
        .await
        .expect("publish");
    let all = s.publication_events(100).await.expect("events");
    let lb_change = all
        .iter()
        .find(|r| r.change.kind == "loadbalancers")
        .expect("the load balancer's change");
    assert_eq!(
        (
            lb_change.change.name.as_str(),
            lb_change.change.node.as_str(),
            lb_change.change.version,
        ),
        ("front", "n1", None)
    );
    assert_eq!(
        pending_of_kind(s, "loadbalancers").await,
        [step("pending", None)]
    );
    assert!(all.iter().any(|r| r.change.kind == "app"));
    let last = all.last().expect("some").seq;
    s.ack_publication_events(last).await.expect("ack");

    // The reconciler's writes: applied is a change, an attempt counted is not.
    let k = ResourcePublicationKey {
        project: "shop".into(),
        kind: ResourceKind::LoadBalancers,
        name: "front".into(),
        node: "n1".into(),
    };
    let mut rp = s
        .get_resource_publication(&k)
        .await
        .expect("get")
        .expect("the record");
    rp.set(ResourceState::Applied, "applied", 21);
    assert!(s.update_resource_publication(&mut rp).await.expect("cas"));
    rp.attempts += 1;
    assert!(s.update_resource_publication(&mut rp).await.expect("cas"));
    let mut stale = rp.clone();
    stale.revision -= 1;
    stale.set(ResourceState::Failed, "stale", 22);
    assert!(!s
        .update_resource_publication(&mut stale)
        .await
        .expect("stale"));
    assert_eq!(
        pending_of_kind(s, "loadbalancers").await,
        [step("applied", Some("pending"))]
    );

    // Unpublished: removing, then removed with the record.
    let out = s
        .unpublish_resource("shop", ResourceKind::LoadBalancers, "front", None, 30)
        .await
        .expect("unpublish");
    assert!(s
        .delete_resource_publication(&k, out[0].revision)
        .await
        .expect("delete"));
    assert_eq!(
        pending_of_kind(s, "loadbalancers").await,
        [
            step("applied", Some("pending")),
            step("removing", Some("applied")),
            step("removed", Some("removing"))
        ]
    );
    let removed = s.publication_events(100).await.expect("events");
    let removed = removed.last().expect("removed");
    assert_eq!(removed.change.detail, "unpublished from node n1");
}
