//! Resources that travel with apps: publish order, secrets sealed at rest and
//! never shown, volume lifecycle rules, cascade unpublish keeping what others use.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn error(v: &serde_json::Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_travel_with_apps() {
    let world = World::new();
    world.resolver.tag("shop/web:1", &digest("web"));
    world.resolver.tag("shop/api:1", &digest("api"));
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    edge.lock().expect("lock").gate_open = true;
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;

    config_secret_and_volume_are_created_and_the_secret_never_shown(&h).await;
    two_apps_use_them(&h).await;
    network_resources_follow_their_rules(&h).await;
    publishing_writes_config_secret_and_claim_first_and_network_last(&h, &world).await;
    volume_rules_hold_while_web_is_published(&h).await;
    changing_a_shared_config_map_applies_both_apps_again(&h, &world).await;
    a_cascade_keeps_what_api_still_uses(&h, &world).await;
    a_released_volume_is_unbound_then_deleted(&h).await;

    let world = h.stop().await;
    // Sealed at rest: the plain value is nowhere in the database file.
    let db = std::fs::read(world.dir.path().join("berth.redb")).expect("db");
    assert!(!db.windows(7).any(|w| w == b"hunter2"));
}

const BASE: &str = "/api/v1/projects/shop";

async fn config_secret_and_volume_are_created_and_the_secret_never_shown(h: &Harness) {
    let (s, v) = h
        .post(
            &format!("{BASE}/configmaps"),
            json!({"name": "settings", "data": {"app.conf": "x=1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/secrets"),
            json!({"name": "db", "data": {"password": "hunter2"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(!v.to_string().contains("hunter2"), "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/volumes"),
            json!({"name": "data", "capacity": "1Gi"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["spec"]["storage_class"], "local-storage");
    let (s, v) = h.get(&format!("{BASE}/secrets")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["spec"]["keys"], json!(["password"]));
    assert!(!v.to_string().contains("hunter2"), "{v}");
    let (_, v) = h.get(&format!("{BASE}/secrets/db")).await;
    assert!(!v.to_string().contains("hunter2"), "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/volumes"),
            json!({"name": "bad", "capacity": "lots"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("capacity"), "{v}");
}

async fn two_apps_use_them(h: &Harness) {
    let web = json!({"name": "web", "spec": {"kind": "Deployment", "containers": [{
    "name": "web", "image": "shop/web:1",
    "ports": [{"name": "http", "container_port": 8080}],
    "env_from": [{"secret": "db"}],
    "volume_mounts": [
        {"name": "conf", "mount_path": "/etc/web"},
        {"name": "data", "mount_path": "/var/lib/web"}
    ]}],
    "volumes": [
        {"name": "conf", "config_map": "settings"},
        {"name": "data", "persistent_volume_claim": "data"}
    ]}});
    let (s, v) = h.post(&format!("{BASE}/apps"), web).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let api = json!({"name": "api", "spec": {"kind": "Deployment", "containers": [{
        "name": "api", "image": "shop/api:1",
        "volume_mounts": [{"name": "conf", "mount_path": "/etc/api"}]}],
        "volumes": [{"name": "conf", "config_map": "settings"}]}});
    let (s, v) = h.post(&format!("{BASE}/apps"), api).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// Load balancer, route, EIP; the rules on them.
async fn network_resources_follow_their_rules(h: &Harness) {
    let (s, v) = h
        .post(
            &format!("{BASE}/loadbalancers"),
            json!({"name": "web-lb", "app": "web",
            "ports": [{"port": 80, "target_port": 8080}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/loadbalancers"),
            json!({"name": "api-lb", "app": "api",
            "type": "LoadBalancer", "ports": [{"port": 443}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/loadbalancers"),
            json!({"name": "x", "app": "nope", "ports": [{"port": 1}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("no app shop/nope"), "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/routes"),
            json!({"name": "api", "host": "api.example.com",
            "load_balancer": "api-lb", "port": 443}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        error(&v).contains("rule: a route needs a ClusterIP load balancer"),
        "{v}"
    );
    let (s, v) = h
        .post(
            &format!("{BASE}/routes"),
            json!({"name": "www", "host": "shop.example.com",
            "load_balancer": "web-lb", "port": 80}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/eips"),
            json!({"name": "public", "address": "203.0.113.7",
            "load_balancer": "web-lb"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .call(
            Method::PUT,
            &format!("{BASE}/loadbalancers/web-lb"),
            Some(json!({"app": "web",
            "type": "LoadBalancer", "ports": [{"port": 80}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error(&v).contains("route www"), "{v}");
    let (s, v) = h
        .call(
            Method::DELETE,
            &format!("{BASE}/loadbalancers/web-lb"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error(&v).contains("rule: a load balancer in use"), "{v}");
    h.call(
        Method::DELETE,
        &format!("{BASE}/loadbalancers/api-lb"),
        None,
    )
    .await;
    let (s, v) = h
        .post(
            &format!("{BASE}/routes"),
            json!({"name": "old", "host": "old.example.com",
            "load_balancer": "web-lb", "port": 80}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = h
        .call(Method::DELETE, &format!("{BASE}/routes/old"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "not published yet: may go");
}

/// Publish: config, secret, claim before the workload; service, EIP, route after.
async fn publishing_writes_config_secret_and_claim_first_and_network_last(
    h: &Harness,
    world: &World,
) {
    h.post(
        &format!("{BASE}/apps/web/publish"),
        json!({"nodes": ["n1"]}),
    )
    .await;
    h.wait_state("shop", "web", "n1", "running").await;
    let applies = world.deployer.applies.lock().expect("lock").clone();
    assert_eq!(
        applies[0].1,
        vec![
            "settings-n1",
            "db-n1",
            "data-n1",
            "web-n1",
            "web-lb-n1",
            "public-n1",
            "www-n1"
        ]
    );
    let files = world.manifests("n1");
    assert_eq!(
        files,
        vec![
            "shop-shared-configmap-settings-n1.yaml",
            "shop-shared-persistentvolumeclaim-data-n1.yaml",
            "shop-shared-secret-db-n1.yaml",
            "shop-web-deployment-web-n1.yaml",
            "shop-web-elasticip-public-n1.yaml",
            "shop-web-ingress-www-n1.yaml",
            "shop-web-service-web-lb-n1.yaml",
        ]
    );
    let secret = world.read_manifest("n1", "shop-shared-secret-db-n1.yaml");
    assert!(secret.contains("aHVudGVyMg=="), "{secret}");
    let deployment = world.read_manifest("n1", "shop-web-deployment-web-n1.yaml");
    assert!(deployment.contains("claimName: data-n1"), "{deployment}");
    assert!(deployment.contains("name: settings-n1"), "{deployment}");
    let (_, v) = h.get(&format!("{BASE}/volumes/data")).await;
    assert_eq!(v["bindings"][0]["node"], "n1");
    assert_eq!(v["bindings"][0]["state"], "bound");
    assert_eq!(v["used_by"], json!(["web@n1"]));
}

async fn volume_rules_hold_while_web_is_published(h: &Harness) {
    let (s, v) = h
        .post(
            &format!("{BASE}/volumes/data/release"),
            json!({"node": "n1", "confirm": "data"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        error(&v).contains("rule: a volume cannot be released while an app using it is published"),
        "{v}"
    );
    let (s, v) = h
        .post(
            &format!("{BASE}/volumes/data/unbind"),
            json!({"node": "n1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        error(&v).contains("rule: a volume is unbound only after it is released"),
        "{v}"
    );
    let (s, v) = h
        .call(
            Method::DELETE,
            &format!("{BASE}/volumes/data?confirm=data"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        error(&v).contains("only be deleted after it is released"),
        "{v}"
    );
    let (s, v) = h
        .call(
            Method::PUT,
            &format!("{BASE}/volumes/data"),
            Some(json!({"capacity": "2Gi"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        error(&v).contains("rule: a volume's capacity cannot change"),
        "{v}"
    );
    let (s, v) = h
        .call(Method::DELETE, &format!("{BASE}/routes/www"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        error(&v).contains("rule: a resource is deleted only when it is published nowhere; route www is published on n1"),
        "{v}"
    );
    let (s, v) = h
        .call(Method::DELETE, &format!("{BASE}/configmaps/settings"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error(&v).contains("used by published web@n1"), "{v}");
}

/// A second app shares the config map; changing it applies both again.
async fn changing_a_shared_config_map_applies_both_apps_again(h: &Harness, world: &World) {
    h.post(
        &format!("{BASE}/apps/api/publish"),
        json!({"nodes": ["n1"]}),
    )
    .await;
    h.wait_state("shop", "api", "n1", "running").await;
    let before = world.deployer.apply_count("n1");
    let (s, v) = h
        .call(
            Method::PUT,
            &format!("{BASE}/configmaps/settings"),
            Some(json!({"data": {"app.conf": "x=2"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["used_by"], json!(["api@n1", "web@n1"]));
    h.wait_for("shop", "web", "n1", "re-applied", |p| {
        p.is_some_and(|p| p.applied && p.state.label() == "running")
    })
    .await;
    wait_until("web and api applied again", Duration::from_secs(10), || {
        world.deployer.apply_count("n1") >= before + 2
    })
    .await;
    assert_eq!(world.deployer.apply_count("n1"), before + 2);
    assert!(world
        .read_manifest("n1", "shop-shared-configmap-settings-n1.yaml")
        .contains("x=2"));
}

/// Cascade: what api still uses stays, and the answer says so.
async fn a_cascade_keeps_what_api_still_uses(h: &Harness, world: &World) {
    let (s, v) = h
        .post(
            &format!("{BASE}/apps/web/unpublish"),
            json!({"nodes": ["n1"], "cascade": true}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v["kept"],
        json!([
            "config map settings kept on n1: still used by api",
            "volume data kept on n1 with its data: release it on its own (maintainer role, \"confirm\": \"data\")"
        ])
    );
    h.wait_for("shop", "web", "n1", "gone", |p| p.is_none())
        .await;
    assert_eq!(
        world.manifests("n1"),
        vec![
            "shop-api-deployment-api-n1.yaml",
            "shop-shared-configmap-settings-n1.yaml",
            "shop-shared-persistentvolumeclaim-data-n1.yaml",
        ]
    );
    // The data stays until released on its own.
    let (_, v) = h.get(&format!("{BASE}/volumes/data")).await;
    assert_eq!(v["bindings"][0]["state"], "bound");
    assert!(world
        .audit
        .has("unpublish", "ok; config map settings kept on n1"));

    let (s, v) = h
        .call(Method::DELETE, &format!("{BASE}/apps/web"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        error(&v).contains("rule: an app with load balancers cannot be deleted"),
        "{v}"
    );
}

/// Released (with its name repeated): unbind, then delete.
async fn a_released_volume_is_unbound_then_deleted(h: &Harness) {
    let (s, v) = h
        .post(
            &format!("{BASE}/volumes/data/release"),
            json!({"node": "n1"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(error(&v).starts_with("confirm: "), "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/volumes/data/release"),
            json!({"node": "n1", "confirm": "data"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = h
        .call(
            Method::DELETE,
            &format!("{BASE}/loadbalancers/web-lb"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = h
        .post(
            &format!("{BASE}/volumes/data/unbind"),
            json!({"node": "n1"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("bindings").is_none(), "{v}");
    let (s, _) = h
        .call(
            Method::DELETE,
            &format!("{BASE}/volumes/data?confirm=data"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = h
        .call(Method::DELETE, &format!("{BASE}/secrets/db"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_after_plain_unpublish_removes_the_claim() {
    let world = World::new();
    world.resolver.tag("shop/db:1", &digest("db"));
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    edge.lock().expect("lock").gate_open = true;
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;
    let base = "/api/v1/projects/shop";
    h.post(
        &format!("{base}/volumes"),
        json!({"name": "pg", "capacity": "5Gi"}),
    )
    .await;
    let (s, v) = h
        .post(
            &format!("{base}/apps"),
            json!({"name": "db", "spec": {"kind": "StatefulSet",
            "containers": [{"name": "pg", "image": "shop/db:1",
                "volume_mounts": [{"name": "pg", "mount_path": "/var/lib/postgresql"}]}],
            "volumes": [{"name": "pg", "persistent_volume_claim": "pg"}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    h.post(&format!("{base}/apps/db/publish"), json!({"nodes": ["n1"]}))
        .await;
    h.wait_state("shop", "db", "n1", "running").await;
    // Without cascade the data stays on the node.
    h.post(
        &format!("{base}/apps/db/unpublish"),
        json!({"nodes": ["n1"]}),
    )
    .await;
    h.wait_for("shop", "db", "n1", "gone", |p| p.is_none())
        .await;
    assert_eq!(
        world.manifests("n1"),
        vec!["shop-shared-persistentvolumeclaim-pg-n1.yaml"]
    );
    let (s, v) = h
        .post(
            &format!("{base}/volumes/pg/release"),
            json!({"node": "n1", "confirm": "pg"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["bindings"][0]["state"], "released");
    assert!(world.manifests("n1").is_empty());
    // Publishing again binds it again.
    h.post(&format!("{base}/apps/db/publish"), json!({"nodes": ["n1"]}))
        .await;
    h.wait_state("shop", "db", "n1", "running").await;
    let (_, v) = h.get(&format!("{base}/volumes/pg")).await;
    assert_eq!(v["bindings"][0]["state"], "bound");
    h.stop().await;
}
