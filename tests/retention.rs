//! Retention rules end to end: skopeo pushes several tags, a project admin
//! sets rules (a developer may not), a dry run lists exactly what would go
//! and why — an immutable tag kept and saying so — a run deletes those
//! tags, GC then removes their manifests while an untagged manifest a rule
//! holds stays; a rule with `include_immutable` takes the immutable tag
//! too; runs are audited and counted in /metrics; the schedule runs them. (Publications and edge
//! pins are kept through the same GC roots GC uses: the plan's unit tests
//! in registry/src/meta/retention_tests.rs cover them.) A rule with only
//! `pulled_within_days` keeps the tags pulled here or through an edge
//! within those days, and takes the others, one pulled long ago included.

use berth_testkit::berth::{self, Admin, ADMIN_PASSWORD};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_testkit::berth_bin;
use berth_testkit::fixtures::{media_types::OCI_MANIFEST, Image, ImageBuilder, OciLayout};
use berth_testkit::http::{push_image, Auth};
use berth_testkit::tools::{docker_ref, CopyOptions};
use berth_testkit::wait_until;
use berth_testkit::{require_tools, Creds, Skopeo};
use reqwest::blocking::Client;
use serde_json::{json, Value};

const RULES: &str = "/api/v1/projects/ship/retention";
const RUN: &str = "/api/v1/projects/ship/retention/run";

/// `(repository:tag, reason)` of a run's `delete` or `keep` list.
fn listed(v: &Value, list: &str) -> Vec<(String, String)> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {v}"))
        .iter()
        .map(|d| {
            (
                format!(
                    "{}:{}",
                    d["repository"].as_str().unwrap_or("?"),
                    d["tag"].as_str().unwrap_or("?")
                ),
                d["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn run(admin: &Admin, dry_run: bool) -> Value {
    let (s, v) = admin.call("POST", RUN, Some(json!({ "dry_run": dry_run })));
    assert_eq!(s, 200, "{v}");
    v
}

/// The status of `GET /v2/{repo}/manifests/{digest}`.
fn manifest_status(http: &Client, base: &str, repo: &str, digest: &str) -> u16 {
    http.get(format!("{base}/v2/{repo}/manifests/{digest}"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", OCI_MANIFEST)
        .send()
        .expect("GET manifest")
        .status()
        .as_u16()
}

fn pair(tag: &str, reason: &str) -> (String, String) {
    (format!("ship/app:{tag}"), reason.to_string())
}

#[test]
fn rules_delete_tags_gc_takes_their_manifests_and_protected_tags_stay() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = OciLayout::create(tmp.path().join("src"));
    let image = |seed: u64, tag: &str| -> Image {
        ImageBuilder::new()
            .layer_random_seeded(4 << 10, seed)
            .tag(tag)
            .build(&layout)
    };
    // Pushed in this order; within one second the later tag sorts higher,
    // so `v3` is the most recently pushed either way.
    let tags = ["dev-a", "dev-b", "v1", "v2", "v3"];
    let images: Vec<Image> = tags
        .iter()
        .enumerate()
        .map(|(i, t)| image(i as u64 + 1, t))
        .collect();
    let scratch = image(99, "tmp");
    let reg = berth::registry_with(berth_bin!(), &[], &[("BERTH_GC_GRACE", "0s")]);
    let (admin, base, http, host) = (reg.admin(), reg.url(), Client::new(), reg.host());
    admin.create_project("ship", false);
    let skopeo = Skopeo::new();
    let creds = Creds::new("admin", ADMIN_PASSWORD);
    let opts = CopyOptions::default()
        .preserving_digests()
        .with_dest_creds(&creds);
    for t in tags {
        skopeo.copy(
            &layout.reference(t),
            &docker_ref(&host, "ship/app", t),
            &opts,
        );
    }
    skopeo.copy(
        &layout.reference("tmp"),
        &docker_ref(&host, "ship/scratch", "tmp"),
        &opts,
    );
    // An untagged manifest in `scratch`, which a rule holds for a day.
    let (s, v) = admin.call(
        "DELETE",
        "/api/v1/projects/ship/repositories/scratch/tags/tmp",
        None,
    );
    assert_eq!(s, 204, "{v}");
    let (s, v) = admin.call(
        "POST",
        "/api/v1/projects/ship/immutable-tags",
        Some(json!({"pattern": "v1"})),
    );
    assert_eq!(s, 201, "{v}");

    // Project admins set the rules; developers may not; bad rules say why.
    admin.create_user("pa", "pa-password-1");
    admin.create_user("dev", "dev-password-1");
    admin.add_member("ship", "pa", "project-admin");
    admin.add_member("ship", "dev", "developer");
    let rules = json!({"rules": [
        {"repositories": "app", "tags": "*", "keep_last": 1},
        {"repositories": "scratch", "untagged_hours": 24},
    ]});
    let dev = admin.as_user("dev", "dev-password-1");
    let (s, v) = dev.call("PUT", RULES, Some(rules.clone()));
    assert_eq!(s, 403, "{v}");
    let (s, v) = dev.call("POST", RUN, Some(json!({"dry_run": true})));
    assert_eq!(s, 403, "{v}");
    let pa = admin.as_user("pa", "pa-password-1");
    let (s, v) = pa.call(
        "PUT",
        RULES,
        Some(json!({"rules": [{"tags": "v/*", "keep_last": 1}]})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = pa.call(
        "PUT",
        RULES,
        Some(json!({"rules": [{"keep_last": 1, "keep": 2}]})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = pa.call("PUT", RULES, Some(rules.clone()));
    assert_eq!(s, 200, "{v}");
    let (s, v) = dev.call("GET", RULES, None);
    assert_eq!((s, &v["rules"][0]["keep_last"]), (200, &json!(1)), "{v}");

    // The dry run: exactly what would go, and why the rest stays.
    let dry = run(&pa, true);
    let why_not = "goes: not among the 1 most recently pushed (rule 1)";
    assert_eq!(
        listed(&dry, "delete"),
        vec![
            pair("dev-a", why_not),
            pair("dev-b", why_not),
            pair("v2", why_not)
        ],
        "{dry}"
    );
    assert_eq!(
        listed(&dry, "keep"),
        vec![
            pair("v1", "kept: immutable rule v1"),
            pair("v3", "kept: among the 1 most recently pushed (rule 1)"),
        ],
        "{dry}"
    );
    assert_eq!(dry["deleted"], 0);
    let (_, listed_tags) = admin.call("GET", "/api/v1/projects/ship/repositories/app/tags", None);
    assert_eq!(
        listed_tags.as_array().map(Vec::len),
        Some(5),
        "a dry run deletes nothing: {listed_tags}"
    );

    // The run deletes those tags; the manifests stay until GC.
    let done = run(&pa, false);
    assert_eq!(done["deleted"], 3, "{done}");
    assert_eq!(listed(&done, "delete"), listed(&dry, "delete"));
    for (t, img) in tags.iter().zip(&images) {
        assert_eq!(
            manifest_status(&http, &base, "ship/app", img.manifest.digest()),
            200,
            "{t}"
        );
    }
    let (s, report) = admin.call("POST", "/api/v1/gc", None);
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["manifests_deleted"], 3, "{report}");
    for (t, img) in tags.iter().zip(&images) {
        let want = if ["v1", "v3"].contains(t) { 200 } else { 404 };
        assert_eq!(
            manifest_status(&http, &base, "ship/app", img.manifest.digest()),
            want,
            "{t}"
        );
    }
    assert_eq!(
        manifest_status(&http, &base, "ship/scratch", scratch.manifest.digest()),
        200,
        "an untagged manifest a rule holds for 24 hours stays"
    );

    // A rule that says so takes the immutable tag too.
    let (s, v) = pa.call(
        "PUT",
        RULES,
        Some(
            json!({"rules": [{"repositories": "app", "keep_last": 1, "include_immutable": true}]}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    let done = run(&pa, false);
    let gone = listed(&done, "delete");
    assert_eq!(gone.len(), 1, "{done}");
    assert_eq!(gone[0].0, "ship/app:v1");
    assert!(
        gone[0]
            .1
            .contains("immutable rule v1 overridden by include_immutable"),
        "{done}"
    );
    assert_eq!(done["deleted"], 1, "{done}");

    // Audited and counted.
    admin.audit_until("action=retention", "the retention run", |events| {
        events.iter().any(|e| {
            e["actor"] == "pa"
                && e["target"]
                    .as_str()
                    .is_some_and(|t| t.contains("1 tags deleted"))
        })
    });
    admin.audit_until("action=retention.dry-run", "the dry run", |events| {
        events.iter().any(|e| {
            e["target"]
                .as_str()
                .is_some_and(|t| t.contains("3 tags would go"))
        })
    });
    assert!(reg.metric("berth_retention_runs_total") >= 3.0);
    assert_eq!(reg.metric("berth_retention_tags_deleted_total"), 4.0);
}

/// `gc.retention_schedule` applies every project's rules: the tag goes
/// without anyone asking, audited as the schedule's.
#[test]
fn the_schedule_applies_every_projects_rules() {
    let reg = berth::registry_with(
        berth_bin!(),
        &[],
        &[("BERTH_GC_RETENTION_SCHEDULE", "* * * * *")],
    );
    let (admin, base, http) = (reg.admin(), reg.url(), Client::new());
    admin.create_project("ship", false);
    let auth = Auth::Basic("admin".into(), ADMIN_PASSWORD.into());
    push_image(&http, &base, &auth, "ship/app", "old");
    let (s, v) = admin.call(
        "PUT",
        RULES,
        Some(json!({"rules": [{"tags": "old", "keep_last": 0}]})),
    );
    assert_eq!(s, 200, "{v}");
    let tags = "/api/v1/projects/ship/repositories/app/tags";
    wait_until(
        "the scheduled run to delete ship/app:old",
        Duration::from_secs(90),
        || {
            let (_, v) = admin.call("GET", tags, None);
            match v.as_array().map(Vec::len) {
                Some(0) => Ok(()),
                _ => Err(v.to_string()),
            }
        },
    );
    admin.audit_until("action=retention", "the scheduled run", |events| {
        events.iter().any(|e| {
            e["actor"] == "retention-schedule"
                && e["target"]
                    .as_str()
                    .is_some_and(|t| t.contains("(schedule): 1 tags deleted"))
        })
    });
}

/// `pull_count` and `last_pulled_at` of `ship/app:{tag}` in the image list.
fn pulls_of(admin: &Admin, tag: &str) -> (u64, Option<u64>) {
    let (s, v) = admin.call("GET", "/api/v1/projects/ship/repositories/app/tags", None);
    assert_eq!(s, 200, "{v}");
    let t = v
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == tag))
        .unwrap_or_else(|| panic!("no tag {tag}: {v}"));
    (
        t["pull_count"].as_u64().unwrap_or(0),
        t["last_pulled_at"].as_u64(),
    )
}

/// A rule with only `pulled_within_days`: the tags pulled within those days
/// stay — one pulled straight from the registry, one only through an edge
/// (whose pulls reach the registry in the edge's reports) — and the others
/// go: one never pulled, and one whose last pull, reported by the edge, was
/// ten days ago (the days are the reported pull times', so no clock moves).
#[test]
fn pulled_within_days_keeps_tags_pulled_here_or_through_an_edge() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = OciLayout::create(tmp.path().join("src"));
    let pulled = OciLayout::create(tmp.path().join("pulled"));
    let tags = ["direct", "edge", "long-ago", "never"];
    let images: Vec<Image> = tags
        .iter()
        .enumerate()
        .map(|(i, t)| {
            ImageBuilder::new()
                .layer_random_seeded(4 << 10, 40 + i as u64)
                .tag(t)
                .build(&layout)
        })
        .collect();
    let reg = berth::registry_with(
        berth_bin!(),
        &[],
        &[
            ("BERTH_GC_GRACE", "0s"),
            ("BERTH_SERVER_PULL_FLUSH_INTERVAL", "1s"),
        ],
    );
    let (admin, base, http, host) = (reg.admin(), reg.url(), Client::new(), reg.host());
    admin.create_project("ship", false);
    let skopeo = Skopeo::new();
    let creds = Creds::new("admin", ADMIN_PASSWORD);
    let push = CopyOptions::default()
        .preserving_digests()
        .with_dest_creds(&creds);
    for t in tags {
        skopeo.copy(
            &layout.reference(t),
            &docker_ref(&host, "ship/app", t),
            &push,
        );
    }
    for t in tags {
        assert_eq!(pulls_of(&admin, t), (0, None), "{t}: a push is no pull");
    }

    // `direct` pulled from the registry; `edge` twice through an edge only.
    skopeo.copy(
        &docker_ref(&host, "ship/app", "direct"),
        &pulled.reference("direct"),
        &CopyOptions::default().with_src_creds(&creds),
    );
    let (robot, secret) = admin.create_robot("ship", "edge", "pull");
    let cache = tempfile::tempdir().expect("tmp");
    let edge = berth::edge(
        berth_bin!(),
        &base,
        cache.path(),
        Some((&robot, &secret)),
        &[("BERTH_EDGE_PULL_REPORT_INTERVAL", "1s")],
    );
    for _ in 0..2 {
        skopeo.copy(
            &docker_ref(&edge.host(), "ship/app", "edge"),
            &pulled.reference("edge"),
            &CopyOptions::default(),
        );
    }
    // What an edge reports of a pull it served ten days ago (while cut off
    // from the registry, say): the same report its reporter sends.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let long_ago = now - 10 * 86_400;
    let (s, v) = admin.as_user(&robot, &secret).call(
        "POST",
        "/api/v1/pulls",
        Some(json!({"pulls": [{"repository": "ship/app",
            "digest": images[2].digest(), "count": 1, "last_pulled_at": long_ago}]})),
    );
    assert_eq!((s, &v["recorded"]), (200, &json!(1)), "{v}");
    wait_until("the pulls to be counted", Duration::from_secs(60), || {
        let seen: Vec<(u64, Option<u64>)> = tags.iter().map(|t| pulls_of(&admin, t)).collect();
        // The edge's fills are not pulls: both of `edge`'s come from its reports.
        if seen[0].0 >= 1 && seen[1].0 >= 2 && seen[2].0 == 1 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    assert_eq!(pulls_of(&admin, "long-ago").1, Some(long_ago));
    assert_eq!(pulls_of(&admin, "never"), (0, None));

    // Only `pulled_within_days`: the dry run lists exactly the others.
    let (s, v) = admin.call(
        "PUT",
        RULES,
        Some(json!({"rules": [{"repositories": "app", "pulled_within_days": 7}]})),
    );
    assert_eq!(s, 200, "{v}");
    let app = |tag: &str, reason: &str| (format!("ship/app:{tag}"), reason.to_string());
    let goes = "goes: not pulled within 7 days (rule 1)";
    let kept = "kept: pulled within 7 days (rule 1)";
    let dry = run(&admin, true);
    assert_eq!(
        listed(&dry, "delete"),
        vec![app("long-ago", goes), app("never", goes)],
        "{dry}"
    );
    assert_eq!(
        listed(&dry, "keep"),
        vec![app("direct", kept), app("edge", kept)],
        "{dry}"
    );
    assert_eq!(dry["delete"][0]["last_pulled_at"], json!(long_ago), "{dry}");
    assert!(dry["delete"][1]["last_pulled_at"].is_null(), "{dry}");

    // The run deletes exactly those tags; GC then takes their manifests.
    let done = run(&admin, false);
    assert_eq!(done["deleted"], 2, "{done}");
    assert_eq!(listed(&done, "delete"), listed(&dry, "delete"));
    let (s, left) = admin.call("GET", "/api/v1/projects/ship/repositories/app/tags", None);
    assert_eq!(s, 200, "{left}");
    let names: Vec<&str> = left
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["direct", "edge"], "{left}");
    let (s, report) = admin.call("POST", "/api/v1/gc", None);
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["manifests_deleted"], 2, "{report}");
    for (t, img) in tags.iter().zip(&images) {
        let want = if ["direct", "edge"].contains(t) {
            200
        } else {
            404
        };
        assert_eq!(
            manifest_status(&http, &base, "ship/app", img.digest()),
            want,
            "{t}"
        );
    }
    drop(edge);
}
