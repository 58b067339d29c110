//! Rendering: (app, template version, resolved digests, node) -> Kubernetes objects.
//!
//! Owns: the exact shape of every object berth puts on a cluster — names, labels,
//! selectors, pod specs for the five workload kinds, and (issue 6) services,
//! EIPs, ingresses, config maps, secrets and volume claims.
//!
//! Pure: no I/O, no clock, no randomness. The same input always gives the same
//! objects, so re-applying is a no-op on the cluster.
//!
//! Naming: several nodes may share a cluster and a namespace (the project), so
//! workload objects are named `<app>-<node>` (shortened with a hash past 52
//! characters, the limit that leaves room for StatefulSet and CronJob pod
//! suffixes) and carry `berth.dev/node`; their selectors use `app` and
//! `berth.dev/node`, which never change between versions.
//!
//! - `workload`: the workload of an app on a node (and a StatefulSet's service);
//! - `resources`: the objects of resources that travel with apps.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::model::{WorkloadKind, MANAGER};

mod checksum;
#[cfg(test)]
pub(crate) mod fixtures;
mod resources;
mod workload;

pub use self::checksum::{annotate_pod_templates, config_checksum, CONFIG_CHECKSUM};
pub use self::resources::{
    render_config_map, render_eip, render_route, render_secret, render_service,
    render_volume_claim, resource_selector_labels, LABEL_RESOURCE_KIND,
};
pub(crate) use self::workload::probe;
pub use self::workload::{container_security, pod_security, render_workload, WorkloadInput};

pub const LABEL_APP: &str = "app";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_BERTH_APP: &str = "berth.dev/app";
pub const LABEL_PROJECT: &str = "berth.dev/project";
pub const LABEL_VERSION: &str = "berth.dev/version";
pub const LABEL_NODE: &str = "berth.dev/node";
pub const LABEL_RESOURCE: &str = "berth.dev/resource";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Longest object name we produce (StatefulSet/CronJob children add suffixes).
pub const MAX_OBJECT_NAME: usize = 52;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("image {0:?} of the template was not resolved to a digest")]
    Unresolved(String),
}

/// How to write image references in pod specs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Registry host (and port) the nodes' container runtimes pull through, e.g.
    /// `registry.example.com:5000`; their mirror configuration sends those pulls
    /// to the node's edge cache. `None`: `repo@digest` without a host.
    pub image_host: Option<String>,
}

/// Which object tells whether a rollout finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRef {
    pub api_version: String,
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

/// Name of an app's objects on a node.
pub fn object_name(app: &str, node: &str) -> String {
    let full = format!("{app}-{node}");
    if full.len() <= MAX_OBJECT_NAME {
        return full;
    }
    let hash = hex::encode(Sha256::digest(full.as_bytes()));
    let keep = MAX_OBJECT_NAME - 9;
    let prefix = full[..keep].trim_end_matches('-');
    format!("{prefix}-{}", &hash[..8])
}

pub fn workload_ref(project: &str, app: &str, kind: WorkloadKind, node: &str) -> WorkloadRef {
    WorkloadRef {
        api_version: kind.api_version().into(),
        kind,
        namespace: project.into(),
        name: object_name(app, node),
    }
}

/// Labels that select an app's pods on a node; stable across versions.
pub fn selector_labels(app: &str, node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_APP.to_string(), app.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
    ])
}

/// Label selector (as a query string value) for everything of an app on a node.
pub fn ownership_selector(project: &str, app: &str, node: &str) -> String {
    format!(
        "{LABEL_MANAGED_BY}={MANAGER},{LABEL_PROJECT}={project},{LABEL_BERTH_APP}={app},{LABEL_NODE}={node}"
    )
}

pub(super) fn labels_value(labels: &BTreeMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

pub(super) fn metadata(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({ "name": name, "namespace": namespace, "labels": labels_value(labels) })
}

/// Name of the claim of a local volume on a node (a volume is bound per node).
pub fn volume_claim_name(volume: &str, node: &str) -> String {
    object_name(volume, node)
}

/// Name of a project resource's object on a node. Nodes of one cluster share
/// the project's namespace, so each node gets its own copy, removable alone.
pub fn resource_object_name(resource: &str, node: &str) -> String {
    object_name(resource, node)
}

/// Kind, name and namespace of an object, for file names and API paths.
pub fn object_identity(obj: &Value) -> Option<(String, String, String, String)> {
    let api_version = obj.get("apiVersion")?.as_str()?.to_string();
    let kind = obj.get("kind")?.as_str()?.to_string();
    let meta = obj.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_string();
    let namespace = meta
        .get("namespace")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    Some((api_version, kind, namespace, name))
}

#[cfg(test)]
mod tests {
    use super::fixtures::render_kind;
    use super::*;

    #[test]
    fn deterministic_and_short_names() {
        assert_eq!(
            render_kind(WorkloadKind::Deployment),
            render_kind(WorkloadKind::Deployment)
        );
        let long = object_name(&"a".repeat(40), &"b".repeat(40));
        assert!(long.len() <= MAX_OBJECT_NAME, "{long}");
        assert!(crate::model::validate_dns_label(&long).is_ok());
        assert_ne!(long, object_name(&"a".repeat(40), &"c".repeat(40)));
        let dashy = object_name(&format!("{}-x", "a".repeat(42)), &"b".repeat(30));
        assert!(crate::model::validate_dns_label(&dashy).is_ok(), "{dashy}");
    }
}
