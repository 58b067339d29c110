//! Secret values reach the node and nowhere else: not the server's log
//! (debug level, access log on), not the audit log, not an error message,
//! not a list or a GET of the secret, not an app's export. A secret created,
//! updated, refused, published with an app to a node, taken down and deleted
//! leaves its values only in the node's rendered Secret (which is the point).

mod controller_support;

use std::time::Duration;

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::wait_until;
use controller_support::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);
const FIRST: &str = "Zq9firstSECRETvalue";
const SECOND: &str = "Zq9secondSECRETvalue";
const REFUSED: &str = "Zq9refusedSECRETvalue";

fn path(p: &str) -> String {
    format!("/api/v1/projects/{PROJECT}/{p}")
}

fn b64(v: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
}

/// Fails naming where a value was found.
fn clean(where_: &str, text: &str) {
    for v in [FIRST, SECOND, REFUSED] {
        assert!(!text.contains(v), "{where_} shows a secret value: {text}");
        // Base64, as a Secret's `data` carries it, counts too.
        let b64 = b64(v);
        assert!(
            !text.contains(&b64),
            "{where_} shows a secret value (base64): {text}"
        );
    }
}

#[test]
fn secret_values_never_reach_logs_audit_errors_or_lists() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start_with(&[
        ("BERTH_LOG_LEVEL", "debug"),
        ("BERTH_LOG_ACCESS_LOG", "true"),
    ]);
    let url = site.registry_url();
    site.add_edge("r1", &url, json!({}));
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );

    let (s, v) = site.api(
        "POST",
        &path("secrets"),
        Some(json!({"name": "creds", "data": {"password": FIRST}})),
    );
    assert_eq!(s, 201, "{v}");
    clean("the create answer", &v.to_string());
    // Refusals: a duplicate, a bad key, an unknown field next to a value.
    for body in [
        json!({"name": "creds", "data": {"password": REFUSED}}),
        json!({"name": "other", "data": {"bad key!": REFUSED}}),
        json!({"name": "other", "data": {"password": REFUSED}, "colour": REFUSED}),
        json!({"name": "Not_A_Name", "data": {"password": REFUSED}}),
    ] {
        let (s, v) = site.api("POST", &path("secrets"), Some(body));
        assert!((400..500).contains(&s), "{s} {v}");
        clean("a refusal", &v.to_string());
    }
    let (s, v) = site.api(
        "PUT",
        &path("secrets/creds"),
        Some(json!({"data": {"password": SECOND}})),
    );
    assert!(s == 200, "{s} {v}");
    clean("the update answer", &v.to_string());

    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": "acme/web:1", "env_from": [{"secret": "creds"}]}]}}));
    site.publish("web", json!({"nodes": ["r1"]}));
    site.wait_state("web", "r1", "running", LONG);
    // The node has it (the one place it belongs).
    let rendered = site.read_manifest("r1", "acme-shared-secret-creds-r1.yaml");
    let text = rendered.to_string();
    assert!(
        text.contains(&b64(SECOND)) || text.contains(SECOND),
        "the node's Secret carries the value: {rendered}"
    );

    for p in [
        path("secrets"),
        path("secrets/creds"),
        path("apps/web"),
        path("apps/web/publications"),
        "/api/v1/audit?limit=10000".to_string(),
    ] {
        let (s, v) = site.api("GET", &p, None);
        assert_eq!(s, 200, "{p}: {v}");
        clean(&p, &v.to_string());
    }
    let (s, yaml) = site
        .admin
        .get_text(&format!("{}?format=yaml", path("apps/web")));
    assert_eq!(s, 200, "{yaml}");
    clean("the app's export", &yaml);

    site.unpublish("web", json!({"nodes": ["r1"], "cascade": true}));
    wait_until("the secret off r1", LONG, || {
        if site
            .manifests("r1")
            .iter()
            .any(|f| f.contains("secret-creds"))
        {
            Err(format!("{:?}", site.manifests("r1")))
        } else {
            Ok(())
        }
    });
    let (s, v) = site.api("DELETE", &path("secrets/creds"), None);
    assert!(s == 200 || s == 204, "{s} {v}");
    // Everything the server wrote about all of it, at debug level.
    let (s, v) = site.api("GET", "/api/v1/audit?limit=10000", None);
    assert_eq!(s, 200);
    let audit: Vec<Value> = v.as_array().cloned().unwrap_or_default();
    assert!(
        audit.iter().any(|e| e["action"] == "secrets.create"),
        "audited: {v}"
    );
    clean("the audit log", &v.to_string());
    clean("the server's log", &site.registry.server.log());
    for node in &site.edges {
        clean("the edge's log", &node.process.log());
    }
}
