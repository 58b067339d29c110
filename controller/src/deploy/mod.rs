//! Deployers: put rendered objects on a node's cluster, take them off, and say
//! whether a rollout finished.
//!
//! Owns: the `Deployer` contract and its implementations — `DirectoryDeployer`
//! (YAML files per node, for GitOps or air-gapped hand-off) and `KubeDeployer`
//! (server-side apply to the cluster in the node's kubeconfig).
//!
//! Must not touch: the store or the publication state machine; a deployer is told
//! what to apply and reports what happened.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use crate::model::{Cluster, Node, MANAGER};
use crate::render::{WorkloadRef, LABEL_BERTH_APP, LABEL_MANAGED_BY, LABEL_NODE, LABEL_PROJECT};

pub mod dir;
pub mod drift;
pub mod kube;
mod kube_access;

pub use dir::DirectoryDeployer;
pub use kube::KubeDeployer;

/// The node and the cluster it belongs to.
#[derive(Debug, Clone)]
pub struct DeployTarget {
    pub node: Node,
    pub cluster: Cluster,
}

/// Which objects to remove: those in `namespace` carrying all `labels`
/// (always including berth's ownership label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSelector {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl OwnerSelector {
    /// Everything of an app on a node.
    pub fn app(project: &str, app: &str, node: &str) -> Self {
        OwnerSelector {
            namespace: project.into(),
            labels: BTreeMap::from([
                (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
                (LABEL_PROJECT.to_string(), project.to_string()),
                (LABEL_BERTH_APP.to_string(), app.to_string()),
                (LABEL_NODE.to_string(), node.to_string()),
            ]),
        }
    }

    /// As a Kubernetes label selector string.
    pub fn label_selector(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether an object's labels and namespace match.
    pub fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        if meta["namespace"].as_str().unwrap_or_default() != self.namespace {
            return false;
        }
        self.labels
            .iter()
            .all(|(k, v)| meta["labels"][k].as_str() == Some(v.as_str()))
    }
}

/// How far a rollout got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    Observed {
        ready: u32,
        desired: u32,
    },
    /// The deployer cannot see the cluster (files) or the kind has no rollout (Jobs).
    NotObservable,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The cluster refused or could not be reached; the message says which.
    #[error("cluster {cluster}: {message}")]
    Cluster { cluster: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not supported by this deployer")]
    Unsupported(&'static str),
}

#[async_trait]
pub trait Deployer: Send + Sync + 'static {
    /// Creates or updates `objects` (in order) on the target. Idempotent.
    async fn apply(&self, target: &DeployTarget, objects: &[Value]) -> Result<(), DeployError>;
    /// Deletes every object berth put there that matches `selector`. Idempotent.
    async fn remove(
        &self,
        target: &DeployTarget,
        selector: &OwnerSelector,
    ) -> Result<(), DeployError>;
    async fn rollout_status(
        &self,
        target: &DeployTarget,
        workload: &WorkloadRef,
    ) -> Result<Rollout, DeployError>;
    /// Whether `project_kubeconfig` can make kubeconfigs scoped to a project.
    fn scopes_kubeconfigs(&self) -> bool {
        false
    }
    /// A kubeconfig for `project` on the target's cluster, with a token of
    /// `ttl_secs` limited to the project's namespace (see `kube_access`).
    /// Deployers without API access cannot make one.
    async fn project_kubeconfig(
        &self,
        _target: &DeployTarget,
        _project: &str,
        _ttl_secs: u64,
    ) -> Result<String, DeployError> {
        Err(DeployError::Unsupported("a kubeconfig scoped to a project"))
    }
    /// Invalidates every kubeconfig exported for `project` on `cluster`.
    async fn revoke_project_access(
        &self,
        _cluster: &Cluster,
        _project: &str,
    ) -> Result<(), DeployError> {
        Ok(())
    }
    /// Which of `objects` (as berth would apply them) are no longer on the
    /// target as berth applied them: edited, or gone. Each by `kind/name`.
    async fn drifted(
        &self,
        _target: &DeployTarget,
        _objects: &[Value],
    ) -> Result<Vec<String>, DeployError> {
        Ok(Vec::new())
    }
    /// Recent log lines of the workload's pods, when the deployer can see them.
    async fn logs(
        &self,
        _target: &DeployTarget,
        _workload: &WorkloadRef,
        _tail_lines: Option<i64>,
    ) -> Result<String, DeployError> {
        Err(DeployError::Unsupported("reading logs"))
    }
}
