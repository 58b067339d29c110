//! Specs, nodes and resources for the store's tests.

use std::collections::BTreeMap;

use crate::model::{AppSpec, Node, WorkloadKind};
use crate::resources::{LoadBalancerSpec, Resource, ResourceKind, ResourceSpec, ServicePort};

use super::StoreError;

pub(crate) fn spec(image: &str) -> AppSpec {
    AppSpec {
        kind: WorkloadKind::Deployment,
        containers: vec![crate::model::fixtures::container("web", image)],
        volumes: vec![],
        replicas: None,
        schedule: None,
        restart_policy: None,
        labels: BTreeMap::new(),
        run_as_user: None,
        run_as_group: None,
    }
}

pub(crate) const KC: &str = "current-context: c\ncontexts:\n- name: c\n  context:\n    cluster: k\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n";

pub(crate) fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        cluster: "edge".into(),
        k8s_node_name: String::new(),
        labels: BTreeMap::new(),
        edge_url: "http://127.0.0.1:1".into(),
        edge_credentials: None,
        edge_controller_token: None,
        created_at: 0,
    }
}

pub(crate) fn resource(name: &str, kind: ResourceKind, spec: ResourceSpec) -> Resource {
    Resource {
        project: "shop".into(),
        name: name.into(),
        kind,
        spec,
        description: format!("{name} for the shop"),
        created_at: 1,
        updated_at: 1,
    }
}

pub(crate) fn lb(selector: &[(&str, &str)], app: Option<&str>) -> ResourceSpec {
    ResourceSpec::LoadBalancer(LoadBalancerSpec {
        app: app.map(str::to_string),
        selector: selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        service_type: Default::default(),
        ports: vec![ServicePort {
            name: None,
            port: 80,
            target_port: None,
            protocol: Default::default(),
        }],
    })
}

pub(crate) fn conflict(r: Result<impl std::fmt::Debug, StoreError>, rule: &str) {
    match r {
        Err(StoreError::Conflict(m)) => assert!(m.contains(rule), "{m}"),
        other => panic!("expected a conflict naming {rule:?}, got {other:?}"),
    }
}
