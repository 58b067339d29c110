//! The steps of a publish, in the order they run: resolve, prefetch (submit,
//! then follow the job), apply, verify the rollout, unpin what the previous
//! version pinned.
//!
//! Owns: what each step does and records on the publication. Every step saves
//! the publication (compare-and-swap) before the next starts, and is skipped
//! once its fact is stored, so a reconcile resumes where the last one stopped.
//! Must not touch: the order of reconciles or retries (see `scheduler` and the
//! error policy in `reconcile`).

use std::collections::BTreeSet;

use crate::clock::now_secs;
use crate::deploy::{DeployTarget, Rollout};
use crate::model::{
    AppSpec, Node, PinnedImage, Publication, PublicationKey, PublicationState, TemplateVersion,
};
use crate::render::{self, WorkloadInput};
use crate::resources_ctl::Carried;
use serde_json::Value;

use super::prefetch::{follow_prefetch, submit_prefetch};
use super::{clear_failure, save, target_of, Action, Context, ReconcileError};

/// Takes a publication wanted on its node as far as it can go now.
pub(super) async fn publish_step(
    mut p: Publication,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let key = p.key();
    let target = target_of(ctx, &p.node).await?;
    let tv = template_version(ctx, &p).await?;

    // 1. Resolve once per publish; stored with the next step's first write.
    let mut unsaved = false;
    if p.images.is_none() {
        resolve_images(ctx, &mut p, &tv.spec).await?;
        unsaved = true;
    }

    // 2. Prefetch and pin on the node's edge cache.
    if !p.prefetched {
        let waiting = match p.prefetch_job.clone() {
            None => Some(submit_prefetch(ctx, &mut p, &target.node, unsaved).await?),
            Some(job) => follow_prefetch(ctx, &mut p, &target.node, &job).await?,
        };
        if let Some(action) = waiting {
            return Ok(action);
        }
        // Done: stored with the apply (below), unless it fails.
        unsaved = true;
    }

    // 3. Apply, once per publish; 4. verify the rollout, then running. A
    // deployer that cannot watch a rollout makes prefetched, applied and
    // running one write (the history and the outbox keep every step).
    if !p.applied {
        if let Some(action) = apply_and_verify(ctx, &mut p, &tv.spec, &target, unsaved).await? {
            return Ok(action);
        }
    } else if p.state != PublicationState::Running {
        if let Some(action) = verify_rollout(ctx, &mut p, &tv.spec, &target, &key, false).await? {
            return Ok(action);
        }
    }

    unpin_previous_images(ctx, &mut p, &target.node, &key).await
}

/// The template version the publication wants.
pub(super) async fn template_version(
    ctx: &Context,
    p: &Publication,
) -> Result<TemplateVersion, ReconcileError> {
    let (proj, app, version) = (p.project.clone(), p.app.clone(), p.version);
    ctx.store()
        .get_version(&proj, &app, version)
        .await?
        .ok_or_else(|| {
            ReconcileError::Missing(format!(
                "version {} of {}/{} no longer exists",
                p.version, p.project, p.app
            ))
        })
}

/// Turns every image of the template into a digest, for this publish (a tag
/// that moves later changes nothing once it is stored: the caller stores it
/// with the prefetch request's first write).
async fn resolve_images(
    ctx: &Context,
    p: &mut Publication,
    spec: &AppSpec,
) -> Result<(), ReconcileError> {
    let mut images = Vec::new();
    for reference in spec.images() {
        let r =
            ctx.resolver
                .resolve(&reference)
                .await
                .map_err(|source| ReconcileError::Resolve {
                    image: reference.clone(),
                    source,
                })?;
        images.push(PinnedImage {
            reference,
            repository: r.repository,
            digest: r.digest,
            media_type: r.media_type,
            upstream: r.upstream,
        });
    }
    let detail = images
        .iter()
        .map(|i| format!("{} -> {}", i.reference, i.digest))
        .collect::<Vec<_>>()
        .join(", ");
    p.images = Some(images);
    clear_failure(p);
    p.set_state(
        PublicationState::Prefetching {
            bytes_done: 0,
            bytes_total: 0,
        },
        format!("resolved {detail}"),
        now_secs(),
    );
    Ok(())
}

/// What an apply puts on the node, in order: the resources carried before
/// the workload, the workload (with digest references and the config
/// checksum), the resources after it. Also what a drift check compares.
pub(super) struct Rendered {
    pub before: Vec<Carried>,
    pub after: Vec<Carried>,
    pub objects: Vec<Value>,
}

pub(super) async fn render_publication(
    ctx: &Context,
    p: &Publication,
    spec: &AppSpec,
    target: &DeployTarget,
) -> Result<Rendered, ReconcileError> {
    let images = p.images.clone().unwrap_or_default();
    let mut before = Vec::new();
    let mut after = Vec::new();
    if let Some(res) = &ctx.resources {
        before = res
            .before_workload(ctx.store(), p, spec, &target.node)
            .await?;
        after = res
            .after_workload(ctx.store(), p, spec, &target.node)
            .await?;
    }
    let mut objects: Vec<_> = before.iter().map(|c| c.object.clone()).collect();
    let mut workload = render::render_workload(
        &WorkloadInput {
            project: &p.project,
            app: &p.app,
            version: p.version,
            spec,
            images: &images,
            node: &target.node,
        },
        &ctx.render,
    )?;
    // A config map or secret change rolls the pods.
    if let Some(sum) = render::config_checksum(&objects) {
        render::annotate_pod_templates(&mut workload, &sum);
    }
    objects.extend(workload);
    objects.extend(after.iter().map(|c| c.object.clone()));
    Ok(Rendered {
        before,
        after,
        objects,
    })
}

/// Applies, then looks at the rollout, and stores both in one write: the
/// apply is stored however the rollout check ends, so a restart never
/// re-applies. `unsaved`: `p` holds a step not stored yet (the prefetch's
/// end), stored with this write or before an error is returned.
async fn apply_and_verify(
    ctx: &Context,
    p: &mut Publication,
    spec: &AppSpec,
    target: &DeployTarget,
    unsaved: bool,
) -> Result<Option<Action>, ReconcileError> {
    let propagated = match apply(ctx, p, spec, target).await {
        Ok(propagated) => propagated,
        Err(e) => {
            if unsaved {
                save(ctx, p).await?;
            }
            return Err(e);
        }
    };
    let key = p.key();
    let action = match verify_rollout(ctx, p, spec, target, &key, true).await {
        Ok(action) => action,
        Err(e) => {
            save(ctx, p).await?;
            return Err(e);
        }
    };
    after_apply(ctx, p, spec, propagated).await?;
    Ok(action)
}

/// Renders the workload with digest references (and the resources that travel
/// with it) and applies it; `p` records the apply, for the caller to store.
/// Answers why the app applied again without a publish, if that is why.
async fn apply(
    ctx: &Context,
    p: &mut Publication,
    spec: &AppSpec,
    target: &DeployTarget,
) -> Result<Option<String>, ReconcileError> {
    let Rendered {
        before,
        after,
        objects,
    } = render_publication(ctx, p, spec, target).await?;
    // The last word before the node changes: this reconcile's publication
    // is still the stored one and (replicas) its term still leads. A stale
    // reconcile, a paused ex-leader's, stops here.
    let (key, revision) = (p.key(), p.revision);
    if !ctx.store().confirm_publication(&key, revision).await? {
        return Err(ReconcileError::Stale);
    }
    ctx.deployer.apply(target, &objects).await?;
    // The resources it carried are on the node: recorded before the app is,
    // so their own reconciles never see the app applied and them not.
    let carried: Vec<_> = before
        .iter()
        .chain(after.iter())
        .map(|c| (c.kind, c.name.clone()))
        .collect();
    let (proj, node) = (p.project.clone(), p.node.clone());
    let detail = format!("applied with app {} version {}", p.app, p.version);
    if !carried.is_empty() {
        ctx.store()
            .mark_resources_applied(&proj, &node, &carried, &detail, now_secs())
            .await?;
    }
    if ctx.resources.is_some() {
        // What this version no longer uses comes off the node: marked here,
        // taken off (and audited) by each resource's own reconcile.
        let left = crate::resources_ctl::left_behind(ctx.store(), p).await?;
        let why = format!("no longer used by {} version {}", p.app, p.version);
        for rp in crate::resources_ctl::take_down(ctx.store(), left, &why).await? {
            ctx.trigger(rp.key());
        }
    }
    let propagated = (p.resources_generation != p.applied_resources_generation).then(|| {
        p.history
            .last()
            .map(|t| t.detail.clone())
            .unwrap_or_default()
    });
    p.applied = true;
    p.applied_resources_generation = p.resources_generation;
    clear_failure(p);
    // Always in the history (the state is already deploying): an operator
    // checking that a publish was applied once, or when, reads it there.
    p.record(
        PublicationState::Deploying,
        format!("applied version {} ({} objects)", p.version, objects.len()),
        now_secs(),
    );
    Ok(propagated)
}

/// What follows a stored apply: the volumes it bound, and the audit trail.
async fn after_apply(
    ctx: &Context,
    p: &Publication,
    spec: &AppSpec,
    propagated: Option<String>,
) -> Result<(), ReconcileError> {
    if let Some(res) = &ctx.resources {
        res.record_bindings(ctx.store(), p, spec).await?;
    }
    ctx.audit.record(
        "controller",
        &p.project,
        "deploy",
        &format!("{}@{} version {}", p.app, p.node, p.version),
        "ok",
    );
    if let Some(why) = propagated {
        ctx.audit.record(
            "controller",
            &p.project,
            "app.propagate",
            &format!(
                "{}@{} version {} generation {}",
                p.app, p.node, p.version, p.resources_generation
            ),
            &format!("ok; {why}"),
        );
    }
    Ok(())
}

/// Running once the deployer sees every pod ready (or cannot see pods at all);
/// otherwise when to look again. `unsaved`: `p` holds steps not stored yet,
/// stored here whatever the rollout says.
async fn verify_rollout(
    ctx: &Context,
    p: &mut Publication,
    spec: &AppSpec,
    target: &DeployTarget,
    key: &PublicationKey,
    unsaved: bool,
) -> Result<Option<Action>, ReconcileError> {
    let workload = render::workload_ref(&p.project, &p.app, spec.kind, &p.node);
    let detail = match ctx.deployer.rollout_status(target, &workload).await? {
        Rollout::NotObservable => format!("version {} applied", p.version),
        Rollout::Observed { ready, desired } if ready >= desired => {
            format!("version {}: {ready}/{desired} ready", p.version)
        }
        Rollout::Observed { ready, desired } => {
            let detail = format!("waiting for pods: {ready}/{desired} ready");
            if unsaved
                || p.state != PublicationState::Deploying
                || p.history.last().is_some_and(|h| h.detail != detail)
            {
                clear_failure(p);
                p.set_state(PublicationState::Deploying, detail, now_secs());
                save(ctx, p).await?;
            }
            return Ok(Some(Action::Requeue(ctx.settings.poll_interval)));
        }
    };
    clear_failure(p);
    p.set_state(PublicationState::Running, detail, now_secs());
    save(ctx, p).await?;
    tracing::info!(publication = %key, version = p.version, "running");
    Ok(None)
}

/// Unpins the images of earlier versions that nothing on the node uses any more.
async fn unpin_previous_images(
    ctx: &Context,
    p: &mut Publication,
    node: &Node,
    key: &PublicationKey,
) -> Result<Action, ReconcileError> {
    let current: BTreeSet<String> = p.images_by_digest().into_iter().collect();
    let stale: Vec<String> = p
        .pinned
        .iter()
        .filter(|i| !current.contains(*i))
        .cloned()
        .collect();
    if !stale.is_empty() {
        let (node_name, k) = (p.node.clone(), key.clone());
        let others = ctx.store().pinned_by_others(&node_name, &k).await?;
        let to_unpin: Vec<String> = stale
            .iter()
            .filter(|i| !others.contains(*i))
            .cloned()
            .collect();
        if !to_unpin.is_empty() {
            // A stale reconcile must not unpin what a newer publish uses.
            if !ctx.store().confirm_publication(key, p.revision).await? {
                return Err(ReconcileError::Stale);
            }
            if let Err(e) = ctx.edge.unpin(node, to_unpin.clone()).await {
                // The app runs; an old pin only costs disk. Try again later.
                tracing::warn!(publication = %key, error = %e, "cannot unpin old images");
                return Ok(Action::Requeue(ctx.settings.resync_interval));
            }
        }
        p.pinned.retain(|i| current.contains(i));
        save(ctx, p).await?;
    }
    Ok(Action::AwaitChange)
}
