//! The API's refusals: statuses and JSON messages a person can act on.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn error(v: &serde_json::Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_what_to_do() {
    let world = World::new();
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;

    unauthenticated_and_unauthorized_calls_are_refused_before_anything_happens(&h, &world).await;
    invalid_clusters_are_refused_and_kubeconfig_secrets_stay_inside(&h).await;
    invalid_or_duplicate_nodes_are_refused_and_a_cluster_with_nodes_stays(&h, &edge_url, &edge)
        .await;
    a_kubeconfig_export_needs_a_project(&h).await;
    invalid_apps_are_refused_with_every_problem_named(&h).await;
    publishes_to_unknown_nodes_versions_or_fields_are_refused(&h).await;
    the_directory_deployer_says_it_cannot_show_logs(&h).await;
    a_published_app_cannot_be_deleted(&h, &world).await;
    h.stop().await;
}

async fn unauthenticated_and_unauthorized_calls_are_refused_before_anything_happens(
    h: &Harness,
    world: &World,
) {
    let resp = reqwest::get(format!("{}/api/v1/clusters", h.url))
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    let (s, v) = h
        .call_as(
            ("viewer", "view"),
            Method::POST,
            "/api/v1/clusters",
            Some(json!({"name": "x", "kubeconfig": ""})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(error(&v).contains("may not"));
    assert!(
        world.audit.records.lock().expect("lock").is_empty(),
        "refused before doing anything"
    );
}

async fn invalid_clusters_are_refused_and_kubeconfig_secrets_stay_inside(h: &Harness) {
    let (s, v) = h
        .post(
            "/api/v1/clusters",
            json!({"name": "Edge_1", "kubeconfig": "clusters: []"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        error(&v).contains("name: \"Edge_1\" is not a valid name"),
        "{v}"
    );
    assert!(error(&v).contains("current-context"), "{v}");
    let (s, v) = h.post("/api/v1/clusters", json!({"name": "edge"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("missing field `kubeconfig`"), "{v}");
    // A form is refused for what it is (browsers send forms across sites)...
    let resp = h
        .http
        .post(format!("{}/api/v1/clusters", h.url))
        .basic_auth("admin", Some("secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=edge")
        .send()
        .await
        .expect("post");
    assert!(
        [StatusCode::BAD_REQUEST, StatusCode::UNSUPPORTED_MEDIA_TYPE].contains(&resp.status()),
        "{}",
        resp.status()
    );
    let v: serde_json::Value = resp.json().await.expect("json");
    assert!(error(&v).contains("Content-Type: application/json"), "{v}");
    // ...while a body without a Content-Type is read as JSON (curl -d @file).
    let resp = h
        .http
        .post(format!("{}/api/v1/clusters", h.url))
        .basic_auth("admin", Some("secret"))
        .body("name=edge")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert!(error(&v).contains("not valid"), "{v}");

    h.add_cluster().await;
    let (s, v) = h
        .post(
            "/api/v1/clusters",
            json!({"name": "edge", "kubeconfig": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = h.get("/api/v1/clusters").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["server"], "https://10.0.0.1:6443");
    assert!(
        !v.to_string().contains("cluster-token"),
        "kubeconfig secrets stay inside: {v}"
    );
    let (s, v) = h.get("/api/v1/clusters/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error(&v).contains("no cluster named \"nope\""));
}

async fn invalid_or_duplicate_nodes_are_refused_and_a_cluster_with_nodes_stays(
    h: &Harness,
    edge_url: &str,
    edge: &Edge,
) {
    let (s, v) = h
        .post(
            "/api/v1/nodes",
            json!({"name": "n1", "cluster": "nope", "edge_url": "ftp://x"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("http:// or https://"), "{v}");
    assert!(
        error(&v).contains("no cluster named \"nope\"") || error(&v).contains("edge_url"),
        "{v}"
    );
    h.add_node("n1", edge_url, edge, json!({"site": "a"})).await;
    let (s, v) = h
        .post(
            "/api/v1/nodes",
            json!({"name": "n1", "cluster": "edge", "edge_url": edge_url}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error(&v).contains("already exists"));
    let (s, v) = h.call(Method::DELETE, "/api/v1/clusters/edge", None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error(&v).contains("still has nodes n1"), "{v}");
}

async fn a_kubeconfig_export_needs_a_project(h: &Harness) {
    let (s, v) = h.get("/api/v1/nodes/n1/kubeconfig").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("?project="), "{v}");
    let (s, v) = h.get("/api/v1/nodes/n1/kubeconfig?project=shop").await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().expect("yaml text");
    let kc: serde_yaml::Value = serde_yaml::from_str(text).expect("yaml");
    assert_eq!(
        kc["contexts"][0]["context"]["namespace"].as_str(),
        Some("shop")
    );
}

async fn invalid_apps_are_refused_with_every_problem_named(h: &Harness) {
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps",
            json!({"name": "web", "spec": {"kind": "CronJob", "containers": [
                {"name": "a", "image": "shop/a:1", "ports": [{"container_port": 0}]},
                {"name": "a", "image": "shop/b"}
            ], "schedule": "61 * * * *"}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let msg = error(&v);
    for part in [
        "containers[0].ports[0].container_port: port 0 is outside 1-65535",
        "containers[1].name: container name \"a\" is used twice",
        "neither a tag nor a digest",
        "schedule: minute field \"61\": 61 is outside 0-59",
    ] {
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    // An image of another registry needs a proxy-cache project for its host.
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps",
            app_body("web", &["docker.io/library/nginx:1"]),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        error(&v).contains("no proxy-cache project for docker.io"),
        "{v}"
    );
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps",
            json!({"name": "web", "spec": {"kind": "Pod", "containers": []}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("unknown variant `Pod`"), "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/Shop/apps",
            app_body("web", &["shop/web:1"]),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).starts_with("project:"), "{v}");
    let (s, _) = h
        .post(
            "/api/v1/projects/shop/apps",
            app_body("web", &["shop/web:1"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps",
            app_body("web", &["shop/web:1"]),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error(&v).contains("PUT"), "{v}");
    let (s, v) = h
        .call(
            Method::PUT,
            "/api/v1/projects/shop/apps/web",
            Some(json!({"spec": {"kind": "DaemonSet", "containers": [{"name": "a", "image": "shop/a:1"}]}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error(&v).contains("kind cannot change"), "{v}");
    let (s, v) = h.get("/api/v1/projects/shop/apps/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(error(&v), "no app shop/nope");
    let (s, v) = h.get("/api/v1/projects/shop/apps/web/versions/x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("not a number"));
    let (s, v) = h.get("/api/v1/projects/shop/apps/web/versions/7").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error(&v).contains("latest is 1"), "{v}");
}

async fn publishes_to_unknown_nodes_versions_or_fields_are_refused(h: &Harness) {
    let (s, v) = h
        .post("/api/v1/projects/shop/apps/web/publish", json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("nodes"), "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n9"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("no node named n9"), "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"selector": {"site": "b"}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("no node has the labels site=b"), "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n1"], "version": 4}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error(&v).contains("no version 4"), "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"node": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("unknown field `node`"), "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/unpublish",
            json!({"nodes": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error(&v).contains("not published on n1"), "{v}");
}

async fn the_directory_deployer_says_it_cannot_show_logs(h: &Harness) {
    let (s, v) = h.get("/api/v1/projects/shop/apps/web/logs?node=n1").await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    assert!(error(&v).contains("not supported"), "{v}");
    let (s, v) = h.get("/api/v1/projects/shop/apps/web/logs").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("?node="), "{v}");
}

async fn a_published_app_cannot_be_deleted(h: &Harness, world: &World) {
    world.resolver.tag("shop/web:1", &digest("w"));
    let (s, _) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, v) = h
        .call(Method::DELETE, "/api/v1/projects/shop/apps/web", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error(&v).contains("unpublish it first"), "{v}");
    assert!(world.audit.has("app.delete", "refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_of_projects_the_actor_cannot_see_are_refused() {
    let world = World::new();
    world.resolver.tag("shop/web:1", &digest("web"));
    world.resolver.tag("vault/secret:1", &digest("secret"));
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;
    let dev = ("dev", "dev");

    let (s, v) = h
        .call_as(
            dev,
            Method::POST,
            "/api/v1/projects/shop/apps",
            Some(app_body("web", &["shop/web:1"])),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/projects/shop/apps",
            app_body("leak", &["shop/web:1", "vault/secret:1"]),
        ),
        (
            Method::PUT,
            "/api/v1/projects/shop/apps/web",
            json!({"spec": app_body("x", &["vault/secret:1"])["spec"]}),
        ),
    ] {
        let (s, v) = h.call_as(dev, method, path, Some(body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(
            error(&v),
            "dev may not see project vault (the app uses images of project vault)"
        );
    }
    // Written by someone allowed, still not the developer's to publish.
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps",
            app_body("mixed", &["vault/secret:1"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .call_as(
            dev,
            Method::POST,
            "/api/v1/projects/shop/apps/mixed/publish",
            Some(json!({"nodes": ["n1"]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(world.resolver.calls().is_empty(), "nothing resolved");
    h.stop().await;
}
