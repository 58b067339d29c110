//! The reconcile loop: drives every publication toward what was asked.
//!
//! Owns: the steps of a publication and the order they run in, the one error
//! policy (exponential backoff per publication), and the scheduler that runs
//! reconciles (never two at once for the same publication).
//!
//! `reconcile(key, ctx) -> Action` is level-triggered and idempotent: it reads the
//! stored publication and does the next thing its stored facts call for, whatever
//! woke it. For a publish:
//!
//! 1. resolve every image of the template version to a digest, once per publish
//!    (stored; a tag that moves later changes nothing);
//! 2. ask the node's edge cache to prefetch and pin those digests and follow the
//!    job (bytes stored as progress); a job the edge forgot is submitted again,
//!    and one submitted just before a crash (its id never stored) is found on the
//!    edge and followed instead of a second one;
//! 3. only once the edge reports the job done: render with digest references and
//!    apply with the deployer (recorded as applied, so a restart never re-applies);
//! 4. verify the rollout where the deployer can see it -> running; then unpin the
//!    images of the previous version that nothing else on the node uses.
//!
//! For an unpublish: remove from the deployer, unpin on the edge, delete the
//! publication. Each step's result is written (compare-and-swap on the revision)
//! before the next starts, so the loop resumes from stored state after a restart.
//! A node that fails keeps its own state and backoff; others are not held back.
//!
//! Must not touch: HTTP requests and responses (the API layer records requests
//! in the store and triggers the loop).
//!
//! For a resource on a node (`resource`): once nothing it needs there is on
//! its way (an app apply that carries it, its load balancer), render and
//! apply it; for an unpublish, remove it and forget the record.
//!
//! - `publish`: the steps of a publish; `unpublish`: those of an unpublish;
//! - `resource`: the steps of a resource's publish and unpublish;
//! - `scheduler`: when reconciles run (`run`), at most `concurrency` at once;
//! - `leader`: the scheduler runs only while this replica leads, writing
//!   through the store fenced with its term (`run_while_leader`);
//! - `reports`: edges reporting finished prefetch jobs (why reports, not a
//!   long poll), the report tokens and the inbox the next reconcile reads;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::clock::{now_ms, now_secs};
use crate::deploy::{DeployError, DeployTarget, Deployer};
use crate::model::{Desired, Publication, PublicationKey, PublicationState};
use crate::ports::{
    AuditSink, EdgeClient, EdgeError, ImageResolver, PublicationEvents, ResolveError,
};
use crate::render::{RenderError, RenderOptions};
use crate::resources::PublicationRef;
use crate::resources_ctl::{ResourceError, ResourceRenderer};
use crate::store::{ControllerStore, StoreError};

mod prefetch;
mod publish;
pub mod reports;
mod resource;
mod scheduler;
mod unpublish;

mod drift;
pub(crate) mod forced;
mod leader;
pub use self::leader::run_while_leader;
use self::publish::publish_step;
pub use self::scheduler::{run, Wake};
use self::unpublish::unpublish_step;

/// Timing of the loop.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// How often to look at a rollout in progress, and at a prefetch job of
    /// an edge that does not report its jobs' end (`reports`).
    pub poll_interval: Duration,
    /// How often to look at a prefetch job the edge will report the end of:
    /// only a fallback, for a report that was lost.
    pub report_fallback: Duration,
    /// First retry delay after a failure; doubles with each further failure.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Every publication is looked at again this often, whatever happened.
    pub resync_interval: Duration,
    /// Running publications are compared with what is on the node this often
    /// and repaired (`controller.drift_check_interval`); zero: never.
    pub drift_check_interval: Duration,
    /// Reconciles running at once (different publications).
    pub concurrency: usize,
    /// On shutdown, how long reconciles in flight may take to finish before
    /// they are cancelled (every step is safe to cut short, but a clean finish
    /// saves redoing it and releases the database promptly).
    pub shutdown_grace: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            poll_interval: Duration::from_secs(2),
            report_fallback: Duration::from_secs(30),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            resync_interval: Duration::from_secs(120),
            drift_check_interval: Duration::from_secs(60),
            concurrency: 8,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What the reconciler works with.
pub struct Context {
    pub store: Arc<dyn ControllerStore>,
    pub resolver: Arc<dyn ImageResolver>,
    pub edge: Arc<dyn EdgeClient>,
    pub deployer: Arc<dyn Deployer>,
    pub audit: Arc<dyn AuditSink>,
    /// Told of each publication state change once it is stored.
    pub events: Arc<dyn PublicationEvents>,
    pub settings: ReconcileSettings,
    pub render: RenderOptions,
    /// Issue 6: resources that travel with apps (None: workloads only).
    pub resources: Option<Arc<ResourceRenderer>>,
    /// Prefetch jobs the edges reported finished, and the report targets.
    pub reports: Arc<reports::EdgeReports>,
    /// The scheduler's triggers: a reconcile that marks other publications
    /// (what an app's new version left on its node) wakes theirs.
    pub trigger: mpsc::UnboundedSender<scheduler::Wake>,
}

impl Context {
    /// The same context writing through `store` (the reconcilers' store
    /// fenced with a leadership term).
    pub fn with_store(&self, store: Arc<dyn ControllerStore>) -> Context {
        Context {
            store,
            resolver: self.resolver.clone(),
            edge: self.edge.clone(),
            deployer: self.deployer.clone(),
            audit: self.audit.clone(),
            events: self.events.clone(),
            settings: self.settings.clone(),
            render: self.render.clone(),
            resources: self.resources.clone(),
            reports: self.reports.clone(),
            trigger: self.trigger.clone(),
        }
    }

    /// Wakes another publication's reconcile (one this reconcile marked).
    pub fn trigger(&self, key: impl Into<PublicationRef>) {
        // Without a running scheduler the key waits; a resync finds it too.
        let _ = self.trigger.send(scheduler::Wake::Publication(key.into()));
    }

    /// The controller's records.
    pub fn store(&self) -> &dyn ControllerStore {
        self.store.as_ref()
    }
}

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Requeue(Duration),
    /// Nothing to do until something changes (or the periodic resync).
    AwaitChange,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Someone changed the publication meanwhile; start again from the stored one.
    #[error("the publication changed meanwhile")]
    Stale,
    #[error("cannot resolve image {image}: {source}")]
    Resolve { image: String, source: ResolveError },
    #[error(transparent)]
    Edge(#[from] EdgeError),
    #[error("edge cache of node {node} could not prefetch the images: {message}")]
    PrefetchFailed { node: String, message: String },
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Resource(String),
}

/// The resource steps run inside a reconcile; their failures read the same.
impl From<ResourceError> for ReconcileError {
    fn from(e: ResourceError) -> Self {
        match e {
            ResourceError::Unusable(m) => ReconcileError::Resource(m),
            ResourceError::Store(e) => ReconcileError::Store(e),
            ResourceError::Deploy(e) => ReconcileError::Deploy(e),
        }
    }
}

/// Delay before retry number `attempts` (1 = first retry).
pub fn backoff(settings: &ReconcileSettings, attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    settings
        .backoff_base
        .saturating_mul(factor)
        .min(settings.backoff_max)
}

/// Writes `p` if unchanged since read; `Stale` otherwise. The store records
/// a change of state with the write; `ctx.events` is woken to pass it on.
async fn save(ctx: &Context, p: &mut Publication) -> Result<(), ReconcileError> {
    let mut copy = p.clone();
    let replaced = ctx.store().replace_publication(&mut copy).await?;
    match replaced {
        Some(_) => {
            *p = copy;
            ctx.events.recorded();
            Ok(())
        }
        None => Err(ReconcileError::Stale),
    }
}

pub(super) fn clear_failure(p: &mut Publication) {
    p.attempts = 0;
    p.next_retry_at_ms = None;
    p.last_error = None;
}

/// One reconcile of an app's or a resource's publication.
pub async fn reconcile(key: &PublicationRef, ctx: &Context) -> Action {
    match key {
        PublicationRef::App(k) => reconcile_app(k, ctx).await,
        PublicationRef::Resource(k) => resource::reconcile_resource(k, ctx).await,
    }
}

/// One reconcile of one app publication. Never fails: errors go through the
/// error policy and come back as a requeue.
pub async fn reconcile_app(key: &PublicationKey, ctx: &Context) -> Action {
    let k = key.clone();
    let p = match ctx.store().get_publication(&k).await {
        Ok(Some(p)) => p,
        Ok(None) => return Action::AwaitChange,
        Err(e) => {
            tracing::error!(publication = %key, error = %e, "cannot read publication");
            return Action::Requeue(ctx.settings.backoff_max.min(Duration::from_secs(30)));
        }
    };
    let generation = p.generation;
    let result = match p.desired {
        Desired::Published => publish_step(p, ctx).await,
        Desired::Unpublished { cascade } => unpublish_step(p, cascade, ctx).await,
    };
    match result {
        Ok(action) => action,
        Err(ReconcileError::Stale) => Action::Requeue(Duration::ZERO),
        Err(ReconcileError::Store(StoreError::Fenced(m))) => fenced(&key.to_string(), &m, ctx),
        Err(e) => error_policy(key, generation, &e, ctx).await,
    }
}

/// This replica's term is over (its writes are refused): nothing is
/// recorded as a failure, the new leader reconciles the publication, and
/// this scheduler stops at the next renewal; until then, no retry spins.
pub(super) fn fenced(publication: &str, message: &str, ctx: &Context) -> Action {
    tracing::warn!(
        publication,
        reason = message,
        "reconcile stopped: the term is over"
    );
    Action::Requeue(ctx.settings.resync_interval)
}

/// The one error policy: record the failure in words on the publication and
/// retry with exponential backoff (per publication).
pub async fn error_policy(
    key: &PublicationKey,
    generation: u64,
    err: &ReconcileError,
    ctx: &Context,
) -> Action {
    let reason = err.to_string();
    let k = key.clone();
    let p = match ctx.store().get_publication(&k).await {
        Ok(Some(p)) if p.generation == generation => p,
        // Gone or asked for something new meanwhile: look again now.
        Ok(_) => return Action::Requeue(Duration::ZERO),
        Err(e) => {
            tracing::error!(publication = %key, error = %e, "cannot record failure");
            return Action::Requeue(backoff(&ctx.settings, 3));
        }
    };
    let mut p = p;
    p.attempts = p.attempts.saturating_add(1);
    let delay = backoff(&ctx.settings, p.attempts);
    p.next_retry_at_ms = Some(now_ms() + delay.as_millis() as u64);
    p.last_error = Some(reason.clone());
    let first = p.attempts == 1;
    if p.desired == Desired::Published {
        p.set_state(
            PublicationState::Failed {
                reason: reason.clone(),
            },
            reason.clone(),
            now_secs(),
        );
    } else {
        p.updated_at = now_secs();
    }
    tracing::warn!(publication = %key, attempts = p.attempts, retry_in = ?delay, error = %reason, "reconcile failed");
    if first {
        ctx.audit.record(
            "controller",
            &key.project,
            if p.desired == Desired::Published {
                "publish"
            } else {
                "unpublish"
            },
            &format!("{}@{}", key.app, key.node),
            &format!("failed: {reason}"),
        );
    }
    match save(ctx, &mut p).await {
        Ok(()) => Action::Requeue(delay),
        Err(ReconcileError::Store(StoreError::Fenced(m))) => fenced(&key.to_string(), &m, ctx),
        Err(_) => Action::Requeue(Duration::ZERO),
    }
}

pub(super) async fn target_of(ctx: &Context, node: &str) -> Result<DeployTarget, ReconcileError> {
    let n = node.to_string();
    let node = ctx
        .store()
        .get_node(&n)
        .await?
        .ok_or_else(|| ReconcileError::Missing(format!("node {node} no longer exists")))?;
    let c = node.cluster.clone();
    let cluster = ctx.store().get_cluster(&c).await?.ok_or_else(|| {
        ReconcileError::Missing(format!(
            "cluster {} of node {} no longer exists",
            node.cluster, node.name
        ))
    })?;
    Ok(DeployTarget { node, cluster })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = ReconcileSettings {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            ..ReconcileSettings::default()
        };
        assert_eq!(backoff(&s, 1), Duration::from_secs(1));
        assert_eq!(backoff(&s, 2), Duration::from_secs(2));
        assert_eq!(backoff(&s, 4), Duration::from_secs(8));
        assert_eq!(backoff(&s, 10), Duration::from_secs(60));
        assert_eq!(backoff(&s, 1000), Duration::from_secs(60));
    }
}
