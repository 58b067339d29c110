//! The workload of an app on a node: Deployment, StatefulSet (after its
//! headless service), Job, CronJob or DaemonSet, with its pod spec.
//!
//! Owns: pod specs (containers with digest references, probes, volumes) and
//! the shape of each workload kind. Must not touch: names and labels shared
//! with other objects (see `render`), resources' objects (see `resources`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::model::{
    AppSpec, Container, Node, PinnedImage, PortRef, Probe, RestartPolicy, Volume, WorkloadKind,
    MANAGER,
};

use super::{
    labels_value, metadata, object_name, resource_object_name, selector_labels, volume_claim_name,
    RenderError, RenderOptions, HOSTNAME_LABEL, LABEL_APP, LABEL_BERTH_APP, LABEL_MANAGED_BY,
    LABEL_NODE, LABEL_PROJECT, LABEL_VERSION,
};

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
    pod.insert("securityContext".into(), pod_security(spec));
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
            .map(|v| pod_volume(v, &input.node.name))
            .collect();
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    Ok(Value::Object(pod))
}

/// The pod's security context: Pod Security `restricted` (the project's
/// namespace enforces it): never root, the runtime's default seccomp
/// profile, the app's user and group where it names them.
pub fn pod_security(spec: &AppSpec) -> Value {
    let mut sc = json!({
        "runAsNonRoot": true,
        "seccompProfile": { "type": "RuntimeDefault" },
    });
    if let Some(u) = spec.run_as_user {
        sc["runAsUser"] = u.into();
    }
    if let Some(g) = spec.run_as_group {
        sc["runAsGroup"] = g.into();
        sc["fsGroup"] = g.into();
    }
    sc
}

/// Every container's security context under Pod Security `restricted`: no
/// privilege escalation, no capabilities.
pub fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
    })
}

/// A pod volume from one of the app's volumes (the node's copy of a config
/// map or secret, the node's claim of a local volume).
fn pod_volume(v: &Volume, node: &str) -> Value {
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
        out["configMap"] = json!({ "name": resource_object_name(n, node) });
    } else if let Some(n) = &v.secret {
        out["secret"] = json!({ "secretName": resource_object_name(n, node) });
    } else if let Some(n) = &v.persistent_volume_claim {
        out["persistentVolumeClaim"] = json!({ "claimName": volume_claim_name(n, node) });
    }
    out
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
    // An image of another registry keeps its name there, pinned: the node's
    // containerd resolves it through its edge (hosts.toml for that registry).
    Ok(match (&pinned.upstream, &options.image_host) {
        (Some(upstream), _) => format!("{upstream}@{}", pinned.digest),
        (None, Some(host)) => format!("{host}/{}", pinned.by_digest()),
        (None, None) => pinned.by_digest(),
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
        out.insert("envFrom".into(), env_from(c, node));
    }
    if !c.ports.is_empty() {
        out.insert("ports".into(), container_ports(c));
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
        out.insert("volumeMounts".into(), volume_mounts(c));
    }
    out.insert("securityContext".into(), container_security());
    Ok(Value::Object(out))
}

/// A container's `envFrom`: the node's copies of the config maps and secrets.
fn env_from(c: &Container, node: &str) -> Value {
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
    Value::Array(env_from)
}

fn container_ports(c: &Container) -> Value {
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
    Value::Array(ports)
}

fn volume_mounts(c: &Container) -> Value {
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
    Value::Array(mounts)
}

fn port_value(p: &PortRef) -> Value {
    match p {
        PortRef::Number(n) => json!(n),
        PortRef::Name(n) => json!(n),
    }
}

/// A probe as the pod spec writes it (also how an export writes it back).
pub(crate) fn probe(p: &Probe) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{digest, full_spec, node, pinned, render_kind};

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
            // Pod Security `restricted`, which the project's namespace enforces.
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"],
                "RuntimeDefault"
            );
            for c in pod["containers"].as_array().expect("containers") {
                assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
                assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
            }
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
    fn an_image_of_another_registry_keeps_its_name_there_pinned() {
        let mut spec = full_spec(WorkloadKind::Deployment);
        spec.containers[1].image = "nginx:1.25".into();
        let mut images = pinned();
        images[1] = PinnedImage {
            reference: "nginx:1.25".into(),
            repository: "dockerhub/library/nginx".into(),
            digest: digest('c'),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            upstream: Some("docker.io/library/nginx".into()),
        };
        let node = node();
        let objs = render_workload(
            &WorkloadInput {
                project: "shop",
                app: "web",
                version: 1,
                spec: &spec,
                images: &images,
                node: &node,
            },
            &RenderOptions {
                image_host: Some("registry.example:5000".into()),
            },
        )
        .expect("render");
        let containers = &objs[0]["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            containers[0]["image"],
            format!("registry.example:5000/shop/web@{}", digest('a'))
        );
        assert_eq!(
            containers[1]["image"],
            format!("docker.io/library/nginx@{}", digest('c'))
        );
    }
}
