//! The CLI covers the API: clusters, nodes (register, label), apps (list, show,
//! delete), repositories and tags, audit and GC status, driven as an operator
//! would against a real `berth serve`. Refusals come in one format
//! (`error: <what>: <server's reason> (HTTP n)`) and name the flags typed, not
//! the JSON fields; passwords are asked twice and never echoed on a terminal.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_testkit::berth::{self, kubeconfig, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::http::{push_image, Auth};
use serde_json::Value;

/// What one `berth` invocation did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `berth ARGS` as the administrator, with `stdin` piped in.
fn berth(base: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(berth_bin!())
        .args(args)
        .env("BERTH_URL", base)
        .env("BERTH_USER", "admin")
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_EDGE_PASSWORD")
        .env_remove("BERTH_EDGE_CONTROLLER_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running berth");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    let out = child.wait_with_output().expect("berth output");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(base: &str, args: &[&str]) -> String {
    let r = berth(base, args, "");
    assert!(r.ok, "berth {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

fn json(base: &str, args: &[&str]) -> Value {
    let out = ok(base, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("berth {args:?}: {e}: {out}"))
}

/// Fails, in the one error format, and returns stderr.
fn refused(base: &str, args: &[&str], stdin: &str) -> String {
    let r = berth(base, args, stdin);
    assert!(!r.ok, "berth {args:?} should have failed:\n{}", r.stdout);
    assert!(
        r.stderr.starts_with("error: ") && r.stderr.trim_end().lines().count() == 1,
        "one line starting with `error: `: {}",
        r.stderr
    );
    r.stderr
}

#[test]
fn clusters_and_nodes_from_the_cli() {
    let reg = berth::registry(berth_bin!());
    let base = &reg.url();
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("edge-1.yaml");
    std::fs::write(&kc, kubeconfig("cluster-token-1")).expect("kubeconfig");
    let kc = kc.to_str().expect("utf-8 path");

    // The controller's routes read a body with no Content-Type as JSON too.
    let res = reqwest::blocking::Client::new()
        .post(format!("{base}/api/v1/clusters"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(serde_json::json!({"name": "bare", "kubeconfig": kubeconfig("t")}).to_string())
        .send()
        .expect("POST");
    assert_eq!(res.status().as_u16(), 201, "{:?}", res.text());
    ok(base, &["cluster", "delete", "bare"]);

    let out = ok(base, &["cluster", "create", "edge-1", "--kubeconfig", kc]);
    assert!(out.contains("https://k8s.invalid:6443"), "{out}");
    let list = json(base, &["cluster", "list"]);
    assert_eq!(list[0]["name"], "edge-1", "{list}");
    assert!(!list.to_string().contains("cluster-token-1"), "{list}");
    assert_eq!(
        json(base, &["cluster", "show", "edge-1"])["current_context"],
        "edge"
    );
    let err = refused(
        base,
        &["cluster", "create", "bad", "--kubeconfig", "/nonexistent"],
        "",
    );
    assert!(err.contains("--kubeconfig /nonexistent"), "{err}");

    // The edge password is asked twice (from a pipe: two lines, which must
    // agree) and never shown.
    let r = berth(
        base,
        &[
            "node",
            "register",
            "node-a",
            "--cluster",
            "edge-1",
            "--edge-url",
            "http://127.0.0.1:5999",
            "--label",
            "zone=north",
            "--label",
            "tier=edge",
            "--edge-user",
            "cache",
        ],
        "edge-pass-1\nedge-pass-1\n",
    );
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let err = refused(
        base,
        &[
            "node",
            "register",
            "node-b",
            "--cluster",
            "edge-1",
            "--edge-url",
            "http://127.0.0.1:5998",
            "--edge-user",
            "cache",
        ],
        "one-password\nanother-one\n",
    );
    assert!(err.contains("differ"), "{err}");

    let node = json(base, &["node", "show", "node-a"]);
    assert_eq!(node["edge_user"], "cache", "{node}");
    assert_eq!(node["labels"]["zone"], "north", "{node}");
    // Its edge cache: nothing listens at its edge URL, which the answer says
    // (a node whose edge is down is not an error); a node that does not exist is.
    let out = ok(base, &["node", "cache", "node-a"]);
    assert!(
        out.starts_with("node node-a: edge http://127.0.0.1:5999 unreachable: "),
        "{out}"
    );
    let cache = json(base, &["node", "cache", "node-a", "--json"]);
    assert_eq!(cache["reachable"], false, "{cache}");
    let err = refused(base, &["node", "cache", "ghost"], "");
    assert!(err.contains("ghost") && err.contains("(HTTP 404)"), "{err}");
    assert!(!ok(base, &["node", "list"]).contains("edge-pass-1"));

    // Refusals name the flags typed, not the body's fields.
    let err = refused(
        base,
        &[
            "node",
            "register",
            "node-c",
            "--cluster",
            "edge-1",
            "--edge-url",
            "ftp:/x",
            "--label",
            "Bad Key=x",
        ],
        "",
    );
    assert!(
        err.contains("--edge-url")
            && err.contains("--label Bad Key")
            && !err.contains("edge_url")
            && err.contains("(HTTP 400)"),
        "{err}"
    );
    let err = refused(
        base,
        &[
            "node",
            "register",
            "node-c",
            "--cluster",
            "nope",
            "--edge-url",
            "http://x:1",
        ],
        "",
    );
    assert!(
        err.starts_with("error: cannot register node node-c: --cluster"),
        "{err}"
    );

    // Labels change in place, kubectl style; the credential stays.
    let labels = json(
        base,
        &["node", "label", "node-a", "zone=south", "tier-", "rack=r1"],
    );
    assert_eq!(labels, serde_json::json!({"zone": "south", "rack": "r1"}));
    let node = json(base, &["node", "show", "node-a"]);
    assert_eq!(node["labels"], labels);
    assert_eq!(node["edge_user"], "cache");
    let err = refused(base, &["node", "label", "node-a", "zone"], "");
    assert!(err.contains("key=value"), "{err}");
    let err = refused(base, &["node", "label", "ghost", "a=b"], "");
    assert!(err.contains("(HTTP 404)") && err.contains("ghost"), "{err}");

    // A system administrator exports the node's kubeconfig (the directory
    // deployer has no scoped one) to a file only its owner reads.
    let out = dir.path().join("node-a.kubeconfig");
    let out_s = out.to_str().expect("utf-8 path");
    ok(
        base,
        &[
            "node",
            "kubeconfig",
            "node-a",
            "--project",
            "team-a",
            "-o",
            out_s,
        ],
    );
    let text = std::fs::read_to_string(&out).expect("kubeconfig written");
    assert!(
        text.contains("namespace: team-a") && text.contains("cluster-token-1"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let err = refused(
        base,
        &[
            "node",
            "kubeconfig",
            "node-a",
            "--project",
            "team-a",
            "--ttl",
            "5",
        ],
        "",
    );
    assert!(err.contains("--ttl") && err.contains("(HTTP 400)"), "{err}");

    // The audit log, filtered from the CLI.
    let admin = reg.admin();
    admin.audit_until("action=node.label", "both label changes", |e| e.len() == 2);
    let entries = json(
        base,
        &[
            "audit",
            "--action",
            "node.label",
            "--since",
            "1h",
            "--limit",
            "5",
        ],
    );
    let targets: Vec<(&str, &str)> = entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["target"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(targets.len(), 2, "{entries}");
    assert!(targets.contains(&("node-a", "ok")), "{entries}");
    let none = json(
        base,
        &[
            "audit",
            "--action",
            "node.label",
            "--until",
            "1970-01-02T00:00:00Z",
        ],
    );
    assert_eq!(none, serde_json::json!([]));
    let err = refused(base, &["audit", "--since", "yesterday"], "");
    assert!(err.contains("--since"), "{err}");

    let err = refused(base, &["cluster", "delete", "edge-1"], "");
    assert!(
        err.contains("node-a") && err.contains("(HTTP 409)"),
        "{err}"
    );
    ok(base, &["node", "delete", "node-a"]);
    ok(base, &["cluster", "delete", "edge-1"]);
    assert_eq!(json(base, &["node", "list"]), serde_json::json!([]));
}

#[test]
fn apps_repositories_and_tags_from_the_cli() {
    let reg = berth::registry(berth_bin!());
    let base = &reg.url();
    ok(base, &["project", "create", "team-a"]);
    let http = reqwest::blocking::Client::new();
    let auth = Auth::Basic("admin".into(), ADMIN_PASSWORD.into());
    let pushed = push_image(&http, base, &auth, "team-a/tools/cli", "1.0");
    push_image(&http, base, &auth, "team-a/tools/cli", "rc1");

    assert_eq!(
        json(base, &["repo", "list", "team-a"]),
        serde_json::json!(["team-a/tools/cli"])
    );
    let shown = json(base, &["repo", "show", "team-a/tools/cli"]);
    assert_eq!(shown["tags"].as_array().map(Vec::len), Some(2), "{shown}");
    let tag = json(base, &["tag", "show", "team-a/tools/cli:1.0"]);
    assert_eq!(tag["digest"], pushed.digest.as_str(), "{tag}");
    ok(base, &["tag", "delete", "team-a/tools/cli:rc1"]);
    let tags = json(base, &["tag", "list", "team-a/tools/cli"]);
    assert_eq!(tags.as_array().map(Vec::len), Some(1), "{tags}");
    let err = refused(base, &["tag", "delete", "team-a/tools/cli:rc1"], "");
    assert!(
        err.starts_with("error: cannot delete tag team-a/tools/cli:rc1: ")
            && err.contains("(HTTP 404)"),
        "{err}"
    );
    let err = refused(base, &["tag", "show", "team-a/tools/cli"], "");
    assert!(err.contains("<project>/<repository>:<tag>"), "{err}");
    ok(base, &["repo", "delete", "team-a/tools/cli"]);
    assert_eq!(
        json(base, &["repo", "list", "team-a"]),
        serde_json::json!([])
    );
    assert_eq!(json(base, &["gc", "--status"])["running"], false);

    // The example app file in the sources is a spec the server accepts.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/web-app.json");
    ok(
        base,
        &["app", "create", "team-a/web", "-f", example, "-m", "first"],
    );
    let apps = json(base, &["app", "list", "team-a"]);
    assert_eq!(apps[0]["name"], "web", "{apps}");
    let app = json(base, &["app", "show", "team-a/web"]);
    assert!(app.to_string().contains("team-a/web:1.0"), "{app}");
    let v1 = json(base, &["app", "show", "team-a/web", "--version", "1"]);
    assert!(v1.to_string().contains("first"), "{v1}");
    let err = refused(base, &["app", "show", "team-a/web", "--version", "9"], "");
    assert!(err.contains("(HTTP 404)"), "{err}");
    ok(base, &["app", "delete", "team-a/web"]);
    assert_eq!(
        json(base, &["app", "list", "team-a"]),
        serde_json::json!([])
    );
    let err = refused(base, &["app", "show", "team-a/web"], "");
    assert!(
        err.starts_with("error: cannot show app team-a/web: "),
        "{err}"
    );
}

#[test]
fn quotas_and_immutable_tags_from_the_cli() {
    let reg = berth::registry(berth_bin!());
    let base = &reg.url();
    ok(base, &["project", "create", "store"]);
    let out = ok(base, &["project", "quota", "store", "1MiB"]);
    assert!(out.contains("0 B of 1 MiB"), "{out}");
    let http = reqwest::blocking::Client::new();
    let auth = Auth::Basic("admin".into(), ADMIN_PASSWORD.into());
    push_image(&http, base, &auth, "store/app", "v1");
    let shown = json(base, &["project", "show", "store"]);
    let used = shown["storage"]["usage"].as_u64().expect("usage");
    assert!(used > 0, "{shown}");
    assert_eq!(shown["storage"]["limit"], 1 << 20, "{shown}");
    let counted = json(base, &["project", "recount", "store"]);
    assert_eq!(
        (counted["counted"].as_u64(), counted["recounted"].as_u64()),
        (Some(used), Some(used))
    );
    let err = refused(base, &["project", "quota", "store", "plenty"], "");
    assert!(
        err.starts_with("error: cannot set the quota of project store: ")
            && err.contains("(HTTP 400)"),
        "{err}"
    );
    let out = ok(base, &["project", "quota", "store", "none"]);
    assert!(out.contains("no limit"), "{out}");

    ok(base, &["immutable", "add", "store", "v?"]);
    ok(base, &["immutable", "add", "store", "release-*"]);
    let rules = json(base, &["immutable", "list", "store"]);
    assert_eq!(rules.as_array().map(Vec::len), Some(2), "{rules}");
    let err = refused(base, &["tag", "delete", "store/app:v1"], "");
    assert!(
        err.contains("immutable") && err.contains("(HTTP 403)"),
        "{err}"
    );
    ok(base, &["immutable", "delete", "store", "v?"]);
    let err = refused(base, &["immutable", "delete", "store", "v?"], "");
    assert!(err.contains("(HTTP 404)"), "{err}");
    ok(base, &["tag", "delete", "store/app:v1"]);
}

/// `berth passwd` on a terminal: nothing typed is echoed, the new password is
/// asked twice. `script` gives the command a pseudo-terminal; each answer is
/// sent only once its prompt shows, when echo is already off.
#[test]
fn retention_rules_from_the_cli() {
    let reg = berth::registry(berth_bin!());
    let base = &reg.url();
    ok(base, &["project", "create", "keep"]);
    let http = reqwest::blocking::Client::new();
    let auth = Auth::Basic("admin".into(), ADMIN_PASSWORD.into());
    push_image(&http, base, &auth, "keep/app", "v1");
    assert_eq!(
        json(base, &["retention", "show", "keep"])["rules"],
        serde_json::json!([])
    );
    let out = ok(
        base,
        &[
            "retention",
            "set",
            "keep",
            r#"{"rules": [{"tags": "v*", "keep_last": 0}]}"#,
        ],
    );
    assert!(out.contains("1 retention rule"), "{out}");
    let shown = json(base, &["retention", "show", "keep"]);
    assert_eq!(shown["rules"][0]["tags"], "v*", "{shown}");
    let out = ok(base, &["retention", "run", "keep", "--dry-run"]);
    assert!(
        out.contains(
            "would delete keep/app:v1  goes: not among the 0 most recently pushed (rule 1)"
        ) && out.contains("dry run: 1 tag(s) would go"),
        "{out}"
    );
    let out = ok(base, &["retention", "run", "keep"]);
    assert!(out.contains("1 tag(s) deleted"), "{out}");
    let out = ok(base, &["retention", "run", "keep", "--dry-run"]);
    assert!(out.contains("0 tag(s) would go"), "{out}");
    let err = refused(
        base,
        &["retention", "set", "keep", r#"{"rules": [{"tags": "*"}]}"#],
        "",
    );
    assert!(
        err.starts_with("error: cannot set the retention rules of keep: ")
            && err.contains("keeps nothing")
            && err.contains("(HTTP 400)"),
        "{err}"
    );
    let err = refused(base, &["retention", "set", "keep", "not json"], "");
    assert!(err.contains("not JSON"), "{err}");
}

#[test]
fn passwords_on_a_terminal_are_not_echoed() {
    let reg = berth::registry(berth_bin!());
    let base = reg.url();
    let admin = reg.admin();
    admin.create_user("alice", "alice-pass1");
    let cmd = format!("{} passwd alice", berth_bin!());
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("BERTH_URL", &base)
        .env_remove("BERTH_PASSWORD")
        .env_remove("BERTH_OLD_PASSWORD")
        .env_remove("BERTH_NEW_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(seen.clone());
        }
        seen
    });
    for (prompt, answer) in [
        ("current password of alice", "alice-pass1"),
        ("new password", "alice-pass2"),
        ("the same again", "alice-pass2"),
    ] {
        loop {
            let seen = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no prompt {prompt:?}"));
            if seen.contains(prompt) {
                break;
            }
        }
        stdin
            .write_all(format!("{answer}\n").as_bytes())
            .expect("typing");
    }
    drop(stdin);
    let status = child.wait().expect("script ends");
    let seen = reader.join().expect("reader");
    assert!(status.success(), "{seen}");
    assert!(seen.contains("password of alice changed"), "{seen}");
    assert!(
        !seen.contains("alice-pass"),
        "a password was echoed: {seen}"
    );
    let (s, _) = admin
        .as_user("alice", "alice-pass2")
        .call("GET", "/api/v1/projects", None);
    assert_eq!(s, 200);
}

#[test]
fn resource_templates_from_the_cli() {
    let reg = berth::registry(berth_bin!());
    let base = &reg.url();
    ok(base, &["project", "create", "shop"]);
    let dir = tempfile::tempdir().expect("tmp");
    let yaml = dir.path().join("settings.yaml");
    std::fs::write(&yaml, "data:\n  web.toml: greeting = \"hi\"\n").expect("file");
    let yaml = yaml.to_str().expect("utf-8 path");

    let out = ok(
        base,
        &[
            "configmap",
            "create",
            "shop/settings",
            "-f",
            yaml,
            "--description",
            "web settings",
        ],
    );
    assert!(out.contains("created config map shop/settings"), "{out}");
    let shown = json(base, &["configmap", "show", "shop/settings"]);
    assert_eq!(shown["description"], "web settings", "{shown}");
    assert!(shown.to_string().contains("greeting"), "{shown}");
    let list = json(base, &["configmap", "list", "shop"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // JSON works as well as YAML; an update replaces the fields.
    let json_file = dir.path().join("settings.json");
    std::fs::write(
        &json_file,
        r#"{"data": {"web.toml": "greeting = \"hello\""}}"#,
    )
    .expect("file");
    let json_file = json_file.to_str().expect("utf-8 path");
    ok(
        base,
        &["configmap", "update", "shop/settings", "-f", json_file],
    );
    let shown = json(base, &["configmap", "show", "shop/settings"]);
    assert!(shown.to_string().contains("hello"), "{shown}");

    // Refusals name what to fix, in the one error format.
    let err = refused(
        base,
        &["configmap", "create", "shop/x", "-f", "/nonexistent"],
        "",
    );
    assert!(err.contains("-f /nonexistent"), "{err}");
    let err = refused(base, &["configmap", "show", "shop/ghost"], "");
    assert!(err.contains("(HTTP 404)"), "{err}");

    ok(base, &["configmap", "delete", "shop/settings"]);
    assert_eq!(
        json(base, &["configmap", "list", "shop"]),
        serde_json::json!([])
    );
}

#[test]
fn system_robots_from_the_cli() {
    let reg = berth::registry(berth_bin!());
    let base = &reg.url();
    let admin = reg.admin();
    admin.create_project("team-a", false);
    admin.create_project("team-b", false);

    let out = ok(
        base,
        &[
            "robot",
            "create",
            "--system",
            "edge",
            "--projects",
            "team-a,team-b",
        ],
    );
    assert!(out.contains("name:   robot$edge"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("secret printed")
        .to_string();
    assert!(secret.len() >= 32, "{out}");
    let list = json(base, &["robot", "list", "--system"]);
    assert_eq!(list[0]["name"], "robot$edge", "{list}");
    assert_eq!(list[0]["projects"], serde_json::json!(["team-a", "team-b"]));
    assert_eq!(list[0]["access"], "pull");
    assert!(!list.to_string().contains(&secret), "{list}");
    // Project robot lists do not show it.
    assert_eq!(
        json(base, &["robot", "list", "team-a"]),
        serde_json::json!([])
    );
    let out = ok(
        base,
        &["robot", "create", "--system", "all", "--projects", "*"],
    );
    assert!(out.contains("robot$all"), "{out}");
    assert_eq!(
        json(base, &["robot", "list", "--system"])[0]["projects"],
        "*"
    );

    // Refusals name the flags typed.
    let err = refused(
        base,
        &["robot", "create", "--system", "x", "--projects", "nope"],
        "",
    );
    assert!(err.contains("--projects") && err.contains("nope"), "{err}");
    let err = refused(
        base,
        &[
            "robot",
            "create",
            "--system",
            "x",
            "--projects",
            "team-a",
            "--access",
            "push",
        ],
        "",
    );
    assert!(err.contains("--access"), "{err}");
    let err = refused(base, &["robot", "create", "--system", "x"], "");
    assert!(err.contains("--projects"), "{err}");

    ok(base, &["robot", "revoke", "--system", "edge"]);
    let list = json(base, &["robot", "list", "--system"]);
    let edge = list
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == "robot$edge"))
        .expect("listed");
    assert_eq!(edge["revoked"], true, "{list}");
    let err = refused(base, &["robot", "revoke", "--system", "ghost"], "");
    assert!(err.contains("no system robot robot$ghost"), "{err}");
    admin.audit_until(
        "action=robot.revoke",
        "the revoked system robot",
        |events| events.iter().any(|e| e["target"] == "robot$edge"),
    );
}
