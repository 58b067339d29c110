//! An app's template and its resources written as a Kubernetes manifest that
//! `parse_manifest` reads back to the same template and resources.
//!
//! Owns: the authored form (names of the app and its resources, images as the
//! template names them; none of a node's rendered names). Must not touch:
//! secret values (a Secret is written without data: it stands for the
//! project's secret of that name).

use serde_json::{json, Map, Value};

use crate::model::{AppSpec, Container, Volume, WorkloadKind};
use crate::render::LABEL_APP;
use crate::resources::{Resource, ResourceSpec, ServiceType};

/// The app and the resources it uses, as YAML documents: the workload, then
/// config maps, secrets, volumes, load balancers and routes.
pub fn export_manifest(app: &str, spec: &AppSpec, resources: &[Resource]) -> String {
    let mut docs = vec![workload(app, spec)];
    let mut ordered: Vec<&Resource> = resources.iter().collect();
    ordered.sort_by_key(|r| (order(&r.spec), r.name.clone()));
    for r in ordered {
        if matches!(r.spec, ResourceSpec::Eip(_)) {
            continue;
        }
        docs.push(resource(app, r));
    }
    docs.iter()
        .map(|d| serde_yaml::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn order(spec: &ResourceSpec) -> u8 {
    match spec {
        ResourceSpec::ConfigMap(_) => 0,
        ResourceSpec::Secret(_) => 1,
        ResourceSpec::Volume(_) => 2,
        ResourceSpec::LoadBalancer(_) => 3,
        ResourceSpec::Route(_) => 4,
        ResourceSpec::Eip(_) => 5,
    }
}

fn meta(name: &str, labels: Map<String, Value>) -> Value {
    json!({ "name": name, "labels": labels })
}

fn app_labels(app: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(LABEL_APP.into(), app.into());
    m
}

fn workload(app: &str, spec: &AppSpec) -> Value {
    let mut labels = app_labels(app);
    for (k, v) in &spec.labels {
        labels.insert(k.clone(), v.clone().into());
    }
    let template = json!({
        "metadata": { "labels": labels.clone() },
        "spec": pod_spec(spec),
    });
    let selector = json!({ "matchLabels": app_labels(app) });
    let mut body = Map::new();
    match spec.kind {
        WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
            if let Some(r) = spec.replicas {
                body.insert("replicas".into(), r.into());
            }
            body.insert("selector".into(), selector);
            body.insert("template".into(), template);
        }
        WorkloadKind::Job => body = job(spec, template),
        WorkloadKind::CronJob => {
            body.insert(
                "schedule".into(),
                spec.schedule.clone().unwrap_or_default().into(),
            );
            body.insert(
                "jobTemplate".into(),
                json!({ "spec": Value::Object(job(spec, template)) }),
            );
        }
    }
    json!({
        "apiVersion": spec.kind.api_version(),
        "kind": spec.kind.as_str(),
        "metadata": meta(app, labels),
        "spec": body,
    })
}

fn job(spec: &AppSpec, template: Value) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(r) = spec.replicas {
        body.insert("completions".into(), r.into());
        body.insert("parallelism".into(), r.into());
    }
    body.insert("template".into(), template);
    body
}

fn pod_spec(spec: &AppSpec) -> Value {
    let mut pod = Map::new();
    if let Some(r) = spec.restart_policy {
        pod.insert("restartPolicy".into(), r.as_str().into());
    }
    pod.insert(
        "containers".into(),
        Value::Array(spec.containers.iter().map(container).collect()),
    );
    let mut sc = Map::new();
    if let Some(u) = spec.run_as_user {
        sc.insert("runAsUser".into(), u.into());
    }
    if let Some(g) = spec.run_as_group {
        sc.insert("runAsGroup".into(), g.into());
    }
    if !sc.is_empty() {
        pod.insert("securityContext".into(), Value::Object(sc));
    }
    if !spec.volumes.is_empty() {
        pod.insert(
            "volumes".into(),
            Value::Array(spec.volumes.iter().map(volume).collect()),
        );
    }
    Value::Object(pod)
}

fn container(c: &Container) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), c.name.clone().into());
    out.insert("image".into(), c.image.clone().into());
    if !c.command.is_empty() {
        out.insert("command".into(), json!(c.command));
    }
    if !c.args.is_empty() {
        out.insert("args".into(), json!(c.args));
    }
    if !c.env.is_empty() {
        let env = c
            .env
            .iter()
            .map(|e| json!({"name": e.name, "value": e.value}));
        out.insert("env".into(), Value::Array(env.collect()));
    }
    if !c.env_from.is_empty() {
        let env_from = c.env_from.iter().map(|e| {
            let mut m = Map::new();
            if let Some(n) = &e.config_map {
                m.insert("configMapRef".into(), json!({ "name": n }));
            }
            if let Some(n) = &e.secret {
                m.insert("secretRef".into(), json!({ "name": n }));
            }
            Value::Object(m)
        });
        out.insert("envFrom".into(), Value::Array(env_from.collect()));
    }
    if !c.ports.is_empty() {
        let ports = c.ports.iter().map(|p| {
            let mut v = json!({"containerPort": p.container_port, "protocol": p.protocol.as_str()});
            if let Some(n) = &p.name {
                v["name"] = n.clone().into();
            }
            v
        });
        out.insert("ports".into(), Value::Array(ports.collect()));
    }
    if let Some(r) = &c.resources {
        let mut m = Map::new();
        if !r.requests.is_empty() {
            m.insert("requests".into(), json!(r.requests));
        }
        if !r.limits.is_empty() {
            m.insert("limits".into(), json!(r.limits));
        }
        out.insert("resources".into(), Value::Object(m));
    }
    if let Some(p) = &c.liveness_probe {
        out.insert("livenessProbe".into(), crate::render::probe(p));
    }
    if let Some(p) = &c.readiness_probe {
        out.insert("readinessProbe".into(), crate::render::probe(p));
    }
    if !c.volume_mounts.is_empty() {
        let mounts = c.volume_mounts.iter().map(|m| {
            let mut v = json!({"name": m.name, "mountPath": m.mount_path});
            if m.read_only {
                v["readOnly"] = true.into();
            }
            if let Some(sp) = &m.sub_path {
                v["subPath"] = sp.clone().into();
            }
            v
        });
        out.insert("volumeMounts".into(), Value::Array(mounts.collect()));
    }
    Value::Object(out)
}

fn volume(v: &Volume) -> Value {
    let mut out = json!({ "name": v.name });
    if let Some(e) = &v.empty_dir {
        let mut m = Map::new();
        if let Some(x) = &e.medium {
            m.insert("medium".into(), x.clone().into());
        }
        if let Some(x) = &e.size_limit {
            m.insert("sizeLimit".into(), x.clone().into());
        }
        out["emptyDir"] = Value::Object(m);
    }
    if let Some(n) = &v.config_map {
        out["configMap"] = json!({ "name": n });
    }
    if let Some(n) = &v.secret {
        out["secret"] = json!({ "secretName": n });
    }
    if let Some(n) = &v.persistent_volume_claim {
        out["persistentVolumeClaim"] = json!({ "claimName": n });
    }
    out
}

fn resource(app: &str, r: &Resource) -> Value {
    let m = meta(&r.name, app_labels(app));
    match &r.spec {
        ResourceSpec::ConfigMap(c) => {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m, "data": c.data})
        }
        // The values stay in berth: this stands for the project's secret.
        ResourceSpec::Secret(_) => {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": m, "type": "Opaque"})
        }
        ResourceSpec::Volume(v) => json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": m,
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": v.storage_class,
                "resources": { "requests": { "storage": v.capacity } },
            },
        }),
        ResourceSpec::LoadBalancer(lb) => {
            let ports = lb.ports.iter().map(|p| {
                let mut v = json!({"port": p.port, "protocol": p.protocol.as_str()});
                if let Some(t) = p.target_port {
                    v["targetPort"] = t.into();
                }
                if let Some(n) = &p.name {
                    v["name"] = n.clone().into();
                }
                v
            });
            let mut spec = json!({
                "selector": lb.app_selector(),
                "ports": Value::Array(ports.collect()),
            });
            if lb.service_type == ServiceType::LoadBalancer {
                spec["type"] = "LoadBalancer".into();
            }
            json!({"apiVersion": "v1", "kind": "Service", "metadata": m, "spec": spec})
        }
        ResourceSpec::Route(route) => json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": m,
            "spec": { "rules": [{ "host": route.host, "http": { "paths": [{
                "path": route.path, "pathType": "Prefix",
                "backend": { "service": {
                    "name": route.load_balancer, "port": { "number": route.port } } },
            }]}}]},
        }),
        // Not a Kubernetes kind of the manifest; never passed here.
        ResourceSpec::Eip(_) => json!({}),
    }
}
