//! Stores, specs and nodes for the store's tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::Database;

use crate::model::{AppSpec, Node, WorkloadKind};
use crate::sealed_records::RecordSealer;

use super::Store;

pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::create(dir.path().join("berth.redb")).expect("db");
    let store = Store::open(Arc::new(db), test_sealer()).expect("open");
    (dir, store)
}

pub(super) fn test_sealer() -> RecordSealer {
    RecordSealer::new(Some(crate::secrets::SecretBox::new(&[9u8; 32])))
}

pub(super) fn spec(image: &str) -> AppSpec {
    AppSpec {
        kind: WorkloadKind::Deployment,
        containers: vec![crate::model::fixtures::container("web", image)],
        volumes: vec![],
        replicas: None,
        schedule: None,
        restart_policy: None,
        labels: BTreeMap::new(),
    }
}

pub(super) const KC: &str = "current-context: c\ncontexts:\n- name: c\n  context:\n    cluster: k\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n";

pub(super) fn node(name: &str) -> Node {
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
