//! A push execution to a second berth when a blob's upload breaks part-way:
//! the pushing berth killed -9 in the middle of a `PATCH` and started again,
//! and a link that dies without a word in the middle of one. Counted at the
//! kit's fault proxy in front of the destination: the execution completes,
//! no byte crosses twice beyond the part of the one broken request, the
//! upload resumes in its session, and the digests match on arrival.

use std::time::Duration;

use berth_testkit::berth::{registry_in, registry_with, Admin, Registry, ADMIN_PASSWORD};
use berth_testkit::fixtures::digest_of;
use berth_testkit::http::{basic, push_image_with};
use berth_testkit::manifest::config_for;
use berth_testkit::proxy::{Fault, FaultProxy, Seen};
use berth_testkit::{berth_bin, wait_until};
use serde_json::{json, Value};

const ALLOW_PRIVATE: (&str, &str) = ("BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES", "true");
/// What a push sends per `PATCH` (`Dest::chunk` of a remote).
const CHUNK: u64 = 4 << 20;

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

/// Pushes `team-a/app:v1` (a config and `big`) to `source`: the config and
/// the manifest's digest.
fn image(source: &Registry, big: &[u8]) -> (Vec<u8>, String) {
    let config = config_for("team-a/app", "v1");
    let (_, pushed) = push_image_with(
        &http(),
        &source.url(),
        &basic("admin", ADMIN_PASSWORD),
        ("team-a/app", "v1"),
        &config,
        &[big],
    );
    (config, pushed)
}

/// A push policy `name` of `team-a/**` to `url`, and an execution of it: its id.
fn push_policy_run(admin: &Admin, name: &str, url: &str) -> u64 {
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(json!({"name": name, "direction": "push",
            "remote": {"url": url, "username": "admin", "password": ADMIN_PASSWORD},
            "filters": {"repositories": "team-a/**"}})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = admin.call(
        "POST",
        &format!("/api/v1/replications/{name}/executions"),
        None,
    );
    assert_eq!(s, 202, "{v}");
    v["id"].as_u64().expect("execution id")
}

fn succeeded(admin: &Admin, policy: &str, id: u64) -> Value {
    let v = wait_until("the execution to end", Duration::from_secs(240), || {
        let (_, v) = admin.call(
            "GET",
            &format!("/api/v1/replications/{policy}/executions/{id}"),
            None,
        );
        match v["status"].as_str() {
            Some("running") | None => Err(format!("{v:#}")),
            _ => Ok(v),
        }
    });
    assert_eq!(v["status"], "succeeded", "{v:#}");
    v
}

/// Waits until the proxy holds the upload body at its stall point.
fn stalled(proxy: &FaultProxy, at: u64) {
    wait_until(
        "the upload to reach the stall",
        Duration::from_secs(60),
        || match proxy.upload_bytes() {
            n if n >= at => Ok(()),
            n => Err(format!("{n} bytes")),
        },
    );
}

fn is_upload(s: &Seen) -> bool {
    s.path.contains("/blobs/uploads/")
}

/// What crossed the proxy: each blob's bytes exactly once in answered
/// requests, one broken request carrying less than a chunk, one upload
/// session per blob.
fn crossed_once(proxy: &FaultProxy, blobs: u64) {
    // The broken request is recorded once the proxy lets go of it.
    let seen = wait_until(
        "the broken request to be recorded",
        Duration::from_secs(30),
        || {
            let seen = proxy.seen();
            match seen.iter().any(|s| s.status == 0) {
                true => Ok(seen),
                false => Err(format!("{seen:?}")),
            }
        },
    );
    let answered: u64 = seen
        .iter()
        .filter(|s| is_upload(s) && s.status != 0)
        .map(|s| s.body)
        .sum();
    assert_eq!(answered, blobs, "{seen:?}");
    let broken: Vec<&Seen> = seen.iter().filter(|s| s.status == 0).collect();
    assert_eq!(broken.len(), 1, "{seen:?}");
    assert!(broken[0].body < CHUNK, "{broken:?}");
    let starts = seen
        .iter()
        .filter(|s| s.method == "POST" && is_upload(s) && s.status == 202)
        .count();
    assert_eq!(starts, 2, "config and layer, each in one session: {seen:?}");
}

fn arrived(dest: &Registry, pushed: &str, big: &[u8]) {
    let res = http()
        .get(format!("{}/v2/team-a/app/manifests/v1", dest.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .expect("GET manifest");
    assert_eq!(res.status(), 200);
    assert_eq!(digest_of(&res.bytes().expect("manifest")), pushed);
    let got = http()
        .get(format!(
            "{}/v2/team-a/app/blobs/{}",
            dest.url(),
            digest_of(big)
        ))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("GET blob")
        .bytes()
        .expect("blob");
    assert_eq!(digest_of(&got), digest_of(big), "digests match on arrival");
}

#[test]
fn a_push_survives_kill_9_of_the_pushing_berth_in_the_middle_of_a_patch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut source = registry_in(
        berth_bin!(),
        &tmp.path().join("data"),
        &[],
        &[ALLOW_PRIVATE],
    );
    let dest = registry_with(berth_bin!(), &[], &[]);
    let proxy = FaultProxy::start(&dest.host());
    source.admin().create_project("team-a", false);
    dest.admin().create_project("team-a", false);
    let big = layer(81, 12 << 20);
    let (config, pushed) = image(&source, &big);

    // The layer's second PATCH is held half-way; berth dies meanwhile.
    let at = CHUNK + (2 << 20);
    proxy.set_fault(Fault::UploadStallAt { at });
    let admin = source.admin();
    let id = push_policy_run(&admin, "dr", &proxy.url());
    stalled(&proxy, at);
    source.server.kill9();
    proxy.set_fault(Fault::None);
    source.server.start_again();

    let v = succeeded(&admin, "dr", id);
    let blob = v["blobs"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["digest"] == digest_of(&big).as_str()))
        .cloned()
        .expect("the layer's progress");
    assert_eq!(blob["status"], "copied", "{blob:#}");
    crossed_once(&proxy, (config.len() + big.len()) as u64);
    arrived(&dest, &pushed, &big);
}

#[test]
fn a_push_takes_its_upload_back_at_once_when_only_berth_heard_the_link_break() {
    let source = registry_with(berth_bin!(), &[], &[ALLOW_PRIVATE]);
    // No body-rate floor at the destination: nothing there ever times the
    // dead request out, so only the retry taking its session over frees it.
    let dest = registry_with(berth_bin!(), &[], &[("BERTH_SERVER_MIN_BODY_RATE", "0")]);
    let proxy = FaultProxy::start(&dest.host());
    source.admin().create_project("team-a", false);
    dest.admin().create_project("team-a", false);
    let big = layer(82, 10 << 20);
    let (config, pushed) = image(&source, &big);

    // Half-way through the layer's second PATCH berth's connection is reset;
    // the destination's stays open and silent all along.
    let fault = Fault::UploadHalfCutAt {
        at: CHUNK + (2 << 20),
    };
    proxy.set_fault(fault);
    let admin = source.admin();
    let id = push_policy_run(&admin, "dr", &proxy.url());
    let v = succeeded(&admin, "dr", id);
    assert!(
        v["blobs"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["retries"].as_u64() >= Some(1))),
        "{v:#}"
    );
    proxy.set_fault(Fault::None);
    crossed_once(&proxy, (config.len() + big.len()) as u64);
    arrived(&dest, &pushed, &big);
}
