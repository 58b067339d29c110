//! Replication executions end to end: a pull from Debian's `docker-registry`
//! through the kit's fault proxy, with a cut in the middle of a blob, a
//! slow link and a kill -9 of berth mid-execution (it carries on at start,
//! no blob crossing from its start again); a moved tag followed; and a push
//! to a second berth of an index with its platforms and its referrers,
//! with tag deletions propagated only when asked.

use std::time::Duration;

use berth_testkit::berth::{registry_in, registry_with, Admin, ADMIN_PASSWORD};
use berth_testkit::fixtures::digest_of;
use berth_testkit::fixtures::media_types::{OCI_INDEX, OCI_MANIFEST};
use berth_testkit::http::{basic, push_blob_in_two_steps, push_image_with, send, Auth};
use berth_testkit::manifest::{artifact_manifest, config_for, image_manifest, index_of};
use berth_testkit::proxy::{Fault, FaultProxy};
use berth_testkit::{berth_bin, wait_until, DistributionProcess};
use serde_json::{json, Value};

const ALLOW_PRIVATE: (&str, &str) = ("BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES", "true");

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// Pushes an image to distribution (which takes blobs in two steps only):
/// its manifest's digest.
fn push_to_distribution(
    base: &str,
    repo: &str,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> String {
    for blob in std::iter::once(config).chain(layers.iter().copied()) {
        push_blob_in_two_steps(&http(), base, &Auth::None, repo, blob.to_vec());
    }
    let manifest = image_manifest(config, layers);
    let a = send(
        &http(),
        "PUT",
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &Auth::None,
        Some((OCI_MANIFEST, manifest.clone())),
    );
    assert_eq!(a.status, 201, "{a:?}");
    digest_of(&manifest)
}

/// Starts an execution of `policy`; its id.
fn run(admin: &Admin, policy: &str) -> u64 {
    let (s, v) = admin.call(
        "POST",
        &format!("/api/v1/replications/{policy}/executions"),
        None,
    );
    assert_eq!(s, 202, "{v}");
    v["id"].as_u64().expect("execution id")
}

fn execution(admin: &Admin, policy: &str, id: u64) -> Value {
    let (s, v) = admin.call(
        "GET",
        &format!("/api/v1/replications/{policy}/executions/{id}"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v
}

/// Waits for execution `id` to end; it must have succeeded.
fn succeeded(admin: &Admin, policy: &str, id: u64) -> Value {
    let v = wait_until("the execution to end", Duration::from_secs(180), || {
        let v = execution(admin, policy, id);
        match v["status"].as_str() {
            Some("running") => Err(format!("{v:#}")),
            _ => Ok(v),
        }
    });
    assert_eq!(v["status"], "succeeded", "{v:#}");
    v
}

/// The start of a `bytes=N-` Range, 0 without one.
fn start(range: &Option<String>) -> u64 {
    range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn manifest_digest(base: &str, auth: &Auth, repo: &str, reference: &str) -> Option<String> {
    let res = http()
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"));
    let res = match auth {
        Auth::Basic(u, p) => res.basic_auth(u, Some(p)),
        _ => res,
    }
    .send()
    .expect("GET manifest");
    if res.status() != 200 {
        return None;
    }
    Some(digest_of(&res.bytes().expect("body")))
}

#[test]
fn a_pull_survives_a_cut_a_slow_link_and_kill_9_and_follows_a_moved_tag() {
    if !DistributionProcess::available() {
        eprintln!("skipping: docker-registry is not installed");
        return;
    }
    let up = DistributionProcess::start();
    let proxy = FaultProxy::start(&up.host());
    let up_base = format!("http://{}", up.host());
    let (big, small) = (layer(1, 6 << 20), layer(2, 1 << 20));
    let config = config_for("library/app", "v1");
    let v1 = push_to_distribution(&up_base, "library/app", "v1", &config, &[&big, &small]);

    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let mut reg = registry_in(berth_bin!(), &data, &[], &[ALLOW_PRIVATE]);
    let admin = reg.admin();
    admin.create_project("mirror", false);
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(json!({"name": "from-up", "direction": "pull",
            "remote": {"url": proxy.url()}, "filters": {"repositories": "library/**"},
            "dest_project": "mirror"})),
    );
    assert_eq!(s, 201, "{v}");

    // The link breaks 2 MiB into the big layer, then crawls at 512 KiB/s.
    let big_digest = digest_of(&big);
    proxy.set_fault(Fault::CutAt {
        digest: big_digest.clone(),
        at: 2 << 20,
    });
    proxy.set_rate(Some(512 << 10));
    let id = run(&admin, "from-up");
    // Killed once more than 3 MiB of it are recorded at the destination.
    wait_until(
        "3 MiB of the big layer to arrive",
        Duration::from_secs(60),
        || {
            let v = execution(&admin, "from-up", id);
            let done = v["blobs"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["digest"] == big_digest.as_str()))
                .and_then(|b| b["done"].as_u64())
                .unwrap_or(0);
            if done >= 3 << 20 {
                Ok(done)
            } else {
                Err(format!("{done} bytes"))
            }
        },
    );
    reg.server.kill9();
    proxy.set_rate(None);
    reg.server.start_again();
    let v = succeeded(&admin, "from-up", id);
    assert_eq!(v["bytes_done"], v["bytes_total"], "{v:#}");
    assert_eq!(v["images"][0]["status"], "copied", "{v:#}");

    // No transfer of the big layer started over: each GET began past the last.
    let gets = proxy.blob_gets(&big_digest);
    let starts: Vec<u64> = gets.iter().map(|g| start(&g.range)).collect();
    assert!(starts.len() >= 3, "a cut and a kill: {gets:?}");
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    assert_eq!(proxy.blob_gets(&digest_of(&small)).len(), 1);
    let admin_auth = basic("admin", ADMIN_PASSWORD);
    assert_eq!(
        manifest_digest(&reg.url(), &admin_auth, "mirror/app", "v1").as_deref(),
        Some(v1.as_str())
    );
    let got = http()
        .get(format!("{}/v2/mirror/app/blobs/{big_digest}", reg.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("GET blob")
        .bytes()
        .expect("body");
    assert_eq!(digest_of(&got), big_digest, "digests match on arrival");

    // v1 moves to an image sharing the small layer: only the new layer comes.
    let new_layer = layer(3, 300 << 10);
    let moved = push_to_distribution(
        &up_base,
        "library/app",
        "v1",
        &config_for("library/app", "v1-moved"),
        &[&new_layer, &small],
    );
    assert_ne!(moved, v1);
    let id = run(&admin, "from-up");
    succeeded(&admin, "from-up", id);
    assert_eq!(
        manifest_digest(&reg.url(), &admin_auth, "mirror/app", "v1").as_deref(),
        Some(moved.as_str()),
        "the moved tag is followed"
    );
    assert_eq!(proxy.blob_gets(&digest_of(&small)).len(), 1, "not again");
    assert_eq!(proxy.blob_gets(&digest_of(&new_layer)).len(), 1);
    admin.audit_until(
        "action=replication.execution",
        "both executions' ends",
        |e| e.len() >= 2,
    );
    assert!(reg.metric("berth_replication_blobs_copied_total") >= 2.0);

    // A pull lands only in a project that exists here, and says so.
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(
            json!({"name": "nowhere", "direction": "pull", "remote": {"url": up_base},
            "dest_project": "nowhere"}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let id = run(&admin, "nowhere");
    let v = wait_until("the execution to end", Duration::from_secs(60), || {
        let v = execution(&admin, "nowhere", id);
        match v["status"].as_str() {
            Some("running") => Err(format!("{v:#}")),
            _ => Ok(v),
        }
    });
    assert_eq!(v["status"], "failed", "{v:#}");
    let why = v["error"].as_str().unwrap_or_default();
    assert!(why.contains("project nowhere does not exist here"), "{why}");
    assert!(reg.metric("berth_replication_executions_succeeded_total") >= 1.0);
}

#[test]
fn a_push_copies_platforms_and_referrers_and_deletes_only_when_asked() {
    let source = registry_with(berth_bin!(), &[], &[ALLOW_PRIVATE]);
    let dest = registry_with(berth_bin!(), &[], &[]);
    let admin = source.admin();
    admin.create_project("team-a", false);
    dest.admin().create_project("dr", false);
    let auth = basic("admin", ADMIN_PASSWORD);
    let base = source.url();

    // team-a/app:v1 is an index of two platforms with a signature on it.
    let mut platforms = Vec::new();
    for seed in [10u8, 20] {
        let config = config_for("team-a/app", &format!("p{seed}"));
        let l = layer(seed, 200 << 10);
        let (m, _) = push_image_with(
            &http(),
            &base,
            &auth,
            ("team-a/app", &format!("p{seed}")),
            &config,
            &[&l],
        );
        platforms.push(m);
    }
    let index = index_of(&[&platforms[0], &platforms[1]]);
    let index_digest = digest_of(&index);
    let a = send(
        &http(),
        "PUT",
        &format!("{base}/v2/team-a/app/manifests/v1"),
        &auth,
        Some((OCI_INDEX, index.clone())),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let sig_blob = b"{\"signed\":true}".to_vec();
    push_blob_in_two_steps(&http(), &base, &auth, "team-a/app", sig_blob.clone());
    push_blob_in_two_steps(&http(), &base, &auth, "team-a/app", b"{}".to_vec());
    let sig = artifact_manifest(
        "application/vnd.example.sig",
        &index,
        OCI_INDEX,
        &sig_blob,
        "sig",
    );
    let sig_digest = digest_of(&sig);
    let a = send(
        &http(),
        "PUT",
        &format!("{base}/v2/team-a/app/manifests/{sig_digest}"),
        &auth,
        Some((OCI_MANIFEST, sig)),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let (_, v2) = push_image_with(
        &http(),
        &base,
        &auth,
        ("team-a/app", "v2"),
        &config_for("team-a/app", "v2"),
        &[&layer(30, 100 << 10)],
    );
    push_image_with(
        &http(),
        &base,
        &auth,
        ("team-a/other", "latest"),
        &config_for("team-a/other", "latest"),
        &[&layer(40, 1000)],
    );

    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(json!({"name": "to-dr", "direction": "push",
            "remote": {"url": dest.url(), "username": "admin", "password": ADMIN_PASSWORD},
            "filters": {"repositories": "team-a/**", "tags": "v*"}, "dest_project": "dr"})),
    );
    assert_eq!(s, 201, "{v}");
    let id = run(&admin, "to-dr");
    let v = succeeded(&admin, "to-dr", id);
    let d = dest.url();
    assert_eq!(
        manifest_digest(&d, &auth, "dr/app", "v1").as_deref(),
        Some(index_digest.as_str()),
        "{v:#}"
    );
    for p in &platforms {
        let pd = digest_of(p);
        assert_eq!(
            manifest_digest(&d, &auth, "dr/app", &pd).as_deref(),
            Some(pd.as_str())
        );
    }
    assert_eq!(
        manifest_digest(&d, &auth, "dr/app", "v2").as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        manifest_digest(&d, &auth, "dr/other", "latest"),
        None,
        "filtered out"
    );
    let (s, refs) = dest
        .admin()
        .call("GET", &format!("/v2/dr/app/referrers/{index_digest}"), None);
    assert_eq!(s, 200, "{refs}");
    assert_eq!(
        refs["manifests"][0]["digest"],
        sig_digest.as_str(),
        "{refs}"
    );
    let copied = source.metric("berth_replication_blobs_copied_total");
    assert!(
        copied >= 7.0,
        "configs, layers, the signature's blobs: {copied}"
    );

    // v2 deleted at the source stays at the destination until deletes are asked for.
    let a = send(
        &http(),
        "DELETE",
        &format!("{base}/v2/team-a/app/manifests/v2"),
        &auth,
        None,
    );
    assert_eq!(a.status, 202, "{a:?}");
    let id = run(&admin, "to-dr");
    succeeded(&admin, "to-dr", id);
    assert_eq!(
        manifest_digest(&d, &auth, "dr/app", "v2").as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        source.metric("berth_replication_blobs_copied_total"),
        copied,
        "nothing sent again"
    );
    let (s, v) = admin.call(
        "PATCH",
        "/api/v1/replications/to-dr",
        Some(json!({"deletes": true})),
    );
    assert_eq!(s, 200, "{v}");
    let id = run(&admin, "to-dr");
    let v = succeeded(&admin, "to-dr", id);
    assert!(
        v["images"]
            .as_array()
            .expect("images")
            .iter()
            .any(|i| i["status"] == "deleted"),
        "{v:#}"
    );
    assert_eq!(manifest_digest(&d, &auth, "dr/app", "v2"), None, "deleted");
    assert_eq!(
        manifest_digest(&d, &auth, "dr/app", "v1").as_deref(),
        Some(index_digest.as_str())
    );
}

#[test]
fn a_push_into_a_selected_repository_starts_an_on_push_policy_and_the_cli_follows_a_run() {
    let source = registry_with(berth_bin!(), &[], &[ALLOW_PRIVATE]);
    let dest = registry_with(berth_bin!(), &[], &[]);
    let admin = source.admin();
    admin.create_project("team-a", false);
    dest.admin().create_project("team-a", false);
    let auth = basic("admin", ADMIN_PASSWORD);
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(json!({"name": "follow", "direction": "push",
            "remote": {"url": dest.url(), "username": "admin", "password": ADMIN_PASSWORD},
            "filters": {"repositories": "team-a/*", "tags": "v*"}, "trigger": "on_push",
            "bandwidth": "4MiB/s"})),
    );
    assert_eq!(s, 201, "{v}");
    let (_, pushed) = push_image_with(
        &http(),
        &source.url(),
        &auth,
        ("team-a/app", "v3"),
        &config_for("team-a/app", "v3"),
        &[&layer(50, 300 << 10)],
    );
    wait_until(
        "the push to reach the other registry",
        Duration::from_secs(120),
        || match manifest_digest(&dest.url(), &auth, "team-a/app", "v3") {
            Some(d) if d == pushed => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let (s, list) = admin.call("GET", "/api/v1/replications/follow/executions", None);
    assert_eq!(s, 200, "{list}");
    assert_eq!(list[0]["trigger"], "on_push", "{list}");

    // A push of a tag the filters leave out starts nothing.
    push_image_with(
        &http(),
        &source.url(),
        &auth,
        ("team-a/app", "latest"),
        &config_for("team-a/app", "latest"),
        &[&layer(51, 1000)],
    );

    let out = std::process::Command::new(berth_bin!())
        .args(["replication", "run", "follow", "--wait"])
        .env("BERTH_URL", source.url())
        .env("BERTH_USER", "admin")
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("berth replication run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("succeeded: images 1/1"), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("the execution as JSON");
    assert_eq!(v["images"][0]["status"], "up_to_date", "{v:#}");
    assert_eq!(
        manifest_digest(&dest.url(), &auth, "team-a/app", "latest"),
        None
    );
}

#[test]
fn a_push_waits_out_a_destination_that_refuses_connections_and_resumes_its_upload() {
    let source = registry_with(berth_bin!(), &[], &[ALLOW_PRIVATE]);
    let mut dest = registry_with(berth_bin!(), &[], &[]);
    let proxy = FaultProxy::start(&dest.host());
    let admin = source.admin();
    admin.create_project("team-a", false);
    dest.admin().create_project("team-a", false);
    let auth = basic("admin", ADMIN_PASSWORD);
    let big = layer(60, 10 << 20);
    let (_, pushed) = push_image_with(
        &http(),
        &source.url(),
        &auth,
        ("team-a/app", "v1"),
        &config_for("team-a/app", "v1"),
        &[&big],
    );
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(json!({"name": "slow", "direction": "push",
            "remote": {"url": proxy.url(), "username": "admin", "password": ADMIN_PASSWORD},
            "filters": {"repositories": "team-a/**"}, "bandwidth": "1MiB/s"})),
    );
    assert_eq!(s, 201, "{v}");
    let id = run(&admin, "slow");
    let big_digest = digest_of(&big);
    wait_until(
        "a chunk of the layer to be at the destination",
        Duration::from_secs(60),
        || {
            let v = execution(&admin, "slow", id);
            let done = v["blobs"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["digest"] == big_digest.as_str()))
                .and_then(|b| b["done"].as_u64())
                .unwrap_or(0);
            if done > 0 {
                Ok(())
            } else {
                Err(format!("{v:#}"))
            }
        },
    );
    // The destination goes away (connections refused) for longer than the
    // next chunk takes to gather at 1 MiB/s, and comes back.
    dest.server.terminate();
    std::thread::sleep(Duration::from_secs(8));
    dest.server.start_again();
    let v = succeeded(&admin, "slow", id);
    let blob = v["blobs"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["digest"] == big_digest.as_str()))
        .cloned()
        .expect("the layer's progress");
    assert!(blob["retries"].as_u64().unwrap_or(0) >= 1, "{blob:#}");
    assert_eq!(blob["status"], "copied", "{blob:#}");
    assert_eq!(
        manifest_digest(&dest.url(), &auth, "team-a/app", "v1").as_deref(),
        Some(pushed.as_str())
    );
    // One upload per blob (a 401 is the token challenge): the layer's upload
    // resumed at the offset the restarted destination reported.
    let starts = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.path.contains("/blobs/uploads/") && s.status == 202)
        .count();
    assert_eq!(starts, 2, "config and layer: {:?}", proxy.seen());
}

#[test]
fn a_scheduled_policy_runs_when_its_minute_comes() {
    let source = registry_with(berth_bin!(), &[], &[ALLOW_PRIVATE]);
    let dest = registry_with(berth_bin!(), &[], &[]);
    let admin = source.admin();
    admin.create_project("team-a", false);
    dest.admin().create_project("team-a", false);
    let auth = basic("admin", ADMIN_PASSWORD);
    let (_, pushed) = push_image_with(
        &http(),
        &source.url(),
        &auth,
        ("team-a/cron", "v1"),
        &config_for("team-a/cron", "v1"),
        &[&layer(70, 1000)],
    );
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(json!({"name": "every-minute", "direction": "push",
            "remote": {"url": dest.url(), "username": "admin", "password": ADMIN_PASSWORD},
            "trigger": {"schedule": "* * * * *"}})),
    );
    assert_eq!(s, 201, "{v}");
    // The next minute boundary, and the scheduler's tick after it.
    wait_until(
        "a scheduled execution to copy the image",
        Duration::from_secs(150),
        || match manifest_digest(&dest.url(), &auth, "team-a/cron", "v1") {
            Some(d) if d == pushed => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let (s, list) = admin.call("GET", "/api/v1/replications/every-minute/executions", None);
    assert_eq!(s, 200, "{list}");
    assert_eq!(list[0]["trigger"], "schedule", "{list}");
}
