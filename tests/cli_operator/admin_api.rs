//! The rest of the admin API: GC and the audit log, JSON error bodies, the OpenAPI document.

use super::*;

#[test]
fn admin_api_gc_and_audit() {
    let reg = berth::registry(berth_bin!());
    let admin = reg.admin();
    let (http, base) = (Client::new(), reg.url());
    let start = unix_now();
    admin.create_project("team", false);
    admin.create_user("dev", "secret123");
    admin.add_member("team", "dev", "developer");
    admin.create_project("other", true);
    let digest = push_image(&http, &base, &basic("dev", "secret123"), "team/app", "v1").digest;
    push_image(
        &http,
        &base,
        &basic("admin", ADMIN_PASSWORD),
        "other/app",
        "v1",
    );

    // GC: dry run and real, and its last report; administrators only.
    let (s, v) = admin.call("POST", "/api/v1/gc?dry_run=true", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dry_run"], true);
    let (s, v) = admin.call("POST", "/api/v1/gc", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dry_run"], false);
    let (s, v) = admin.call("GET", "/api/v1/gc", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["running"].clone(), v["last"]["dry_run"].clone()),
        (json!(false), json!(false))
    );
    let dev = admin.as_user("dev", "secret123");
    assert_error(
        dev.call("POST", "/api/v1/gc", None),
        403,
        "not a system administrator",
    );
    assert_error(
        dev.call("GET", "/api/v1/gc", None),
        403,
        "not a system administrator",
    );
    // The pushed image survived (it is tagged).
    let (s, _) = get(
        &http,
        &format!("{base}/v2/team/app/manifests/{digest}"),
        Some(("dev", "secret123")),
    );
    assert_eq!(s, 200);

    // Audit: by actor, project, action, time.
    let audit = |q: &str| -> Vec<Value> {
        let (s, v) = admin.call("GET", &format!("/api/v1/audit?{q}"), None);
        assert_eq!(s, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    };
    wait_until(
        "audit events of the GC and the push",
        Duration::from_secs(10),
        || {
            if audit("action=gc").is_empty() || audit("actor=dev&action=push").is_empty() {
                Err(format!("{:#?}", audit("")))
            } else {
                Ok(())
            }
        },
    );
    let pushes = audit("actor=dev&action=push");
    assert_eq!(pushes.len(), 1, "{pushes:#?}");
    assert_eq!(pushes[0]["project"], "team");
    assert!(pushes[0]["target"].as_str().unwrap_or("").contains(&digest));
    assert_eq!(pushes[0]["client"], "127.0.0.1");
    assert!(audit("project=team").iter().all(|e| e["project"] == "team"));
    let actions: Vec<String> = audit("project=team")
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect();
    for a in ["project.create", "member.set", "push"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    assert!(audit("actor=admin&action=project.create").len() == 2);
    assert!(audit(&format!("since={}", unix_now() + 100)).is_empty());
    assert!(audit(&format!("until={}", start.saturating_sub(100))).is_empty());
    let all = audit(&format!("since={start}&until={}", unix_now() + 1));
    assert!(all.len() >= 6, "{all:#?}");
    // Newest first, and limit works.
    let ids: Vec<u64> = all.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(audit("limit=2").len(), 2);
    assert_error(
        dev.call("GET", "/api/v1/audit", None),
        403,
        "not a system administrator",
    );
}

/// Every error of the admin API is JSON with a message, including the ones the
/// framework produces (bad JSON, wrong content type, wrong method, bad query).
#[test]
fn admin_api_errors_are_json_with_a_message() {
    let reg = berth::registry(berth_bin!());
    let base = reg.url();
    let http = Client::new();
    let send =
        |method: reqwest::Method, path: &str, ctype: Option<&str>, body: &str, auth: bool| {
            let mut rb = http.request(method, format!("{base}{path}"));
            if auth {
                rb = rb.basic_auth("admin", Some(ADMIN_PASSWORD));
            }
            if let Some(c) = ctype {
                rb = rb.header("Content-Type", c);
            }
            let r = rb.body(body.to_string()).send().expect("admin API");
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let text = r.text().unwrap_or_default();
            (status, ct, text)
        };
    use reqwest::Method;
    let cases: Vec<(&str, (u16, String, String))> = vec![
        (
            "no credentials",
            send(Method::GET, "/api/v1/users", None, "", false),
        ),
        (
            "broken JSON",
            send(
                Method::POST,
                "/api/v1/projects",
                Some("application/json"),
                "{\"name\":",
                true,
            ),
        ),
        (
            "wrong JSON shape",
            send(
                Method::POST,
                "/api/v1/projects",
                Some("application/json"),
                "{\"nom\":\"x\"}",
                true,
            ),
        ),
        (
            "a form, which browsers send across sites",
            send(
                Method::POST,
                "/api/v1/projects",
                Some("application/x-www-form-urlencoded"),
                "name=x1",
                true,
            ),
        ),
        (
            "bad query",
            send(
                Method::DELETE,
                "/api/v1/projects/x?force=maybe",
                None,
                "",
                true,
            ),
        ),
        (
            "wrong method",
            send(Method::PATCH, "/api/v1/users", None, "", true),
        ),
        (
            "unknown project",
            send(Method::GET, "/api/v1/projects/nothing", None, "", true),
        ),
    ];
    let mut bad = Vec::new();
    for (what, (status, ct, text)) in &cases {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let msg = v["error"].as_str().unwrap_or("");
        if !(400..500).contains(status) || !ct.starts_with("application/json") || msg.len() < 10 {
            bad.push(format!("{what}: {status} {ct:?} {text:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "admin API errors that are not JSON with a message:\n{}",
        bad.join("\n")
    );
    assert_eq!(cases[0].1 .0, 401);
    assert_eq!(cases[5].1 .0, 405);
    // JSON sent with no Content-Type at all (`curl -d @project.json`) is read as JSON.
    let (status, _, text) = send(
        Method::POST,
        "/api/v1/projects",
        None,
        "{\"name\":\"x1\"}",
        true,
    );
    assert_eq!(status, 201, "{text}");
}

/// `/api/v1/openapi.json` is an OpenAPI 3 document that lists every admin
/// route, each of which the router really serves.
#[test]
fn openapi_document_lists_every_admin_route() {
    let reg = berth::registry(berth_bin!());
    let base = reg.url();
    let http = Client::new();
    let doc: Value = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .expect("openapi.json")
        .json()
        .expect("JSON");
    // OpenAPI 3 shape.
    let version = doc["openapi"].as_str().unwrap_or("");
    assert!(version.starts_with("3."), "openapi {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "$ref {r} does not resolve");
    }
    // The routes, as the router table in registry/src/admin/mod.rs has them.
    let expected: Vec<(&str, &str)> = vec![
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("delete", "/api/v1/users/{name}"),
        ("put", "/api/v1/users/{name}/password"),
        ("get", "/api/v1/projects"),
        ("post", "/api/v1/projects"),
        ("get", "/api/v1/projects/{project}"),
        ("patch", "/api/v1/projects/{project}"),
        ("delete", "/api/v1/projects/{project}"),
        ("get", "/api/v1/projects/{project}/members"),
        ("put", "/api/v1/projects/{project}/members/{user}"),
        ("delete", "/api/v1/projects/{project}/members/{user}"),
        ("get", "/api/v1/projects/{project}/robots"),
        ("post", "/api/v1/projects/{project}/robots"),
        ("delete", "/api/v1/projects/{project}/robots/{robot}"),
        ("get", "/api/v1/projects/{project}/repositories"),
        (
            "delete",
            "/api/v1/projects/{project}/repositories/{repository}",
        ),
        (
            "get",
            "/api/v1/projects/{project}/repositories/{repository}/tags",
        ),
        (
            "delete",
            "/api/v1/projects/{project}/repositories/{repository}/tags/{tag}",
        ),
        ("get", "/api/v1/gc"),
        ("post", "/api/v1/gc"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/projects/{project}/webhooks"),
        ("post", "/api/v1/projects/{project}/webhooks"),
        ("get", "/api/v1/projects/{project}/webhooks/{id}"),
        ("patch", "/api/v1/projects/{project}/webhooks/{id}"),
        ("delete", "/api/v1/projects/{project}/webhooks/{id}"),
        ("get", "/api/v1/projects/{project}/webhooks/{id}/deliveries"),
        ("post", "/api/v1/projects/{project}/usage/recount"),
        ("get", "/api/v1/projects/{project}/immutable-tags"),
        ("post", "/api/v1/projects/{project}/immutable-tags"),
        (
            "delete",
            "/api/v1/projects/{project}/immutable-tags/{pattern}",
        ),
        ("get", "/api/v1/projects/{project}/retention"),
        ("put", "/api/v1/projects/{project}/retention"),
        ("post", "/api/v1/projects/{project}/retention/run"),
    ];
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
                // Every {param} in the path is declared.
                for seg in path.split('/').filter(|s| s.starts_with('{')) {
                    let p = seg.trim_matches(['{', '}']);
                    let declared = op["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|x| x["name"] == p && x["in"] == "path"));
                    assert!(declared, "{method} {path}: path parameter {p} not declared");
                }
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    want.sort();
    // The document describes the controller's routes and /v2/token too
    // (tests/openapi_routes.rs holds it against every route).
    let missing: Vec<_> = want.iter().filter(|w| !documented.contains(w)).collect();
    assert!(
        missing.is_empty(),
        "admin routes not documented: {missing:?}"
    );

    // Each documented route is served: a JSON answer from a handler, never the
    // router's bare 404/405. Names that do not exist keep this harmless.
    for (method, path) in &want {
        let concrete = path
            .replace("{project}", "zz-none")
            .replace("{name}", "zz-none")
            .replace("{user}", "zz-none")
            .replace("{robot}", "zz-none")
            .replace("{repository}", "zz-none")
            .replace("{tag}", "zz-none")
            .replace("{id}", "zz-none")
            .replace("{pattern}", "zz-none");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut rb = http
            .request(m, format!("{base}{concrete}"))
            .basic_auth("admin", Some(ADMIN_PASSWORD));
        if ["post", "put", "patch"].contains(&method.as_str()) {
            rb = rb.json(&json!({}));
        }
        let r = rb.send().expect("request");
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        assert!(
            status != 405 && !(status == 404 && text.is_empty()),
            "{method} {concrete}: {status} {text:?} (not routed?)"
        );
    }
}
