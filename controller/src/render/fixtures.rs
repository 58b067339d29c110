//! Specs, digests and a node for the render tests (and the deployers' tests).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::{
    AppSpec, Container, ContainerPort, EnvVar, HttpGetAction, Node, PinnedImage, PortRef, Probe,
    Protocol, ResourceRequirements, RestartPolicy, Volume, VolumeMount, WorkloadKind,
};

use super::{render_workload, RenderOptions, WorkloadInput};

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
        edge_controller_token: None,
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
            crate::model::fixtures::container("sidecar", "shop/tools:2"),
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
        run_as_user: None,
        run_as_group: None,
    }
}

pub(crate) fn pinned() -> Vec<PinnedImage> {
    vec![
        PinnedImage {
            reference: "shop/web:1.0".into(),
            repository: "shop/web".into(),
            digest: digest('a'),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            upstream: None,
        },
        PinnedImage {
            reference: "shop/tools:2".into(),
            repository: "shop/tools".into(),
            digest: digest('b'),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            upstream: None,
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
