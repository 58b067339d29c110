//! The rules an app spec must follow, one named check per part of the spec.
//!
//! Owns: `AppSpec::validate`. Every check adds its problems to one `Check`, in
//! the order of the spec (containers, volumes, replicas, schedule, restart
//! policy, labels), so a request hears about all of them at once. Must not
//! touch: whether the images or the resources it names exist (the reconciler
//! and the store find that out).

use std::collections::BTreeSet;

use super::check::{list_or_none, Check, ValidationError};
use super::formats::{validate_cron, validate_quantity};
use super::names::{
    validate_dns_label, validate_label_key, validate_labels, validate_port_name,
    validate_port_number, ImageRef,
};
use super::spec::{
    AppSpec, Container, PortRef, Probe, Protocol, RestartPolicy, Volume, WorkloadKind, MAX_REPLICAS,
};

impl AppSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut c = Check::default();
        if self.containers.is_empty() {
            c.fail("containers", "an app needs at least one container");
        }
        self.check_containers(&mut c);
        self.check_volumes(&mut c);
        self.check_replicas(&mut c);
        self.check_schedule(&mut c);
        self.check_restart_policy(&mut c);
        if self.run_as_user == Some(0) {
            c.fail(
                "run_as_user",
                "pods never run as root (the project's namespace enforces Pod Security \
                 `restricted`); choose another user, e.g. 65534",
            );
        }
        validate_labels(&mut c, "labels", &self.labels);
        c.finish()
    }

    /// Each container on its own, and what containers of one pod must not share:
    /// names, port names, ports.
    fn check_containers(&self, c: &mut Check) {
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
            check_env(c, &f, ct);
            check_env_from(c, &f, ct);
            let ct_port_names = check_ports(c, &f, ct, &mut port_names, &mut host_ports);
            check_resources(c, &f, ct);
            for (probe_name, probe) in [
                ("liveness_probe", &ct.liveness_probe),
                ("readiness_probe", &ct.readiness_probe),
            ] {
                if let Some(p) = probe {
                    check_probe(c, &format!("{f}.{probe_name}"), p, &ct_port_names);
                }
            }
            check_volume_mounts(c, &f, ct, &volume_names);
        }
    }

    fn check_volumes(&self, c: &mut Check) {
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
            check_volume_source(c, &f, v);
        }
    }

    fn check_replicas(&self, c: &mut Check) {
        match (self.kind, self.replicas) {
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
    }

    fn check_schedule(&self, c: &mut Check) {
        let kind = self.kind;
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
    }

    fn check_restart_policy(&self, c: &mut Check) {
        let kind = self.kind;
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
    }
}

/// Environment variable names: well formed, each set once.
fn check_env(c: &mut Check, f: &str, ct: &Container) {
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
}

/// Each `env_from` names exactly one config map or secret.
fn check_env_from(c: &mut Check, f: &str, ct: &Container) {
    for (j, e) in ct.env_from.iter().enumerate() {
        let ef = format!("{f}.env_from[{j}]");
        match (&e.config_map, &e.secret) {
            (Some(n), None) => c.check(format!("{ef}.config_map"), validate_dns_label(n)),
            (None, Some(n)) => c.check(format!("{ef}.secret"), validate_dns_label(n)),
            _ => c.fail(&ef, "give exactly one of config_map, secret"),
        }
    }
}

/// A container's ports: valid numbers and names, none listed twice in the
/// container or used by another container of the pod (`port_names` and
/// `host_ports` hold the pod's so far). Returns the container's port names,
/// which its probes may refer to.
fn check_ports<'a>(
    c: &mut Check,
    f: &str,
    ct: &'a Container,
    port_names: &mut BTreeSet<&'a str>,
    host_ports: &mut BTreeSet<(u32, Protocol)>,
) -> BTreeSet<&'a str> {
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
    ct_port_names
}

/// Requests and limits: known resource names with quantities.
fn check_resources(c: &mut Check, f: &str, ct: &Container) {
    let Some(r) = &ct.resources else { return };
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

/// A liveness or readiness probe: one action, ports the container has, sane timings.
fn check_probe(c: &mut Check, f: &str, p: &Probe, port_names: &BTreeSet<&str>) {
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

/// Mounts name a volume of the app, at distinct absolute paths.
fn check_volume_mounts(c: &mut Check, f: &str, ct: &Container, volume_names: &BTreeSet<&str>) {
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

/// A volume has exactly one source, each well formed.
fn check_volume_source(c: &mut Check, f: &str, v: &Volume) {
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
            f,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::model::fixtures::{container, spec};
    use crate::model::*;

    fn problems(s: &AppSpec) -> String {
        match s.validate() {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
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
}
