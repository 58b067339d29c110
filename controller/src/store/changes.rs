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
        app: p.app.clone(),
        node: p.node.clone(),
        version: p.version,
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

/// The change storing `p` over a publication in state `before` makes, if any.
pub(crate) fn stored(before: &PublicationState, p: &Publication) -> Option<PublicationChange> {
    if !changed(before, &p.state) {
        return None;
    }
    Some(change(
        p,
        Some(before.label()),
        p.state.label(),
        last_detail(p),
    ))
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
}
