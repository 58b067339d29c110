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

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::model::{
    AppSpec, Container, Node, PinnedImage, PortRef, Probe, RestartPolicy, WorkloadKind, MANAGER,
};
use crate::resources::{
    EipSpec, LoadBalancerSpec, ResourceKind, RouteSpec, ServiceType, VolumeSpec,
};

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

/// Everything the workload objects are rendered from.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadInput<'a> {
    pub project: &'a str,
    pub app: &'a str,
    pub version: u32,
    pub spec: &'a AppSpec,
    pub images: &'a [PinnedImage],
    pub node: &'a Node,
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

fn workload_labels(input: &WorkloadInput<'_>) -> BTreeMap<String, String> {
    let mut labels = input.spec.labels.clone();
    labels.insert(LABEL_APP.into(), input.app.into());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
    labels.insert(LABEL_BERTH_APP.into(), input.app.into());
    labels.insert(LABEL_PROJECT.into(), input.project.into());
    labels.insert(LABEL_VERSION.into(), input.version.to_string());
    labels.insert(LABEL_NODE.into(), input.node.name.clone());
    labels
}

fn labels_value(labels: &BTreeMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn metadata(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({ "name": name, "namespace": namespace, "labels": labels_value(labels) })
}

/// Renders the workload objects of one app on one node, in apply order.
pub fn render_workload(
    input: &WorkloadInput<'_>,
    options: &RenderOptions,
) -> Result<Vec<Value>, RenderError> {
    let name = object_name(input.app, &input.node.name);
    let ns = input.project;
    let labels = workload_labels(input);
    let selector = selector_labels(input.app, &input.node.name);
    let pod_spec = pod_spec(input, options)?;
    let pod_template = json!({
        "metadata": { "labels": labels_value(&labels) },
        "spec": pod_spec,
    });
    let spec = input.spec;
    let kind = spec.kind;
    let mut objects = Vec::new();
    let workload_spec = match kind {
        WorkloadKind::Deployment => json!({
            "replicas": spec.replicas.unwrap_or(1),
            "selector": { "matchLabels": labels_value(&selector) },
            "template": pod_template,
        }),
        WorkloadKind::StatefulSet => {
            // A StatefulSet needs its governing headless service to exist first.
            objects.push(headless_service(input, &name, &labels, &selector));
            json!({
                "serviceName": name,
                "replicas": spec.replicas.unwrap_or(1),
                "selector": { "matchLabels": labels_value(&selector) },
                "template": pod_template,
            })
        }
        WorkloadKind::DaemonSet => json!({
            "selector": { "matchLabels": labels_value(&selector) },
            "template": pod_template,
        }),
        WorkloadKind::Job => job_spec(spec, pod_template),
        WorkloadKind::CronJob => json!({
            "schedule": spec.schedule.clone().unwrap_or_default(),
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "metadata": { "labels": labels_value(&labels) },
                "spec": job_spec(spec, pod_template),
            },
        }),
    };
    objects.push(json!({
        "apiVersion": kind.api_version(),
        "kind": kind.as_str(),
        "metadata": metadata(&name, ns, &labels),
        "spec": workload_spec,
    }));
    Ok(objects)
}

fn job_spec(spec: &AppSpec, pod_template: Value) -> Value {
    let completions = spec.replicas.unwrap_or(1);
    json!({
        "completions": completions,
        "parallelism": completions,
        "backoffLimit": 6,
        "template": pod_template,
    })
}

fn headless_service(
    input: &WorkloadInput<'_>,
    name: &str,
    labels: &BTreeMap<String, String>,
    selector: &BTreeMap<String, String>,
) -> Value {
    let mut ports = Vec::new();
    for c in &input.spec.containers {
        for p in &c.ports {
            let mut port = json!({
                "port": p.container_port,
                "targetPort": p.container_port,
                "protocol": p.protocol.as_str(),
            });
            let port_name = p.name.clone().unwrap_or_else(|| {
                format!(
                    "p{}-{}",
                    p.container_port,
                    p.protocol.as_str().to_ascii_lowercase()
                )
            });
            port["name"] = Value::String(port_name);
            ports.push(port);
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, input.project, labels),
        "spec": {
            "clusterIP": "None",
            "selector": labels_value(selector),
            "ports": ports,
        },
    })
}

fn pod_spec(input: &WorkloadInput<'_>, options: &RenderOptions) -> Result<Value, RenderError> {
    let spec = input.spec;
    let mut containers = Vec::new();
    for c in &spec.containers {
        containers.push(container(c, input.images, options, &input.node.name)?);
    }
    let mut pod = Map::new();
    pod.insert(
        "nodeSelector".into(),
        json!({ HOSTNAME_LABEL: input.node.k8s_node_name }),
    );
    pod.insert("containers".into(), Value::Array(containers));
    let restart = match spec.kind {
        WorkloadKind::Job | WorkloadKind::CronJob => {
            spec.restart_policy.unwrap_or(RestartPolicy::OnFailure)
        }
        _ => RestartPolicy::Always,
    };
    pod.insert("restartPolicy".into(), restart.as_str().into());
    if !spec.volumes.is_empty() {
        let volumes = spec
            .volumes
            .iter()
            .map(|v| {
                let mut out = json!({ "name": v.name });
                if let Some(ed) = &v.empty_dir {
                    let mut e = Map::new();
                    if let Some(m) = ed.medium.as_ref().filter(|m| !m.is_empty()) {
                        e.insert("medium".into(), m.clone().into());
                    }
                    if let Some(s) = &ed.size_limit {
                        e.insert("sizeLimit".into(), s.clone().into());
                    }
                    out["emptyDir"] = Value::Object(e);
                } else if let Some(n) = &v.config_map {
                    out["configMap"] = json!({ "name": resource_object_name(n, &input.node.name) });
                } else if let Some(n) = &v.secret {
                    out["secret"] =
                        json!({ "secretName": resource_object_name(n, &input.node.name) });
                } else if let Some(n) = &v.persistent_volume_claim {
                    out["persistentVolumeClaim"] =
                        json!({ "claimName": volume_claim_name(n, &input.node.name) });
                }
                out
            })
            .collect();
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    Ok(Value::Object(pod))
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

fn image_ref(
    c: &Container,
    images: &[PinnedImage],
    options: &RenderOptions,
) -> Result<String, RenderError> {
    let pinned = images
        .iter()
        .find(|i| i.reference == c.image)
        .ok_or_else(|| RenderError::Unresolved(c.image.clone()))?;
    Ok(match &options.image_host {
        Some(host) => format!("{host}/{}", pinned.by_digest()),
        None => pinned.by_digest(),
    })
}

fn container(
    c: &Container,
    images: &[PinnedImage],
    options: &RenderOptions,
    node: &str,
) -> Result<Value, RenderError> {
    let mut out = Map::new();
    out.insert("name".into(), c.name.clone().into());
    out.insert("image".into(), image_ref(c, images, options)?.into());
    // The edge cache already holds the image; never go past it.
    out.insert("imagePullPolicy".into(), "IfNotPresent".into());
    if !c.command.is_empty() {
        out.insert("command".into(), json!(c.command));
    }
    if !c.args.is_empty() {
        out.insert("args".into(), json!(c.args));
    }
    if !c.env.is_empty() {
        let env: Vec<Value> = c
            .env
            .iter()
            .map(|e| json!({ "name": e.name, "value": e.value }))
            .collect();
        out.insert("env".into(), Value::Array(env));
    }
    if !c.env_from.is_empty() {
        let env_from: Vec<Value> = c
            .env_from
            .iter()
            .map(|e| match (&e.config_map, &e.secret) {
                (Some(n), _) => {
                    json!({ "configMapRef": { "name": resource_object_name(n, node) } })
                }
                (_, Some(n)) => json!({ "secretRef": { "name": resource_object_name(n, node) } }),
                _ => json!({}),
            })
            .collect();
        out.insert("envFrom".into(), Value::Array(env_from));
    }
    if !c.ports.is_empty() {
        let ports: Vec<Value> = c
            .ports
            .iter()
            .map(|p| {
                let mut v =
                    json!({ "containerPort": p.container_port, "protocol": p.protocol.as_str() });
                if let Some(n) = &p.name {
                    v["name"] = n.clone().into();
                }
                v
            })
            .collect();
        out.insert("ports".into(), Value::Array(ports));
    }
    if let Some(r) = &c.resources {
        let mut res = Map::new();
        if !r.requests.is_empty() {
            res.insert("requests".into(), json!(r.requests));
        }
        if !r.limits.is_empty() {
            res.insert("limits".into(), json!(r.limits));
        }
        if !res.is_empty() {
            out.insert("resources".into(), Value::Object(res));
        }
    }
    if let Some(p) = &c.liveness_probe {
        out.insert("livenessProbe".into(), probe(p));
    }
    if let Some(p) = &c.readiness_probe {
        out.insert("readinessProbe".into(), probe(p));
    }
    if !c.volume_mounts.is_empty() {
        let mounts: Vec<Value> = c
            .volume_mounts
            .iter()
            .map(|m| {
                let mut v = json!({ "name": m.name, "mountPath": m.mount_path });
                if m.read_only {
                    v["readOnly"] = true.into();
                }
                if let Some(sp) = &m.sub_path {
                    v["subPath"] = sp.clone().into();
                }
                v
            })
            .collect();
        out.insert("volumeMounts".into(), Value::Array(mounts));
    }
    Ok(Value::Object(out))
}

fn port_value(p: &PortRef) -> Value {
    match p {
        PortRef::Number(n) => json!(n),
        PortRef::Name(n) => json!(n),
    }
}

fn probe(p: &Probe) -> Value {
    let mut out = Map::new();
    if let Some(h) = &p.http_get {
        out.insert(
            "httpGet".into(),
            json!({ "path": h.path, "port": port_value(&h.port) }),
        );
    }
    if let Some(t) = &p.tcp_socket {
        out.insert("tcpSocket".into(), json!({ "port": port_value(&t.port) }));
    }
    if let Some(e) = &p.exec {
        out.insert("exec".into(), json!({ "command": e.command }));
    }
    for (k, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("periodSeconds", p.period_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("failureThreshold", p.failure_threshold),
    ] {
        if let Some(v) = v {
            out.insert(k.into(), json!(v));
        }
    }
    Value::Object(out)
}

// ----- resources that travel with apps (issue 6) ------------------------------

pub const LABEL_RESOURCE_KIND: &str = "berth.dev/resource-kind";

/// Labels of a resource's object on a node; `app` for the app-owned ones
/// (load balancers, EIPs, routes), which go when the app goes.
fn resource_labels(
    project: &str,
    node: &str,
    kind: ResourceKind,
    name: &str,
    app: Option<&str>,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_RESOURCE_KIND.to_string(), kind.as_str().to_string()),
        (LABEL_RESOURCE.to_string(), name.to_string()),
    ]);
    if let Some(app) = app {
        l.insert(LABEL_APP.into(), app.into());
        l.insert(LABEL_BERTH_APP.into(), app.into());
    }
    l
}

/// Labels selecting one resource's objects on a node (for removal).
pub fn resource_selector_labels(
    project: &str,
    node: &str,
    kind: ResourceKind,
    name: &str,
) -> BTreeMap<String, String> {
    resource_labels(project, node, kind, name, None)
}

pub fn render_config_map(
    project: &str,
    name: &str,
    data: &BTreeMap<String, String>,
    node: &Node,
) -> Value {
    let labels = resource_labels(project, &node.name, ResourceKind::ConfigMaps, name, None);
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "data": data,
    })
}

/// A Secret with its values (already decrypted) base64-encoded as Kubernetes wants.
pub fn render_secret(
    project: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    node: &Node,
) -> Value {
    use base64::Engine as _;
    let labels = resource_labels(project, &node.name, ResourceKind::Secrets, name, None);
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(b64.encode(v))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "data": data,
    })
}

pub fn render_volume_claim(project: &str, name: &str, spec: &VolumeSpec, node: &Node) -> Value {
    let labels = resource_labels(project, &node.name, ResourceKind::Volumes, name, None);
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(&volume_claim_name(name, &node.name), project, &labels),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": spec.storage_class,
            "resources": { "requests": { "storage": spec.capacity } },
        },
    })
}

pub fn render_service(project: &str, name: &str, lb: &LoadBalancerSpec, node: &Node) -> Value {
    let labels = resource_labels(
        project,
        &node.name,
        ResourceKind::LoadBalancers,
        name,
        Some(&lb.app),
    );
    let ports: Vec<Value> = lb
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({
                "port": p.port,
                "targetPort": p.target_port.unwrap_or(p.port),
                "protocol": p.protocol.as_str(),
            });
            if let Some(n) = &p.name {
                v["name"] = n.clone().into();
            }
            v
        })
        .collect();
    let service_type = match lb.service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    let mut spec = json!({
        "type": service_type,
        "selector": labels_value(&selector_labels(&lb.app, &node.name)),
        "ports": ports,
    });
    if lb.service_type == ServiceType::LoadBalancer {
        // Traffic for this node's pods stays on this node.
        spec["externalTrafficPolicy"] = "Local".into();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "spec": spec,
    })
}

/// The `ElasticIP` custom resource (CRD in `controller/crds/eip.yaml`).
pub fn render_eip(project: &str, name: &str, eip: &EipSpec, app: &str, node: &Node) -> Value {
    let labels = resource_labels(project, &node.name, ResourceKind::Eips, name, Some(app));
    json!({
        "apiVersion": "berth.dev/v1",
        "kind": "ElasticIP",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "spec": {
            "address": eip.address,
            "serviceName": resource_object_name(&eip.load_balancer, &node.name),
            "nodeName": node.k8s_node_name,
        },
    })
}

pub fn render_route(project: &str, name: &str, route: &RouteSpec, app: &str, node: &Node) -> Value {
    let labels = resource_labels(project, &node.name, ResourceKind::Routes, name, Some(app));
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "spec": {
            "rules": [{
                "host": route.host,
                "http": { "paths": [{
                    "path": route.path,
                    "pathType": "Prefix",
                    "backend": { "service": {
                        "name": resource_object_name(&route.load_balancer, &node.name),
                        "port": { "number": route.port },
                    }},
                }]},
            }],
        },
    })
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
pub(crate) mod tests {
    use super::*;
    use crate::model::{
        ContainerPort, EnvVar, HttpGetAction, Protocol, ResourceRequirements, Volume, VolumeMount,
    };

    pub(crate) fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    pub(crate) fn node() -> Node {
        Node {
            name: "n1".into(),
            cluster: "edge".into(),
            k8s_node_name: "edge-node-1.local".into(),
            labels: BTreeMap::new(),
            edge_url: "http://127.0.0.1:1".into(),
            edge_credentials: None,
            created_at: 0,
        }
    }

    pub(crate) fn full_spec(kind: WorkloadKind) -> AppSpec {
        AppSpec {
            kind,
            containers: vec![
                Container {
                    name: "web".into(),
                    image: "shop/web:1.0".into(),
                    command: vec!["/bin/web".into()],
                    args: vec!["--port=8080".into()],
                    env: vec![EnvVar {
                        name: "MODE".into(),
                        value: "edge".into(),
                    }],
                    env_from: vec![],
                    ports: vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Protocol::TCP,
                    }],
                    resources: Some(ResourceRequirements {
                        requests: [("cpu".to_string(), "100m".to_string())].into(),
                        limits: [("memory".to_string(), "128Mi".to_string())].into(),
                    }),
                    liveness_probe: Some(Probe {
                        http_get: Some(HttpGetAction {
                            path: "/healthz".into(),
                            port: PortRef::Name("http".into()),
                        }),
                        period_seconds: Some(10),
                        ..Probe::default()
                    }),
                    readiness_probe: Some(Probe {
                        tcp_socket: Some(crate::model::TcpSocketAction {
                            port: PortRef::Number(8080),
                        }),
                        ..Probe::default()
                    }),
                    volume_mounts: vec![VolumeMount {
                        name: "cache".into(),
                        mount_path: "/cache".into(),
                        read_only: false,
                        sub_path: None,
                    }],
                },
                Container {
                    name: "sidecar".into(),
                    image: "shop/tools:2".into(),
                    command: vec![],
                    args: vec![],
                    env: vec![],
                    env_from: vec![],
                    ports: vec![],
                    resources: None,
                    liveness_probe: None,
                    readiness_probe: None,
                    volume_mounts: vec![],
                },
            ],
            volumes: vec![Volume {
                name: "cache".into(),
                empty_dir: Some(crate::model::EmptyDir::default()),
                ..Volume::default()
            }],
            replicas: match kind {
                WorkloadKind::DaemonSet => None,
                _ => Some(2),
            },
            schedule: (kind == WorkloadKind::CronJob).then(|| "*/10 * * * *".to_string()),
            restart_policy: kind.runs_to_completion().then_some(RestartPolicy::Never),
            labels: [("tier".to_string(), "front".to_string())].into(),
        }
    }

    pub(crate) fn pinned() -> Vec<PinnedImage> {
        vec![
            PinnedImage {
                reference: "shop/web:1.0".into(),
                repository: "shop/web".into(),
                digest: digest('a'),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            },
            PinnedImage {
                reference: "shop/tools:2".into(),
                repository: "shop/tools".into(),
                digest: digest('b'),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            },
        ]
    }

    pub(crate) fn render_kind(kind: WorkloadKind) -> Vec<Value> {
        let spec = full_spec(kind);
        let images = pinned();
        let node = node();
        render_workload(
            &WorkloadInput {
                project: "shop",
                app: "web",
                version: 3,
                spec: &spec,
                images: &images,
                node: &node,
            },
            &RenderOptions::default(),
        )
        .expect("render")
    }

    fn pod_template(obj: &Value) -> &Value {
        match obj["kind"].as_str() {
            Some("CronJob") => &obj["spec"]["jobTemplate"]["spec"]["template"],
            _ => &obj["spec"]["template"],
        }
    }

    #[test]
    fn every_kind_has_labels_selector_and_digests() {
        for kind in [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::Job,
            WorkloadKind::CronJob,
            WorkloadKind::DaemonSet,
        ] {
            let objs = render_kind(kind);
            let obj = objs.last().expect("workload");
            assert_eq!(obj["kind"], kind.as_str());
            assert_eq!(obj["apiVersion"], kind.api_version());
            assert_eq!(obj["metadata"]["name"], "web-n1");
            assert_eq!(obj["metadata"]["namespace"], "shop");
            let labels = &obj["metadata"]["labels"];
            assert_eq!(labels["app"], "web");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "berth");
            assert_eq!(labels["berth.dev/app"], "web");
            assert_eq!(labels["berth.dev/project"], "shop");
            assert_eq!(labels["berth.dev/version"], "3");
            assert_eq!(labels["tier"], "front");
            let tpl = pod_template(obj);
            assert_eq!(tpl["metadata"]["labels"]["app"], "web");
            let pod = &tpl["spec"];
            assert_eq!(
                pod["nodeSelector"]["kubernetes.io/hostname"],
                "edge-node-1.local"
            );
            assert_eq!(
                pod["containers"][0]["image"],
                format!("shop/web@{}", digest('a'))
            );
            assert_eq!(
                pod["containers"][1]["image"],
                format!("shop/tools@{}", digest('b'))
            );
            assert_eq!(
                pod["containers"][0]["livenessProbe"]["httpGet"]["port"],
                "http"
            );
            assert_eq!(
                pod["containers"][0]["resources"]["limits"]["memory"],
                "128Mi"
            );
            if !kind.runs_to_completion() {
                assert_eq!(pod["restartPolicy"], "Always");
                let sel = &obj["spec"]["selector"]["matchLabels"];
                assert_eq!(sel["app"], "web");
                assert_eq!(sel["berth.dev/node"], "n1");
                assert!(
                    sel.get("berth.dev/version").is_none(),
                    "selector must be stable"
                );
            } else {
                assert_eq!(pod["restartPolicy"], "Never");
            }
        }
    }

    #[test]
    fn kind_specific_shapes() {
        let sts = render_kind(WorkloadKind::StatefulSet);
        assert_eq!(sts.len(), 2);
        assert_eq!(sts[0]["kind"], "Service");
        assert_eq!(sts[0]["spec"]["clusterIP"], "None");
        assert_eq!(sts[1]["spec"]["serviceName"], "web-n1");
        assert_eq!(sts[1]["spec"]["replicas"], 2);

        let cj = render_kind(WorkloadKind::CronJob);
        assert_eq!(cj[0]["apiVersion"], "batch/v1");
        assert_eq!(cj[0]["spec"]["schedule"], "*/10 * * * *");
        assert_eq!(cj[0]["spec"]["jobTemplate"]["spec"]["completions"], 2);

        let job = render_kind(WorkloadKind::Job);
        assert!(job[0]["spec"].get("selector").is_none());
        assert_eq!(job[0]["spec"]["completions"], 2);

        let ds = render_kind(WorkloadKind::DaemonSet);
        assert!(ds[0]["spec"].get("replicas").is_none());

        let dep = render_kind(WorkloadKind::Deployment);
        assert_eq!(dep[0]["spec"]["replicas"], 2);
    }

    #[test]
    fn image_host_and_unresolved() {
        let spec = full_spec(WorkloadKind::Deployment);
        let images = pinned();
        let node = node();
        let input = WorkloadInput {
            project: "shop",
            app: "web",
            version: 1,
            spec: &spec,
            images: &images,
            node: &node,
        };
        let objs = render_workload(
            &input,
            &RenderOptions {
                image_host: Some("registry.example:5000".into()),
            },
        )
        .expect("render");
        assert_eq!(
            objs[0]["spec"]["template"]["spec"]["containers"][0]["image"],
            format!("registry.example:5000/shop/web@{}", digest('a'))
        );
        let err = render_workload(
            &WorkloadInput {
                images: &images[..1],
                ..input
            },
            &RenderOptions::default(),
        )
        .expect_err("must be refused");
        assert_eq!(err, RenderError::Unresolved("shop/tools:2".into()));
    }

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
