//! Drift checks: every `drift_check_interval`, each running publication's
//! objects are rendered as an apply would render them and compared with what
//! is on the node (the deployer says which were edited or deleted). One that
//! drifted is marked to apply again — a compare-and-swap write, so a publish
//! or unpublish in flight wins — and the scheduler re-applies it the usual
//! way; the repair is in the audit log.
//!
//! Owns: choosing what to check and marking the drifted. Must not touch: the
//! node (only through the deployer's `drifted`) or objects berth did not
//! render (a deployer compares only the objects it is given, which carry
//! berth's labels).

use crate::clock::now_secs;
use crate::model::{Desired, Publication, PublicationState};
use crate::resources::PublicationRef;

use super::publish::{render_publication, template_version};
use super::{target_of, Context, ReconcileError};

/// Checks every running publication; returns those marked to apply again.
pub async fn check_all(ctx: &Context) -> Vec<PublicationRef> {
    let all = match ctx.store().list_publications().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "drift check: cannot list publications");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for p in all {
        let running = p.desired == Desired::Published
            && p.applied
            && matches!(p.state, PublicationState::Running);
        if !running {
            continue;
        }
        let key = p.key();
        match check_one(ctx, p).await {
            Ok(true) => out.push(PublicationRef::App(key)),
            Ok(false) => {}
            Err(e) => tracing::warn!(publication = %key, error = %e, "drift check failed"),
        }
    }
    out
}

async fn check_one(ctx: &Context, mut p: Publication) -> Result<bool, ReconcileError> {
    let tv = template_version(ctx, &p).await?;
    let target = target_of(ctx, &p.node).await?;
    let rendered = render_publication(ctx, &p, &tv.spec, &target).await?;
    let drifted = ctx.deployer.drifted(&target, &rendered.objects).await?;
    if drifted.is_empty() {
        return Ok(false);
    }
    let what = format!(
        "drift on the node ({} edited or deleted by hand); applying again",
        drifted.join(", ")
    );
    p.applied = false;
    p.record(PublicationState::Deploying, what.clone(), now_secs());
    let mut copy = p.clone();
    if ctx.store().replace_publication(&mut copy).await?.is_none() {
        // Changed meanwhile: its own reconcile applies what is wanted now.
        return Ok(false);
    }
    ctx.events.recorded();
    tracing::info!(publication = %p.key(), drifted = ?drifted, "drift found; repairing");
    ctx.audit.record(
        "controller",
        &p.project,
        "app.repair",
        &format!("{}@{} version {}", p.app, p.node, p.version),
        &format!("ok; {what}"),
    );
    Ok(true)
}
