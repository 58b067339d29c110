//! Replication between registries: policies that copy images to (push) or
//! from (pull) another OCI registry.
//!
//! - `policy.rs`: a policy as the admin API takes and shows it, checked.
//! - `glob.rs`: the filters' glob.
//! - `schedule.rs`: the schedule trigger's cron expressions.
//! - `run.rs`: an execution, from its plan to its end; resumed at start.
//! - `copy.rs`: one image with everything that belongs to it; resumable blobs.
//! - `sides.rs`: this registry and the remote as source and destination.
//! - `limit.rs`: the bandwidth cap.
//! - `trigger.rs`: on_push and schedule triggers.
//!
//! Owns the policies (kept through `MetaStore`, the remote's password
//! sealed through the `Sealer` port) and which remotes may be reached (the
//! registry's one outbound policy, `net_policy`, unless
//! `replication.allow_private_remotes`). Must not touch: HTTP routes or who
//! may manage policies (the admin API's).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;

use crate::meta::{MetaStore, RemoteRegistry, ReplicationPolicy};
use crate::sealing::Sealer;
use crate::service::metrics::Metrics;
use crate::service::LocalRegistry;

mod copy;
pub mod glob;
mod limit;
pub mod policy;
mod run;
pub mod schedule;
mod sides;
mod trigger;

pub use run::dest_name;

/// Records an execution's end in the audit log: its `policy#id`, and why
/// it failed.
pub type AuditEnd = Arc<dyn Fn(&str, Option<&str>) + Send + Sync>;

/// Replication's counters at `/metrics`.
#[derive(Default)]
pub struct ReplicationMetrics {
    pub bytes: Counter,
    pub blobs_copied: Counter,
    pub blobs_skipped: Counter,
    pub executions_succeeded: Counter,
    pub executions_failed: Counter,
}

impl ReplicationMetrics {
    fn register(self: &Arc<Self>, m: &Metrics) {
        m.register(|r| {
            let mut add = |name: &str, help: &str, c: &Counter| {
                r.register(format!("replication_{name}"), help, c.clone());
            };
            add(
                "bytes",
                "Blob bytes replication read from sources",
                &self.bytes,
            );
            add(
                "blobs_copied",
                "Blobs replication sent to a destination",
                &self.blobs_copied,
            );
            add(
                "blobs_skipped",
                "Blobs the destination had or mounted, not sent",
                &self.blobs_skipped,
            );
            add(
                "executions_succeeded",
                "Replication executions that copied everything",
                &self.executions_succeeded,
            );
            add(
                "executions_failed",
                "Replication executions that ended with a failure",
                &self.executions_failed,
            );
        });
    }
}

pub use policy::{NewReplication, ReplicationPatch, ReplicationView};

/// The setting that lets remotes be private addresses.
pub const PRIVATE_SETTING: &str = "replication.allow_private_remotes";

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("{0}")]
    Invalid(String),
    #[error("no replication policy named {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// This registry cannot do it as configured (no sealing key).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::meta::MetaError> for ReplicationError {
    fn from(e: crate::meta::MetaError) -> Self {
        ReplicationError::Internal(e.to_string())
    }
}

type Result<T> = std::result::Result<T, ReplicationError>;

/// Where a policy's remote password is sealed.
pub fn password_place(policy: &str) -> String {
    format!("replication/{policy}/remote-password")
}

pub struct Replications {
    meta: Arc<dyn MetaStore>,
    local: Arc<LocalRegistry>,
    sealer: Arc<OnceLock<Arc<dyn Sealer>>>,
    allow_private: bool,
    metrics: Arc<ReplicationMetrics>,
    /// Policies with an execution running here.
    running: Mutex<HashSet<String>>,
    /// The records of the executions running here, by policy: ahead of the
    /// saved ones by up to `copy::SAVE_EVERY` of chunks.
    live: Mutex<HashMap<String, LiveExecution>>,
    /// Policies to run once more when their running execution ends.
    again: Mutex<HashSet<String>>,
    /// Set by the registry: records each execution's end.
    pub audit: OnceLock<AuditEnd>,
    /// Set by the registry: whether a pull may land in a project here.
    pub landing: OnceLock<Landing>,
}

type LiveExecution = Arc<tokio::sync::Mutex<crate::meta::Execution>>;

/// Whether images may be pulled into a project of this registry: why not.
pub type Landing = Arc<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;

impl Replications {
    pub fn new(
        local: Arc<LocalRegistry>,
        sealer: Arc<OnceLock<Arc<dyn Sealer>>>,
        config: &berth_config::ReplicationConfig,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let m = Arc::new(ReplicationMetrics::default());
        m.register(metrics);
        Arc::new(Replications {
            meta: local.meta(),
            local,
            sealer,
            allow_private: config.allow_private_remotes,
            metrics: m,
            running: Mutex::new(HashSet::new()),
            live: Mutex::new(HashMap::new()),
            again: Mutex::new(HashSet::new()),
            audit: OnceLock::new(),
            landing: OnceLock::new(),
        })
    }

    /// The executions of `policy`, newest first.
    pub async fn executions(
        &self,
        policy: &str,
        limit: usize,
    ) -> Result<Vec<crate::meta::Execution>> {
        self.get(policy).await?;
        let mut list = self.meta.executions(Some(policy), limit).await?;
        if let Some(live) = self.live_get(policy).await {
            if let Some(e) = list.iter_mut().find(|e| e.id == live.id) {
                *e = live;
            }
        }
        Ok(list)
    }

    pub async fn execution(&self, policy: &str, id: u64) -> Result<crate::meta::Execution> {
        if let Some(live) = self.live_get(policy).await.filter(|e| e.id == id) {
            return Ok(live);
        }
        self.meta
            .execution_get(policy, id)
            .await?
            .ok_or_else(|| ReplicationError::NotFound(format!("{policy} execution {id}")))
    }

    /// The record of `policy`'s execution running here, as it stands.
    async fn live_get(&self, policy: &str) -> Option<crate::meta::Execution> {
        let live = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(policy)
            .cloned()?;
        let e = live.lock().await.clone();
        Some(e)
    }

    fn live_insert(&self, policy: &str, e: LiveExecution) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.insert(policy.to_string(), e);
    }

    fn live_remove(&self, policy: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(policy);
    }

    pub async fn list(&self) -> Result<Vec<ReplicationPolicy>> {
        Ok(self.meta.replications().await?)
    }

    pub async fn get(&self, name: &str) -> Result<ReplicationPolicy> {
        self.meta
            .replication_get(name)
            .await?
            .ok_or_else(|| ReplicationError::NotFound(name.to_string()))
    }

    pub async fn create(&self, n: NewReplication) -> Result<ReplicationPolicy> {
        policy::check_name(&n.name).map_err(ReplicationError::Invalid)?;
        let direction = policy::parse_direction(&n.direction).map_err(ReplicationError::Invalid)?;
        let remote = self.remote(&n.name, n.remote).await?;
        let bandwidth = policy::parse_bandwidth(&n.bandwidth).map_err(ReplicationError::Invalid)?;
        let now = crate::meta::now();
        let p = ReplicationPolicy {
            name: n.name,
            direction,
            remote,
            repositories: n.filters.repositories.unwrap_or_else(|| "**".into()),
            tags: n.filters.tags.unwrap_or_else(|| "*".into()),
            dest_project: n.dest_project,
            trigger: n.trigger,
            bandwidth,
            bandwidth_text: n.bandwidth.trim().to_string(),
            deletes: n.deletes,
            created_at: now,
            updated_at: now,
        };
        policy::check_rules(&p).map_err(ReplicationError::Invalid)?;
        if self.meta.replication_get(&p.name).await?.is_some() {
            return Err(ReplicationError::Conflict(format!(
                "a replication policy named {} exists; change it with PATCH",
                p.name
            )));
        }
        self.meta.replication_put(&p).await?;
        Ok(p)
    }

    pub async fn update(&self, name: &str, c: ReplicationPatch) -> Result<ReplicationPolicy> {
        let mut p = self.get(name).await?;
        if let Some(d) = c.direction {
            p.direction = policy::parse_direction(&d).map_err(ReplicationError::Invalid)?;
        }
        if let Some(r) = c.remote {
            p.remote = self.remote(name, r).await?;
        }
        if let Some(f) = c.filters {
            if let Some(r) = f.repositories {
                p.repositories = r;
            }
            if let Some(t) = f.tags {
                p.tags = t;
            }
        }
        if let Some(d) = c.dest_project {
            p.dest_project = d;
        }
        if let Some(t) = c.trigger {
            p.trigger = t;
        }
        if let Some(b) = c.bandwidth {
            p.bandwidth = policy::parse_bandwidth(&b).map_err(ReplicationError::Invalid)?;
            p.bandwidth_text = b.trim().to_string();
        }
        if let Some(d) = c.deletes {
            p.deletes = d;
        }
        policy::check_rules(&p).map_err(ReplicationError::Invalid)?;
        p.updated_at = crate::meta::now();
        self.meta.replication_put(&p).await?;
        Ok(p)
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        if self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
        {
            return Err(ReplicationError::Conflict(format!(
                "an execution of {name} is running; delete the policy when it has ended"
            )));
        }
        if self.meta.replication_delete(name).await? {
            Ok(())
        } else {
            Err(ReplicationError::NotFound(name.to_string()))
        }
    }

    /// Checks a remote (form, then address) and seals its password.
    async fn remote(&self, name: &str, r: policy::RemoteInput) -> Result<RemoteRegistry> {
        let r = policy::check_remote(r).map_err(ReplicationError::Invalid)?;
        crate::net_policy::check_outbound_url_for(&r.url, self.allow_private, PRIVATE_SETTING)
            .await
            .map_err(|why| ReplicationError::Invalid(format!("remote.url: {why}")))?;
        let password_sealed = if r.password.is_empty() {
            None
        } else {
            let sealer = self.sealer.get().ok_or_else(|| {
                ReplicationError::Unavailable(
                    "this registry has no sealing key, so it cannot keep a remote's password"
                        .into(),
                )
            })?;
            Some(
                sealer
                    .seal(&password_place(name), r.password.as_bytes())
                    .map_err(ReplicationError::Internal)?,
            )
        };
        Ok(RemoteRegistry {
            url: r.url,
            username: r.username,
            password_sealed,
        })
    }

    /// The remote's credentials in the clear, for a run.
    pub fn credentials(&self, p: &ReplicationPolicy) -> Result<Option<(String, String)>> {
        let Some(sealed) = &p.remote.password_sealed else {
            return Ok(None);
        };
        let sealer = self.sealer.get().ok_or_else(|| {
            ReplicationError::Unavailable(format!(
                "policy {}: its remote password is sealed and this registry has no sealing key",
                p.name
            ))
        })?;
        let plain = sealer
            .open(&password_place(&p.name), sealed)
            .map_err(ReplicationError::Internal)?;
        let password = String::from_utf8(plain).map_err(|_| {
            ReplicationError::Internal(format!("policy {}: the password is not UTF-8", p.name))
        })?;
        Ok(Some((p.remote.username.clone(), password)))
    }
}
