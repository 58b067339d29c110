//! Resources that travel with apps: load balancers, EIPs, routes, config maps,
//! secrets and local volumes (their model and validation).
//!
//! Owns: the resource records, the rules that make them well formed, and which
//! apps use which resource. Secret values are kept sealed (see `secrets`); this
//! module never holds a plain secret value longer than validation needs.
//!
//! Must not touch: storage, HTTP, Kubernetes object shapes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{
    validate_dns_label, validate_dns_subdomain, validate_label_key, validate_label_value, AppSpec,
    Protocol, ValidationError,
};

mod eip;
mod publication;

pub use self::eip::{EipPool, EipSpec, EipTarget};

pub use self::publication::{
    PublicationRef, ResourceDesired, ResourcePublication, ResourcePublicationKey, ResourceState,
};

/// The kinds of resource, named as their API collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    LoadBalancers,
    Eips,
    Routes,
    ConfigMaps,
    Secrets,
    Volumes,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 6] = [
        ResourceKind::ConfigMaps,
        ResourceKind::Secrets,
        ResourceKind::Volumes,
        ResourceKind::LoadBalancers,
        ResourceKind::Eips,
        ResourceKind::Routes,
    ];

    /// The collection name in the API path and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::LoadBalancers => "loadbalancers",
            ResourceKind::Eips => "eips",
            ResourceKind::Routes => "routes",
            ResourceKind::ConfigMaps => "configmaps",
            ResourceKind::Secrets => "secrets",
            ResourceKind::Volumes => "volumes",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceKind> {
        ResourceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// In words, for messages.
    pub fn singular(self) -> &'static str {
        match self {
            ResourceKind::LoadBalancers => "load balancer",
            ResourceKind::Eips => "EIP",
            ResourceKind::Routes => "route",
            ResourceKind::ConfigMaps => "config map",
            ResourceKind::Secrets => "secret",
            ResourceKind::Volumes => "volume",
        }
    }

    /// Load balancers, EIPs and routes: they exist on a node only beside an
    /// app they serve.
    pub fn is_network(self) -> bool {
        self.phase() == 2
    }

    /// Deploy order on publish: config and storage before the workload (0),
    /// network after it (2). The workload itself is 1.
    pub fn phase(self) -> u8 {
        match self {
            ResourceKind::ConfigMaps | ResourceKind::Secrets | ResourceKind::Volumes => 0,
            ResourceKind::LoadBalancers | ResourceKind::Eips | ResourceKind::Routes => 2,
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    LoadBalancer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u32,
    /// Container port; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
    #[serde(default)]
    pub protocol: Protocol,
}

/// A Service in front of the apps its selector binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerSpec {
    /// Shorthand for `selector: {"app": "<name>"}` (how records before the
    /// selector were written; they keep working as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Labels an app (its template's labels plus `app: <name>`) must carry to
    /// be bound; the `app` label binds one app by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    #[serde(default, rename = "type")]
    pub service_type: ServiceType,
    pub ports: Vec<ServicePort>,
}

impl LoadBalancerSpec {
    /// The selector with the `app` shorthand folded in.
    pub fn app_selector(&self) -> BTreeMap<String, String> {
        let mut s = self.selector.clone();
        if let Some(a) = &self.app {
            s.entry(LABEL_APP.to_string()).or_insert_with(|| a.clone());
        }
        s
    }

    /// The one app the selector binds by name, if it names one.
    pub fn owner_app(&self) -> Option<&str> {
        self.app
            .as_deref()
            .or_else(|| self.selector.get(LABEL_APP).map(String::as_str))
    }

    /// Whether app `app`, whose template carries `labels`, is bound.
    pub fn binds(&self, app: &str, labels: &BTreeMap<String, String>) -> bool {
        self.app_selector().iter().all(|(k, v)| {
            if k == LABEL_APP {
                v == app
            } else {
                labels.get(k) == Some(v)
            }
        })
    }
}

/// The label every app's pods carry with the app's name.
const LABEL_APP: &str = "app";

/// An HTTP route (Ingress) to a ClusterIP load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub host: String,
    #[serde(default = "default_path")]
    pub path: String,
    pub load_balancer: String,
    pub port: u32,
}

fn default_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapSpec {
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// A secret value encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedValue {
    /// base64 of the 12-byte nonce.
    pub nonce: String,
    /// base64 of ciphertext and tag.
    pub ciphertext: String,
    /// The id of the key that sealed it (`secrets::key_id`); absent in
    /// values sealed before ids existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Secret data as stored: every value sealed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecretSpec {
    pub data: BTreeMap<String, SealedValue>,
}

/// A local volume: a PVC with a local storage class on each node it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// e.g. `10Gi`; cannot change once created.
    pub capacity: String,
    #[serde(default = "default_storage_class")]
    pub storage_class: String,
}

pub fn default_storage_class() -> String {
    "local-storage".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceSpec {
    LoadBalancer(LoadBalancerSpec),
    Eip(EipSpec),
    Route(RouteSpec),
    ConfigMap(ConfigMapSpec),
    Secret(SecretSpec),
    Volume(VolumeSpec),
}

/// A resource of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub project: String,
    pub name: String,
    pub kind: ResourceKind,
    pub spec: ResourceSpec,
    /// What this template is for (the release description).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// State of a volume on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingState {
    /// The PVC exists (or will) on the node; data lives there.
    Bound,
    /// The PVC was removed from the node; the binding can be dropped (unbind).
    Released,
}

/// A volume bound to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub project: String,
    pub node: String,
    pub kind: ResourceKind,
    pub name: String,
    pub state: BindingState,
    pub bound_at: u64,
}

/// Whether an app template refers to the resource (config maps, secrets and
/// volumes are referred to from the pod's volumes and env).
pub fn spec_uses(spec: &AppSpec, kind: ResourceKind, name: &str) -> bool {
    let n = Some(name.to_string());
    match kind {
        ResourceKind::ConfigMaps => {
            spec.volumes.iter().any(|v| v.config_map == n)
                || spec.containers.iter().any(|c| {
                    c.env_from
                        .iter()
                        .any(|e| e.config_map.as_deref() == Some(name))
                })
        }
        ResourceKind::Secrets => {
            spec.volumes.iter().any(|v| v.secret == n)
                || spec
                    .containers
                    .iter()
                    .any(|c| c.env_from.iter().any(|e| e.secret.as_deref() == Some(name)))
        }
        ResourceKind::Volumes => spec.volumes.iter().any(|v| v.persistent_volume_claim == n),
        _ => false,
    }
}

/// `spec` without local volume `name`: the pod volumes that claim it and the
/// mounts of those volumes go (unbind). `None` when the spec does not use it.
pub fn spec_without_volume(spec: &AppSpec, name: &str) -> Option<AppSpec> {
    let gone: Vec<String> = spec
        .volumes
        .iter()
        .filter(|v| v.persistent_volume_claim.as_deref() == Some(name))
        .map(|v| v.name.clone())
        .collect();
    if gone.is_empty() {
        return None;
    }
    let mut out = spec.clone();
    out.volumes.retain(|v| !gone.contains(&v.name));
    for c in &mut out.containers {
        c.volume_mounts.retain(|m| !gone.contains(&m.name));
    }
    Some(out)
}

/// Names of the config maps, secrets and volumes an app template uses.
pub fn spec_resources(spec: &AppSpec) -> Vec<(ResourceKind, String)> {
    let mut out = Vec::new();
    for v in &spec.volumes {
        if let Some(n) = &v.config_map {
            out.push((ResourceKind::ConfigMaps, n.clone()));
        }
        if let Some(n) = &v.secret {
            out.push((ResourceKind::Secrets, n.clone()));
        }
        if let Some(n) = &v.persistent_volume_claim {
            out.push((ResourceKind::Volumes, n.clone()));
        }
    }
    for c in &spec.containers {
        for e in &c.env_from {
            if let Some(n) = &e.config_map {
                out.push((ResourceKind::ConfigMaps, n.clone()));
            }
            if let Some(n) = &e.secret {
                out.push((ResourceKind::Secrets, n.clone()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Checks names, ports, addresses and keys of a resource's spec.
pub fn validate(
    kind: ResourceKind,
    name: &str,
    spec: &ResourceSpec,
) -> Result<(), ValidationError> {
    let mut problems = Vec::new();
    let mut fail = |f: &str, m: String| problems.push(format!("{f}: {m}"));
    if let Err(m) = validate_dns_label(name) {
        fail("name", m);
    }
    match (kind, spec) {
        (ResourceKind::LoadBalancers, ResourceSpec::LoadBalancer(lb)) => {
            check_load_balancer(lb, &mut fail)
        }
        (ResourceKind::Eips, ResourceSpec::Eip(e)) => e.check(&mut fail),
        (ResourceKind::Routes, ResourceSpec::Route(r)) => {
            if let Err(m) = validate_dns_subdomain(&r.host) {
                fail("host", m.replace("Kubernetes node name", "host name"));
            }
            if !r.path.starts_with('/') {
                fail("path", "must start with '/'".into());
            }
            if let Err(m) = validate_dns_label(&r.load_balancer) {
                fail("load_balancer", m);
            }
            if !port_ok(r.port) {
                fail("port", format!("{} is outside 1-65535", r.port));
            }
        }
        (ResourceKind::ConfigMaps, ResourceSpec::ConfigMap(c)) => {
            for k in c.data.keys() {
                if let Err(m) = validate_data_key(k) {
                    fail(&format!("data.{k}"), m);
                }
            }
        }
        (ResourceKind::Secrets, ResourceSpec::Secret(s)) => {
            for k in s.data.keys() {
                if let Err(m) = validate_data_key(k) {
                    fail(&format!("data.{k}"), m);
                }
            }
        }
        (ResourceKind::Volumes, ResourceSpec::Volume(v)) => {
            if let Err(m) = crate::model::validate_quantity(&v.capacity) {
                fail("capacity", m);
            }
            if let Err(m) = validate_dns_subdomain(&v.storage_class) {
                fail(
                    "storage_class",
                    m.replace("Kubernetes node name", "storage class"),
                );
            }
        }
        _ => fail("spec", format!("does not describe a {}", kind.singular())),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { problems })
    }
}

fn port_ok(p: u32) -> bool {
    (1..=65535).contains(&p)
}

/// A load balancer's app and ports: at least one, each valid and listed once,
/// named when there are several.
fn check_load_balancer(lb: &LoadBalancerSpec, fail: &mut impl FnMut(&str, String)) {
    if let Some(app) = &lb.app {
        if let Err(m) = validate_dns_label(app) {
            fail("app", m);
        }
        if lb.selector.get(LABEL_APP).is_some_and(|a| a != app) {
            fail(
                "selector.app",
                format!("differs from app {app:?}; give one of them"),
            );
        }
    }
    if lb.app_selector().is_empty() {
        fail(
            "selector",
            "bind the load balancer to apps: {\"app\": \"<name>\"} or other labels".into(),
        );
    }
    for (k, v) in &lb.selector {
        if let Err(m) = validate_label_key(k) {
            fail(&format!("selector.{k}"), m);
        }
        if let Err(m) = validate_label_value(v) {
            fail(&format!("selector.{k}"), m);
        }
    }
    if lb.ports.is_empty() {
        fail("ports", "a load balancer needs at least one port".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in lb.ports.iter().enumerate() {
        if !port_ok(p.port) {
            fail(
                &format!("ports[{i}].port"),
                format!("{} is outside 1-65535", p.port),
            );
        }
        if let Some(t) = p.target_port {
            if !port_ok(t) {
                fail(
                    &format!("ports[{i}].target_port"),
                    format!("{t} is outside 1-65535"),
                );
            }
        }
        if !seen.insert((p.port, p.protocol)) {
            fail(
                &format!("ports[{i}].port"),
                format!("{} is listed twice", p.port),
            );
        }
        if lb.ports.len() > 1 && p.name.is_none() {
            fail(
                &format!("ports[{i}].name"),
                "name every port when there are several".into(),
            );
        }
    }
}

/// Keys of config map and secret data: what Kubernetes accepts as a file name.
pub fn validate_data_key(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{k:?} is not a valid key: use letters, digits, '-', '_' and '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::spec;
    use crate::model::{Volume, VolumeMount, WorkloadKind};

    #[test]
    fn unbinding_a_volume_drops_its_pod_volume_and_mounts_only() {
        let mut s = spec(WorkloadKind::StatefulSet);
        s.volumes = vec![
            Volume {
                name: "pg".into(),
                persistent_volume_claim: Some("data".into()),
                ..Volume::default()
            },
            Volume {
                name: "conf".into(),
                config_map: Some("settings".into()),
                ..Volume::default()
            },
        ];
        s.containers[0].volume_mounts = ["pg", "conf"]
            .iter()
            .map(|n| VolumeMount {
                name: n.to_string(),
                mount_path: format!("/{n}"),
                read_only: false,
                sub_path: None,
            })
            .collect();
        let out = spec_without_volume(&s, "data").expect("uses data");
        assert_eq!(out.volumes.len(), 1);
        assert_eq!(out.volumes[0].name, "conf");
        assert_eq!(out.containers[0].volume_mounts.len(), 1);
        assert_eq!(out.containers[0].volume_mounts[0].name, "conf");
        assert!(!spec_uses(&out, ResourceKind::Volumes, "data"));
        assert!(out.validate().is_ok(), "{:?}", out.validate());
        assert_eq!(spec_without_volume(&s, "other"), None);
    }
}
