//! Apps as Kubernetes YAML over HTTP: the example app file, export -> create
//! without loss, refusals with the field's path (nothing left behind), clones.

mod common;

use axum::http::StatusCode;
use common::{Harness, World};
use serde_json::{json, Value};

const EXAMPLE: &str = include_str!("../../examples/app.yaml");

async fn post_yaml(h: &Harness, project: &str, yaml: &str) -> (StatusCode, Value) {
    let resp = h
        .http
        .post(format!("{}/api/v1/projects/{project}/apps", h.url))
        .basic_auth("admin", Some("secret"))
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .expect("request");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    (status, resp.json().await.expect("json answer"))
}

async fn export(h: &Harness, path: &str, accept: Option<&str>) -> String {
    let mut rb = h
        .http
        .get(format!("{}{path}", h.url))
        .basic_auth("admin", Some("secret"));
    if let Some(a) = accept {
        rb = rb.header("accept", a);
    }
    let resp = rb.send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().expect("ascii"),
        "application/yaml"
    );
    resp.text().await.expect("text")
}

async fn delete(h: &Harness, path: &str) {
    let (s, v) = h.call(reqwest::Method::DELETE, path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{path}: {v}");
}

/// The app's resources as the API shows them.
async fn resources(h: &Harness) -> Vec<Value> {
    let mut out = Vec::new();
    for (kind, name) in [
        ("configmaps", "web-settings"),
        ("secrets", "web-keys"),
        ("volumes", "web-data"),
        ("loadbalancers", "web"),
        ("routes", "web"),
    ] {
        let (s, mut v) = h.get(&format!("/api/v1/projects/shop/{kind}/{name}")).await;
        assert_eq!(s, StatusCode::OK, "{kind}/{name}: {v}");
        for k in ["created_at", "updated_at", "used_by"] {
            v.as_object_mut().map(|o| o.remove(k));
        }
        out.push(v);
    }
    out
}

#[tokio::test]
async fn the_example_app_file_creates_an_app_and_export_reads_back_the_same() {
    let h = Harness::start(World::new()).await;
    let (s, created) = post_yaml(&h, "shop", EXAMPLE).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "web");
    let spec = created["latest"]["spec"].clone();
    assert_eq!(spec["kind"], "Deployment");
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["labels"], json!({"tier": "front"}));
    assert_eq!(spec["containers"][0]["image"], "shop/web:1.0");
    assert_eq!(spec["containers"][0]["env_from"][0]["secret"], "web-keys");
    let before = resources(&h).await;
    assert_eq!(before[1]["spec"]["keys"], json!(["API_KEY"]));
    assert_eq!(before[3]["spec"]["ports"][0]["target_port"], 8080);

    let yaml = export(&h, "/api/v1/projects/shop/apps/web?format=yaml", None).await;
    let by_accept = export(
        &h,
        "/api/v1/projects/shop/apps/web",
        Some("application/yaml"),
    )
    .await;
    assert_eq!(yaml, by_accept);
    assert!(
        !yaml.contains("change-me"),
        "secret values stay in berth:\n{yaml}"
    );

    // Take the app away (its route and load balancer first), create it from the export.
    delete(&h, "/api/v1/projects/shop/routes/web").await;
    delete(&h, "/api/v1/projects/shop/loadbalancers/web").await;
    delete(&h, "/api/v1/projects/shop/apps/web").await;
    let (s, again) = post_yaml(&h, "shop", &yaml).await;
    assert_eq!(s, StatusCode::CREATED, "{again}\n{yaml}");
    assert_eq!(again["latest"]["spec"], spec);
    assert_eq!(resources(&h).await, before);
    assert_eq!(
        export(&h, "/api/v1/projects/shop/apps/web?format=yaml", None).await,
        yaml
    );
    h.stop().await;
}

#[tokio::test]
async fn a_field_berth_does_not_model_is_refused_by_path_and_nothing_is_left() {
    let h = Harness::start(World::new()).await;
    let yaml = EXAMPLE.replace(
        "      - name: web\n        image: shop/web:1.0\n",
        "      - name: web\n        image: shop/web:1.0\n        stdin: true\n",
    );
    let (s, v) = post_yaml(&h, "shop", &yaml).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"].as_str().expect("error");
    assert!(
        msg.contains("Deployment/web: spec.template.spec.containers[0].stdin"),
        "{msg}"
    );
    let (s, _) = h.get("/api/v1/projects/shop/configmaps/web-settings").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The app exists already: what this request created before that is undone.
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps",
            common::app_body("web", &["shop/web:1.0"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = post_yaml(&h, "shop", EXAMPLE).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    for kind in [
        "configmaps/web-settings",
        "secrets/web-keys",
        "volumes/web-data",
    ] {
        let (s, v) = h.get(&format!("/api/v1/projects/shop/{kind}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{kind} left behind: {v}");
    }
    assert!(h.world.audit.has("app.create", "refused"));

    // A resource the project has with other content is not overwritten.
    let (s, v) = h
        .post(
            "/api/v1/projects/third/configmaps",
            json!({"name": "web-settings", "data": {"other": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = post_yaml(&h, "third", EXAMPLE).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]
            .as_str()
            .expect("error")
            .contains("exists with other content"),
        "{v}"
    );
    let (s, v) = post_yaml(&h, "other", EXAMPLE).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "another project is independent: {v}"
    );
    h.stop().await;
}

#[tokio::test]
async fn clone_copies_the_template_and_attaches_volumes() {
    let h = Harness::start(World::new()).await;
    let (s, v) = post_yaml(&h, "shop", EXAMPLE).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/volumes",
            json!({"name": "archive", "capacity": "5Gi"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/clone",
            json!({"name": "web-b", "add_volumes": [{"volume": "archive", "mount_path": "/archive"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let spec = &v["latest"]["spec"];
    let (_, web) = h.get("/api/v1/projects/shop/apps/web").await;
    let source = &web["latest"]["spec"];
    // A local volume belongs to one app: the source's (web-data) stays with
    // it, and the clone has the one it was given where the source had its.
    let claims = |spec: &serde_json::Value, claim: &str| {
        spec["volumes"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["persistent_volume_claim"] == claim))
    };
    assert!(
        claims(source, "web-data") && !claims(spec, "web-data"),
        "{spec}"
    );
    assert!(
        spec["volumes"]
            .as_array()
            .expect("volumes")
            .contains(&json!({"name": "archive", "persistent_volume_claim": "archive"})),
        "{spec}"
    );
    let mounts = spec["containers"][0]["volume_mounts"]
        .as_array()
        .expect("mounts");
    let source_mounts = source["containers"][0]["volume_mounts"]
        .as_array()
        .expect("mounts");
    assert!(
        mounts.contains(&json!({"name": "archive", "mount_path": "/archive"})),
        "{spec}"
    );
    assert_eq!(
        mounts.len(),
        source_mounts.len(),
        "one local volume for another: {spec}"
    );
    assert_eq!(v["latest"]["summary"], "cloned from app web version 1");
    // Everything else is the source's.
    assert_eq!(
        spec["containers"][0]["image"],
        source["containers"][0]["image"]
    );
    assert_eq!(spec["replicas"], source["replicas"]);
    assert_eq!(
        spec["volumes"].as_array().map(Vec::len),
        source["volumes"].as_array().map(Vec::len),
        "{spec}"
    );

    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/clone",
            json!({"name": "web-c", "add_volumes": [{"volume": "nope", "mount_path": "/x"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]
            .as_str()
            .expect("error")
            .contains("add_volumes[0].volume"),
        "{v}"
    );
    let (s, _) = h
        .post(
            "/api/v1/projects/shop/apps/missing/clone",
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.stop().await;
}
