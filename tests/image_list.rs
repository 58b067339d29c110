//! The image list against the built binaries: a registry and an edge in
//! front of it. Each tag shows its size, platforms, push time, pulls (the
//! registry's own and those the edge served, reported in batches) and last
//! pull, the pull command and its referrers by artifact type, in the admin
//! API and `berth repo tags`.

use std::process::Command;
use std::time::Duration;

use berth_testkit::berth::{edge, registry_with, ADMIN_PASSWORD};
use berth_testkit::fixtures::media_types::OCI_MANIFEST;
use berth_testkit::http::{basic, push_blob, push_image, send};
use berth_testkit::manifest::artifact_manifest;
use berth_testkit::{berth_bin, wait_until};
use serde_json::Value;

const SBOM: &str = "application/vnd.example.sbom.v1+json";

fn tag_of(admin: &berth_testkit::berth::Admin, tag: &str) -> Value {
    let (s, v) = admin.call("GET", "/api/v1/projects/team/repositories/app/tags", None);
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == tag).cloned())
        .unwrap_or_else(|| panic!("no tag {tag}: {v}"))
}

#[test]
fn tags_show_size_platforms_pushes_pulls_here_and_through_an_edge_and_referrers() {
    let reg = registry_with(
        berth_bin!(),
        &[],
        &[("BERTH_SERVER_PULL_FLUSH_INTERVAL", "1s")],
    );
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_project("other", false);
    let (robot, secret) = admin.create_robot("team", "edge", "pull");
    let (stranger, stranger_secret) = admin.create_robot("other", "edge", "pull");
    let http = reqwest::blocking::Client::new();
    let base = reg.url();
    let auth = basic("admin", ADMIN_PASSWORD);
    let image = push_image(&http, &base, &auth, "team/app", "v1");
    push_image(&http, &base, &auth, "team/app", "never-pulled");
    // An SBOM about v1: a referrer by artifact type.
    push_blob(&http, &base, &auth, "team/app", b"{}".to_vec());
    push_blob(&http, &base, &auth, "team/app", b"sbom".to_vec());
    let sbom = artifact_manifest(SBOM, &image.manifest, OCI_MANIFEST, b"sbom", "x");
    let sbom_digest = berth_testkit::fixtures::digest_of(&sbom);
    let a = send(
        &http,
        "PUT",
        &format!("{base}/v2/team/app/manifests/{sbom_digest}"),
        &auth,
        Some((OCI_MANIFEST, sbom)),
    );
    assert_eq!(a.status, 201, "{a:?}");

    let before = tag_of(&admin, "v1");
    assert_eq!(before["digest"], image.digest.as_str());
    assert_eq!(before["pull_count"], 0, "{before}");
    assert!(before["last_pulled_at"].is_null(), "{before}");
    let config = berth_testkit::manifest::config_for("team/app", "v1");
    let layer = "a layer of team/app:v1".len();
    assert_eq!(before["size"], (config.len() + layer) as u64, "{before}");
    assert_eq!(before["platforms"], serde_json::json!(["linux/amd64"]));
    assert!(before["pushed_at"].as_u64() > Some(0), "{before}");
    assert_eq!(
        before["referrers"],
        serde_json::json!({ SBOM: 1 }),
        "{before}"
    );
    let cmd = before["pull_command"].as_str().expect("pull command");
    assert!(
        cmd.starts_with("docker pull 127.0.0.1:") && cmd.ends_with("/team/app:v1"),
        "{cmd}"
    );

    // Two pulls here (a HEAD is not a pull), three through the edge.
    let robot_auth = basic(&robot, &secret);
    send(
        &http,
        "HEAD",
        &format!("{base}/v2/team/app/manifests/v1"),
        &robot_auth,
        None,
    );
    for _ in 0..2 {
        let a = send(
            &http,
            "GET",
            &format!("{base}/v2/team/app/manifests/v1"),
            &robot_auth,
            None,
        );
        assert_eq!(a.status, 200, "{a:?}");
    }
    let cache = tempfile::tempdir().expect("tmp");
    let edge = edge(
        berth_bin!(),
        &base,
        cache.path(),
        Some((&robot, &secret)),
        &[("BERTH_EDGE_PULL_REPORT_INTERVAL", "1s")],
    );
    for _ in 0..3 {
        let a = send(
            &http,
            "GET",
            &format!("{}/v2/team/app/manifests/v1", edge.base_url()),
            &berth_testkit::http::Auth::None,
            None,
        );
        assert_eq!(a.status, 200, "through the edge: {a:?}");
    }
    let after = wait_until("five pulls counted", Duration::from_secs(30), || {
        let t = tag_of(&admin, "v1");
        if t["pull_count"] == 5 {
            Ok(t)
        } else {
            Err(t.to_string())
        }
    });
    assert!(after["last_pulled_at"].as_u64() >= before["pushed_at"].as_u64());
    assert_eq!(tag_of(&admin, "never-pulled")["pull_count"], 0);

    // A report for a repository the reporter may not pull is not counted.
    let (s, v) = admin.as_user(&stranger, &stranger_secret).call(
        "POST",
        "/api/v1/pulls",
        Some(serde_json::json!({"pulls": [{"repository": "team/app",
            "digest": image.digest, "count": 100, "last_pulled_at": 1}]})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["recorded"], 0, "{v}");
    assert_eq!(v["skipped"], serde_json::json!(["team/app"]), "{v}");
    let (s, v) = admin.call(
        "POST",
        "/api/v1/pulls",
        Some(serde_json::json!({"pulls": [{"repository": "team/app",
            "digest": "not-a-digest", "count": 1, "last_pulled_at": 1}]})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].is_string(), "{v}");

    // The CLI's table.
    let out = Command::new(berth_bin!())
        .args(["repo", "tags", "team/app"])
        .env_remove("BERTH_CONFIG")
        .env("BERTH_URL", &base)
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .output()
        .expect("berth repo tags");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("v1 "))
        .unwrap_or_else(|| panic!("{table}"));
    for want in ["linux/amd64", " 5 ", SBOM, "/team/app:v1"] {
        assert!(row.contains(want), "{want}: {table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("never-pulled") && l.contains("never")),
        "{table}"
    );
    drop(edge);
}
