//! Tombstones of force-unpublished publications: once the node answers
//! again, what berth put there is taken off (objects by berth's labels, pins
//! on the edge nothing else there uses) and the tombstone goes. While the
//! node stays away it is simply tried again at the next sweep; a node whose
//! record was deleted has nothing left to reconcile.
//!
//! Owns: the sweep. Must not touch: the rules of the request (see `store`).

use std::collections::BTreeSet;

use crate::deploy::OwnerSelector;
use crate::resources_ctl::resource_selector;
use crate::store::ForcedRemoval;

use super::{target_of, Context, ReconcileError};

pub async fn sweep(ctx: &Context) {
    let all = match ctx.store().list_forced().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list force-unpublished nodes");
            return;
        }
    };
    for f in all {
        let key = f.key();
        match sweep_one(ctx, &f).await {
            Ok(outcome) => {
                let k = key.clone();
                if let Err(e) = ctx.store().forget_forced(&k).await {
                    tracing::warn!(publication = %key, error = %e, "cannot forget tombstone");
                    continue;
                }
                ctx.audit.record(
                    "controller",
                    &f.project,
                    "app.force_unpublish",
                    &format!("{}@{}", f.app, f.node),
                    &format!("ok; {outcome}"),
                );
            }
            // The node is still away: next time.
            Err(e) => tracing::debug!(publication = %key, error = %e, "node not back yet"),
        }
    }
}

async fn sweep_one(ctx: &Context, f: &ForcedRemoval) -> Result<String, ReconcileError> {
    let n = f.node.clone();
    if ctx.store().get_node(&n).await?.is_none() {
        return Ok("the node was deleted; nothing to reconcile".into());
    }
    let target = target_of(ctx, &f.node).await?;
    ctx.deployer
        .remove(&target, &OwnerSelector::app(&f.project, &f.app, &f.node))
        .await?;
    for (kind, name) in &f.resources {
        ctx.deployer
            .remove(
                &target,
                &resource_selector(&f.project, &f.node, *kind, name),
            )
            .await?;
    }
    let (node, k) = (f.node.clone(), f.key());
    let others: BTreeSet<String> = ctx
        .store()
        .pinned_by_others(&node, &k)
        .await?
        .into_iter()
        .collect();
    let unpin: Vec<String> = f
        .pins
        .iter()
        .filter(|p| !others.contains(*p))
        .cloned()
        .collect();
    if !unpin.is_empty() {
        ctx.edge.unpin(&target.node, unpin).await?;
    }
    Ok("the node is back: reconciled to nothing (objects removed, pins released)".into())
}
