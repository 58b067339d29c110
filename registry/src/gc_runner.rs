//! Runs garbage collection for `berth serve`: one run at a time, whoever
//! asks (the admin API, the schedule); each run recorded in the metadata's
//! history (`MetaStore::gc_run_record`), the audit log and `/metrics`.
//! The collection itself is `gc::run`; this module owns only when it runs
//! and what is remembered of it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::admin::GcStatus;
use crate::auth::access::RegistryAccess;
use crate::auth::audit::Outcome;
use crate::duties::Duty;
use crate::gc::{GcOptions, GcReport};
use crate::meta::{self, GcRun};
use crate::service::metrics::Metrics;
use crate::service::LocalRegistry;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Api,
    Offline,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Offline => "offline",
        }
    }
}

/// When scheduled runs happen.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(berth_config::cron::Cron),
}

impl Schedule {
    /// Calls `job` each time the schedule comes round, until `stop`; the
    /// next time is counted from the end of the previous job. `what` names
    /// the schedule in the log.
    pub fn spawn<F, Fut>(
        self,
        what: &'static str,
        stop: tokio_util::sync::CancellationToken,
        mut job: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        tokio::spawn(async move {
            loop {
                let Some(wait) = self.wait_from(meta::now()) else {
                    tracing::warn!(schedule = what, "the schedule never fires again");
                    return;
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                job().await;
            }
        });
    }

    /// From `[gc] interval` or `[gc] schedule`; None when neither is set.
    pub fn from_config(gc: &berth_config::GcConfig) -> Option<Schedule> {
        if let Some(c) = gc.cron() {
            return Some(Schedule::Cron(c));
        }
        (!gc.interval.is_zero()).then_some(Schedule::Every(gc.interval))
    }

    /// How long from `now` (unix seconds) until the next run; None: never.
    pub fn wait_from(&self, now: u64) -> Option<Duration> {
        match self {
            Schedule::Every(d) => Some(*d),
            Schedule::Cron(c) => c
                .next_after(now)
                .map(|t| Duration::from_secs(t.saturating_sub(now))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("garbage collection is already running")]
    Busy,
    #[error("garbage collection failed: {0}")]
    Failed(String),
}

/// GC's own metrics beyond the counters `gc::run` keeps.
#[derive(Default)]
struct GcMetrics {
    failures: Counter,
    manifests_deleted: Counter,
    running: Gauge,
    last_duration_ms: Gauge,
    last_success: Gauge,
}

pub struct GcRunner {
    registry: Arc<LocalRegistry>,
    opts: GcOptions,
    keep: usize,
    status: Arc<Mutex<GcStatus>>,
    access: Option<Arc<RegistryAccess>>,
    metrics: GcMetrics,
}

impl GcRunner {
    /// `status` is what `GET /api/v1/gc` shows; `access` writes the audit
    /// log (none in offline use).
    pub fn new(
        registry: Arc<LocalRegistry>,
        opts: GcOptions,
        keep: usize,
        status: Arc<Mutex<GcStatus>>,
        access: Option<Arc<RegistryAccess>>,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let m = GcMetrics::default();
        metrics.register(|r| {
            r.register(
                "gc_failed_runs",
                "Garbage collection runs that failed",
                m.failures.clone(),
            );
            r.register(
                "gc_manifests_deleted",
                "Manifests deleted by garbage collection",
                m.manifests_deleted.clone(),
            );
            r.register(
                "gc_running",
                "1 while a garbage collection runs",
                m.running.clone(),
            );
            r.register(
                "gc_last_duration_milliseconds",
                "How long the last garbage collection took",
                m.last_duration_ms.clone(),
            );
            r.register(
                "gc_last_success_timestamp_seconds",
                "When the last successful garbage collection finished (unix time)",
                m.last_success.clone(),
            );
        });
        Arc::new(GcRunner {
            registry,
            opts,
            keep: keep.max(1),
            status,
            access,
            metrics: m,
        })
    }

    pub fn status(&self) -> GcStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs one collection unless one is running; records it in the
    /// history, the audit log and the metrics (dry runs too, marked so).
    /// `caller` is who asked and from where (none for the schedule).
    pub async fn run(
        &self,
        trigger: Trigger,
        caller: Option<(&str, Option<IpAddr>)>,
        dry_run: bool,
    ) -> Result<(GcRun, GcReport), RunError> {
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            if s.running {
                return Err(RunError::Busy);
            }
            s.running = true;
        }
        // One collection at a time across replicas too.
        let duties = self.registry.duties();
        if !duties.hold(Duty::Gc).await {
            self.status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .running = false;
            return Err(RunError::Busy);
        }
        self.metrics.running.set(1);
        let started_at = meta::now();
        let clock = Instant::now();
        let res = crate::gc::run(
            &self.registry,
            GcOptions {
                dry_run,
                ..self.opts
            },
        )
        .await;
        duties.release(Duty::Gc).await;
        let report = res.as_ref().ok().cloned().unwrap_or_default();
        let mut run = GcRun {
            id: 0,
            started_at,
            finished_at: meta::now(),
            duration_ms: clock.elapsed().as_millis() as u64,
            trigger: trigger.as_str().into(),
            actor: caller.map(|(a, _)| a.to_string()),
            dry_run,
            outcome: if res.is_ok() { "ok" } else { "failed" }.into(),
            error: res.as_ref().err().map(|e| e.to_string()),
            manifests_deleted: report.manifests_deleted,
            links_removed: report.links_removed,
            blobs_deleted: report.blobs_deleted,
            bytes_freed: report.bytes_freed,
            uploads_purged: report.uploads_purged,
            orphans_deleted: report.orphans_deleted,
        };
        match self.registry.meta().gc_run_record(&run, self.keep).await {
            Ok(id) => run.id = id,
            Err(e) => tracing::error!(error = %e, "cannot record the GC run in its history"),
        }
        self.account(&run, caller.and_then(|(_, p)| p));
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.running = false;
            match &res {
                Ok(r) => {
                    s.last = Some(r.clone());
                    s.last_error = None;
                }
                Err(e) => s.last_error = Some(e.to_string()),
            }
        }
        self.metrics.running.set(0);
        match res {
            Ok(report) => Ok((run, report)),
            Err(e) => Err(RunError::Failed(e.to_string())),
        }
    }

    /// The audit entry and the metrics of a finished run.
    fn account(&self, run: &GcRun, peer: Option<IpAddr>) {
        if run.outcome == "ok" {
            if !run.dry_run {
                self.metrics.manifests_deleted.inc_by(run.manifests_deleted);
                self.metrics.last_success.set(run.finished_at as i64);
            }
        } else {
            self.metrics.failures.inc();
        }
        self.metrics.last_duration_ms.set(run.duration_ms as i64);
        let Some(access) = &self.access else { return };
        let action = if run.dry_run { "gc.dry-run" } else { "gc" };
        let target = format!(
            "run {} ({}): {} manifests, {} blobs, {} bytes in {} ms",
            run.id,
            run.trigger,
            run.manifests_deleted,
            run.blobs_deleted,
            run.bytes_freed,
            run.duration_ms
        );
        let actor = run.actor.as_deref().unwrap_or("gc-schedule");
        match &run.error {
            None => access.audit(actor, peer, action, None, &target, Outcome::OK),
            Some(e) => access.audit(actor, peer, action, None, &target, Outcome::Failed(e)),
        }
    }

    /// Runs on `schedule` until `stop`; a run still going when the next is
    /// due makes that one skip.
    pub fn spawn_schedule(
        self: &Arc<Self>,
        schedule: Schedule,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let me = self.clone();
        schedule.spawn("GC", stop, move || {
            let me = me.clone();
            async move {
                // Replicas on one database: the schedule fires on one of them.
                if !me.registry.duties().hold(Duty::GcSchedule).await {
                    return;
                }
                match me.run(Trigger::Schedule, None, false).await {
                    Ok(_) => {}
                    Err(RunError::Busy) => {
                        tracing::info!("scheduled GC skipped: a collection is running")
                    }
                    Err(e) => tracing::error!(error = %e, "scheduled garbage collection failed"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_comes_from_the_interval_or_the_cron_expression() {
        let mut gc = berth_config::GcConfig::default();
        assert!(Schedule::from_config(&gc).is_none(), "off by default");
        gc.interval = Duration::from_secs(90);
        let every = Schedule::from_config(&gc).expect("interval");
        assert_eq!(every.wait_from(1_000_000), Some(Duration::from_secs(90)));
        gc.interval = Duration::ZERO;
        gc.schedule = "0 3 * * *".into();
        let cron = Schedule::from_config(&gc).expect("cron");
        // 1970-01-12 02:59:30 UTC: 30 s to 03:00.
        let now = 11 * 86_400 + 3 * 3600 - 30;
        assert_eq!(cron.wait_from(now), Some(Duration::from_secs(30)));
        assert_eq!(
            cron.wait_from(now + 30),
            Some(Duration::from_secs(86_400)),
            "on the minute: the next day's"
        );
    }
}
