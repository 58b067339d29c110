//! GC's history and schedule against the built binary: every run (asked
//! for, dry, scheduled, offline) lands in `GET /api/v1/gc/runs` with what it
//! freed, survives a restart, shows in the audit log, `/metrics` and
//! `berth gc --runs`; only system administrators read it.

mod common;

use std::process::Command;
use std::time::Duration;

use berth_testkit::berth::{registry_in, ADMIN_PASSWORD};
use berth_testkit::{berth_bin, wait_until};
use common::*;
use reqwest::Method;
use serde_json::Value;

fn runs(r: &Reg) -> Vec<Value> {
    let (s, v) = r.reg.admin().call("GET", "/api/v1/gc/runs", None);
    assert_eq!(s, 200, "{v}");
    v.as_array().cloned().expect("a list")
}

fn gc(r: &Reg, path: &str) -> Value {
    let res = r.req(Method::POST, path).send().expect("POST gc");
    assert_eq!(res.status(), 200, "{}", describe(res));
    res.json().expect("report")
}

fn berth(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(berth_bin!());
    cmd.args(args)
        .env_remove("BERTH_CONFIG")
        .env("BERTH_PASSWORD", ADMIN_PASSWORD);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running berth");
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_run_is_kept_in_the_history_with_what_it_freed() {
    let mut r = Reg::start_with(&[("BERTH_GC_GRACE", "0s")]);
    let repo = "pub/history";
    r.push_image(repo, "old", &[&bytes(1, 5000)]);
    r.push_image(repo, "kept", &[&bytes(2, 5000)]);
    // Untagged, the manifest is GC's to collect with its blobs.
    let (s, v) = r.reg.admin().call(
        "DELETE",
        "/api/v1/projects/pub/repositories/history/tags/old",
        None,
    );
    assert_eq!(s, 204, "{v}");
    assert!(runs(&r).is_empty(), "no run yet");

    let dry = gc(&r, "/api/v1/gc?dry_run=true");
    let report = gc(&r, "/api/v1/gc");
    assert!(report["blobs_deleted"].as_u64() >= Some(2), "{report}");
    assert_eq!(report["manifests_deleted"], 1, "{report}");
    let history = runs(&r);
    assert_eq!(history.len(), 2, "{history:?}");
    let (last, first) = (&history[0], &history[1]);
    assert_eq!(first["dry_run"], true, "{first}");
    assert_eq!(first["blobs_deleted"], dry["blobs_deleted"], "{first}");
    assert_eq!(last["dry_run"], false, "{last}");
    assert!(last["id"].as_u64() > first["id"].as_u64(), "newest first");
    for k in [
        "blobs_deleted",
        "bytes_freed",
        "manifests_deleted",
        "links_removed",
    ] {
        assert_eq!(last[k], report[k], "{k}: {last}");
    }
    assert!(last["bytes_freed"].as_u64() >= Some(5000), "{last}");
    assert_eq!(last["trigger"], "api");
    assert_eq!(last["actor"], "admin");
    assert_eq!(last["outcome"], "ok");
    assert!(last["finished_at"].as_u64() >= last["started_at"].as_u64());
    assert!(last["duration_ms"].is_u64(), "{last}");

    // Audited, counted.
    r.reg
        .admin()
        .audit_until("action=gc", "the GC run", |events| {
            events.iter().any(|e| {
                e["actor"] == "admin"
                    && e["target"]
                        .as_str()
                        .is_some_and(|t| t.contains(&format!("run {}", last["id"])))
            })
        });
    assert!(r.reg.metric("berth_gc_last_success_timestamp_seconds") > 0.0);
    assert!(r.reg.metric("berth_gc_manifests_deleted_total") >= 1.0);

    // Only system administrators.
    r.reg.admin().create_user("dev", "dev-password-1");
    let (s, v) =
        r.reg
            .admin()
            .as_user("dev", "dev-password-1")
            .call("GET", "/api/v1/gc/runs", None);
    assert_eq!(s, 403, "{v}");

    // The CLI shows the newest.
    let out = berth(
        &["gc", "--runs", "--limit", "1"],
        &[("BERTH_URL", &r.reg.url())],
    );
    let shown: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(shown[0]["id"], last["id"]);

    // Kept across a restart, and an offline run joins it.
    r.reg.server.terminate();
    let data = r.reg.data_dir.clone();
    let out = berth(
        &[
            "gc",
            "--offline",
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
        &[("BERTH_GC_GRACE", "0s")],
    );
    assert!(out.contains("blobs_deleted"), "{out}");
    r.reg.server.start_again();
    let history = runs(&r);
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[0]["trigger"], "offline");
    assert_eq!(history[1]["id"], last["id"]);
}

#[test]
fn scheduled_runs_are_recorded_and_audited() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = registry_in(
        berth_bin!(),
        &tmp.path().join("data"),
        &[],
        &[("BERTH_GC_INTERVAL", "1s"), ("BERTH_GC_HISTORY", "3")],
    );
    let r = Reg::wrap(reg);
    let history = wait_until("four scheduled runs", Duration::from_secs(60), || {
        let h = runs(&r);
        let ids: Vec<u64> = h.iter().filter_map(|x| x["id"].as_u64()).collect();
        if ids.first() >= Some(&4) {
            Ok(h)
        } else {
            Err(format!("{ids:?}"))
        }
    });
    assert_eq!(history.len(), 3, "the newest three kept: {history:?}");
    assert!(
        history.iter().all(|x| x["trigger"] == "schedule"),
        "{history:?}"
    );
    assert!(history.iter().all(|x| x["actor"].is_null()), "{history:?}");
    r.reg
        .admin()
        .audit_until("action=gc", "a scheduled run", |events| {
            events.iter().any(|e| e["actor"] == "gc-schedule")
        });
}
