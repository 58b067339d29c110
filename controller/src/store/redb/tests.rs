//! The embedded store's own tests: the conformance suite, the records an
//! earlier release's database gets on open, and reading load balancers an
//! earlier release wrote.

use std::collections::BTreeMap;

use crate::model::{Cluster, Volume};
use crate::resources::{
    ConfigMapSpec, LoadBalancerSpec, ResourceDesired, ResourceKind, ResourceSpec, RouteSpec,
};
use crate::store::redb::fixtures::*;
use crate::store::redb::RedbControllerStore;

/// The embedded store passes the suite every backend must pass.
#[tokio::test]
async fn the_embedded_store_passes_the_conformance_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    let fresh = || -> std::sync::Arc<dyn crate::store::ControllerStore> {
        let (dir, store) = temp_store();
        dirs.lock().expect("dirs").push(dir);
        std::sync::Arc::new(store)
    };
    crate::store::conformance::suite(&fresh).await;
}

/// The embedded store reseals what an older key sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_reseals_with_the_current_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = std::sync::Arc::new(redb::Database::create(dir.path().join("ctl.redb")).expect("db"));
    let open = |sealer| -> std::sync::Arc<dyn crate::store::ControllerStore> {
        std::sync::Arc::new(RedbControllerStore::open(db.clone(), sealer).expect("open"))
    };
    crate::store::conformance_reseal::resealing(&open).await;
}

fn site() -> (tempfile::TempDir, RedbControllerStore) {
    let (d, s) = temp_store();
    s.create_cluster(&Cluster {
        name: "edge".into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    })
    .expect("cluster");
    for n in ["n1", "n2"] {
        s.create_node(&mut node(n)).expect("node");
    }
    let mut web = spec("shop/web:1");
    web.labels = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    web.volumes.push(Volume {
        name: "conf".into(),
        config_map: Some("settings".into()),
        ..Volume::default()
    });
    s.create_app("shop", "web", &web, "a", None, 1)
        .expect("web");
    let mut api = spec("shop/api:1");
    api.labels = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    s.create_app("shop", "api", &api, "a", None, 1)
        .expect("api");
    s.create_resource(&resource(
        "settings",
        ResourceKind::ConfigMaps,
        ResourceSpec::ConfigMap(ConfigMapSpec::default()),
    ))
    .expect("settings");
    s.create_resource(&resource(
        "front",
        ResourceKind::LoadBalancers,
        lb(&[("tier", "front")], None),
    ))
    .expect("front");
    s.create_resource(&resource(
        "web-lb",
        ResourceKind::LoadBalancers,
        lb(&[], Some("web")),
    ))
    .expect("web-lb");
    s.create_resource(&resource(
        "www",
        ResourceKind::Routes,
        ResourceSpec::Route(RouteSpec {
            host: "shop.example.com".into(),
            path: "/".into(),
            load_balancer: "web-lb".into(),
            port: 80,
        }),
    ))
    .expect("www");
    (d, s)
}

fn nodes_of(
    s: &RedbControllerStore,
    kind: ResourceKind,
    name: &str,
) -> Vec<(String, ResourceDesired)> {
    s.list_resource_publications("shop", kind, name)
        .expect("list")
        .into_iter()
        .map(|p| (p.node, p.desired))
        .collect()
}

#[test]
fn a_load_balancer_written_with_app_only_binds_that_app() {
    // A record as the release before the selector wrote it.
    let old = r#"{"app":"web","ports":[{"port":80,"protocol":"TCP"}]}"#;
    let spec: LoadBalancerSpec = serde_json::from_str(old).expect("old record");
    assert_eq!(
        spec.app_selector(),
        BTreeMap::from([("app".to_string(), "web".to_string())])
    );
    assert_eq!(spec.owner_app(), Some("web"));
    assert!(spec.binds("web", &BTreeMap::new()));
    assert!(!spec.binds("api", &BTreeMap::new()));
    let both: LoadBalancerSpec =
        serde_json::from_str(r#"{"selector":{"tier":"front"},"ports":[{"port":80}]}"#)
            .expect("selector");
    let front = BTreeMap::from([("tier".to_string(), "front".to_string())]);
    assert!(both.binds("web", &front) && both.binds("api", &front));
    assert!(!both.binds("db", &BTreeMap::new()));
    assert_eq!(both.owner_app(), None);
    let problems = crate::resources::validate(
        ResourceKind::LoadBalancers,
        "x",
        &lb(&[("app", "api")], Some("web")),
    )
    .expect_err("contradiction")
    .to_string();
    assert!(problems.contains("selector.app"), "{problems}");
    let problems = crate::resources::validate(ResourceKind::LoadBalancers, "x", &lb(&[], None))
        .expect_err("binds nothing")
        .to_string();
    assert!(
        problems.contains("bind the load balancer to apps"),
        "{problems}"
    );
}

#[test]
fn a_database_of_the_release_before_gets_its_records_on_open() {
    let (_d, s) = site();
    s.publish("shop", "web", None, &["n1".into()], 3)
        .expect("publish web");
    // As the release before left it: no records, no marker.
    let txn = s.database().begin_write().expect("txn");
    {
        let mut meta = txn.open_table(super::META).expect("meta");
        meta.remove("resource_publications").expect("marker");
        txn.delete_table(super::RESOURCE_PUBS).expect("drop");
    }
    txn.commit().expect("commit");
    let s = RedbControllerStore::open(s.database().clone(), test_sealer()).expect("reopen");
    let pub1 = vec![("n1".to_string(), ResourceDesired::Published)];
    assert_eq!(nodes_of(&s, ResourceKind::ConfigMaps, "settings"), pub1);
    assert_eq!(nodes_of(&s, ResourceKind::LoadBalancers, "web-lb"), pub1);
    assert_eq!(nodes_of(&s, ResourceKind::Routes, "www"), pub1);
    // Once: records taken down later are not made again on the next open.
    s.forget_resource_publications("shop", "n1", &[(ResourceKind::Routes, "www".into())])
        .expect("forget");
    let s = RedbControllerStore::open(s.database().clone(), test_sealer()).expect("reopen");
    assert!(nodes_of(&s, ResourceKind::Routes, "www").is_empty());
}

/// Nothing outside this module names the database crate (lib.rs opens this
/// store for the composition root): the rest of the controller works
/// through `ControllerStore` alone.
#[test]
fn only_the_embedded_store_names_redb() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let own = src.join("store").join("redb");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut naming = Vec::new();
    for f in files {
        if f.starts_with(&own) || f == src.join("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read");
        let names_it = text.lines().any(|l| {
            let code = l.trim_start();
            !code.starts_with("//")
                && (code.starts_with("use redb")
                    || l.replace("self::redb::", "").contains("redb::"))
        });
        if names_it {
            naming.push(f.strip_prefix(&src).unwrap_or(&f).display().to_string());
        }
    }
    assert!(
        naming.is_empty(),
        "redb named outside store/redb: {naming:?}"
    );
}

/// The rules every apply asks (what the app left behind on its node) and
/// a resource record's read do not wait for the writers' lock when there
/// is nothing to find: a publish to a fleet asks them once per node, and
/// each wait sat behind the reconcilers' commits.
#[test]
fn rules_with_nothing_on_the_node_do_not_wait_for_writers() {
    let (_d, s) = site();
    let writer = s.database().begin_write().expect("hold the writers' lock");
    let reader = s.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let config = reader.config_left_behind("shop", "n1").expect("config");
        let network = reader.network_left_alone("shop", "n1").expect("network");
        let record = reader
            .get_resource_publication(&crate::resources::ResourcePublicationKey {
                project: "shop".into(),
                kind: ResourceKind::ConfigMaps,
                name: "settings".into(),
                node: "n1".into(),
            })
            .expect("record");
        let _ = tx.send((config.len(), network.len(), record.is_none()));
    });
    // A bound for a loaded machine, not a measure: before, these waited
    // for as long as the write transaction stayed open.
    let answer = rx.recv_timeout(std::time::Duration::from_secs(60));
    writer.abort().expect("abort");
    assert_eq!(
        answer.expect("answered while a writer held the lock"),
        (0, 0, true)
    );
}
