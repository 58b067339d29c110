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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::deploy::{DeployError, DeployTarget, Deployer, OwnerSelector, Rollout};
use crate::model::{Desired, PinnedImage, Publication, PublicationKey, PublicationState};
use crate::ports::{
    AuditSink, EdgeClient, EdgeError, ImageResolver, JobState, JobStatus, ResolveError,
};
use crate::render::{self, RenderError, RenderOptions, WorkloadInput};
use crate::store::{Store, StoreError};

/// Timing of the loop.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// How often to look at a prefetch job or a rollout in progress.
    pub poll_interval: Duration,
    /// First retry delay after a failure; doubles with each further failure.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Every publication is looked at again this often, whatever happened.
    pub resync_interval: Duration,
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
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            resync_interval: Duration::from_secs(120),
            concurrency: 8,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What the reconciler works with.
pub struct Context {
    pub store: Store,
    pub resolver: Arc<dyn ImageResolver>,
    pub edge: Arc<dyn EdgeClient>,
    pub deployer: Arc<dyn Deployer>,
    pub audit: Arc<dyn AuditSink>,
    pub settings: ReconcileSettings,
    pub render: RenderOptions,
    /// Issue 6: resources that travel with apps (None: workloads only).
    pub resources: Option<Arc<crate::resources_ctl::ResourceRenderer>>,
}

impl Context {
    /// Runs a store call on the blocking pool (redb commits fsync).
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
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

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

/// Writes `p` if unchanged since read; `Stale` otherwise.
async fn save(ctx: &Context, p: &mut Publication) -> Result<(), ReconcileError> {
    let mut copy = p.clone();
    let (ok, copy) = ctx
        .db(move |s| {
            let ok = s.update_publication(&mut copy)?;
            Ok((ok, copy))
        })
        .await?;
    if ok {
        *p = copy;
        Ok(())
    } else {
        Err(ReconcileError::Stale)
    }
}

fn clear_failure(p: &mut Publication) {
    p.attempts = 0;
    p.next_retry_at_ms = None;
    p.last_error = None;
}

/// One reconcile of one publication. Never fails: errors go through the error
/// policy and come back as a requeue.
pub async fn reconcile(key: &PublicationKey, ctx: &Context) -> Action {
    let k = key.clone();
    let p = match ctx.db(move |s| s.get_publication(&k)).await {
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
        Err(e) => error_policy(key, generation, &e, ctx).await,
    }
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
    let p = match ctx.db(move |s| s.get_publication(&k)).await {
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
        Err(_) => Action::Requeue(Duration::ZERO),
    }
}

async fn target(ctx: &Context, node: &str) -> Result<DeployTarget, ReconcileError> {
    let n = node.to_string();
    let node = ctx
        .db(move |s| s.get_node(&n))
        .await?
        .ok_or_else(|| ReconcileError::Missing(format!("node {node} no longer exists")))?;
    let c = node.cluster.clone();
    let cluster = ctx.db(move |s| s.get_cluster(&c)).await?.ok_or_else(|| {
        ReconcileError::Missing(format!(
            "cluster {} of node {} no longer exists",
            node.cluster, node.name
        ))
    })?;
    Ok(DeployTarget { node, cluster })
}

async fn publish_step(mut p: Publication, ctx: &Context) -> Result<Action, ReconcileError> {
    let key = p.key();
    let target = target(ctx, &p.node).await?;
    let (proj, app, version) = (p.project.clone(), p.app.clone(), p.version);
    let tv = ctx
        .db(move |s| s.get_version(&proj, &app, version))
        .await?
        .ok_or_else(|| {
            ReconcileError::Missing(format!(
                "version {} of {}/{} no longer exists",
                p.version, p.project, p.app
            ))
        })?;

    // 1. Resolve once per publish.
    if p.images.is_none() {
        let mut images = Vec::new();
        for reference in tv.spec.images() {
            let r = ctx.resolver.resolve(&reference).await.map_err(|source| {
                ReconcileError::Resolve {
                    image: reference.clone(),
                    source,
                }
            })?;
            images.push(PinnedImage {
                reference,
                repository: r.repository,
                digest: r.digest,
                media_type: r.media_type,
            });
        }
        let detail = images
            .iter()
            .map(|i| format!("{} -> {}", i.reference, i.digest))
            .collect::<Vec<_>>()
            .join(", ");
        p.images = Some(images);
        clear_failure(&mut p);
        p.set_state(
            PublicationState::Prefetching {
                bytes_done: 0,
                bytes_total: 0,
            },
            format!("resolved {detail}"),
            now_secs(),
        );
        save(ctx, &mut p).await?;
    }

    // 2. Prefetch and pin on the node's edge cache.
    if !p.prefetched {
        let Some(job) = p.prefetch_job.clone() else {
            let images = p.images_by_digest();
            // A request sent before a crash may have created a job whose id
            // was never recorded: follow that job rather than start another.
            let mut adopted = None;
            if let Some(before) = &p.prefetch_submitting {
                let now = ctx.edge.matching_jobs(&target.node, &images).await?;
                adopted = now.into_iter().rev().find(|id| !before.contains(id));
            }
            let (id, detail) = match adopted {
                Some(id) => {
                    let detail = format!(
                        "edge prefetch job {id} found on the edge (submitted before a restart)"
                    );
                    (id, detail)
                }
                None => {
                    let before = ctx.edge.matching_jobs(&target.node, &images).await?;
                    p.prefetch_submitting = Some(before);
                    save(ctx, &mut p).await?;
                    let id = ctx
                        .edge
                        .prefetch(&target.node, images.clone(), true)
                        .await?;
                    let detail = format!("edge prefetch job {id} submitted");
                    (id, detail)
                }
            };
            for i in images {
                if !p.pinned.contains(&i) {
                    p.pinned.push(i);
                }
            }
            p.prefetch_job = Some(id);
            p.prefetch_submitting = None;
            clear_failure(&mut p);
            p.record(
                PublicationState::Prefetching {
                    bytes_done: 0,
                    bytes_total: 0,
                },
                detail,
                now_secs(),
            );
            save(ctx, &mut p).await?;
            return Ok(Action::Requeue(ctx.settings.poll_interval));
        };
        match ctx.edge.job(&target.node, &job).await? {
            JobStatus::Unknown => {
                // The edge restarted or forgot; prefetch is idempotent, so ask again.
                p.prefetch_job = None;
                p.record(
                    PublicationState::Prefetching {
                        bytes_done: 0,
                        bytes_total: 0,
                    },
                    format!("edge does not know job {job}; submitting again"),
                    now_secs(),
                );
                save(ctx, &mut p).await?;
                return Ok(Action::Requeue(Duration::ZERO));
            }
            JobStatus::Known {
                state: JobState::Failed,
                error,
                images,
                ..
            } => {
                p.prefetch_job = None;
                save(ctx, &mut p).await?;
                let mut message = error.unwrap_or_else(|| "no reason given".into());
                for i in images.iter().filter(|i| i.error.is_some()) {
                    // berth edge already names each failed image in the job's error.
                    let line = format!("{}: {}", i.image, i.error.as_deref().unwrap_or_default());
                    if !message.contains(&line) {
                        message.push_str(&format!("; {line}"));
                    }
                }
                return Err(ReconcileError::PrefetchFailed {
                    node: p.node.clone(),
                    message,
                });
            }
            JobStatus::Known {
                state: JobState::Pending | JobState::Running,
                bytes_done,
                bytes_total,
                ..
            } => {
                let next = PublicationState::Prefetching {
                    bytes_done,
                    bytes_total,
                };
                if p.state != next || p.attempts > 0 {
                    clear_failure(&mut p);
                    p.set_state(
                        next,
                        format!("edge prefetch job {job} in progress"),
                        now_secs(),
                    );
                    save(ctx, &mut p).await?;
                }
                return Ok(Action::Requeue(ctx.settings.poll_interval));
            }
            JobStatus::Known {
                state: JobState::Done,
                bytes_total,
                ..
            } => {
                p.prefetched = true;
                clear_failure(&mut p);
                p.set_state(
                    PublicationState::Deploying,
                    format!("edge cache holds every image ({bytes_total} bytes)"),
                    now_secs(),
                );
                save(ctx, &mut p).await?;
            }
        }
    }

    // 3. Apply, once per publish.
    let images = p.images.clone().unwrap_or_default();
    let workload = render::workload_ref(&p.project, &p.app, tv.spec.kind, &p.node);
    if !p.applied {
        let mut objects = Vec::new();
        if let Some(res) = &ctx.resources {
            objects.extend(res.before_workload(ctx, &p, &tv.spec, &target.node).await?);
        }
        objects.extend(render::render_workload(
            &WorkloadInput {
                project: &p.project,
                app: &p.app,
                version: p.version,
                spec: &tv.spec,
                images: &images,
                node: &target.node,
            },
            &ctx.render,
        )?);
        if let Some(res) = &ctx.resources {
            objects.extend(res.after_workload(ctx, &p, &target.node).await?);
        }
        ctx.deployer.apply(&target, &objects).await?;
        p.applied = true;
        clear_failure(&mut p);
        // Always in the history (the state is already deploying): an operator
        // checking that a publish was applied once, or when, reads it there.
        p.record(
            PublicationState::Deploying,
            format!("applied version {} ({} objects)", p.version, objects.len()),
            now_secs(),
        );
        save(ctx, &mut p).await?;
        if let Some(res) = &ctx.resources {
            res.record_bindings(ctx, &p, &tv.spec).await?;
        }
        ctx.audit.record(
            "controller",
            &p.project,
            "deploy",
            &format!("{}@{} version {}", p.app, p.node, p.version),
            "ok",
        );
    }

    // 4. Verify the rollout, then running.
    if p.state != PublicationState::Running {
        let detail = match ctx.deployer.rollout_status(&target, &workload).await? {
            Rollout::NotObservable => format!("version {} applied", p.version),
            Rollout::Observed { ready, desired } if ready >= desired => {
                format!("version {}: {ready}/{desired} ready", p.version)
            }
            Rollout::Observed { ready, desired } => {
                let detail = format!("waiting for pods: {ready}/{desired} ready");
                if p.state != PublicationState::Deploying
                    || p.history.last().is_some_and(|h| h.detail != detail)
                {
                    clear_failure(&mut p);
                    p.set_state(PublicationState::Deploying, detail, now_secs());
                    save(ctx, &mut p).await?;
                }
                return Ok(Action::Requeue(ctx.settings.poll_interval));
            }
        };
        clear_failure(&mut p);
        p.set_state(PublicationState::Running, detail, now_secs());
        save(ctx, &mut p).await?;
        tracing::info!(publication = %key, version = p.version, "running");
    }

    // Images of earlier versions that nothing on the node uses any more.
    let current: BTreeSet<String> = p.images_by_digest().into_iter().collect();
    let stale: Vec<String> = p
        .pinned
        .iter()
        .filter(|i| !current.contains(*i))
        .cloned()
        .collect();
    if !stale.is_empty() {
        let (node, k) = (p.node.clone(), key.clone());
        let others = ctx.db(move |s| s.pinned_by_others(&node, &k)).await?;
        let to_unpin: Vec<String> = stale
            .iter()
            .filter(|i| !others.contains(*i))
            .cloned()
            .collect();
        if !to_unpin.is_empty() {
            if let Err(e) = ctx.edge.unpin(&target.node, to_unpin.clone()).await {
                // The app runs; an old pin only costs disk. Try again later.
                tracing::warn!(publication = %key, error = %e, "cannot unpin old images");
                return Ok(Action::Requeue(ctx.settings.resync_interval));
            }
        }
        p.pinned.retain(|i| current.contains(i));
        save(ctx, &mut p).await?;
    }
    Ok(Action::AwaitChange)
}

async fn unpublish_step(
    mut p: Publication,
    cascade: bool,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let key = p.key();
    let target = target(ctx, &p.node).await?;
    ctx.deployer
        .remove(&target, &OwnerSelector::app(&p.project, &p.app, &p.node))
        .await?;
    let mut note = String::new();
    if let Some(res) = &ctx.resources {
        note = res.on_unpublish(ctx, &p, cascade, &target).await?;
    }
    let mut to_unpin: BTreeSet<String> = p.pinned.iter().cloned().collect();
    to_unpin.extend(p.images_by_digest());
    if !to_unpin.is_empty() {
        let (node, k) = (p.node.clone(), key.clone());
        let others = ctx.db(move |s| s.pinned_by_others(&node, &k)).await?;
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
    if !ctx.db(move |s| s.delete_publication(&k, rev)).await? {
        return Err(ReconcileError::Stale);
    }
    tracing::info!(publication = %key, "unpublished");
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

/// Runs reconciles until `shutdown` resolves: on start for every stored
/// publication (at its retry time), when `trigger` names one, when a reconcile
/// asks to be requeued, and every `resync_interval` for all.
pub async fn run(
    ctx: Arc<Context>,
    mut trigger: mpsc::UnboundedReceiver<PublicationKey>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let settings = ctx.settings.clone();
    let mut queue: BTreeMap<PublicationKey, Instant> = BTreeMap::new();
    let mut in_flight: HashSet<PublicationKey> = HashSet::new();
    let mut dirty: HashSet<PublicationKey> = HashSet::new();
    let mut tasks: JoinSet<Action> = JoinSet::new();
    let mut task_keys: HashMap<tokio::task::Id, PublicationKey> = HashMap::new();
    let mut resync = tokio::time::interval(settings.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    tracing::info!("reconciler started");

    loop {
        // Start every due reconcile we have room for.
        let now = Instant::now();
        while in_flight.len() < settings.concurrency.max(1) {
            let due = queue
                .iter()
                .filter(|(k, at)| **at <= now && !in_flight.contains(*k))
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone());
            let Some(key) = due else { break };
            queue.remove(&key);
            in_flight.insert(key.clone());
            let c = ctx.clone();
            let k = key.clone();
            let handle = tasks.spawn(async move { reconcile(&k, &c).await });
            task_keys.insert(handle.id(), key);
        }
        let next_due = queue
            .iter()
            .filter(|(k, _)| !in_flight.contains(*k))
            .map(|(_, at)| *at)
            .min();

        tokio::select! {
            _ = &mut shutdown => break,
            Some(key) = trigger.recv() => {
                if in_flight.contains(&key) {
                    dirty.insert(key);
                } else {
                    queue.insert(key, Instant::now());
                }
            }
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (id, action) = match done {
                    Ok((id, action)) => (id, action),
                    Err(e) => {
                        tracing::error!(error = %e, "reconcile task failed");
                        (e.id(), Action::Requeue(settings.backoff_max))
                    }
                };
                if let Some(key) = task_keys.remove(&id) {
                    in_flight.remove(&key);
                    let when = if dirty.remove(&key) {
                        Some(Instant::now())
                    } else {
                        match action {
                            Action::Requeue(d) => Some(Instant::now() + d),
                            Action::AwaitChange => None,
                        }
                    };
                    if let Some(when) = when {
                        let e = queue.entry(key).or_insert(when);
                        if when < *e {
                            *e = when;
                        }
                    }
                }
            }
            _ = sleep_until_opt(next_due) => {}
            _ = resync.tick() => {
                match ctx.db(|s| s.list_publications()).await {
                    Ok(all) => {
                        let now_wall = now_ms();
                        for p in all {
                            let key = p.key();
                            if in_flight.contains(&key) || queue.contains_key(&key) {
                                continue;
                            }
                            // Respect a stored backoff (also after a restart).
                            let wait = p
                                .next_retry_at_ms
                                .map(|at| Duration::from_millis(at.saturating_sub(now_wall)))
                                .unwrap_or_default();
                            queue.insert(key, Instant::now() + wait);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot list publications"),
                }
            }
        }
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(settings.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!("reconciles still running at shutdown; cancelling them");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    tracing::info!("reconciler stopped");
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
