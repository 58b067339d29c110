//! The controller's domain model and its validation rules.
//!
//! Owns: clusters, nodes, apps, immutable numbered template versions, publications
//! (one per app and node) with their state machine and history, and every rule that
//! decides whether one of these is well formed (names, image references, cron
//! schedules, ports, quantities...). Messages are written for the person who typed
//! the value.
//!
//! Must not touch: storage (see `store`), HTTP, or the shape of Kubernetes objects
//! (see `render`). Everything here is pure, and imports nothing else of the crate.
//!
//! - `check`: `ValidationError`, and the collector that reports every problem at once;
//! - `names`: DNS names, label keys and values, ports, digests, image references;
//! - `formats`: cron schedules and resource quantities;
//! - `kubeconfig`: what berth reads from a kubeconfig, and scoping it to a namespace;
//! - `cluster`: clusters and edge nodes; `eip_pool`: a cluster's EIP addresses;
//! - `spec`: an app's template (kind, containers, volumes...); `spec_checks`: its rules;
//! - `app`: apps, their template versions, and the words for what changed;
//! - `publication`: one app on one node, its state machine and history.
//!
//! Callers name everything as `crate::model::X`; the submodules are private.

mod app;
mod check;
mod cluster;
mod eip_pool;
#[cfg(test)]
pub(crate) mod fixtures;
mod formats;
mod kubeconfig;
mod names;
mod publication;
mod spec;
mod spec_checks;

pub use app::{summarize_change, App, TemplateVersion};
pub use check::ValidationError;
pub use cluster::{Cluster, EdgeCredentials, EdgeToken, Node};
pub use eip_pool::EipPool;
pub use formats::{validate_cron, validate_quantity};
pub use kubeconfig::{
    kubeconfig_for_namespace, kubeconfig_summary, scoped_kubeconfig, KubeconfigSummary,
};
pub use names::{
    validate_digest, validate_dns_label, validate_dns_subdomain, validate_label_key,
    validate_label_value, ImageRef,
};
pub use publication::{
    Desired, PinnedImage, Publication, PublicationKey, PublicationState, Transition, HISTORY_LIMIT,
};
pub use spec::{
    AppSpec, Container, ContainerPort, EmptyDir, EnvFrom, EnvVar, ExecAction, HttpGetAction,
    PortRef, Probe, Protocol, ResourceRequirements, RestartPolicy, TcpSocketAction, Volume,
    VolumeMount, WorkloadKind, MAX_REPLICAS,
};

/// Field manager and `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "berth";
