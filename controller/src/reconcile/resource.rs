//! The steps of a resource on a node: apply it once what it needs is there,
//! or take it off and forget it.
//!
//! Owns: what each step records on the resource publication, and its error
//! policy (the same backoff as an app's). A load balancer, EIP or route found
//! serving no app published on its node is taken off it instead of applied. Level-triggered like an app's
//! reconcile: it reads the stored record and does what it calls for. An app
//! apply that carries the resource marks it applied, so a resource published
//! with its app is applied once, in the app's publish order.
//!
//! Must not touch: the rules that allowed the request (see `store`).

use std::time::Duration;

use crate::clock::{now_ms, now_secs};
use crate::resources::{
    ResourceDesired, ResourceKind, ResourcePublication, ResourcePublicationKey, ResourceState,
};
use crate::resources_ctl::resource_selector;
use crate::store::StoreError;

use super::{backoff, target_of, Action, Context, ReconcileError};

pub(super) async fn reconcile_resource(key: &ResourcePublicationKey, ctx: &Context) -> Action {
    let k = key.clone();
    let rp = match ctx.store().get_resource_publication(&k).await {
        Ok(Some(rp)) => rp,
        Ok(None) => return Action::AwaitChange,
        Err(e) => {
            tracing::error!(resource = %key, error = %e, "cannot read resource publication");
            return Action::Requeue(ctx.settings.backoff_max.min(Duration::from_secs(30)));
        }
    };
    let generation = rp.generation;
    let result = match rp.desired {
        ResourceDesired::Published => apply_step(rp, ctx).await,
        ResourceDesired::Unpublished => remove_step(rp, ctx).await,
    };
    match result {
        Ok(action) => action,
        Err(ReconcileError::Stale) => Action::Requeue(Duration::ZERO),
        Err(ReconcileError::Store(StoreError::Fenced(m))) => {
            super::fenced(&key.to_string(), &m, ctx)
        }
        Err(e) => error_policy(key, generation, &e, ctx).await,
    }
}

async fn save(ctx: &Context, rp: &mut ResourcePublication) -> Result<(), ReconcileError> {
    let mut copy = rp.clone();
    let ok = ctx.store().update_resource_publication(&mut copy).await?;
    if ok {
        *rp = copy;
        Ok(())
    } else {
        Err(ReconcileError::Stale)
    }
}

async fn apply_step(mut rp: ResourcePublication, ctx: &Context) -> Result<Action, ReconcileError> {
    if rp.applied {
        return Ok(Action::AwaitChange);
    }
    let key = rp.key();
    let k = key.clone();
    let waiting = match ctx.store().resource_readiness(&k).await {
        Ok(w) => w,
        // A load balancer, EIP or route that serves no app published on its
        // node any more (the app left, moved to a version it does not
        // select, or the resource now points elsewhere) comes off it.
        Err(StoreError::Conflict(_)) if rp.kind.is_network() => {
            let why = format!("no app published on {} is served by it any more", rp.node);
            rp.request_takedown(why, now_secs());
            save(ctx, &mut rp).await?;
            return Ok(Action::Requeue(Duration::ZERO));
        }
        Err(StoreError::Conflict(m)) => return Err(ReconcileError::Resource(m)),
        Err(other) => return Err(ReconcileError::Store(other)),
    };
    if let Some(reason) = waiting {
        if rp.state != ResourceState::Waiting || rp.detail != reason {
            rp.set(ResourceState::Waiting, reason, now_secs());
            save(ctx, &mut rp).await?;
        }
        return Ok(Action::Requeue(ctx.settings.poll_interval));
    }
    let target = target_of(ctx, &rp.node).await?;
    let (p, kind, n) = (rp.project.clone(), rp.kind, rp.name.clone());
    let resource = ctx
        .store()
        .get_resource(&p, kind, &n)
        .await?
        .ok_or_else(|| {
            ReconcileError::Missing(format!(
                "{} {}/{} no longer exists",
                rp.kind.singular(),
                rp.project,
                rp.name
            ))
        })?;
    let renderer = ctx
        .resources
        .as_ref()
        .ok_or_else(|| ReconcileError::Resource("resources are not enabled".into()))?;
    let object = renderer
        .render_resource(ctx.store(), &resource, &target.node)
        .await?;
    // As an app's apply: nothing from a stale reconcile reaches the node.
    if !ctx
        .store()
        .confirm_resource_publication(&key, rp.revision)
        .await?
    {
        return Err(ReconcileError::Stale);
    }
    ctx.deployer.apply(&target, &[object]).await?;
    if rp.kind == ResourceKind::Volumes {
        let (p, node, n) = (rp.project.clone(), rp.node.clone(), rp.name.clone());
        ctx.store()
            .bind(&p, &node, ResourceKind::Volumes, &n, now_secs())
            .await?;
    }
    rp.applied = true;
    rp.clear_failure();
    rp.set(ResourceState::Applied, "applied", now_secs());
    save(ctx, &mut rp).await?;
    ctx.audit.record(
        "controller",
        &rp.project,
        &format!("{}.apply", rp.kind),
        &format!("{}@{}", rp.name, rp.node),
        "ok",
    );
    Ok(Action::AwaitChange)
}

async fn remove_step(rp: ResourcePublication, ctx: &Context) -> Result<Action, ReconcileError> {
    let key = rp.key();
    let n = rp.node.clone();
    // A node that is gone has nothing left to remove.
    if ctx.store().get_node(&n).await?.is_some() {
        let target = target_of(ctx, &rp.node).await?;
        ctx.deployer
            .remove(
                &target,
                &resource_selector(&rp.project, &rp.node, rp.kind, &rp.name),
            )
            .await?;
    }
    if rp.kind == ResourceKind::Volumes {
        // The claim, and the data on it, are gone from the node.
        let (p, node, n) = (rp.project.clone(), rp.node.clone(), rp.name.clone());
        ctx.store()
            .mark_released(&p, &node, ResourceKind::Volumes, &n)
            .await?;
    }
    let (k, rev) = (key.clone(), rp.revision);
    // mark_released already forgot a volume's record; either way it is gone.
    let deleted = ctx.store().delete_resource_publication(&k, rev).await?;
    if !deleted && rp.kind != ResourceKind::Volumes {
        return Err(ReconcileError::Stale);
    }
    tracing::info!(resource = %key, "unpublished");
    let outcome = match &rp.taken_down_because {
        Some(why) => format!("ok; {why}"),
        None => "ok".to_string(),
    };
    ctx.audit.record(
        "controller",
        &rp.project,
        &format!("{}.unpublish", rp.kind),
        &format!("{}@{}", rp.name, rp.node),
        &outcome,
    );
    Ok(Action::AwaitChange)
}

/// Records the failure on the record and retries with backoff.
async fn error_policy(
    key: &ResourcePublicationKey,
    generation: u64,
    err: &ReconcileError,
    ctx: &Context,
) -> Action {
    let reason = err.to_string();
    let k = key.clone();
    let mut rp = match ctx.store().get_resource_publication(&k).await {
        Ok(Some(rp)) if rp.generation == generation => rp,
        Ok(_) => return Action::Requeue(Duration::ZERO),
        Err(e) => {
            tracing::error!(resource = %key, error = %e, "cannot record failure");
            return Action::Requeue(backoff(&ctx.settings, 3));
        }
    };
    rp.attempts = rp.attempts.saturating_add(1);
    let delay = backoff(&ctx.settings, rp.attempts);
    rp.next_retry_at_ms = Some(now_ms() + delay.as_millis() as u64);
    rp.last_error = Some(reason.clone());
    let state = if rp.desired == ResourceDesired::Published {
        ResourceState::Failed
    } else {
        ResourceState::Removing
    };
    rp.set(state, reason.clone(), now_secs());
    tracing::warn!(resource = %key, attempts = rp.attempts, retry_in = ?delay, error = %reason, "reconcile failed");
    if rp.attempts == 1 {
        ctx.audit.record(
            "controller",
            &key.project,
            &format!("{}.reconcile", key.kind),
            &format!("{}@{}", key.name, key.node),
            &format!("failed: {reason}"),
        );
    }
    match save(ctx, &mut rp).await {
        Ok(()) => Action::Requeue(delay),
        Err(ReconcileError::Store(StoreError::Fenced(m))) => {
            super::fenced(&key.to_string(), &m, ctx)
        }
        Err(_) => Action::Requeue(Duration::ZERO),
    }
}
