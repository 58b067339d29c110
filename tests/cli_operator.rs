//! The operator's side: the `berth project|user|robot|passwd` commands against a
//! running registry (the "done means" flow with podman), and the admin
//! API under them: users, projects, members, robots, repositories and tags, GC,
//! audit, error bodies, and the OpenAPI document.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_testkit::berth::{self, Admin, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::media_types::OCI_MANIFEST;
use berth_testkit::fixtures::{ImageBuilder, OciLayout};
use berth_testkit::http::{basic, push_image};
use berth_testkit::tools::{require_tools, Creds, Podman, Skopeo};
use berth_testkit::wait_until;
use reqwest::blocking::Client;
use serde_json::{json, Value};

#[path = "cli_operator/admin_accounts.rs"]
mod admin_accounts;
#[path = "cli_operator/admin_api.rs"]
mod admin_api;
#[path = "cli_operator/admin_projects.rs"]
mod admin_projects;
#[path = "cli_operator/flow.rs"]
mod flow;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// What one `berth` invocation did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `berth ARGS` against `base` as `who` (user, password), through the
/// environment variables the commands document.
fn berth_cli(base: &str, who: Option<(&str, &str)>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(berth_bin!());
    cmd.args(args).env("BERTH_URL", base);
    for v in [
        "BERTH_USER",
        "BERTH_PASSWORD",
        "BERTH_NEW_PASSWORD",
        "BERTH_OLD_PASSWORD",
        "BERTH_CONFIG",
    ] {
        cmd.env_remove(v);
    }
    if let Some((u, p)) = who {
        cmd.env("BERTH_USER", u).env("BERTH_PASSWORD", p);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running berth");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cli_ok(base: &str, who: Option<(&str, &str)>, args: &[&str], env: &[(&str, &str)]) -> String {
    let r = berth_cli(base, who, args, env);
    assert!(
        r.ok,
        "berth {} failed:\n{}\n{}",
        args.join(" "),
        r.stdout,
        r.stderr
    );
    r.stdout
}

fn cli_err(base: &str, who: Option<(&str, &str)>, args: &[&str]) -> String {
    let r = berth_cli(base, who, args, &[]);
    assert!(
        !r.ok,
        "berth {} should have failed:\n{}",
        args.join(" "),
        r.stdout
    );
    r.stderr
}

/// `GET` with optional Basic credentials: (status, JSON body).
fn get(http: &Client, url: &str, who: Option<(&str, &str)>) -> (u16, Value) {
    let mut rb = http.get(url).header("Accept", OCI_MANIFEST);
    if let Some((u, p)) = who {
        rb = rb.basic_auth(u, Some(p));
    }
    let r = rb.send().expect("GET");
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

fn catalog(http: &Client, base: &str, who: Option<(&str, &str)>) -> Vec<String> {
    let (s, v) = get(http, &format!("{base}/v2/_catalog"), who);
    assert_eq!(s, 200, "{v}");
    v["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect()
}

fn layout_image(tmp: &tempfile::TempDir, what: &str) -> OciLayout {
    let layout = OciLayout::create(tmp.path().join(what));
    ImageBuilder::new()
        .layer_files([("etc/what", what)])
        .layer_random(64 << 10)
        .tag("v1")
        .build(&layout);
    layout
}

// ------------------------------------------------------------------ admin API

/// Asserts an admin API error: status, a JSON `error` that is a sentence.
fn assert_error(answer: (u16, Value), status: u16, mentions: &str) {
    let (s, v) = answer;
    assert_eq!(s, status, "{v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error message: {v}"));
    assert!(
        msg.contains(mentions),
        "error {msg:?} should mention {mentions:?}"
    );
}
