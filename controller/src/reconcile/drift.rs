//! Drift checks: every `drift_check_interval`, each running publication's
//! objects are rendered as an apply would render them and compared with what
//! is on the node (the deployer says which were edited or deleted). One that
//! drifted is marked to apply again — a compare-and-swap write, so a publish
//! or unpublish in flight wins — and the scheduler re-applies it the usual
//! way; the repair is in the audit log.
//!
//! Resources published on a node that no running app's check covers — one
//! published on its own, one an unpublish without cascade left, an EIP with
//! a static container IP — are checked the same way, each object as its own
//! reconcile renders it, and repaired by that reconcile (`<kind>.repair`).
//!
//! Owns: choosing what to check and marking the drifted. Must not touch: the
//! node (only through the deployer's `drifted`) or objects berth did not
//! render (a deployer compares only the objects it is given, which carry
//! berth's labels).

use std::collections::BTreeSet;

use crate::clock::now_secs;
use crate::model::{Desired, Publication, PublicationState};
use crate::resources::{
    PublicationRef, ResourceDesired, ResourcePublication, ResourcePublicationKey, ResourceState,
};
use crate::resources_ctl::ResourceRenderer;

use super::publish::{render_publication, template_version};
use super::{target_of, Context, ReconcileError};

/// Checks every running publication, then every applied resource on a node
/// none of them carries; returns those marked to apply again.
pub async fn check_all(ctx: &Context) -> Vec<PublicationRef> {
    let all = match ctx.store().list_publications().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "drift check: cannot list publications");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut covered = BTreeSet::new();
    for p in all {
        let running = p.desired == Desired::Published
            && p.applied
            && matches!(p.state, PublicationState::Running);
        if !running {
            continue;
        }
        let key = p.key();
        match check_one(ctx, p, &mut covered).await {
            Ok(true) => out.push(PublicationRef::App(key)),
            Ok(false) => {}
            Err(e) => tracing::warn!(publication = %key, error = %e, "drift check failed"),
        }
    }
    out.extend(check_resources(ctx, &covered).await);
    out
}

/// Checks one running app publication; adds the resources its objects
/// include to `covered`.
async fn check_one(
    ctx: &Context,
    mut p: Publication,
    covered: &mut BTreeSet<ResourcePublicationKey>,
) -> Result<bool, ReconcileError> {
    let tv = template_version(ctx, &p).await?;
    let target = target_of(ctx, &p.node).await?;
    let rendered = render_publication(ctx, &p, &tv.spec, &target).await?;
    for c in rendered.before.iter().chain(rendered.after.iter()) {
        covered.insert(ResourcePublicationKey {
            project: p.project.clone(),
            kind: c.kind,
            name: c.name.clone(),
            node: p.node.clone(),
        });
    }
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

/// Checks every applied resource on a node that is not in `covered`.
async fn check_resources(
    ctx: &Context,
    covered: &BTreeSet<ResourcePublicationKey>,
) -> Vec<PublicationRef> {
    let Some(renderer) = ctx.resources.as_deref() else {
        return Vec::new();
    };
    let all = match ctx.store().list_all_resource_publications().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "drift check: cannot list resource publications");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for rp in all {
        let key = rp.key();
        if rp.desired != ResourceDesired::Published || !rp.applied || covered.contains(&key) {
            continue;
        }
        match check_resource(ctx, renderer, rp).await {
            Ok(true) => out.push(PublicationRef::Resource(key)),
            Ok(false) => {}
            Err(e) => tracing::warn!(resource = %key, error = %e, "drift check failed"),
        }
    }
    out
}

/// Compares one resource's object with the node; a drifted one is marked to
/// apply again (compare-and-swap: a request in flight wins), audited.
async fn check_resource(
    ctx: &Context,
    renderer: &ResourceRenderer,
    mut rp: ResourcePublication,
) -> Result<bool, ReconcileError> {
    let (project, kind, name) = (rp.project.clone(), rp.kind, rp.name.clone());
    let Some(resource) = ctx.store().get_resource(&project, kind, &name).await? else {
        // Gone: its own reconcile says so.
        return Ok(false);
    };
    let target = target_of(ctx, &rp.node).await?;
    let object = renderer
        .render_resource(ctx.store(), &resource, &target.node)
        .await?;
    let drifted = ctx.deployer.drifted(&target, &[object]).await?;
    if drifted.is_empty() {
        return Ok(false);
    }
    let what = format!(
        "drift on the node ({} edited or deleted by hand); applying again",
        drifted.join(", ")
    );
    rp.applied = false;
    rp.set(ResourceState::Pending, what.clone(), now_secs());
    if !ctx.store().update_resource_publication(&mut rp).await? {
        // Changed meanwhile: its own reconcile applies what is wanted now.
        return Ok(false);
    }
    tracing::info!(resource = %rp.key(), drifted = ?drifted, "drift found; repairing");
    ctx.audit.record(
        "controller",
        &rp.project,
        &format!("{}.repair", rp.kind),
        &format!("{}@{}", rp.name, rp.node),
        &format!("ok; {what}"),
    );
    Ok(true)
}
