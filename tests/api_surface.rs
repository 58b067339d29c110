//! The admin and controller APIs' loose ends, against the built binary: what
//! bodies they take (JSON with or without a Content-Type, never forms, never
//! unknown fields), what a 405 says, the repository names the tags endpoint
//! takes, refused calls in the audit log (one vocabulary, bounded), the
//! initial admin password file, `serve` on a port it cannot have, and logs
//! without colour codes.

use std::time::Duration;

use berth_testkit::berth::{self, Registry, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::http::{basic, client_from, push_image, send, Auth};
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// Sends `body` with exactly the `Content-Type` given (none if `None`) as admin.
fn raw(
    reg: &Registry,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = Client::new()
        .request(m, format!("{}{path}", reg.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(body.to_string());
    if let Some(ct) = ctype {
        rb = rb.header("Content-Type", ct);
    }
    let res = rb.send().expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let v = serde_json::from_str(&res.text().unwrap_or_default()).unwrap_or(Value::Null);
    (status, v, headers)
}

#[test]
fn bodies_are_json_with_known_fields_and_never_forms() {
    let reg = berth::registry(berth_bin!());
    // A misspelt field is named, and nothing is created.
    let (s, v, _) = raw(
        &reg,
        "POST",
        "/api/v1/projects",
        Some("application/json"),
        r#"{"name":"typo","publik":true}"#,
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("publik"), "{v}");
    let (s, _, _) = raw(&reg, "GET", "/api/v1/projects/typo", None, "");
    assert_eq!(s, 404, "the refused project must not exist");
    for (path, body) in [
        (
            "/api/v1/users",
            r#"{"name":"u1","password":"initial123","role":"x"}"#,
        ),
        (
            "/api/v1/projects/typo/robots",
            r#"{"name":"r","access":"pull","scope":"*"}"#,
        ),
        (
            "/api/v1/clusters",
            r#"{"name":"c1","kubeconfig":"x","colour":"red"}"#,
        ),
    ] {
        let (s, v, _) = raw(&reg, "POST", path, Some("application/json"), body);
        assert!(s == 400 || s == 404, "{path}: {s} {v}");
        if s == 400 {
            let field = ["role", "scope", "colour"]
                .into_iter()
                .find(|f| body.contains(&format!("\"{f}\"")))
                .unwrap_or_default();
            assert!(
                v["error"].as_str().unwrap_or("").contains(field),
                "{path}: {v}"
            );
        }
    }

    // JSON without a Content-Type is JSON.
    let (s, v, _) = raw(
        &reg,
        "POST",
        "/api/v1/projects",
        None,
        r#"{"name":"plain"}"#,
    );
    assert_eq!(s, 201, "{v}");
    let (s, v, _) = raw(
        &reg,
        "PATCH",
        "/api/v1/projects/plain",
        None,
        r#"{"public":true}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["public"], true);

    // What a browser can send to another site without asking is refused, on
    // the admin API and the controller's, whatever the body says.
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain;charset=UTF-8",
    ] {
        for (method, path) in [
            ("POST", "/api/v1/projects"),
            ("POST", "/api/v1/gc"),
            ("POST", "/api/v1/clusters"),
            ("POST", "/api/v1/projects/plain/apps"),
        ] {
            let (s, v, _) = raw(&reg, method, path, Some(ct), r#"{"name":"formed"}"#);
            assert_eq!(s, 415, "{method} {path} as {ct}: {v}");
            assert!(v["error"].as_str().is_some_and(|e| e.len() > 10), "{v}");
        }
    }
    let (s, _, _) = raw(&reg, "GET", "/api/v1/projects/formed", None, "");
    assert_eq!(s, 404);

    // docker's token form on /v2/token still works.
    let res = Client::new()
        .post(format!("{}/v2/token", reg.url()))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("service", "berth"),
            ("scope", "repository:plain/x:pull"),
        ])
        .send()
        .expect("token");
    assert_eq!(res.status().as_u16(), 200);
}

#[test]
fn unknown_query_parameters_are_refused_by_name_and_nothing_runs() {
    let reg = berth::registry(berth_bin!());
    let (s, v, _) = raw(&reg, "POST", "/api/v1/projects", None, r#"{"name":"qp"}"#);
    assert_eq!(s, 201, "{v}");
    // A misspelt dry run must not run a real GC.
    let (s, v, _) = raw(&reg, "POST", "/api/v1/gc?dry_rn=true", None, "");
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("dry_rn"), "{v}");
    let (s, v, _) = raw(&reg, "GET", "/api/v1/gc/runs", None, "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(0), "no GC ran: {v}");
    // A misspelt filter must not answer everything unfiltered; a misspelt
    // force must not delete a project with what it holds.
    for (method, path, param) in [
        ("GET", "/api/v1/audit?actr=admin", "actr"),
        ("GET", "/api/v1/gc/runs?limt=1", "limt"),
        ("DELETE", "/api/v1/projects/qp?forse=true", "forse"),
        ("GET", "/api/v1/projects/qp/apps/none?fromat=yaml", "fromat"),
        (
            "GET",
            "/api/v1/nodes/none/kubeconfig?project=qp&tll=60",
            "tll",
        ),
    ] {
        let (s, v, _) = raw(&reg, method, path, None, "");
        assert_eq!(s, 400, "{method} {path}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(param),
            "{method} {path}: {v}"
        );
    }
    let (s, v, _) = raw(&reg, "GET", "/api/v1/projects/qp", None, "");
    assert_eq!(s, 200, "the project is still there: {v}");
    // Known parameters still work.
    let (s, v, _) = raw(&reg, "GET", "/api/v1/audit?actor=admin&limit=5", None, "");
    assert_eq!(s, 200, "{v}");
}

#[test]
fn method_not_allowed_names_the_methods_served() {
    let reg = berth::registry(berth_bin!());
    for (method, path, want) in [
        ("GET", "/api/v1/users/bob", vec!["DELETE"]),
        ("PATCH", "/api/v1/users", vec!["GET", "POST"]),
        ("PUT", "/api/v1/clusters", vec!["GET", "POST"]),
        ("POST", "/api/v1/nodes/n1", vec!["GET", "DELETE"]),
    ] {
        let (s, v, h) = raw(&reg, method, path, None, "");
        assert_eq!(s, 405, "{method} {path}: {v}");
        let allow = h
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let listed: Vec<&str> = v["allowed"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let error = v["error"].as_str().unwrap_or("");
        for m in want {
            assert!(allow.contains(m), "{method} {path}: Allow {allow:?}");
            assert!(listed.contains(&m), "{method} {path}: allowed {v}");
            assert!(error.contains(m), "{method} {path}: error {error:?}");
        }
    }
}

#[test]
fn tags_are_listed_under_the_name_the_repository_list_gives() {
    let reg = berth::registry(berth_bin!());
    let admin = reg.admin();
    admin.create_project("pub", true);
    let auth = basic("admin", ADMIN_PASSWORD);
    let http = Client::new();
    let pushed = push_image(&http, &reg.url(), &auth, "pub/hello", "v1");
    push_image(&http, &reg.url(), &auth, "pub/team/tool", "v2");

    let (s, repos) = admin.call("GET", "/api/v1/projects/pub/repositories", None);
    assert_eq!(s, 200);
    let repos: Vec<String> = repos
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    assert!(repos.contains(&"pub/hello".to_string()), "{repos:?}");
    for name in &repos {
        let enc = name.replace('/', "%2F");
        let (s, tags) = admin.call(
            "GET",
            &format!("/api/v1/projects/pub/repositories/{enc}/tags"),
            None,
        );
        assert_eq!(s, 200, "{name}: {tags}");
        assert_eq!(tags.as_array().map(Vec::len), Some(1), "{name}: {tags}");
    }
    // The name within the project still works.
    let (s, tags) = admin.call("GET", "/api/v1/projects/pub/repositories/hello/tags", None);
    assert_eq!(s, 200);
    assert_eq!(tags[0]["digest"], pushed.digest.as_str());
    // A repository that does not exist is a 404 with a message, not [].
    for missing in ["nothing", "pub%2Fnothing", "other%2Fhello"] {
        let (s, v) = admin.call(
            "GET",
            &format!("/api/v1/projects/pub/repositories/{missing}/tags"),
            None,
        );
        assert_eq!(s, 404, "{missing}: {v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("no repository")),
            "{v}"
        );
    }
    // Deleting takes the listed name too.
    let (s, v) = admin.call(
        "DELETE",
        "/api/v1/projects/pub/repositories/pub%2Fteam%2Ftool/tags/v2",
        None,
    );
    assert_eq!(s, 204, "{v}");
}

fn audit_events(admin: &berth::Admin, query: &str) -> Vec<Value> {
    let (s, v) = admin.call("GET", &format!("/api/v1/audit?limit=10000&{query}"), None);
    assert_eq!(s, 200, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn refused_calls_are_audited_in_one_vocabulary_and_a_flood_is_bounded() {
    let reg = berth::registry(berth_bin!());
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("alice", "alice-pass1");
    let base = reg.url();
    let http = client_from("127.0.0.1");
    let alice = basic("alice", "alice-pass1");
    // 403 on the admin API, 401 without credentials, on the controller API,
    // and a push alice may not make.
    let a = send(&http, "GET", &format!("{base}/api/v1/users"), &alice, None);
    assert_eq!(a.status, 403);
    let cluster = serde_json::to_vec(&json!({"name": "c1", "kubeconfig": berth::kubeconfig("t")}))
        .expect("json");
    let a = send(
        &http,
        "GET",
        &format!("{base}/api/v1/audit"),
        &Auth::None,
        None,
    );
    assert_eq!(a.status, 401);
    let a = send(
        &http,
        "POST",
        &format!("{base}/api/v1/clusters"),
        &alice,
        Some(("application/json", cluster)),
    );
    assert_eq!(a.status, 403, "{a:?}");
    let a = send(
        &http,
        "GET",
        &format!("{base}/api/v1/nodes"),
        &Auth::Bearer("not-a-token".into()),
        None,
    );
    assert_eq!(a.status, 401, "{a:?}");
    let a = send(
        &http,
        "POST",
        &format!("{base}/v2/team/app/blobs/uploads/"),
        &alice,
        None,
    );
    assert_eq!(a.status, 403, "{a:?}");
    let a = send(
        &http,
        "GET",
        &format!("{base}/api/v1/users"),
        &basic("alice", "wrong"),
        None,
    );
    assert_eq!(a.status, 401);

    let events = admin.audit_until("outcome=refused", "the refused calls", |e| {
        let has = |actor: &str, target: &str| {
            e.iter().any(|x| {
                x["actor"] == actor
                    && x["target"].as_str().is_some_and(|t| t.starts_with(target))
                    && x["outcome"] == "refused"
                    && x["detail"].as_str().is_some_and(|d| !d.is_empty())
            })
        };
        has("alice", "GET /api/v1/users")
            && has("anonymous", "GET /api/v1/audit")
            && has("alice", "POST /api/v1/clusters")
            && has("bearer token", "GET /api/v1/nodes")
            && has("alice", "POST /v2/team/app/blobs/uploads")
            && e.iter()
                .any(|x| x["action"] == "login" && x["actor"] == "alice")
    });
    let push = events
        .iter()
        .find(|x| {
            x["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("POST /v2/"))
        })
        .expect("push");
    assert_eq!(push["project"], "team", "{push}");
    // A wrong password is one event (the login), not two.
    let wrong: Vec<&Value> = events
        .iter()
        .filter(|x| x["actor"] == "alice" && x["client"] == "127.0.0.1")
        .filter(|x| x["action"] == "login" || x["target"] == "GET /api/v1/users")
        .collect();
    assert_eq!(wrong.len(), 2, "the 403 and the failed login: {wrong:#?}");

    // One vocabulary everywhere, the admin's own changes included.
    let all = audit_events(&admin, "");
    for e in &all {
        let o = e["outcome"].as_str().unwrap_or("");
        assert!(["ok", "refused", "failed"].contains(&o), "{e}");
    }
    assert!(all
        .iter()
        .any(|e| e["action"] == "project.create" && e["outcome"] == "ok"));

    // A flood of 401s from one address adds a bounded number of events.
    let flood = client_from("127.0.0.9");
    for i in 0..300 {
        let auth = if i % 2 == 0 {
            Auth::None
        } else {
            basic("nobody", "guess")
        };
        let a = send(
            &flood,
            "GET",
            &format!("{base}/api/v1/projects"),
            &auth,
            None,
        );
        assert!(a.status == 401 || a.status == 429, "{a:?}");
    }
    // Audit writes leave the request path; wait until the count settles.
    let mut last = usize::MAX;
    let from_flood =
        berth_testkit::wait_until("the audit log to settle", Duration::from_secs(10), || {
            let n = audit_events(&admin, "outcome=refused")
                .iter()
                .filter(|e| e["client"] == "127.0.0.9")
                .count();
            let settled = n == last && n > 0;
            last = n;
            std::thread::sleep(Duration::from_millis(300));
            settled.then_some(n)
        });
    assert!(
        from_flood <= 20,
        "300 refused calls from one address recorded {from_flood} events"
    );
}

#[test]
fn the_initial_password_file_goes_once_the_password_is_reset() {
    let reg = berth::registry_with(berth_bin!(), &[], &[("BERTH_ADMIN_PASSWORD", "")]);
    let file = reg.data_dir.join("admin-password");
    let initial = std::fs::read_to_string(&file).expect("initial password file");
    let initial = initial.trim();
    let admin = reg.admin().as_user("admin", initial);
    let (s, v) = admin.call(
        "PUT",
        "/api/v1/users/admin/password",
        Some(json!({"old_password": initial, "new_password": "a-new-pass-1"})),
    );
    assert_eq!(s, 204, "{v}");
    assert!(!file.exists(), "the initial password file is still there");
    let (s, _) = reg
        .admin()
        .as_user("admin", "a-new-pass-1")
        .call("GET", "/api/v1/users", None);
    assert_eq!(s, 200);
}

#[test]
fn serve_on_a_port_it_cannot_have_creates_nothing_and_says_so_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let mut child = std::process::Command::new(berth_bin!())
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(&data)
        .env_remove("BERTH_ADMIN_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let status = berth_testkit::proc::exit_within(
        &mut child,
        Duration::from_secs(30),
        "berth serve to give up",
    );
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "{text}");
    assert_eq!(text.matches("cannot listen on").count(), 1, "{text}");
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(!data.exists(), "the data directory was created: {text}");
    assert!(!text.contains("initial password"), "{text}");
    drop(taken);
}

#[test]
fn logs_carry_no_colour_codes_into_a_file() {
    let reg = berth::registry(berth_bin!());
    let (s, _) = reg.admin().call("GET", "/api/v1/users", None);
    assert_eq!(s, 200);
    let log = reg.server.log();
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in the log: {log:?}");
}
