//! Prefetch jobs: progress, a crash and resume, the configured platforms of a multi-arch index.

use super::*;

#[test]
fn prefetch_progress_is_monotonic_per_layer_and_done_means_cached() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_file("etc/hello", "hello\n")
        .layer_random(4 << 20)
        .layer_random(3 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    // Slow enough upstream that polls see the job part-way.
    let proxy = FaultProxy::start(&origin.registry.host());
    proxy.set_rate(Some(16 << 20));
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(&proxy.url(), cache.path(), Some(&origin.robot), &[]);
    let base = edge.base_url();

    let id = prefetch(&base, &[&format!("{PROJECT}/app:v1")], false);
    let (job, progress) = wait_job_done(&base, &id, 60);
    let total: u64 = image.blob_digests().iter().map(|(_, s)| s).sum();
    eprintln!("prefetch progress seen: {progress:?} of {total}");
    assert!(
        progress.iter().any(|&p| p > 0 && p < total),
        "progress visible part-way: {progress:?}"
    );
    assert_eq!(job["bytes_total"].as_u64(), Some(total), "{job}");
    assert_eq!(job["bytes_done"].as_u64(), Some(total), "{job}");
    let img = &job["images"][0];
    assert_eq!(img["digest"].as_str(), Some(image.digest()), "{job}");
    assert_eq!(img["state"].as_str(), Some("done"), "{job}");
    let layers = img["layers"].as_array().expect("per-layer progress");
    let mut listed: Vec<(String, u64)> = layers
        .iter()
        .map(|l| {
            assert_eq!(l["state"].as_str(), Some("done"), "{l}");
            assert_eq!(l["bytes_done"], l["size"], "{l}");
            (
                l["digest"].as_str().expect("digest").to_owned(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect();
    let mut expected = image.blob_digests();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "one entry per config and layer");
    // done means the bytes are here: every blob is cached, and pulling now
    // sends nothing more upstream.
    for (digest, _) in &expected {
        assert!(is_cached(cache.path(), digest), "{digest}");
    }
    let upstream_gets = proxy.seen().len();
    for (digest, _) in &expected {
        get_blob_ok(&base, "app", digest);
    }
    assert_eq!(proxy.seen().len(), upstream_gets, "{:?}", proxy.seen());
    let m = Metrics::scrape(&base);
    assert_eq!(m.get("berth_edge_prefetch_jobs", &[("state", "done")]), 1.0);
}

#[test]
fn a_prefetch_job_survives_an_edge_crash_and_resumes() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    // "a": many small layers, finished before the crash; "b": large, in
    // flight when the edge is killed.
    let mut a = ImageBuilder::new().tag("a");
    for i in 0..40 {
        a = a.layer_file(format!("etc/file-{i}"), format!("{i}\n"));
    }
    let a = a.build(&layout);
    let b = ImageBuilder::new()
        .layer_random(2 << 20)
        .layer_random(16 << 20)
        .tag("b")
        .build(&layout);
    origin.push(&layout, "a", "app");
    origin.push(&layout, "b", "app");
    let proxy = FaultProxy::start(&origin.registry.host());
    proxy.set_rate(Some(8 << 20));
    let cache = tempfile::tempdir().expect("tempdir");
    let mut edge = edge(&proxy.url(), cache.path(), Some(&origin.robot), &[]);
    let base = edge.base_url();

    let id = prefetch(
        &base,
        &[&format!("{PROJECT}/app:a"), &format!("{PROJECT}/app:b")],
        true,
    );
    wait_until("b to be part-way", Duration::from_secs(30), || {
        let job = prefetch_job(&base, &id);
        job["images"][1]["bytes_done"].as_u64().unwrap_or(0) > (3 << 20)
    });
    let before = prefetch_job(&base, &id);
    assert_eq!(before["state"].as_str(), Some("running"), "{before}");
    assert_eq!(
        before["images"][0]["state"].as_str(),
        Some("done"),
        "{before}"
    );
    edge.kill9();
    proxy.set_rate(Some(64 << 20));
    edge.start_again();
    assert!(
        edge.log().contains("resuming prefetch job after restart"),
        "the job resumed on its own"
    );
    // Layers finished before the crash are committed (and pinned): from the
    // first look after the restart on, progress never counts less than
    // them while the resumed job re-checks them, and only grows.
    let committed: u64 = before["images"]
        .as_array()
        .expect("images")
        .iter()
        .flat_map(|i| i["layers"].as_array().expect("layers").iter())
        .filter(|l| l["state"] == "done")
        .map(|l| l["size"].as_u64().expect("size"))
        .sum();
    let (job, seen) = wait_job_done(&base, &id, 60);
    eprintln!("progress after the restart: {seen:?}, committed before: {committed}");
    assert!(
        seen[0] >= committed,
        "progress after the restart {seen:?} fell below the {committed} bytes committed before"
    );
    let a_total: u64 = a.blob_digests().iter().map(|(_, s)| s).sum();
    let b_total: u64 = b.blob_digests().iter().map(|(_, s)| s).sum();
    assert_eq!(
        job["bytes_total"].as_u64(),
        Some(a_total + b_total),
        "{job}"
    );
    assert_eq!(job["bytes_done"].as_u64(), Some(a_total + b_total), "{job}");
    assert_eq!(job["pin"].as_bool(), Some(true));
    for (digest, _) in a.blob_digests().into_iter().chain(b.blob_digests()) {
        assert!(is_cached(cache.path(), &digest), "{digest}");
        get_blob_ok(&base, "app", &digest);
    }
}

#[test]
fn prefetching_a_multi_arch_index_takes_only_the_configured_platform() {
    use berth_testkit::fixtures::{multi_arch_image, Flavor, Platform};
    let origin = Origin::start();
    let layout = origin.layout("src");
    let (index, children) = multi_arch_image(
        &layout,
        Flavor::Oci,
        &[Platform::linux_amd64(), Platform::linux_arm64()],
        512 << 10,
        "multi",
    );
    origin.push(&layout, "multi", "app");
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = origin.edge(cache.path(), &[("BERTH_EDGE_PLATFORMS", "linux/arm64")]);
    let base = edge.base_url();
    let id = prefetch(&base, &[&format!("{PROJECT}/app:multi")], false);
    let (job, _) = wait_job_done(&base, &id, 30);
    let (amd64, arm64) = (&children[0], &children[1]);
    assert_eq!(job["images"][0]["digest"].as_str(), Some(index.digest()));
    let mut listed: Vec<String> = job["images"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect();
    listed.sort();
    let mut want: Vec<String> = arm64.blob_digests().into_iter().map(|(d, _)| d).collect();
    want.sort();
    assert_eq!(listed, want, "exactly the arm64 image's blobs: {job}");
    let total: u64 = arm64.blob_digests().iter().map(|(_, s)| s).sum();
    assert_eq!(job["bytes_total"].as_u64(), Some(total));
    for (digest, _) in arm64.blob_digests() {
        assert!(is_cached(cache.path(), &digest), "arm64 {digest}");
    }
    for (digest, _) in amd64.blob_digests() {
        assert!(!is_cached(cache.path(), &digest), "amd64 {digest}");
    }
}

#[test]
fn a_resumed_prefetch_keeps_the_platforms_it_was_asked_for() {
    use berth_testkit::fixtures::{IndexBuilder, Platform};
    let origin = Origin::start();
    let layout = origin.layout("src");
    let amd64 = ImageBuilder::new()
        .platform(Platform::linux_amd64())
        .layer_random(256 << 10)
        .unrecorded()
        .build(&layout);
    let arm64 = ImageBuilder::new()
        .platform(Platform::linux_arm64())
        .layer_random(12 << 20)
        .unrecorded()
        .build(&layout);
    IndexBuilder::new()
        .image(&amd64)
        .image(&arm64)
        .tag("multi")
        .build(&layout);
    origin.push(&layout, "multi", "app");
    let proxy = FaultProxy::start(&origin.registry.host());
    proxy.set_rate(Some(6 << 20));
    let cache = tempfile::tempdir().expect("tempdir");
    // The node's own platform is amd64; the job asks for arm64.
    let mut edge = edge(
        &proxy.url(),
        cache.path(),
        Some(&origin.robot),
        &[("BERTH_EDGE_PLATFORMS", "linux/amd64")],
    );
    let base = edge.base_url();
    let res = http()
        .post(format!("{base}/api/v1/prefetch"))
        .json(&serde_json::json!({
            "images": [format!("{PROJECT}/app:multi")],
            "platforms": ["linux/arm64"],
        }))
        .send()
        .expect("POST /api/v1/prefetch");
    assert_eq!(res.status(), 202);
    let job: serde_json::Value = res.json().expect("job");
    let id = job["id"].as_str().expect("id").to_owned();
    wait_until("the job to be part-way", Duration::from_secs(30), || {
        prefetch_job(&base, &id)["bytes_done"].as_u64().unwrap_or(0) > (1 << 20)
    });
    edge.kill9();
    proxy.set_rate(None);
    edge.start_again();
    let (job, _) = wait_job_done(&base, &id, 60);
    let mut listed: Vec<String> = job["images"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect();
    listed.sort();
    let mut want: Vec<String> = arm64.blob_digests().into_iter().map(|(d, _)| d).collect();
    want.sort();
    assert_eq!(
        listed, want,
        "still the arm64 image after the restart: {job}"
    );
    for (digest, _) in arm64.blob_digests() {
        assert!(is_cached(cache.path(), &digest), "arm64 {digest}");
    }
    assert!(!is_cached(cache.path(), amd64.layers[0].digest()));
}
