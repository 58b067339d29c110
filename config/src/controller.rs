//! The `[controller]` section: the embedded workload controller.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration_str;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// Run the workload controller inside `berth serve`.
    pub enabled: bool,
    /// Where the directory deployer writes rendered objects. Empty: `<data_dir>/manifests`.
    pub manifests_dir: Option<PathBuf>,
    /// "directory" or "kubernetes".
    pub deployer: String,
    /// Hex-encoded 32-byte key for encrypting secret values at rest. Empty:
    /// generated into the data dir (redb only; required with PostgreSQL).
    pub secret_key: String,
    /// Earlier values of `secret_key` (hex, 64 digits each): they still open
    /// what they sealed, until `berth reseal` seals it again with
    /// `secret_key`; then they can be removed.
    pub previous_secret_keys: Vec<String>,
    /// Longest lifetime of the token in a project's node kubeconfig (Kubernetes
    /// deployer); `?ttl=` asks for less. At least 10 minutes (the TokenRequest minimum).
    #[serde(with = "duration_str")]
    pub kubeconfig_max_ttl: Duration,
    /// How often running publications are compared with what is on the node
    /// (a rendered file edited or deleted by hand, an object changed in the
    /// cluster) and repaired. "0s": never.
    #[serde(with = "duration_str")]
    pub drift_check_interval: Duration,
    /// With `meta.backend = "postgres"`: how long the replica that runs the
    /// reconcilers holds its lease (renewed every third of it). When it
    /// dies, another replica takes over within about this long.
    #[serde(with = "duration_str")]
    pub leader_lease: Duration,
    /// How often a publish asks a node's edge about its prefetch job when the
    /// edge does not report the job's end, and looks at a rollout in
    /// progress. Edges that report (berth edge does) are asked only every
    /// `max(poll_interval, 30s)`, as a fallback for a lost report.
    #[serde(with = "duration_str")]
    pub poll_interval: Duration,
    /// Reconciles (different publications) run at once. A publish to a
    /// fleet spends most of each reconcile waiting on a node's edge, the
    /// deployer or a commit; more at once share the commits and the waits.
    pub reconcile_concurrency: u32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            manifests_dir: None,
            deployer: "directory".into(),
            secret_key: String::new(),
            previous_secret_keys: Vec::new(),
            kubeconfig_max_ttl: Duration::from_secs(24 * 3600),
            drift_check_interval: Duration::from_secs(60),
            leader_lease: Duration::from_secs(15),
            poll_interval: Duration::from_secs(2),
            reconcile_concurrency: 64,
        }
    }
}
