//! The workload document: Deployment, StatefulSet, DaemonSet, Job or CronJob,
//! its pod template, containers, probes and volumes, read into an `AppSpec`.
//!
//! Owns: which workload and pod fields map to which part of the template, and
//! which are berth's (selectors, template labels, node selector, pull policy,
//! the Job knobs berth sets) or the API server's defaults. Must not touch:
//! resources' documents (see `objects`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::{
    AppSpec, Container, ContainerPort, EmptyDir, EnvFrom, EnvVar, ExecAction, HttpGetAction,
    PortRef, Probe, Protocol, ResourceRequirements, RestartPolicy, TcpSocketAction, Volume,
    VolumeMount, WorkloadKind,
};
use crate::render::{container_security, HOSTNAME_LABEL, LABEL_APP};

use super::fields::{join, Fields, Problems};
use super::{read_meta, ImportOptions, Meta};

/// Labels the Job controller puts on its pods.
const JOB_LABELS: &[&str] = &[
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "job-name",
];

/// Reads the workload: (app name, template, metadata).
pub(super) fn read(
    p: &mut Problems,
    doc: &Value,
    kind: WorkloadKind,
    options: &ImportOptions,
) -> Option<(String, AppSpec, Meta)> {
    let mut top = Fields::new(p, "", doc)?;
    top.ignore(&["apiVersion", "kind", "status"]);
    let meta = read_meta(p, top.take("metadata"), "metadata");
    let name = app_name(p, &meta);
    let mut spec = AppSpec {
        kind,
        containers: Vec::new(),
        volumes: Vec::new(),
        replicas: None,
        schedule: None,
        restart_policy: None,
        labels: meta.labels.clone(),
        run_as_user: None,
        run_as_group: None,
    };
    spec.labels.remove(LABEL_APP);
    let labels = spec.labels.clone();
    let ctx = Ctx {
        app: &name,
        meta: &meta,
        labels: &labels,
        options,
    };
    let empty = Value::Null;
    let body = top.take("spec").unwrap_or(&empty);
    let mut f = Fields::new(p, "spec", body)?;
    match kind {
        WorkloadKind::CronJob => {
            spec.schedule = f.string(p, "schedule");
            f.fixed(p, "concurrencyPolicy", json!("Forbid"));
            f.fixed(p, "successfulJobsHistoryLimit", json!(3));
            f.fixed(p, "failedJobsHistoryLimit", json!(1));
            f.fixed(p, "suspend", json!(false));
            let mut jt = Fields::new(p, &f.at("jobTemplate"), f.take("jobTemplate")?)?;
            if let Some(m) = jt.take("metadata") {
                template_meta(p, &jt.at("metadata"), m, &ctx);
            }
            let mut job = Fields::new(p, &jt.at("spec"), jt.take("spec").unwrap_or(&empty))?;
            job_fields(p, &mut job, &mut spec, &ctx);
            job.finish(p);
            jt.finish(p);
        }
        WorkloadKind::Job => job_fields(p, &mut f, &mut spec, &ctx),
        _ => long_running_fields(p, &mut f, &mut spec, &ctx),
    }
    f.finish(p);
    top.finish(p);
    Some((name, spec, meta))
}

/// What reading a workload needs to know besides the field at hand.
struct Ctx<'a> {
    app: &'a str,
    meta: &'a Meta,
    /// The workload's own labels (without `app`).
    labels: &'a BTreeMap<String, String>,
    options: &'a ImportOptions,
}

/// The app is named by the `app` label (or by the name when there is none);
/// a name that differs is a rendered object's (`<app>-<node>`) or refused.
fn app_name(p: &mut Problems, meta: &Meta) -> String {
    let Some(app) = meta.labels.get(LABEL_APP) else {
        return meta.name.clone();
    };
    let rendered_name = meta
        .node
        .as_deref()
        .map(|n| crate::render::object_name(app, n));
    if meta.name != *app && rendered_name.as_deref() != Some(meta.name.as_str()) {
        p.fail(
            "metadata.name",
            format!("the app is named by its label app: {app}; name the workload {app} too"),
        );
    }
    app.clone()
}

fn long_running_fields(p: &mut Problems, f: &mut Fields<'_>, spec: &mut AppSpec, ctx: &Ctx<'_>) {
    let kind = spec.kind;
    if kind != WorkloadKind::DaemonSet {
        spec.replicas = f.u32(p, "replicas");
    }
    if let Some(sel) = f.take("selector") {
        selector(p, &f.at("selector"), sel, ctx);
    }
    f.fixed(p, "revisionHistoryLimit", json!(10));
    f.fixed(p, "minReadySeconds", json!(0));
    match kind {
        WorkloadKind::Deployment => {
            f.fixed(p, "progressDeadlineSeconds", json!(600));
            f.fixed(p, "paused", json!(false));
            f.fixed(
                p,
                "strategy",
                json!({"type": "RollingUpdate",
                       "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
        }
        WorkloadKind::StatefulSet => {
            // berth names the governing Service after the workload.
            f.ignore(&["serviceName"]);
            f.fixed(p, "podManagementPolicy", json!("OrderedReady"));
            f.fixed(
                p,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            f.fixed(
                p,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        _ => f.fixed(
            p,
            "updateStrategy",
            json!({"type": "RollingUpdate",
                   "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
        ),
    }
    if let Some(t) = f.take("template") {
        pod_template(p, &f.at("template"), t, spec, ctx);
    } else {
        p.fail(&f.at("template"), "a workload needs a pod template");
    }
}

/// A Job's spec (also a CronJob's job template): completions are the
/// template's replicas; berth runs them all at once, with its back-off.
fn job_fields(p: &mut Problems, f: &mut Fields<'_>, spec: &mut AppSpec, ctx: &Ctx<'_>) {
    spec.replicas = f.u32(p, "completions");
    let parallel = json!(spec.replicas.unwrap_or(1));
    f.fixed(p, "parallelism", parallel);
    f.fixed(p, "backoffLimit", json!(6));
    f.fixed(p, "completionMode", json!("NonIndexed"));
    f.fixed(p, "suspend", json!(false));
    f.fixed(p, "manualSelector", json!(false));
    f.fixed(p, "podReplacementPolicy", json!("TerminatingOrFailed"));
    // The Job controller generates its selector.
    f.ignore(&["selector"]);
    if let Some(t) = f.take("template") {
        pod_template(p, &f.at("template"), t, spec, ctx);
    } else {
        p.fail(&f.at("template"), "a Job needs a pod template");
    }
}

/// A label berth generates or the workload carries: accepted when it agrees.
fn agreeing_label(p: &mut Problems, path: &str, k: &str, v: &str, ctx: &Ctx<'_>) {
    let ok = if k == LABEL_APP {
        v == ctx.app
    } else if super::OWNED_LABELS.contains(&k) || JOB_LABELS.contains(&k) {
        true
    } else {
        ctx.labels.get(k).map(String::as_str) == Some(v)
    };
    if !ok {
        p.fail(
            &join(path, k),
            format!(
                "berth generates these labels from the app label (app: {}) and the \
                 workload's labels; this one does not agree with them",
                ctx.app
            ),
        );
    }
}

fn selector(p: &mut Problems, path: &str, v: &Value, ctx: &Ctx<'_>) {
    let Some(mut f) = Fields::new(p, path, v) else {
        return;
    };
    let at = f.at("matchLabels");
    for (k, v) in f.string_map(p, "matchLabels") {
        agreeing_label(p, &at, &k, &v, ctx);
    }
    f.finish(p);
}

fn template_meta(p: &mut Problems, path: &str, v: &Value, ctx: &Ctx<'_>) {
    let Some(mut f) = Fields::new(p, path, v) else {
        return;
    };
    f.ignore(&["creationTimestamp", "annotations"]);
    if let Some(a) = f.take("annotations") {
        if a.as_object().is_some_and(|m| !m.is_empty()) {
            p.fail(
                &f.at("annotations"),
                "berth does not keep annotations; remove them",
            );
        }
    }
    let at = f.at("labels");
    for (k, v) in f.string_map(p, "labels") {
        agreeing_label(p, &at, &k, &v, ctx);
    }
    f.finish(p);
}

fn pod_template(p: &mut Problems, path: &str, v: &Value, spec: &mut AppSpec, ctx: &Ctx<'_>) {
    let Some(mut t) = Fields::new(p, path, v) else {
        return;
    };
    if let Some(m) = t.take("metadata") {
        template_meta(p, &t.at("metadata"), m, ctx);
    }
    let empty = Value::Null;
    let Some(mut f) = Fields::new(p, &t.at("spec"), t.take("spec").unwrap_or(&empty)) else {
        return;
    };
    f.fixed(p, "dnsPolicy", json!("ClusterFirst"));
    f.fixed(p, "schedulerName", json!("default-scheduler"));
    if let Some(sc) = f.take("securityContext") {
        pod_security(p, &f.at("securityContext"), sc, spec);
    }
    f.fixed(p, "terminationGracePeriodSeconds", json!(30));
    if let Some(ns) = f.take("nodeSelector") {
        let at = f.at("nodeSelector");
        for k in super::fields::string_map(p, &at, ns).keys() {
            if k != HOSTNAME_LABEL {
                p.fail(
                    &join(&at, k),
                    "berth places the pods on the node it publishes the app to",
                );
            }
        }
    }
    let restart = f.string(p, "restartPolicy");
    restart_policy(p, &f.at("restartPolicy"), restart, spec);
    for (at, c) in f.list(p, "containers") {
        if let Some(c) = container(p, &at, c, ctx) {
            spec.containers.push(c);
        }
    }
    for (at, v) in f.list(p, "volumes") {
        if let Some(v) = volume(p, &at, v, ctx.meta) {
            spec.volumes.push(v);
        }
    }
    f.finish(p);
    t.finish(p);
}

fn restart_policy(p: &mut Problems, path: &str, given: Option<String>, spec: &mut AppSpec) {
    let Some(given) = given else { return };
    let policy = match given.as_str() {
        "Always" => RestartPolicy::Always,
        "OnFailure" => RestartPolicy::OnFailure,
        "Never" => RestartPolicy::Never,
        other => {
            p.fail(path, format!("{other:?} is not Always, OnFailure or Never"));
            return;
        }
    };
    if spec.kind.runs_to_completion() {
        spec.restart_policy = Some(policy);
    } else if policy != RestartPolicy::Always {
        p.fail(path, format!("a {} always restarts its pods", spec.kind));
    }
}

fn container(p: &mut Problems, path: &str, v: &Value, ctx: &Ctx<'_>) -> Option<Container> {
    let mut f = Fields::new(p, path, v)?;
    f.fixed(p, "imagePullPolicy", json!("IfNotPresent"));
    f.fixed(p, "terminationMessagePath", json!("/dev/termination-log"));
    f.fixed(p, "terminationMessagePolicy", json!("File"));
    let mut image = f.string(p, "image").unwrap_or_default();
    if let Some(host) = &ctx.options.image_host {
        if let Some(rest) = image.strip_prefix(&format!("{host}/")) {
            image = rest.to_string();
        }
    }
    let mut c = Container {
        name: f.string(p, "name").unwrap_or_default(),
        image,
        command: f.strings(p, "command"),
        args: f.strings(p, "args"),
        env: Vec::new(),
        env_from: Vec::new(),
        ports: Vec::new(),
        resources: None,
        liveness_probe: None,
        readiness_probe: None,
        volume_mounts: Vec::new(),
    };
    for (at, e) in f.list(p, "env") {
        let Some(mut ef) = Fields::new(p, &at, e) else {
            continue;
        };
        c.env.push(EnvVar {
            name: ef.string(p, "name").unwrap_or_default(),
            value: ef.string(p, "value").unwrap_or_default(),
        });
        ef.finish(p);
    }
    for (at, e) in f.list(p, "envFrom") {
        if let Some(e) = env_from(p, &at, e, ctx.meta) {
            c.env_from.push(e);
        }
    }
    for (at, port) in f.list(p, "ports") {
        if let Some(port) = container_port(p, &at, port) {
            c.ports.push(port);
        }
    }
    if let Some(r) = f.take("resources") {
        c.resources = resources(p, &f.at("resources"), r);
    }
    if let Some(pr) = f.take("livenessProbe") {
        c.liveness_probe = probe(p, &f.at("livenessProbe"), pr);
    }
    if let Some(pr) = f.take("readinessProbe") {
        c.readiness_probe = probe(p, &f.at("readinessProbe"), pr);
    }
    for (at, m) in f.list(p, "volumeMounts") {
        let Some(mut mf) = Fields::new(p, &at, m) else {
            continue;
        };
        c.volume_mounts.push(VolumeMount {
            name: mf.string(p, "name").unwrap_or_default(),
            mount_path: mf.string(p, "mountPath").unwrap_or_default(),
            read_only: mf.bool(p, "readOnly").unwrap_or(false),
            sub_path: mf.string(p, "subPath"),
        });
        mf.finish(p);
    }
    if let Some(sc) = f.take("securityContext") {
        if !sc.as_object().is_some_and(|m| m.is_empty()) && *sc != container_security() {
            p.fail(
                &f.at("securityContext"),
                format!(
                    "berth runs every container with {} (Pod Security `restricted`); \
                     remove this field",
                    serde_json::to_string(&container_security()).unwrap_or_default()
                ),
            );
        }
    }
    f.finish(p);
    Some(c)
}

/// A pod's securityContext: the user and group berth models, and what it
/// always renders (`runAsNonRoot`, the default seccomp profile); nothing else.
fn pod_security(p: &mut Problems, path: &str, v: &Value, spec: &mut AppSpec) {
    let Some(mut f) = Fields::new(p, path, v) else {
        return;
    };
    if f.bool(p, "runAsNonRoot") == Some(false) {
        p.fail(
            &f.at("runAsNonRoot"),
            "pods never run as root (the project's namespace enforces Pod Security `restricted`)",
        );
    }
    f.fixed(p, "seccompProfile", json!({ "type": "RuntimeDefault" }));
    spec.run_as_user = f.u32(p, "runAsUser");
    spec.run_as_group = f.u32(p, "runAsGroup");
    if let Some(fs) = f.u32(p, "fsGroup") {
        if spec.run_as_group != Some(fs) {
            p.fail(
                &f.at("fsGroup"),
                "berth sets fsGroup to runAsGroup; give the group as runAsGroup",
            );
        }
    }
    f.finish(p);
}

fn env_from(p: &mut Problems, path: &str, v: &Value, meta: &Meta) -> Option<EnvFrom> {
    let mut f = Fields::new(p, path, v)?;
    let mut out = EnvFrom::default();
    for (key, slot) in [
        ("configMapRef", &mut out.config_map),
        ("secretRef", &mut out.secret),
    ] {
        if let Some(r) = f.take(key) {
            let mut rf = Fields::new(p, &f.at(key), r)?;
            *slot = rf.string(p, "name").map(|n| meta.unrender(&n));
            rf.finish(p);
        }
    }
    f.finish(p);
    Some(out)
}

fn container_port(p: &mut Problems, path: &str, v: &Value) -> Option<ContainerPort> {
    let mut f = Fields::new(p, path, v)?;
    let protocol = match f.string(p, "protocol").as_deref() {
        None | Some("TCP") => Protocol::TCP,
        Some("UDP") => Protocol::UDP,
        Some("SCTP") => Protocol::SCTP,
        Some(other) => {
            p.fail(
                &f.at("protocol"),
                format!("{other:?} is not TCP, UDP or SCTP"),
            );
            Protocol::TCP
        }
    };
    let port = ContainerPort {
        name: f.string(p, "name"),
        container_port: f.u32(p, "containerPort").unwrap_or(0),
        protocol,
    };
    f.finish(p);
    Some(port)
}

fn resources(p: &mut Problems, path: &str, v: &Value) -> Option<ResourceRequirements> {
    let mut f = Fields::new(p, path, v)?;
    let r = ResourceRequirements {
        requests: f.string_map(p, "requests"),
        limits: f.string_map(p, "limits"),
    };
    f.finish(p);
    Some(r)
}

fn port_ref(p: &mut Problems, path: &str, v: Option<&Value>) -> PortRef {
    match v {
        Some(Value::String(s)) => PortRef::Name(s.clone()),
        Some(Value::Number(n)) => {
            PortRef::Number(n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0))
        }
        _ => {
            p.fail(path, "give a port number or the name of a container port");
            PortRef::Number(0)
        }
    }
}

fn probe(p: &mut Problems, path: &str, v: &Value) -> Option<Probe> {
    let mut f = Fields::new(p, path, v)?;
    f.fixed(p, "successThreshold", json!(1));
    let mut out = Probe {
        initial_delay_seconds: f.u32(p, "initialDelaySeconds"),
        period_seconds: f.u32(p, "periodSeconds"),
        timeout_seconds: f.u32(p, "timeoutSeconds"),
        failure_threshold: f.u32(p, "failureThreshold"),
        ..Probe::default()
    };
    if let Some(h) = f.take("httpGet") {
        let mut hf = Fields::new(p, &f.at("httpGet"), h)?;
        hf.fixed(p, "scheme", json!("HTTP"));
        let port = hf.take("port");
        out.http_get = Some(HttpGetAction {
            path: hf.string(p, "path").unwrap_or_else(|| "/".into()),
            port: port_ref(p, &hf.at("port"), port),
        });
        hf.finish(p);
    }
    if let Some(t) = f.take("tcpSocket") {
        let mut tf = Fields::new(p, &f.at("tcpSocket"), t)?;
        let port = tf.take("port");
        out.tcp_socket = Some(TcpSocketAction {
            port: port_ref(p, &tf.at("port"), port),
        });
        tf.finish(p);
    }
    if let Some(e) = f.take("exec") {
        let mut ef = Fields::new(p, &f.at("exec"), e)?;
        out.exec = Some(ExecAction {
            command: ef.strings(p, "command"),
        });
        ef.finish(p);
    }
    f.finish(p);
    Some(out)
}

fn volume(p: &mut Problems, path: &str, v: &Value, meta: &Meta) -> Option<Volume> {
    let mut f = Fields::new(p, path, v)?;
    let mut out = Volume {
        name: f.string(p, "name").unwrap_or_default(),
        ..Volume::default()
    };
    if let Some(e) = f.take("emptyDir") {
        let mut ef = Fields::new(p, &f.at("emptyDir"), e)?;
        out.empty_dir = Some(EmptyDir {
            medium: ef.string(p, "medium"),
            size_limit: ef.string(p, "sizeLimit"),
        });
        ef.finish(p);
    }
    for (key, name_key, slot) in [
        ("configMap", "name", &mut out.config_map),
        ("secret", "secretName", &mut out.secret),
        (
            "persistentVolumeClaim",
            "claimName",
            &mut out.persistent_volume_claim,
        ),
    ] {
        if let Some(s) = f.take(key) {
            let mut sf = Fields::new(p, &f.at(key), s)?;
            sf.fixed(p, "defaultMode", json!(420));
            sf.fixed(p, "readOnly", json!(false));
            *slot = sf.string(p, name_key).map(|n| meta.unrender(&n));
            sf.finish(p);
        }
    }
    f.finish(p);
    Some(out)
}
