//! Clusters and the edge nodes in them.
//!
//! Owns: the cluster and node records and their rules. Must not touch: how
//! their credentials are stored (see `sealed_records`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::check::{Check, ValidationError};
use super::kubeconfig::kubeconfig_summary;
use super::names::{
    validate_dns_label, validate_dns_subdomain, validate_label_key, validate_label_value,
};

/// A Kubernetes cluster that edge nodes belong to. The kubeconfig is stored as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub kubeconfig: String,
    /// Where pool EIPs on this cluster's nodes take their addresses: a CIDR
    /// (`10.0.0.0/28`) or a range (`10.0.0.10-10.0.0.20`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip_pool: Option<String>,
    #[serde(default)]
    pub created_at: u64,
}

impl Cluster {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut c = Check::default();
        c.check("name", validate_dns_label(&self.name));
        c.check(
            "kubeconfig",
            kubeconfig_summary(&self.kubeconfig).map(|_| ()),
        );
        if let Some(p) = &self.eip_pool {
            c.check("eip_pool", super::eip_pool::EipPool::parse(p).map(|_| ()));
        }
        c.finish()
    }
}

/// Basic credentials for a node's edge cache API.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeCredentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for EdgeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An edge node: one Kubernetes node with an edge cache beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub cluster: String,
    /// `kubernetes.io/hostname` of the node; defaults to `name`.
    #[serde(default)]
    pub k8s_node_name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Base URL of the node's edge cache, e.g. `http://10.0.0.5:5001`.
    pub edge_url: String,
    #[serde(default)]
    pub edge_credentials: Option<EdgeCredentials>,
    /// The bearer token the node's edge expects for container logs
    /// (`edge.controller_token` there); sealed at rest, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_controller_token: Option<EdgeToken>,
    #[serde(default)]
    pub created_at: u64,
}

/// A bearer token for a node's edge; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EdgeToken(pub String);

impl std::fmt::Debug for EdgeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EdgeToken(<redacted>)")
    }
}

impl Node {
    /// Fills defaults (k8s node name) and checks every field.
    pub fn normalize_and_validate(&mut self) -> Result<(), ValidationError> {
        if self.k8s_node_name.is_empty() {
            self.k8s_node_name = self.name.clone();
        }
        self.edge_url = self.edge_url.trim_end_matches('/').to_string();
        let mut c = Check::default();
        c.check("name", validate_dns_label(&self.name));
        c.check("cluster", validate_dns_label(&self.cluster));
        c.check("k8s_node_name", validate_dns_subdomain(&self.k8s_node_name));
        for (k, v) in &self.labels {
            c.check(format!("labels.{k}"), validate_label_key(k));
            c.check(format!("labels.{k}"), validate_label_value(v));
        }
        match reqwest::Url::parse(&self.edge_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                if url.query().is_some() || url.fragment().is_some() {
                    c.fail("edge_url", "must not have a query or fragment");
                }
            }
            Ok(_) => c.fail(
                "edge_url",
                format!(
                    "{:?} must be an http:// or https:// URL with a host",
                    self.edge_url
                ),
            ),
            Err(e) => c.fail(
                "edge_url",
                format!(
                    "{:?} is not a URL ({e}); write e.g. http://10.0.0.5:5001",
                    self.edge_url
                ),
            ),
        }
        if let Some(cred) = &self.edge_credentials {
            if cred.user.is_empty() || cred.user.contains(':') {
                c.fail(
                    "edge_credentials.user",
                    "must be non-empty and contain no ':'",
                );
            }
        }
        c.finish()
    }

    /// True when every `selector` pair is among the node's labels.
    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(k, v)| self.labels.get(k).is_some_and(|have| have == v))
    }
}
