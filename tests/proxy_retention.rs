//! Capacity and expiry of proxy-cache projects, end to end: Debian's
//! `docker-registry` plays the upstream. A project filled beyond its
//! capacity evicts its least recently pulled image and keeps the one pulled
//! again; a project with a short expiry drops what nobody pulled. (That a
//! publication's image is never evicted is `proxy::retention`'s unit test.)

use std::time::Duration;

use berth_testkit::berth::registry_with;
use berth_testkit::fixtures::media_types::OCI_MANIFEST;
use berth_testkit::http::{push_blob_in_two_steps, send, Auth};
use berth_testkit::manifest::{config_for, image_manifest};
use berth_testkit::{berth_bin, wait_until, DistributionProcess};
use serde_json::{json, Value};

const ACCEPT: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Pushes `name:1` upstream: a config and one layer of `len` bytes.
fn push_upstream(base: &str, name: &str, seed: u8, len: usize) {
    let config = config_for(name, "1");
    let layer: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
        .collect();
    for blob in [&config, &layer] {
        push_blob_in_two_steps(&http(), base, &Auth::None, name, blob.to_vec());
    }
    let manifest = image_manifest(&config, &[&layer]);
    let put = send(
        &http(),
        "PUT",
        &format!("{base}/v2/{name}/manifests/1"),
        &Auth::None,
        Some((OCI_MANIFEST, manifest)),
    );
    assert_eq!(put.status, 201, "manifest push upstream: {put:?}");
}

/// Pulls `repo:1` as a client does: the manifest by tag, then its blobs.
fn pull(base: &str, repo: &str) {
    let res = http()
        .get(format!("{base}/v2/{repo}/manifests/1"))
        .header("Accept", ACCEPT)
        .send()
        .expect("manifest GET");
    assert_eq!(res.status(), 200, "pull {repo}");
    let manifest: Value = res.json().expect("manifest JSON");
    let mut digests = vec![manifest["config"]["digest"].clone()];
    digests.extend(
        manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| l["digest"].clone()),
    );
    for d in digests {
        let d = d.as_str().expect("digest");
        let res = http()
            .get(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .expect("blob GET");
        assert_eq!(res.status(), 200, "blob {d} of {repo}");
        res.bytes().expect("blob body");
    }
}

/// The tags the registry holds for `repo` (none once evicted), without
/// asking upstream.
fn held_tags(admin: &berth_testkit::berth::Admin, project: &str, repo: &str) -> Vec<String> {
    let enc = repo.replace('/', "%2F");
    let (status, tags) = admin.call(
        "GET",
        &format!("/api/v1/projects/{project}/repositories/{enc}/tags"),
        None,
    );
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{tags}");
    tags.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// Last pulls are counted in seconds: a step apart makes the order plain.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn a_full_proxy_project_evicts_the_least_recently_pulled_and_expires_the_unpulled() {
    if !DistributionProcess::available() {
        eprintln!("skipping: docker-registry is not installed");
        return;
    }
    let up = DistributionProcess::builder().start();
    let up_base = format!("http://{}", up.host());
    const MIB: usize = 1 << 20;
    for (i, name) in ["library/a", "library/b", "library/c", "library/old"]
        .iter()
        .enumerate()
    {
        push_upstream(&up_base, name, i as u8, MIB);
    }

    let registry = registry_with(
        berth_bin!(),
        &[],
        &[
            ("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true"),
            ("BERTH_SERVER_PULL_FLUSH_INTERVAL", "1s"),
            ("BERTH_PROXY_SWEEP_INTERVAL", "1s"),
        ],
    );
    let base = registry.url();
    let admin = registry.admin();

    // Room for two images of 1 MiB, not three.
    let (status, created) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "hub", "public": true,
            "proxy": {"url": up_base, "capacity": "2500KiB"}})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["proxy"]["capacity"],
        json!(2500 * 1024),
        "{created}"
    );
    assert_eq!(
        created["proxy"]["capacity_from"],
        json!("project"),
        "{created}"
    );
    let (status, bad) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "bad", "proxy": {"url": up_base, "capacity": "lots"}})),
    );
    assert_eq!(status, 400, "a capacity that is no size: {bad}");

    pull(&base, "hub/library/a");
    next_second();
    pull(&base, "hub/library/b");
    next_second();
    pull(&base, "hub/library/a"); // a is now the more recently pulled
    next_second();
    pull(&base, "hub/library/c"); // over capacity: b must go

    wait_until("b evicted", Duration::from_secs(60), || {
        held_tags(&admin, "hub", "hub/library/b").is_empty()
    });
    assert_eq!(
        held_tags(&admin, "hub", "hub/library/a"),
        ["1"],
        "a was pulled again"
    );
    assert_eq!(
        held_tags(&admin, "hub", "hub/library/c"),
        ["1"],
        "c was just pulled"
    );
    // The eviction hides the tags first, then unlinks: wait for the usage.
    let usage = wait_until("usage within capacity", Duration::from_secs(60), || {
        let (_, shown) = admin.call("GET", "/api/v1/projects/hub", None);
        match shown["proxy"]["usage"].as_u64() {
            Some(u) if u <= 2500 * 1024 => Ok(u),
            _ => Err(shown.to_string()),
        }
    });
    assert!(usage >= 2 * MIB as u64, "two images kept: {usage}");
    assert!(registry.metric("berth_proxy_evicted_images_total") >= 1.0);
    assert!(registry.metric("berth_proxy_evicted_bytes_total") >= MIB as f64);
    admin.audit_until("action=proxy.evict", "the eviction of b", |events| {
        events
            .iter()
            .any(|e| e.to_string().contains("hub/library/b@sha256:"))
    });
    // An evicted image is pulled through again.
    pull(&base, "hub/library/b");

    // Expiry: what nobody pulls within it goes, without any capacity.
    let (status, created) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "brief", "public": true,
            "proxy": {"url": up_base, "expire_after": "3s"}})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["proxy"]["expire_after"], json!("3s"), "{created}");
    pull(&base, "brief/library/old");
    assert_eq!(held_tags(&admin, "brief", "brief/library/old"), ["1"]);
    wait_until(
        "the unpulled image expired",
        Duration::from_secs(60),
        || held_tags(&admin, "brief", "brief/library/old").is_empty(),
    );
    wait_until(
        "the expired image's usage gone",
        Duration::from_secs(60),
        || {
            let (_, shown) = admin.call("GET", "/api/v1/projects/brief", None);
            if shown["proxy"]["usage"] == json!(0) {
                Ok(())
            } else {
                Err(shown.to_string())
            }
        },
    );
}
