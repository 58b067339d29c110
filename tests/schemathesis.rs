//! schemathesis (PyPI; `.ci/run` installs it) against `/api/v1/openapi.json`
//! of a throwaway `berth serve`, as the administrator.
//!
//! The document's path parameters carry the names of example fixtures
//! (project `demo`, app `web`, cluster `c1`, node `n1`, account `throwaway`,
//! replication policy `mirror` with its execution 1, ...), created here first, so that generated requests reach real objects.
//! Runs, in this order, none of which may be answered 5xx:
//! 1. every GET, as the administrator; each must be answered 2xx at least once
//!    (a run where everything is 401 fails);
//! 2. every other operation as the administrator, except the account
//!    operations below (it may delete the fixtures, hence after the GETs);
//! 3. `PUT /api/v1/users/{name}/password` as `throwaway`, an account made for
//!    this: schemathesis also tries names it saw in answers, `admin` among
//!    them, and as the administrator a change without `old_password` would
//!    set a new initial password and lock the administrator out. As
//!    `throwaway`, only `throwaway`'s own password can change;
//! 4. `DELETE /api/v1/users/{name}` as the administrator, last (it may delete
//!    the administrator once the run has created another one).
//!
//! Left out, with the reason: `GET .../apps/{app}/logs`, which streams from the
//! node's edge, a process this test does not start (tests/app_logs_e2e.rs).
//! The coverage phase is left out too: it takes minutes on two cores, and
//! schemathesis 4.32 fails in it at random with two workers (a hypothesis
//! "AST constructor recursion depth mismatch"). Bounded: three to five
//! examples per operation, one worker (with two, schemathesis 4.32 now and then fails
//! inside hypothesis with a KeyError on its own source lines), a fixed seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_testkit::berth::{self, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::http::{basic, push_image};
use reqwest::blocking::Client;
use serde_json::{json, Value};

const EXCLUDED: &str = "/api/v1/projects/{project}/apps/{app}/logs";
const PASSWORD: &str = "/api/v1/users/{name}/password";
const USER: &str = "/api/v1/users/{name}";

/// Creates the fixtures; returns the id of the webhook it adds (ids are the
/// server's, so the run is told it through `schemathesis.toml`).
fn fixtures(reg: &berth::Registry) -> String {
    let admin = reg.admin();
    admin.create_project("demo", true);
    admin.create_user("throwaway", "throwaway-pass1");
    admin.add_member("demo", "throwaway", "developer");
    admin.create_robot("demo", "ci", "pull");
    push_image(
        &Client::new(),
        &reg.url(),
        &basic("admin", ADMIN_PASSWORD),
        "demo/hello",
        "v1",
    );
    let ok = |method: &str, path: &str, body: Value| {
        let (s, v) = admin.call(method, path, Some(body));
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    };
    ok(
        "POST",
        "/api/v1/clusters",
        json!({"name": "c1", "kubeconfig": berth::kubeconfig("t")}),
    );
    ok(
        "POST",
        "/api/v1/nodes",
        json!({"name": "n1", "cluster": "c1", "edge_url": "http://127.0.0.1:9"}),
    );
    ok(
        "POST",
        "/api/v1/projects/demo/apps",
        json!({"name": "web", "spec": {"kind": "Deployment", "containers": [{
            "name": "web", "image": "demo/hello:v1",
            "ports": [{"name": "http", "container_port": 8080}]}]}}),
    );
    let r = "/api/v1/projects/demo";
    ok(
        "POST",
        &format!("{r}/configmaps"),
        json!({"name": "settings", "data": {"a": "b"}}),
    );
    ok(
        "POST",
        &format!("{r}/secrets"),
        json!({"name": "creds", "data": {"k": "v"}}),
    );
    ok(
        "POST",
        &format!("{r}/volumes"),
        json!({"name": "data", "capacity": "1Gi"}),
    );
    ok(
        "POST",
        &format!("{r}/loadbalancers"),
        json!({"name": "web-lb", "app": "web", "ports": [{"name": "http", "port": 80, "target_port": 8080}]}),
    );
    ok(
        "POST",
        &format!("{r}/eips"),
        json!({"name": "ip1", "address": "203.0.113.7", "load_balancer": "web-lb"}),
    );
    ok(
        "POST",
        &format!("{r}/routes"),
        json!({"name": "www", "host": "shop.example.com", "load_balancer": "web-lb", "port": 80}),
    );
    // A replication policy from this registry into itself, run once, so
    // that `mirror` and its execution 1 exist.
    ok(
        "POST",
        "/api/v1/replications",
        json!({"name": "mirror", "direction": "pull", "remote": {"url": reg.url()},
            "filters": {"repositories": "demo/**"}, "dest_project": "demo", "trigger": "manual"}),
    );
    ok("POST", "/api/v1/replications/mirror/executions", json!({}));
    // Nothing listens there: its deliveries fail and are retried meanwhile.
    let hook = ok(
        "POST",
        &format!("{r}/webhooks"),
        json!({"url": "http://127.0.0.1:9/hook", "events": ["push"]}),
    );
    hook["id"].as_str().expect("webhook id").to_string()
}

/// Runs `st run` as `auth` (user:password) with `args` against the registry;
/// returns whether it passed, and its output.
fn schemathesis(base: &str, auth: &str, config: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("st");
    cmd.arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--url", base])
        .args(["--auth", auth])
        .args(["--checks", "not_a_server_error"])
        .args(["--workers", "1", "--no-shrink", "--seed", "1"])
        .args(["--exclude-path", EXCLUDED])
        .args(args)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1");
    // Into a file, not a pipe: nobody reads a pipe while waiting for the exit,
    // and schemathesis writes more than a pipe holds.
    let log = tempfile::NamedTempFile::new().expect("log file");
    // Its cache directory (.schemathesis) goes there too, not into the checkout.
    let work = tempfile::tempdir().expect("work dir");
    cmd.current_dir(work.path());
    let file = log.reopen().expect("log file");
    cmd.stdout(Stdio::from(file.try_clone().expect("log file")))
        .stderr(Stdio::from(file));
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run schemathesis (`st`): {e}; install it with pip (see .ci/run)")
    });
    let status = berth_testkit::proc::exit_within(
        &mut child,
        Duration::from_secs(300),
        "schemathesis to finish",
    );
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    (status.success(), text)
}

/// Does `path` match the template `tpl` (`{x}` matches one segment)?
fn matches(tpl: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (tpl.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

/// (method, path, status) of every request in the registry's access log.
fn access_log(log: &str) -> Vec<(String, String, u16)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request")
        .filter_map(|v| {
            let f = &v["fields"];
            Some((
                f["method"].as_str()?.to_string(),
                f["path"].as_str()?.to_string(),
                u16::try_from(f["status"].as_u64()?).ok()?,
            ))
        })
        .collect()
}

#[test]
fn schemathesis_finds_no_server_errors_and_every_get_answers() {
    let reg = berth::registry_with(
        berth_bin!(),
        &[],
        &[
            ("BERTH_LOG_ACCESS_LOG", "true"),
            ("BERTH_LOG_FORMAT", "json"),
            ("BERTH_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true"),
            ("BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES", "true"),
        ],
    );
    let hook = fixtures(&reg);
    let config_dir = tempfile::tempdir().expect("config dir");
    let config = config_dir.path().join("schemathesis.toml");
    std::fs::write(&config, format!("[parameters]\n\"path.id\" = \"{hook}\"\n"))
        .expect("schemathesis.toml");
    let base = reg.url();
    let doc: Value = Client::new()
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .expect("document")
        .json()
        .expect("JSON");
    let gets: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(p, ops)| ops.get("get").is_some() && p.as_str() != EXCLUDED)
        .map(|(p, _)| p.clone())
        .collect();

    let admin = format!("admin:{ADMIN_PASSWORD}");
    let (ok, out) = schemathesis(
        &base,
        &admin,
        &config,
        &[
            "--include-method",
            "GET",
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "3",
        ],
    );
    assert!(ok, "schemathesis, GET operations:\n{out}");
    // Which GET operations were answered 2xx: the most specific template wins
    // (`/api/v1/users` and `/api/v1/users/{name}` are told apart by length).
    let mut answered: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    for (method, path, status) in access_log(&reg.server.log()) {
        if method != "GET" {
            continue;
        }
        let tpl = gets
            .iter()
            .filter(|t| matches(t, &path))
            .min_by_key(|t| t.matches('{').count());
        if let Some(t) = tpl {
            answered.entry(t.as_str()).or_default().insert(status);
        }
    }
    let never: Vec<String> = gets
        .iter()
        .filter(|t| {
            !answered
                .get(t.as_str())
                .is_some_and(|s| s.iter().any(|s| (200..300).contains(s)))
        })
        .map(|t| format!("GET {t}: {:?}", answered.get(t.as_str())))
        .collect();
    assert!(
        never.is_empty(),
        "GET operations never answered 2xx:\n{}\n\nschemathesis:\n{out}",
        never.join("\n")
    );

    let runs: [(&str, &[&str]); 3] = [
        (
            &admin,
            &[
                "--exclude-method",
                "GET",
                "--exclude-path",
                PASSWORD,
                "--exclude-path",
                USER,
            ],
        ),
        ("throwaway:throwaway-pass1", &["--include-path", PASSWORD]),
        (
            &admin,
            &["--include-path", USER, "--include-method", "DELETE"],
        ),
    ];
    for (auth, filter) in runs {
        let mut args = vec!["--phases", "examples,fuzzing", "--max-examples", "5"];
        args.extend_from_slice(filter);
        let (ok, out) = schemathesis(&base, auth, &config, &args);
        let server_errors: Vec<String> = access_log(&reg.server.log())
            .into_iter()
            .filter(|(_, _, s)| *s >= 500)
            .map(|(m, p, s)| format!("{m} {p}: {s}"))
            .collect();
        assert!(
            ok && server_errors.is_empty(),
            "server errors: {server_errors:#?}\n\nschemathesis {filter:?}:\n{out}"
        );
    }
}
