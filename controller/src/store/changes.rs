//! What counts as a publication change: one `PublicationChange` per stored
//! change of state (the same changes the publication's history records:
//! another state, or another failure reason; progress alone is none): a
//! publish or unpublish request (`requested`, from the API), each step of
//! the reconciler (`stored`), and a last one, `removed`, once an unpublish
//! has deleted the publication.
//!
//! Owns: deciding what counts as a change and wording it, the same for every
//! store backend: a backend calls these inside the transaction that writes
//! the publication and records the change in its outbox with it
//! (`ControllerStore::publication_events`), so a crash after the write loses
//! none. Must not touch: a backend's tables or how events travel.

use crate::model::{Publication, PublicationState};
use crate::ports::PublicationChange;
use crate::resources::{ResourcePublication, ResourceState};

/// Whether going from `before` to `after` is a change worth telling.
fn changed(before: &PublicationState, after: &PublicationState) -> bool {
    match (before, after) {
        (PublicationState::Failed { reason: a }, PublicationState::Failed { reason: b }) => a != b,
        _ => before.label() != after.label(),
    }
}

fn change(
    p: &Publication,
    previous: Option<&str>,
    state: &str,
    detail: String,
) -> PublicationChange {
    PublicationChange {
        project: p.project.clone(),
        kind: crate::ports::APP_KIND.to_string(),
        name: p.app.clone(),
        node: p.node.clone(),
        version: Some(p.version),
        state: state.to_string(),
        previous_state: previous.map(str::to_string),
        detail,
    }
}

fn last_detail(p: &Publication) -> String {
    p.history
        .last()
        .map(|t| t.detail.clone())
        .unwrap_or_default()
}

/// The changes storing `p` over `before` makes, oldest first. A reconcile
/// may take a publication through several states in one write (prefetched,
/// applied and running, for a deployer that cannot watch a rollout): each
/// state its history passed through since `before` is a change of its own,
/// so receivers see the same steps whatever the writes were.
pub(crate) fn stored(before: &Publication, p: &Publication) -> Vec<PublicationChange> {
    let mut out = Vec::new();
    let mut previous = before.state.label();
    for t in passed_through(before, p) {
        if t.state != previous {
            out.push(change(p, Some(previous), &t.state, t.detail.clone()));
            previous = state_label(&t.state);
        }
    }
    // The state it ends in, worded as before when the history does not
    // show it (a new failure reason, or a history cut at its limit).
    if previous != p.state.label() || (out.is_empty() && changed(&before.state, &p.state)) {
        out.push(change(p, Some(previous), p.state.label(), last_detail(p)));
    }
    out
}

/// The history entries `p` added to `before`'s, except the last (the state
/// `p` is in): those after the entry that ended `before`'s history.
fn passed_through<'a>(before: &Publication, p: &'a Publication) -> &'a [crate::model::Transition] {
    let Some(last) = before.history.last() else {
        return &[];
    };
    let Some(at) = p.history.iter().rposition(|t| t == last) else {
        return &[];
    };
    let added = &p.history[at + 1..];
    &added[..added.len().saturating_sub(1)]
}

/// The `'static` label of a state named in a history entry.
fn state_label(state: &str) -> &'static str {
    [
        PublicationState::Resolving,
        PublicationState::Prefetching {
            bytes_done: 0,
            bytes_total: 0,
        },
        PublicationState::Deploying,
        PublicationState::Running,
        PublicationState::Failed {
            reason: String::new(),
        },
        PublicationState::Removing,
    ]
    .iter()
    .map(PublicationState::label)
    .find(|l| *l == state)
    .unwrap_or("unknown")
}

/// The change a publish or unpublish request storing `p` (resolving or
/// removing) makes, if any. A request always adds to the history, so the
/// entry before its last is the state it left; none: the publication is new.
pub(crate) fn requested(p: &Publication) -> Option<PublicationChange> {
    let n = p.history.len();
    let previous = n
        .checked_sub(2)
        .and_then(|i| p.history.get(i))
        .map(|t| t.state.as_str());
    if previous == Some(p.state.label()) {
        return None;
    }
    Some(change(p, previous, p.state.label(), last_detail(p)))
}

/// The change a force-unpublish dropping `p` makes: `removed` at once, the
/// node's objects to be taken off when it is reachable again.
pub(crate) fn force_removed(p: &Publication) -> PublicationChange {
    let detail = format!(
        "force-unpublished from node {}; its objects are removed when it is reachable",
        p.node
    );
    change(p, Some(p.state.label()), "removed", detail)
}

/// The change deleting the unpublished `p` makes.
pub(crate) fn removed(p: &Publication) -> PublicationChange {
    let detail = format!("unpublished from node {}", p.node);
    change(p, Some(p.state.label()), "removed", detail)
}

fn resource_state(s: ResourceState) -> &'static str {
    match s {
        ResourceState::Pending => "pending",
        ResourceState::Waiting => "waiting",
        ResourceState::Applied => "applied",
        ResourceState::Failed => "failed",
        ResourceState::Removing => "removing",
    }
}

fn resource_change(
    rp: &ResourcePublication,
    previous: Option<&str>,
    state: &str,
    detail: String,
) -> PublicationChange {
    PublicationChange {
        project: rp.project.clone(),
        kind: rp.kind.as_str().to_string(),
        name: rp.name.clone(),
        node: rp.node.clone(),
        version: None,
        state: state.to_string(),
        previous_state: previous.map(str::to_string),
        detail,
    }
}

/// The change writing `after` over `before` (`None`: a new record) makes to
/// a resource's publication on a node: another state, or, failed still,
/// another reason. A write that only bumps its revision, marks it carried
/// by apps or counts an attempt is none.
pub(crate) fn resource_stored(
    before: Option<&ResourcePublication>,
    after: &ResourcePublication,
) -> Option<PublicationChange> {
    let state = resource_state(after.state);
    let previous = match before {
        None => None,
        Some(b) if b.state != after.state => Some(resource_state(b.state)),
        Some(b) if after.state == ResourceState::Failed && b.detail != after.detail => Some(state),
        Some(_) => return None,
    };
    Some(resource_change(
        after,
        previous,
        state,
        after.detail.clone(),
    ))
}

/// The change dropping `rp`'s record makes: `removed`, for the reason `detail`.
pub(crate) fn resource_removed(rp: &ResourcePublication, detail: String) -> PublicationChange {
    resource_change(rp, Some(resource_state(rp.state)), "removed", detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_no_change_but_a_new_state_or_reason_is() {
        let prefetching = |done| PublicationState::Prefetching {
            bytes_done: done,
            bytes_total: 10,
        };
        let failed = |r: &str| PublicationState::Failed { reason: r.into() };
        assert!(!changed(&prefetching(1), &prefetching(5)));
        assert!(changed(&prefetching(10), &PublicationState::Deploying));
        assert!(changed(&PublicationState::Resolving, &failed("x")));
        assert!(!changed(&failed("x"), &failed("x")));
        assert!(changed(&failed("x"), &failed("y")));
        assert!(!changed(
            &PublicationState::Running,
            &PublicationState::Running
        ));
    }

    #[test]
    fn a_resource_changes_with_its_state_or_its_failure() {
        use crate::resources::{ResourceKind, ResourcePublicationKey};
        let k = ResourcePublicationKey {
            project: "shop".into(),
            kind: ResourceKind::LoadBalancers,
            name: "front".into(),
            node: "n1".into(),
        };
        let new = ResourcePublication::new(&k, "publish requested", 1);
        let c = resource_stored(None, &new).expect("a new record is a change");
        assert_eq!(
            (c.kind.as_str(), c.name.as_str(), c.state.as_str()),
            ("loadbalancers", "front", "pending")
        );
        assert_eq!((c.previous_state, c.version), (None, None));
        let mut bumped = new.clone();
        bumped.revision += 1;
        bumped.with_apps = true;
        assert_eq!(resource_stored(Some(&new), &bumped), None);
        let mut applied = new.clone();
        applied.set(ResourceState::Applied, "applied", 2);
        let c = resource_stored(Some(&new), &applied).expect("applied");
        assert_eq!(c.previous_state.as_deref(), Some("pending"));
        let mut failed = applied.clone();
        failed.set(ResourceState::Failed, "node unreachable", 3);
        let mut again = failed.clone();
        again.attempts += 1;
        assert_eq!(resource_stored(Some(&failed), &again), None);
        let mut other = failed.clone();
        other.set(ResourceState::Failed, "refused by the cluster", 4);
        let c = resource_stored(Some(&failed), &other).expect("a new reason");
        assert_eq!(
            (c.previous_state.as_deref(), c.state.as_str()),
            (Some("failed"), "failed")
        );
        let gone = resource_removed(&applied, "unpublished from node n1".into());
        assert_eq!(
            (gone.previous_state.as_deref(), gone.state.as_str()),
            (Some("applied"), "removed")
        );
    }

    /// A change recorded before resources had changes of their own reads as an app's.
    #[test]
    fn an_app_change_recorded_before_kinds_reads_as_an_app() {
        let old = r#"{"project":"shop","app":"web","node":"n1","version":3,
            "state":"running","previous_state":"deploying","detail":"applied"}"#;
        let c: PublicationChange = serde_json::from_str(old).expect("decodes");
        assert_eq!((c.kind.as_str(), c.name.as_str()), ("app", "web"));
        assert_eq!(c.version, Some(3));
    }

    /// One write through several states: each is a change, chained.
    #[test]
    fn a_write_through_several_states_is_a_change_for_each() {
        let mut before = Publication::new("shop", "web", "n1", 1, 10);
        let prefetching = PublicationState::Prefetching {
            bytes_done: 0,
            bytes_total: 0,
        };
        before.set_state(prefetching, "submitted", 11);
        let mut p = before.clone();
        p.set_state(
            PublicationState::Deploying,
            "edge cache holds every image",
            12,
        );
        p.record(PublicationState::Deploying, "applied version 1", 12);
        p.set_state(PublicationState::Running, "version 1 applied", 12);
        let got: Vec<_> = stored(&before, &p)
            .into_iter()
            .map(|c| (c.previous_state.unwrap_or_default(), c.state, c.detail))
            .collect();
        let want = [
            ("prefetching", "deploying", "edge cache holds every image"),
            ("deploying", "running", "version 1 applied"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
        assert_eq!(got, want);
        // One step, as before: one change; progress alone: none.
        let mut one = before.clone();
        one.set_state(PublicationState::Deploying, "edge cache holds", 12);
        assert_eq!(stored(&before, &one).len(), 1);
        let mut progress = before.clone();
        progress.set_state(
            PublicationState::Prefetching {
                bytes_done: 5,
                bytes_total: 10,
            },
            "in progress",
            12,
        );
        assert!(stored(&before, &progress).is_empty());
    }
}
