//! The controller's domain model and its validation rules.
//!
//! Owns: clusters, nodes, apps, immutable numbered template versions, publications
//! (one per app and node) with their state machine and history, and every rule that
//! decides whether one of these is well formed (names, image references, cron
//! schedules, ports, quantities...). Messages are written for the person who typed
//! the value.
//!
//! Must not touch: storage (see `store`), HTTP, or the shape of Kubernetes objects
//! (see `render`). Everything here is pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Field manager and `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "berth";

/// How many history entries a publication keeps (oldest dropped first).
pub const HISTORY_LIMIT: usize = 100;

/// One or more problems with a value a person sent, each naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ValidationError {
    pub problems: Vec<String>,
}

impl ValidationError {
    pub fn one(field: &str, message: impl fmt::Display) -> Self {
        Self {
            problems: vec![format!("{field}: {message}")],
        }
    }
}

/// Collects problems so one request reports all of them at once.
#[derive(Default)]
struct Check {
    problems: Vec<String>,
}

impl Check {
    fn fail(&mut self, field: impl fmt::Display, message: impl fmt::Display) {
        self.problems.push(format!("{field}: {message}"));
    }
    fn check(&mut self, field: impl fmt::Display, result: Result<(), String>) {
        if let Err(message) = result {
            self.fail(field, message);
        }
    }
    fn finish(self) -> Result<(), ValidationError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                problems: self.problems,
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Names and small grammars
// ---------------------------------------------------------------------------

/// DNS-1123 label: what Kubernetes accepts for namespaces and most object names.
pub fn validate_dns_label(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid name: use 1 to 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit (e.g. \"web-api\")"
        ))
    }
}

/// DNS-1123 subdomain: what Kubernetes accepts for node names.
pub fn validate_dns_subdomain(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .split('.')
            .all(|part| validate_dns_label(part).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid Kubernetes node name: use at most 253 lowercase letters, \
             digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"
        ))
    }
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && s.as_bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A Kubernetes label key: `[prefix/]name`.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| validate_dns_subdomain(p).is_ok());
    if prefix_ok && is_label_name(name) {
        Ok(())
    } else {
        Err(format!(
            "label key {key:?} is not valid: use an optional DNS prefix and '/', then 1 to 63 \
             letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// A Kubernetes label value (may be empty).
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is not valid: use at most 63 letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit"
        ))
    }
}

fn validate_labels(check: &mut Check, field: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        check.check(format!("{field}.{k}"), validate_label_key(k));
        check.check(format!("{field}.{k}"), validate_label_value(v));
        if k.starts_with("berth.dev/") || k == "app" || k.starts_with("app.kubernetes.io/") {
            check.fail(
                format!("{field}.{k}"),
                "this label is set by berth itself; choose another key",
            );
        }
    }
}

/// An image reference relative to this registry: `project/repo[/more]:tag` or
/// `project/repo@sha256:<64 hex>`. The edge caches pull under the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag; one before it would be a host port.
        let (repository, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        let components: Vec<&str> = repository.split('/').collect();
        if let Some(first) = components.first() {
            if components.len() > 1
                && (first.contains('.') || first.contains(':') || *first == "localhost")
            {
                return Err(format!(
                    "image {s:?} names a registry host; images come from this registry, so \
                     write them as project/repository:tag (e.g. \"{}\")",
                    components[1..].join("/") + &tag.map(|t| format!(":{t}")).unwrap_or_default()
                ));
            }
        }
        if components.len() < 2 {
            return Err(format!(
                "image {s:?} has no project: write project/repository:tag (e.g. \"shop/web:1.0\")"
            ));
        }
        if repository.len() > 255 || !components.iter().all(|c| is_path_component(c)) {
            return Err(format!(
                "image {s:?} has an invalid repository name: use lowercase letters, digits and \
                 separators ('.', '_', '__', '-') between them, path parts joined by '/'"
            ));
        }
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
                && t.as_bytes()
                    .first()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
            if !ok {
                return Err(format!(
                    "image {s:?} has an invalid tag: use up to 128 letters, digits, '_', '.' and \
                     '-', not starting with '.' or '-'"
                ));
            }
        }
        if let Some(d) = digest {
            validate_digest(d).map_err(|m| format!("image {s:?}: {m}"))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(format!(
                "image {s:?} has neither a tag nor a digest: add one (e.g. \"{s}:1.0\") so every \
                 node runs the same thing"
            ));
        }
        Ok(ImageRef {
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `sha256:<64 lowercase hex>` (the only algorithm the registry stores).
pub fn validate_digest(d: &str) -> Result<(), String> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{d:?} is not a digest: expected sha256: followed by 64 lowercase hex digits"
        )),
    }
}

/// A standard 5-field cron schedule (minute hour day-of-month month day-of-week),
/// or one of the macros Kubernetes accepts (`@hourly`, `@daily`, ...).
pub fn validate_cron(expr: &str) -> Result<(), String> {
    let expr = expr.trim();
    if expr.starts_with("TZ=") || expr.starts_with("CRON_TZ=") {
        return Err(
            "time zones in the schedule are not supported by Kubernetes CronJobs; remove TZ=..."
                .into(),
        );
    }
    if expr.starts_with('@') {
        return match expr {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
            | "@hourly" => Ok(()),
            _ => Err(format!(
                "{expr:?} is not a known macro; use @yearly, @monthly, @weekly, @daily, @hourly \
                 or five fields"
            )),
        };
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{expr:?} has {} fields; a schedule has 5: minute hour day-of-month month \
             day-of-week (e.g. \"*/15 * * * *\")",
            fields.len()
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, &MONTHS, 1),
        ("day-of-week", 0, 7, &DAYS, 0),
    ];
    for (field, (name, min, max, names, name_base)) in fields.iter().zip(specs) {
        validate_cron_field(field, min, max, names, name_base)
            .map_err(|m| format!("{name} field {field:?}: {m}"))?;
    }
    Ok(())
}

fn validate_cron_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Ok(n) = s.parse::<u32>() {
            if n < min || n > max {
                return Err(format!("{n} is outside {min}-{max}"));
            }
            return Ok(n);
        }
        let lower = s.to_ascii_lowercase();
        match names.iter().position(|n| *n == lower) {
            Some(i) => Ok(i as u32 + name_base),
            None => Err(format!("{s:?} is not a number in {min}-{max}")),
        }
    };
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n >= 1 && n <= max.max(1) => {}
                _ => return Err(format!("step {step:?} must be a number from 1 to {max}")),
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("range {range:?} goes backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

/// A Kubernetes resource quantity such as `250m`, `1.5`, `128Mi`, `1e3`.
pub fn validate_quantity(q: &str) -> Result<(), String> {
    let err = || {
        format!("{q:?} is not a quantity: write e.g. \"250m\" or \"0.5\" for CPU, \"128Mi\" or \"1Gi\" for memory")
    };
    let s = q.strip_prefix(['+', '-']).unwrap_or(q);
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err());
    }
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || {
        let exp = suffix.strip_prefix(['e', 'E']);
        exp.is_some_and(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        })
    };
    if suffix_ok {
        Ok(())
    } else {
        Err(err())
    }
}

fn validate_port_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "port name {name:?} is not valid: use 1 to 15 lowercase letters, digits and single \
             '-', with at least one letter (e.g. \"http\")"
        ))
    }
}

fn validate_port_number(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port {port} is outside 1-65535"))
    }
}

/// Parses and checks a kubeconfig; returns (server URL of the current context, context name).
pub fn kubeconfig_summary(kubeconfig: &str) -> Result<KubeconfigSummary, String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(kubeconfig)
        .map_err(|e| format!("kubeconfig is not valid YAML: {e}"))?;
    let current = doc
        .get("current-context")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or("kubeconfig has no current-context; set one to the context berth should use")?;
    let context = doc
        .get("contexts")
        .and_then(|v| v.as_sequence())
        .and_then(|seq| {
            seq.iter()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(current))
        })
        .and_then(|c| c.get("context"))
        .ok_or_else(|| {
            format!("kubeconfig has no context named {current:?} (its current-context)")
        })?;
    let cluster_name = context
        .get("cluster")
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("kubeconfig context {current:?} names no cluster"))?;
    let server = doc
        .get("clusters")
        .and_then(|v| v.as_sequence())
        .and_then(|seq| {
            seq.iter()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(cluster_name))
        })
        .and_then(|c| c.get("cluster"))
        .and_then(|c| c.get("server"))
        .and_then(|s| s.as_str())
        .ok_or_else(|| format!("kubeconfig has no cluster {cluster_name:?} with a server URL"))?;
    Ok(KubeconfigSummary {
        server: server.to_string(),
        current_context: current.to_string(),
    })
}

/// What a person needs to recognise a stored kubeconfig without seeing its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeconfigSummary {
    pub server: String,
    pub current_context: String,
}

/// The cluster's kubeconfig with `namespace` set on its current context, so that
/// `kubectl` run with it lands in the project's namespace.
pub fn kubeconfig_for_namespace(kubeconfig: &str, namespace: &str) -> Result<String, String> {
    let summary = kubeconfig_summary(kubeconfig)?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(kubeconfig)
        .map_err(|e| format!("kubeconfig is not valid YAML: {e}"))?;
    let contexts = doc
        .get_mut("contexts")
        .and_then(|v| v.as_sequence_mut())
        .ok_or("kubeconfig has no contexts")?;
    for c in contexts.iter_mut() {
        if c.get("name").and_then(|n| n.as_str()) == Some(summary.current_context.as_str()) {
            if let Some(ctx) = c.get_mut("context").and_then(|v| v.as_mapping_mut()) {
                ctx.insert("namespace".into(), namespace.into());
            }
        }
    }
    serde_yaml::to_string(&doc).map_err(|e| format!("cannot write kubeconfig: {e}"))
}

// ---------------------------------------------------------------------------
// Clusters and nodes
// ---------------------------------------------------------------------------

/// A Kubernetes cluster that edge nodes belong to. The kubeconfig is stored as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub kubeconfig: String,
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
    #[serde(default)]
    pub created_at: u64,
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

// ---------------------------------------------------------------------------
// Apps and template versions
// ---------------------------------------------------------------------------

/// The kind of Kubernetes workload an app runs as. Fixed when the app is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    Job,
    CronJob,
    DaemonSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }
    pub fn api_version(self) -> &'static str {
        match self {
            WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
                "apps/v1"
            }
            WorkloadKind::Job | WorkloadKind::CronJob => "batch/v1",
        }
    }
    /// Whether the pods run to completion (Job-like) rather than forever.
    pub fn runs_to_completion(self) -> bool {
        matches!(self, WorkloadKind::Job | WorkloadKind::CronJob)
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pod restart policy; only Job and CronJob may choose (Never or OnFailure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
    SCTP,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// Environment from a config map or a secret of the project: exactly one of them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u32,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// A port given by number or by the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(u32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGetAction {
    #[serde(default = "default_probe_path")]
    pub path: String,
    pub port: PortRef,
}

fn default_probe_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSocketAction {
    pub port: PortRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecAction {
    pub command: Vec<String>,
}

/// A liveness or readiness probe: exactly one of `http_get`, `tcp_socket`, `exec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyDir {
    /// "Memory" for a tmpfs; empty for node disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// A pod volume: exactly one source.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDir>,
    /// Name of a config map in the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Name of a secret in the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Name of a local volume (persistent volume claim) in the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub name: String,
    /// `project/repo:tag` or `project/repo@sha256:...` in this registry.
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Every key of a config map or secret of the project as environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFrom>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

/// What a template version says: everything needed to render the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    pub kind: WorkloadKind,
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Pods for Deployment/StatefulSet (default 1); completions for Job/CronJob
    /// (default 1); not allowed for DaemonSet (one pod on the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// CronJob only: 5-field cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Job/CronJob only: Never or OnFailure (default OnFailure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Extra labels on the workload and its pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Largest replica count accepted; an edge node is one machine.
pub const MAX_REPLICAS: u32 = 1000;

impl AppSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut c = Check::default();
        let kind = self.kind;
        if self.containers.is_empty() {
            c.fail("containers", "an app needs at least one container");
        }
        let mut names = BTreeSet::new();
        let mut port_names = BTreeSet::new();
        let mut host_ports = BTreeSet::new();
        let volume_names: BTreeSet<&str> = self.volumes.iter().map(|v| v.name.as_str()).collect();
        for (i, ct) in self.containers.iter().enumerate() {
            let f = format!("containers[{i}]");
            c.check(format!("{f}.name"), validate_dns_label(&ct.name));
            if !names.insert(ct.name.as_str()) {
                c.fail(
                    format!("{f}.name"),
                    format!(
                        "container name {:?} is used twice; names must be unique",
                        ct.name
                    ),
                );
            }
            c.check(format!("{f}.image"), ImageRef::parse(&ct.image).map(|_| ()));
            let mut env_names = BTreeSet::new();
            for (j, e) in ct.env.iter().enumerate() {
                let ok = !e.name.is_empty()
                    && e.name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
                    && !e.name.as_bytes()[0].is_ascii_digit();
                if !ok {
                    c.fail(
                        format!("{f}.env[{j}].name"),
                        format!(
                            "{:?} is not a valid environment variable name: use letters, digits, \
                             '_', '-' and '.', not starting with a digit",
                            e.name
                        ),
                    );
                }
                if !env_names.insert(e.name.as_str()) {
                    c.fail(
                        format!("{f}.env[{j}].name"),
                        format!("{:?} is set twice", e.name),
                    );
                }
            }
            for (j, e) in ct.env_from.iter().enumerate() {
                let ef = format!("{f}.env_from[{j}]");
                match (&e.config_map, &e.secret) {
                    (Some(n), None) => c.check(format!("{ef}.config_map"), validate_dns_label(n)),
                    (None, Some(n)) => c.check(format!("{ef}.secret"), validate_dns_label(n)),
                    _ => c.fail(&ef, "give exactly one of config_map, secret"),
                }
            }
            let mut ct_ports = BTreeSet::new();
            let mut ct_port_names = BTreeSet::new();
            for (j, p) in ct.ports.iter().enumerate() {
                let pf = format!("{f}.ports[{j}]");
                c.check(
                    format!("{pf}.container_port"),
                    validate_port_number(p.container_port),
                );
                if !ct_ports.insert((p.container_port, p.protocol)) {
                    c.fail(
                        format!("{pf}.container_port"),
                        format!(
                            "{}/{} is listed twice in this container",
                            p.container_port,
                            p.protocol.as_str()
                        ),
                    );
                } else if !host_ports.insert((p.container_port, p.protocol)) {
                    c.fail(
                        format!("{pf}.container_port"),
                        format!(
                            "{}/{} is already used by another container of this pod",
                            p.container_port,
                            p.protocol.as_str()
                        ),
                    );
                }
                if let Some(n) = &p.name {
                    c.check(format!("{pf}.name"), validate_port_name(n));
                    if !port_names.insert(n.as_str()) {
                        c.fail(
                            format!("{pf}.name"),
                            format!("port name {n:?} is used twice in the pod"),
                        );
                    }
                    ct_port_names.insert(n.as_str());
                }
            }
            if let Some(r) = &ct.resources {
                for (section, map) in [("requests", &r.requests), ("limits", &r.limits)] {
                    for (k, v) in map {
                        let key_ok = matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage")
                            || k.starts_with("hugepages-")
                            || (k.contains('/') && validate_label_key(k).is_ok());
                        if !key_ok {
                            c.fail(
                                format!("{f}.resources.{section}.{k}"),
                                "unknown resource: use cpu, memory, ephemeral-storage, \
                                 hugepages-<size> or a vendor/name resource",
                            );
                        }
                        c.check(format!("{f}.resources.{section}.{k}"), validate_quantity(v));
                    }
                }
            }
            for (probe_name, probe) in [
                ("liveness_probe", &ct.liveness_probe),
                ("readiness_probe", &ct.readiness_probe),
            ] {
                if let Some(p) = probe {
                    validate_probe(&mut c, &format!("{f}.{probe_name}"), p, &ct_port_names);
                }
            }
            let mut paths = BTreeSet::new();
            for (j, m) in ct.volume_mounts.iter().enumerate() {
                let mf = format!("{f}.volume_mounts[{j}]");
                if !volume_names.contains(m.name.as_str()) {
                    c.fail(
                        format!("{mf}.name"),
                        format!(
                            "no volume named {:?}; add it to the app's volumes (known: {})",
                            m.name,
                            list_or_none(volume_names.iter())
                        ),
                    );
                }
                if !m.mount_path.starts_with('/') {
                    c.fail(
                        format!("{mf}.mount_path"),
                        format!("{:?} must be an absolute path", m.mount_path),
                    );
                } else if m.mount_path.contains(':') {
                    c.fail(format!("{mf}.mount_path"), "must not contain ':'");
                }
                if !paths.insert(m.mount_path.as_str()) {
                    c.fail(
                        format!("{mf}.mount_path"),
                        format!("{:?} is mounted twice in this container", m.mount_path),
                    );
                }
                if let Some(sp) = &m.sub_path {
                    if sp.starts_with('/') || sp.split('/').any(|p| p == "..") {
                        c.fail(
                            format!("{mf}.sub_path"),
                            "must be a relative path without '..'",
                        );
                    }
                }
            }
        }
        let mut seen_volumes = BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let f = format!("volumes[{i}]");
            c.check(format!("{f}.name"), validate_dns_label(&v.name));
            if !seen_volumes.insert(v.name.as_str()) {
                c.fail(
                    format!("{f}.name"),
                    format!("volume {:?} is defined twice", v.name),
                );
            }
            let sources = [
                v.empty_dir.is_some(),
                v.config_map.is_some(),
                v.secret.is_some(),
                v.persistent_volume_claim.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources != 1 {
                c.fail(
                    &f,
                    "give exactly one of empty_dir, config_map, secret, persistent_volume_claim",
                );
            }
            for (field, name) in [
                ("config_map", &v.config_map),
                ("secret", &v.secret),
                ("persistent_volume_claim", &v.persistent_volume_claim),
            ] {
                if let Some(n) = name {
                    c.check(format!("{f}.{field}"), validate_dns_label(n));
                }
            }
            if let Some(ed) = &v.empty_dir {
                if let Some(m) = &ed.medium {
                    if m != "Memory" && !m.is_empty() {
                        c.fail(
                            format!("{f}.empty_dir.medium"),
                            "use \"Memory\" or leave it out",
                        );
                    }
                }
                if let Some(s) = &ed.size_limit {
                    c.check(format!("{f}.empty_dir.size_limit"), validate_quantity(s));
                }
            }
        }
        match (kind, self.replicas) {
            (WorkloadKind::DaemonSet, Some(_)) => c.fail(
                "replicas",
                "a DaemonSet runs exactly one pod on the node; remove replicas",
            ),
            (_, Some(n)) if n > MAX_REPLICAS => c.fail(
                "replicas",
                format!("{n} is more than {MAX_REPLICAS} replicas"),
            ),
            (WorkloadKind::Job | WorkloadKind::CronJob, Some(0)) => {
                c.fail("replicas", "a Job needs at least 1 completion")
            }
            _ => {}
        }
        match (kind, &self.schedule) {
            (WorkloadKind::CronJob, None) => c.fail(
                "schedule",
                "a CronJob needs a schedule, e.g. \"0 3 * * *\" for 03:00 every day",
            ),
            (WorkloadKind::CronJob, Some(s)) => c.check("schedule", validate_cron(s)),
            (_, Some(_)) => c.fail(
                "schedule",
                format!("only a CronJob has a schedule; this app is a {kind}"),
            ),
            _ => {}
        }
        match (kind.runs_to_completion(), self.restart_policy) {
            (true, Some(RestartPolicy::Always)) => {
                c.fail("restart_policy", "a Job's pods must use Never or OnFailure")
            }
            (false, Some(p)) if p != RestartPolicy::Always => c.fail(
                "restart_policy",
                format!(
                    "a {kind} always restarts its pods; restart_policy is only for Job and CronJob"
                ),
            ),
            _ => {}
        }
        validate_labels(&mut c, "labels", &self.labels);
        c.finish()
    }

    /// Every distinct image reference of the template, in container order.
    pub fn images(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.containers
            .iter()
            .filter(|c| seen.insert(c.image.as_str()))
            .map(|c| c.image.clone())
            .collect()
    }
}

fn validate_probe(c: &mut Check, f: &str, p: &Probe, port_names: &BTreeSet<&str>) {
    let actions = [
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.exec.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if actions != 1 {
        c.fail(f, "give exactly one of http_get, tcp_socket, exec");
    }
    let mut port_check = |field: String, port: &PortRef| match port {
        PortRef::Number(n) => c.check(field, validate_port_number(*n)),
        PortRef::Name(n) if !port_names.contains(n.as_str()) => c.fail(
            field,
            format!(
                "no port named {n:?} in this container (known: {})",
                list_or_none(port_names.iter())
            ),
        ),
        PortRef::Name(_) => {}
    };
    if let Some(h) = &p.http_get {
        port_check(format!("{f}.http_get.port"), &h.port);
    }
    if let Some(t) = &p.tcp_socket {
        port_check(format!("{f}.tcp_socket.port"), &t.port);
    }
    if let Some(h) = &p.http_get {
        if !h.path.starts_with('/') {
            c.fail(format!("{f}.http_get.path"), "must start with '/'");
        }
    }
    if let Some(e) = &p.exec {
        if e.command.is_empty() {
            c.fail(format!("{f}.exec.command"), "must name a command to run");
        }
    }
    for (name, v, min) in [
        ("period_seconds", p.period_seconds, 1),
        ("timeout_seconds", p.timeout_seconds, 1),
        ("failure_threshold", p.failure_threshold, 1),
    ] {
        if v.is_some_and(|v| v < min) {
            c.fail(format!("{f}.{name}"), format!("must be at least {min}"));
        }
    }
}

fn list_or_none<'a>(items: impl Iterator<Item = &'a &'a str>) -> String {
    let v: Vec<&str> = items.copied().collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A workload a project runs on edge nodes. Its template lives in numbered versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub project: String,
    pub name: String,
    pub kind: WorkloadKind,
    pub latest_version: u32,
    pub created_at: u64,
    pub created_by: String,
}

/// One immutable version of an app's template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub version: u32,
    pub spec: AppSpec,
    pub author: String,
    pub created_at: u64,
    /// What changed from the previous version, in words (the author's message if given).
    pub summary: String,
}

/// Describes in words what changed between two template versions.
pub fn summarize_change(old: Option<&AppSpec>, new: &AppSpec) -> String {
    let Some(old) = old else {
        return format!(
            "first version: {} with {}",
            new.kind,
            new.containers
                .iter()
                .map(|c| format!("{} ({})", c.name, c.image))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut changes = Vec::new();
    for c in &new.containers {
        match old.containers.iter().find(|o| o.name == c.name) {
            None => changes.push(format!("container {} added ({})", c.name, c.image)),
            Some(o) => {
                if o.image != c.image {
                    changes.push(format!(
                        "container {} image {} -> {}",
                        c.name, o.image, c.image
                    ));
                }
                let mut parts = Vec::new();
                if o.command != c.command || o.args != c.args {
                    parts.push("command");
                }
                if o.env != c.env {
                    parts.push("env");
                }
                if o.ports != c.ports {
                    parts.push("ports");
                }
                if o.resources != c.resources {
                    parts.push("resources");
                }
                if o.liveness_probe != c.liveness_probe || o.readiness_probe != c.readiness_probe {
                    parts.push("probes");
                }
                if o.volume_mounts != c.volume_mounts {
                    parts.push("volume mounts");
                }
                if !parts.is_empty() {
                    changes.push(format!("container {} {} changed", c.name, parts.join(", ")));
                }
            }
        }
    }
    for o in &old.containers {
        if !new.containers.iter().any(|c| c.name == o.name) {
            changes.push(format!("container {} removed", o.name));
        }
    }
    if old.replicas != new.replicas {
        changes.push(format!(
            "replicas {} -> {}",
            old.replicas.map_or("default".into(), |r| r.to_string()),
            new.replicas.map_or("default".into(), |r| r.to_string())
        ));
    }
    if old.schedule != new.schedule {
        changes.push(format!(
            "schedule {:?} -> {:?}",
            old.schedule.as_deref().unwrap_or(""),
            new.schedule.as_deref().unwrap_or("")
        ));
    }
    if old.restart_policy != new.restart_policy {
        changes.push("restart policy changed".into());
    }
    if old.volumes != new.volumes {
        changes.push("volumes changed".into());
    }
    if old.labels != new.labels {
        changes.push("labels changed".into());
    }
    if changes.is_empty() {
        "no change".into()
    } else {
        changes.join("; ")
    }
}

// ---------------------------------------------------------------------------
// Publications
// ---------------------------------------------------------------------------

/// Identifies a publication: one app on one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicationKey {
    pub project: String,
    pub app: String,
    pub node: String,
}

impl fmt::Display for PublicationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.project, self.app, self.node)
    }
}

/// An image of the template resolved to a digest when the publish was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedImage {
    /// As written in the template, e.g. `shop/web:1.4`.
    pub reference: String,
    /// Repository in this registry, e.g. `shop/web`.
    pub repository: String,
    pub digest: String,
    pub media_type: String,
}

impl PinnedImage {
    /// `repository@digest`, the form the edge cache and the pod spec use.
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

/// Where a publication is, as a person would read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PublicationState {
    /// Turning image tags into digests.
    Resolving,
    /// The node's edge cache is pulling and pinning the images.
    Prefetching {
        bytes_done: u64,
        bytes_total: u64,
    },
    /// Objects applied (or being applied); waiting for the rollout.
    Deploying,
    Running,
    /// Stuck; retried with backoff. The reason says what went wrong.
    Failed {
        reason: String,
    },
    /// Being taken off the node.
    Removing,
}

impl PublicationState {
    pub fn label(&self) -> &'static str {
        match self {
            PublicationState::Resolving => "resolving",
            PublicationState::Prefetching { .. } => "prefetching",
            PublicationState::Deploying => "deploying",
            PublicationState::Running => "running",
            PublicationState::Failed { .. } => "failed",
            PublicationState::Removing => "removing",
        }
    }
}

/// What the user asked for the publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "desired", rename_all = "snake_case")]
pub enum Desired {
    Published,
    /// Remove it from the node; with `cascade`, also the resources only it uses.
    Unpublished {
        cascade: bool,
    },
}

/// One state change, kept in the publication's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Unix seconds.
    pub at: u64,
    pub state: String,
    pub detail: String,
}

/// One app on one node: what is wanted, how far it got, and how it got there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    pub project: String,
    pub app: String,
    pub node: String,
    /// Template version wanted on the node.
    pub version: u32,
    pub desired: Desired,
    /// Bumped by every publish/unpublish request; steps done for an older
    /// generation are redone.
    pub generation: u64,
    /// Bumped by every write; guards against lost updates.
    pub revision: u64,
    /// Digests resolved once for this generation; `None` until resolved.
    pub images: Option<Vec<PinnedImage>>,
    /// Edge prefetch job for this generation's images.
    pub prefetch_job: Option<String>,
    /// Set while a prefetch request may have reached the edge without its job
    /// id being recorded here: the ids of the edge's jobs for the same images
    /// from before the request. After a crash, a matching job not in this list
    /// is the one that request created, and is followed instead of asking again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_submitting: Option<Vec<String>>,
    /// The edge reported the prefetch job done.
    pub prefetched: bool,
    /// The objects for this generation were applied.
    pub applied: bool,
    /// Images this publication pinned on the edge and has not unpinned yet.
    #[serde(default)]
    pub pinned: Vec<String>,
    #[serde(flatten)]
    pub state: PublicationState,
    /// Consecutive failed attempts (reset on progress).
    pub attempts: u32,
    /// Unix milliseconds of the next retry after a failure.
    pub next_retry_at_ms: Option<u64>,
    pub last_error: Option<String>,
    pub history: Vec<Transition>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Publication {
    pub fn new(project: &str, app: &str, node: &str, version: u32, now: u64) -> Self {
        let mut p = Publication {
            project: project.into(),
            app: app.into(),
            node: node.into(),
            version,
            desired: Desired::Published,
            generation: 0,
            revision: 0,
            images: None,
            prefetch_job: None,
            prefetch_submitting: None,
            prefetched: false,
            applied: false,
            pinned: Vec::new(),
            state: PublicationState::Resolving,
            attempts: 0,
            next_retry_at_ms: None,
            last_error: None,
            history: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        p.restart_publish(version, now);
        p
    }

    pub fn key(&self) -> PublicationKey {
        PublicationKey {
            project: self.project.clone(),
            app: self.app.clone(),
            node: self.node.clone(),
        }
    }

    /// A new publish request: start over from resolving, keeping what is pinned
    /// (it is unpinned once the new images run).
    pub fn restart_publish(&mut self, version: u32, now: u64) {
        self.version = version;
        self.desired = Desired::Published;
        self.generation += 1;
        self.images = None;
        self.prefetch_job = None;
        self.prefetch_submitting = None;
        self.prefetched = false;
        self.applied = false;
        self.attempts = 0;
        self.next_retry_at_ms = None;
        self.last_error = None;
        self.transition(
            PublicationState::Resolving,
            format!("publish of version {version} requested"),
            now,
            true,
        );
    }

    /// An unpublish request.
    pub fn request_removal(&mut self, cascade: bool, now: u64) {
        self.desired = Desired::Unpublished { cascade };
        self.generation += 1;
        self.attempts = 0;
        self.next_retry_at_ms = None;
        self.last_error = None;
        let detail = if cascade {
            "unpublish requested (cascade)"
        } else {
            "unpublish requested"
        };
        self.transition(PublicationState::Removing, detail.to_string(), now, true);
    }

    /// Moves to `state`, recording a history entry when the state (or a failure
    /// reason) changes; progress updates alone are not history.
    pub fn set_state(&mut self, state: PublicationState, detail: impl Into<String>, now: u64) {
        self.transition(state, detail.into(), now, false);
    }

    /// Like `set_state`, but always recorded in the history (notable events
    /// that do not change the state, such as a resubmitted prefetch).
    pub fn record(&mut self, state: PublicationState, detail: impl Into<String>, now: u64) {
        self.transition(state, detail.into(), now, true);
    }

    /// A new request always leaves a trace, even without a change of state.
    fn transition(&mut self, state: PublicationState, detail: String, now: u64, force: bool) {
        let changed = self.state.label() != state.label()
            || matches!(
                (&self.state, &state),
                (PublicationState::Failed { reason: a }, PublicationState::Failed { reason: b }) if a != b
            )
            || self.history.is_empty();
        self.state = state;
        self.updated_at = now;
        if changed || force {
            self.history.push(Transition {
                at: now,
                state: self.state.label().to_string(),
                detail,
            });
            if self.history.len() > HISTORY_LIMIT {
                let drop = self.history.len() - HISTORY_LIMIT;
                self.history.drain(..drop);
            }
        }
    }

    /// The images this generation runs, as `repository@digest`.
    pub fn images_by_digest(&self) -> Vec<String> {
        self.images
            .as_ref()
            .map(|v| v.iter().map(PinnedImage::by_digest).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: image.into(),
            command: vec![],
            args: vec![],
            env: vec![],
            env_from: vec![],
            ports: vec![],
            resources: None,
            liveness_probe: None,
            readiness_probe: None,
            volume_mounts: vec![],
        }
    }

    fn spec(kind: WorkloadKind) -> AppSpec {
        AppSpec {
            kind,
            containers: vec![container("web", "shop/web:1.0")],
            volumes: vec![],
            replicas: None,
            schedule: if kind == WorkloadKind::CronJob {
                Some("*/5 * * * *".into())
            } else {
                None
            },
            restart_policy: None,
            labels: BTreeMap::new(),
        }
    }

    fn problems(s: &AppSpec) -> String {
        match s.validate() {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn dns_labels() {
        assert!(validate_dns_label("web-1").is_ok());
        assert!(validate_dns_label("a").is_ok());
        for bad in ["", "Web", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(validate_dns_label(bad).is_err(), "{bad}");
        }
        assert!(validate_dns_subdomain("node-1.edge.local").is_ok());
        assert!(validate_dns_subdomain("node..x").is_err());
    }

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("shop/web:1.0").expect("valid");
        assert_eq!(r.repository, "shop/web");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("shop/tools/cli@{d}")).expect("valid");
        assert_eq!(r.repository, "shop/tools/cli");
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(ImageRef::parse("shop/web:1.0@sha256:abc")
            .expect_err("must be refused")
            .contains("64 lowercase hex"));
        assert!(ImageRef::parse("web:1.0")
            .expect_err("must be refused")
            .contains("no project"));
        assert!(ImageRef::parse("shop/web")
            .expect_err("must be refused")
            .contains("neither a tag"));
        assert!(ImageRef::parse("docker.io/library/nginx:1")
            .expect_err("must be refused")
            .contains("registry host"));
        assert!(ImageRef::parse("localhost:5000/shop/web:1")
            .expect_err("must be refused")
            .contains("registry host"));
        assert!(ImageRef::parse("Shop/web:1").is_err());
        assert!(ImageRef::parse("shop/web:.bad").is_err());
        assert!(ImageRef::parse("shop/we--b:1").is_ok());
        assert!(ImageRef::parse("shop/we..b:1").is_err());
    }

    #[test]
    fn cron() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "0,30 8-18/2 1 jan-jun sun",
            "@daily",
            "0 0 ? * 7",
        ] {
            assert!(validate_cron(ok).is_ok(), "{ok}: {:?}", validate_cron(ok));
        }
        assert!(validate_cron("* * * *")
            .expect_err("must be refused")
            .contains("4 fields"));
        assert!(validate_cron("60 * * * *")
            .expect_err("must be refused")
            .contains("outside 0-59"));
        assert!(validate_cron("* 5-2 * * *")
            .expect_err("must be refused")
            .contains("backwards"));
        assert!(validate_cron("*/0 * * * *")
            .expect_err("must be refused")
            .contains("step"));
        assert!(validate_cron("* * * foo *").is_err());
        assert!(validate_cron("@sometimes").is_err());
        assert!(validate_cron("TZ=UTC 0 * * * *").is_err());
    }

    #[test]
    fn quantities() {
        for ok in ["1", "250m", "0.5", "128Mi", "1Gi", "1e3", "+2"] {
            assert!(validate_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "abc", "1.2.3", "12 Mi", "1MB", "."] {
            assert!(validate_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_rules() {
        for k in [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::Job,
            WorkloadKind::CronJob,
            WorkloadKind::DaemonSet,
        ] {
            assert_eq!(problems(&spec(k)), "", "{k}");
        }
        let mut s = spec(WorkloadKind::Deployment);
        s.containers.push(container("web", "shop/web:2"));
        assert!(problems(&s).contains("used twice"));

        let mut s = spec(WorkloadKind::Deployment);
        s.schedule = Some("* * * * *".into());
        assert!(problems(&s).contains("only a CronJob has a schedule"));

        let mut s = spec(WorkloadKind::CronJob);
        s.schedule = None;
        assert!(problems(&s).contains("needs a schedule"));

        let mut s = spec(WorkloadKind::DaemonSet);
        s.replicas = Some(2);
        assert!(problems(&s).contains("remove replicas"));

        let mut s = spec(WorkloadKind::Deployment);
        s.containers[0].ports = vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: 70000,
                protocol: Protocol::TCP,
            },
            ContainerPort {
                name: Some("http".into()),
                container_port: 80,
                protocol: Protocol::TCP,
            },
        ];
        let p = problems(&s);
        assert!(p.contains("outside 1-65535"), "{p}");
        assert!(p.contains("used twice in the pod"), "{p}");

        let mut s = spec(WorkloadKind::Deployment);
        s.containers[0].volume_mounts = vec![VolumeMount {
            name: "data".into(),
            mount_path: "data".into(),
            read_only: false,
            sub_path: None,
        }];
        let p = problems(&s);
        assert!(p.contains("no volume named \"data\""), "{p}");
        assert!(p.contains("absolute path"), "{p}");

        let mut s = spec(WorkloadKind::Deployment);
        s.containers[0].readiness_probe = Some(Probe {
            http_get: Some(HttpGetAction {
                path: "/healthz".into(),
                port: PortRef::Name("web".into()),
            }),
            ..Probe::default()
        });
        assert!(problems(&s).contains("no port named"));

        let mut s = spec(WorkloadKind::Job);
        s.restart_policy = Some(RestartPolicy::Always);
        assert!(problems(&s).contains("Never or OnFailure"));

        let mut s = spec(WorkloadKind::Deployment);
        s.labels.insert("berth.dev/app".into(), "x".into());
        assert!(problems(&s).contains("set by berth itself"));

        let mut s = spec(WorkloadKind::Deployment);
        s.containers[0].resources = Some(ResourceRequirements {
            requests: [("cpu".to_string(), "lots".to_string())].into(),
            limits: BTreeMap::new(),
        });
        assert!(problems(&s).contains("not a quantity"));

        // Several problems at once, each named.
        let mut s = spec(WorkloadKind::Deployment);
        s.containers[0].name = "Web".into();
        s.containers[0].image = "web".into();
        let e = s.validate().expect_err("must be refused");
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].starts_with("containers[0].name"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err =
            serde_json::from_str::<AppSpec>(r#"{"kind":"Deployment","containers":[],"replica":2}"#)
                .expect_err("must be refused")
                .to_string();
        assert!(err.contains("unknown field `replica`"), "{err}");
        let err = serde_json::from_str::<AppSpec>(r#"{"kind":"Pod","containers":[]}"#)
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("unknown variant `Pod`"), "{err}");
    }

    #[test]
    fn change_summary() {
        let a = spec(WorkloadKind::Deployment);
        let mut b = a.clone();
        b.containers[0].image = "shop/web:2.0".into();
        b.replicas = Some(3);
        let s = summarize_change(Some(&a), &b);
        assert!(s.contains("image shop/web:1.0 -> shop/web:2.0"), "{s}");
        assert!(s.contains("replicas default -> 3"), "{s}");
        assert!(summarize_change(None, &a).starts_with("first version"));
        assert_eq!(summarize_change(Some(&a), &a), "no change");
    }

    #[test]
    fn kubeconfig_namespace() {
        let kc = "apiVersion: v1\nkind: Config\ncurrent-context: edge\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\ncontexts:\n- name: edge\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n";
        let s = kubeconfig_summary(kc).expect("valid");
        assert_eq!(s.server, "https://10.0.0.1:6443");
        let out = kubeconfig_for_namespace(kc, "shop").expect("valid");
        let v: serde_yaml::Value = serde_yaml::from_str(&out).expect("yaml");
        assert_eq!(
            v["contexts"][0]["context"]["namespace"].as_str(),
            Some("shop")
        );
        assert!(kubeconfig_summary("current-context: x\n").is_err());
        assert!(kubeconfig_summary(": : :").is_err());
    }

    #[test]
    fn publication_history() {
        let mut p = Publication::new("shop", "web", "n1", 1, 10);
        assert_eq!(p.history.len(), 1);
        p.set_state(
            PublicationState::Prefetching {
                bytes_done: 0,
                bytes_total: 10,
            },
            "prefetch",
            11,
        );
        p.set_state(
            PublicationState::Prefetching {
                bytes_done: 5,
                bytes_total: 10,
            },
            "progress",
            12,
        );
        assert_eq!(p.history.len(), 2);
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["state"], "prefetching");
        assert_eq!(json["bytes_done"], 5);
        let back: Publication = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, p);
    }
}
