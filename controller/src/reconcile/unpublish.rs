//! The steps of an unpublish: remove from the deployer (and, with cascade, the
//! resources only this app used there), unpin on the edge what nothing else on
//! the node uses, delete the publication.
//!
//! Owns: the order of those steps. Each is safe to repeat, so a reconcile cut
//! short simply runs them again. Must not touch: retries (see the error policy
//! in `reconcile`).

use std::collections::BTreeSet;

use crate::deploy::OwnerSelector;
use crate::model::Publication;

use super::{target_of, Action, Context, ReconcileError};

/// Takes a publication off its node and forgets it.
pub(super) async fn unpublish_step(
    mut p: Publication,
    cascade: bool,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let key = p.key();
    let target = target_of(ctx, &p.node).await?;
    // A stale reconcile (a paused ex-leader's) must not take down what was
    // published again meanwhile.
    if !ctx.store().confirm_publication(&key, p.revision).await? {
        return Err(ReconcileError::Stale);
    }
    ctx.deployer
        .remove(&target, &OwnerSelector::app(&p.project, &p.app, &p.node))
        .await?;
    let mut note = String::new();
    if let Some(res) = &ctx.resources {
        note = res
            .on_unpublish(ctx.store(), ctx.deployer.as_ref(), &p, cascade, &target)
            .await?;
    }
    let mut to_unpin: BTreeSet<String> = p.pinned.iter().cloned().collect();
    to_unpin.extend(p.images_by_digest());
    if !to_unpin.is_empty() {
        let (node, k) = (p.node.clone(), key.clone());
        let others = ctx.store().pinned_by_others(&node, &k).await?;
        let list: Vec<String> = to_unpin
            .into_iter()
            .filter(|i| !others.contains(i))
            .collect();
        if !list.is_empty() {
            ctx.edge.unpin(&target.node, list).await?;
        }
        p.pinned.clear();
    }
    let (k, rev) = (key.clone(), p.revision);
    if !ctx.store().delete_publication(&k, rev).await? {
        return Err(ReconcileError::Stale);
    }
    tracing::info!(publication = %key, "unpublished");
    ctx.events.recorded();
    ctx.audit.record(
        "controller",
        &p.project,
        "unpublish",
        &format!("{}@{}", p.app, p.node),
        &if note.is_empty() {
            "ok".to_string()
        } else {
            format!("ok; {note}")
        },
    );
    Ok(Action::AwaitChange)
}
