//! Specs for the model's tests.

use std::collections::BTreeMap;

use super::{AppSpec, Container, WorkloadKind};

pub(crate) fn container(name: &str, image: &str) -> Container {
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

pub(crate) fn spec(kind: WorkloadKind) -> AppSpec {
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
        run_as_user: None,
        run_as_group: None,
    }
}
