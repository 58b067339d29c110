//! When reconciles run: a queue of publications (of apps and of resources) by due time, at most
//! `concurrency` at once and never two for the same publication.
//!
//! Owns: the queue, the reconciles in flight, and the shutdown drain. A trigger
//! for a publication being reconciled marks it to run again as soon as that
//! reconcile ends. Must not touch: what a reconcile does (see `reconcile`).
//!
//! The queue is ordered by due time (`Queue`): starting the next due
//! reconcile and finding when the next one is due cost O(log n), not a scan
//! of every waiting publication — with 10,000 nodes in one publish, a scan per
//! event was most of the controller's CPU.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::resources::PublicationRef;

use super::{reconcile, Action, Context, ReconcileSettings};

/// What wakes the scheduler besides its own timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Look at this publication now.
    Publication(PublicationRef),
    /// Look at every publication now (wake-ups may have been missed).
    Resync,
}

/// Runs reconciles until `shutdown` resolves: on start for every stored
/// publication (at its retry time), when `trigger` names one, when a reconcile
/// asks to be requeued, and every `resync_interval` (or on `Wake::Resync`) for all.
pub async fn run(
    ctx: Arc<Context>,
    trigger: &mut mpsc::UnboundedReceiver<Wake>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut s = Scheduler::new(ctx);
    let mut resync = tokio::time::interval(s.settings.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Drift checks and the sweep of force-unpublished nodes run beside the
    // loop; what they mark comes back as triggers.
    let (drift_tx, mut drift_rx) = mpsc::unbounded_channel::<PublicationRef>();
    let drift_every = s.settings.drift_check_interval;
    let every = if drift_every.is_zero() {
        s.settings.resync_interval
    } else {
        drift_every
    };
    let mut drift = tokio::time::interval(every.max(Duration::from_millis(100)));
    drift.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let drift_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::pin!(shutdown);
    tracing::info!("reconciler started");

    loop {
        let next_due = s.start_due();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(wake) = trigger.recv() => match wake {
                Wake::Publication(key) => s.triggered(key),
                Wake::Resync => s.resync().await,
            },
            Some(done) = s.tasks.join_next_with_id(), if !s.tasks.is_empty() => s.finished(done),
            _ = sleep_until_opt(next_due) => {}
            _ = resync.tick() => s.resync().await,
            Some(key) = drift_rx.recv() => s.triggered(key),
            _ = drift.tick() => {
                spawn_drift_check(&s.ctx, &drift_tx, &drift_running, !drift_every.is_zero());
            }
        }
    }
    s.drain().await;
    tracing::info!("reconciler stopped");
}

/// One drift check (when on) and sweep at a time, off the scheduler's loop.
fn spawn_drift_check(
    ctx: &Arc<Context>,
    tx: &mpsc::UnboundedSender<PublicationRef>,
    running: &Arc<std::sync::atomic::AtomicBool>,
    drift_on: bool,
) {
    use std::sync::atomic::Ordering;
    if running.swap(true, Ordering::AcqRel) {
        return;
    }
    let (ctx, tx, running) = (ctx.clone(), tx.clone(), running.clone());
    tokio::spawn(async move {
        super::forced::sweep(&ctx).await;
        if drift_on {
            for key in super::drift::check_all(&ctx).await {
                let _ = tx.send(key);
            }
        }
        running.store(false, Ordering::Release);
    });
}

struct Scheduler {
    ctx: Arc<Context>,
    settings: ReconcileSettings,
    /// Publications waiting (none of them in flight), by due time.
    queue: Queue,
    in_flight: HashSet<PublicationRef>,
    /// Triggered while in flight: run again as soon as that reconcile ends.
    dirty: HashSet<PublicationRef>,
    tasks: JoinSet<Action>,
    task_keys: HashMap<tokio::task::Id, PublicationRef>,
}

impl Scheduler {
    fn new(ctx: Arc<Context>) -> Self {
        Scheduler {
            settings: ctx.settings.clone(),
            ctx,
            queue: Queue::default(),
            in_flight: HashSet::new(),
            dirty: HashSet::new(),
            tasks: JoinSet::new(),
            task_keys: HashMap::new(),
        }
    }

    /// Starts every due reconcile there is room for; returns when the next
    /// waiting one is due (`None`: none waits, or no room until one ends).
    fn start_due(&mut self) -> Option<Instant> {
        let now = Instant::now();
        while !self.at_capacity() {
            let Some(key) = self.queue.pop_due(now) else {
                break;
            };
            self.in_flight.insert(key.clone());
            let c = self.ctx.clone();
            let k = key.clone();
            let handle = self.tasks.spawn(async move { reconcile(&k, &c).await });
            self.task_keys.insert(handle.id(), key);
        }
        // At capacity, a reconcile ending is what starts the next one:
        // waking for a publication already due would only spin the loop.
        if self.at_capacity() {
            return None;
        }
        self.queue.next_due()
    }

    fn at_capacity(&self) -> bool {
        self.in_flight.len() >= self.settings.concurrency.max(1)
    }

    fn triggered(&mut self, key: PublicationRef) {
        if self.in_flight.contains(&key) {
            self.dirty.insert(key);
        } else {
            self.queue.set(key, Instant::now());
        }
    }

    /// A reconcile ended: queue its publication again when it asked to be, or
    /// at once when it was triggered meanwhile.
    fn finished(&mut self, done: Result<(tokio::task::Id, Action), JoinError>) {
        let (id, action) = match done {
            Ok((id, action)) => (id, action),
            Err(e) => {
                tracing::error!(error = %e, "reconcile task failed");
                (e.id(), Action::Requeue(self.settings.backoff_max))
            }
        };
        let Some(key) = self.task_keys.remove(&id) else {
            return;
        };
        self.in_flight.remove(&key);
        let when = if self.dirty.remove(&key) {
            Some(Instant::now())
        } else {
            match action {
                Action::Requeue(d) => Some(Instant::now() + d),
                Action::AwaitChange => None,
            }
        };
        if let Some(when) = when {
            self.queue.set_earlier(key, when);
        }
    }

    /// Queues every stored publication not already waiting or running.
    async fn resync(&mut self) {
        let store = self.ctx.store();
        let all = async {
            let apps = store.list_publications().await?.into_iter();
            let resources = store.list_all_resource_publications().await?.into_iter();
            Ok::<_, crate::store::StoreError>(
                apps.map(|p| (PublicationRef::App(p.key()), p.next_retry_at_ms))
                    .chain(resources.map(|r| (r.key().into(), r.next_retry_at_ms)))
                    .collect::<Vec<_>>(),
            )
        }
        .await;
        match all {
            Ok(all) => {
                let now_wall = now_ms();
                for (key, retry_at) in all {
                    if self.in_flight.contains(&key) || self.queue.contains(&key) {
                        continue;
                    }
                    // Respect a stored backoff (also after a restart).
                    let wait = retry_at
                        .map(|at| Duration::from_millis(at.saturating_sub(now_wall)))
                        .unwrap_or_default();
                    self.queue.set(key, Instant::now() + wait);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list publications"),
        }
    }

    /// Lets reconciles in flight finish within the shutdown grace, then cancels
    /// the rest.
    async fn drain(mut self) {
        let grace = self.settings.shutdown_grace;
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("reconciles still running at shutdown; cancelling them");
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

/// Publications waiting, each with the time it is due, ordered by that time.
#[derive(Default)]
struct Queue {
    due: HashMap<PublicationRef, Instant>,
    by_time: BTreeSet<(Instant, PublicationRef)>,
}

impl Queue {
    fn contains(&self, key: &PublicationRef) -> bool {
        self.due.contains_key(key)
    }

    /// Due at `at`, whenever it was due before.
    fn set(&mut self, key: PublicationRef, at: Instant) {
        if let Some(old) = self.due.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Due at `at`, or when it was already due if that is sooner.
    fn set_earlier(&mut self, key: PublicationRef, at: Instant) {
        match self.due.get(&key) {
            Some(old) if *old <= at => {}
            _ => self.set(key, at),
        }
    }

    /// Takes the publication due soonest, if it is due by `now`.
    fn pop_due(&mut self, now: Instant) -> Option<PublicationRef> {
        let first = self.by_time.first()?;
        if first.0 > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.due.remove(&key);
        Some(key)
    }

    fn next_due(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }
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
    use crate::model::PublicationKey;

    fn key(node: &str) -> PublicationRef {
        PublicationRef::App(PublicationKey {
            project: "p".into(),
            app: "a".into(),
            node: node.into(),
        })
    }

    #[test]
    fn the_queue_gives_what_is_due_soonest_first() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut q = Queue::default();
        q.set(key("late"), s(30));
        q.set(key("soon"), s(10));
        q.set(key("mid"), s(20));
        assert_eq!(q.next_due(), Some(s(10)));
        assert_eq!(q.pop_due(s(5)), None, "nothing due yet");
        // Setting again moves it; set_earlier only ever moves it forward.
        q.set(key("late"), s(1));
        q.set_earlier(key("mid"), s(25));
        q.set_earlier(key("soon"), s(2));
        assert_eq!(q.pop_due(s(20)), Some(key("late")));
        assert_eq!(q.pop_due(s(20)), Some(key("soon")));
        assert_eq!(q.pop_due(s(20)), Some(key("mid")));
        assert_eq!(q.pop_due(s(100)), None);
        assert!(!q.contains(&key("mid")));
        assert_eq!(q.next_due(), None);
    }
}
