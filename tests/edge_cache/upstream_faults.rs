//! A faulty upstream: corrupt, cut, stalled or hung transfers, no Content-Length, an
//! upstream that is down (stale tags).

use super::*;

/// Where the edge's fill of `digest` keeps its partial data.
fn fill_ingest_dir(cache: &std::path::Path, digest: &str) -> std::path::PathBuf {
    cache.join("uploads").join(format!(
        "fill-sha256-{}",
        digest.strip_prefix("sha256:").unwrap_or(digest)
    ))
}

/// A client GET of a blob that must fail: a transport error or cut body, or an
/// error status; never a complete 200.
fn assert_blob_get_fails(base: &str, digest: &str, size: u64) {
    let url = format!("{base}/v2/{PROJECT}/app/blobs/{digest}");
    match get(&url, &[]) {
        Err(_) => {}
        Ok((status, _, body)) => assert!(
            status != 200 || (body.len() as u64) < size,
            "GET {url} answered {status} with {} of {size} bytes (digest {}): \
             a broken upstream transfer was served as complete",
            body.len(),
            digest_of(&body)
        ),
    }
}

/// GET the manifest of `PROJECT/app:tag` through `base`; returns (status, Warning header, body).
fn manifest_by_tag(base: &str, tag: &str) -> (u16, Option<String>, Vec<u8>) {
    let url = format!("{base}/v2/{PROJECT}/app/manifests/{tag}");
    let (status, headers, body) =
        get(&url, &[("Accept", MANIFEST_ACCEPT)]).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let warning = headers
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, warning, body)
}

#[test]
fn corrupt_or_cut_upstream_blobs_never_enter_the_cache() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(3 << 20)
        .layer_random(2 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let proxy = FaultProxy::start(&origin.registry.host());
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(&proxy.url(), cache.path(), Some(&origin.robot), &[]);
    let base = edge.base_url();

    // One flipped byte in the middle of the first layer.
    let flipped = &image.layers[0];
    proxy.set_fault(Fault::Corrupt {
        digest: flipped.digest().to_owned(),
        at: flipped.size() / 2,
    });
    assert_blob_get_fails(&base, flipped.digest(), flipped.size());
    wait_until(
        "fill_errors to count the corrupt transfer",
        Duration::from_secs(10),
        || edge_metric(&edge, "fill_errors_total") >= 1.0,
    );
    assert!(!is_cached(cache.path(), flipped.digest()));
    assert!(
        !fill_ingest_dir(cache.path(), flipped.digest()).exists(),
        "the corrupt partial data is discarded"
    );
    // A second client does not get the corrupt bytes from anywhere either.
    assert_blob_get_fails(&base, flipped.digest(), flipped.size());
    assert!(!is_cached(cache.path(), flipped.digest()));

    // Every transfer of the second layer is cut after 256 KiB: the edge
    // retries with Range requests, then gives up without committing anything.
    let cut = &image.layers[1];
    proxy.set_fault(Fault::CutEach {
        digest: cut.digest().to_owned(),
        after: 256 << 10,
    });
    let errors = edge_metric(&edge, "fill_errors_total");
    assert_blob_get_fails(&base, cut.digest(), cut.size());
    wait_until(
        "fill_errors to count the cut transfer",
        Duration::from_secs(20),
        || edge_metric(&edge, "fill_errors_total") > errors,
    );
    assert!(!is_cached(cache.path(), cut.digest()));

    // Faults off: the next pulls succeed with the right bytes, and the cut
    // layer resumes where its kept partial data ends.
    proxy.set_fault(Fault::None);
    let gets_before = proxy.blob_gets(cut.digest()).len();
    get_blob_ok(&base, "app", flipped.digest());
    get_blob_ok(&base, "app", cut.digest());
    wait_cached(cache.path(), flipped.digest());
    wait_cached(cache.path(), cut.digest());
    let resumed = &proxy.blob_gets(cut.digest())[gets_before..];
    assert!(
        resumed.iter().all(|s| s.range.is_some()),
        "the fill after the cut transfers resumes from its partial data: {resumed:?}"
    );
    if require_tools(&["skopeo"]) {
        skopeo_pull_and_verify(&Skopeo::new(), &edge.host(), "app", "v1", &image);
    }
}

#[test]
fn transfer_cut_mid_blob_resumes_with_a_range_request() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(4 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let proxy = FaultProxy::start(&origin.registry.host());
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(&proxy.url(), cache.path(), Some(&origin.robot), &[]);
    let layer = &image.layers[0];
    proxy.set_fault(Fault::CutAt {
        digest: layer.digest().to_owned(),
        at: (3 << 20) / 2,
    });

    // The client never notices: the edge resumes and the body is complete.
    get_blob_ok(&edge.base_url(), "app", layer.digest());
    let gets = proxy.blob_gets(layer.digest());
    assert_eq!(gets.len(), 2, "one cut transfer and one resumed: {gets:?}");
    assert_eq!(gets[0].range, None);
    let range = gets[1].range.clone().expect("resumed with a Range header");
    let from: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap_or_else(|_| panic!("Range {range:?} is bytes=N-"));
    assert!(
        from > 0 && from <= (3 << 20) / 2,
        "resumed from {from}, within what was received"
    );
    assert_eq!(gets[1].status, 206);
    wait_cached(cache.path(), layer.digest());
    assert_eq!(edge_metric(&edge, "fill_errors_total"), 0.0);
    if require_tools(&["skopeo"]) {
        skopeo_pull_and_verify(&Skopeo::new(), &edge.host(), "app", "v1", &image);
    }
}

#[test]
fn upstream_down_cached_tags_are_served_stale_and_the_edge_starts_without_it() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let mut origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_file("etc/hello", "hello\n")
        .layer_random(1 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let cache = tempfile::tempdir().expect("tempdir");
    let mut edge = origin.edge(cache.path(), &[("BERTH_EDGE_TAG_FRESHNESS", "1s")]);
    let skopeo = Skopeo::new();
    skopeo_pull_and_verify(&skopeo, &edge.host(), "app", "v1", &image);
    let (status, warning, _) = manifest_by_tag(&edge.base_url(), "v1");
    assert_eq!((status, warning), (200, None), "fresh while upstream is up");

    origin.registry.server.terminate();
    // Past the tag's freshness, the edge must ask upstream, which is gone.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, warning, body) = manifest_by_tag(&edge.base_url(), "v1");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, image.manifest.bytes);
    let warning = warning.expect("a Warning header on a stale answer");
    assert!(warning.starts_with("110 "), "{warning}");
    skopeo_pull_and_verify(&skopeo, &edge.host(), "app", "v1", &image);
    assert!(edge_metric(&edge, "stale_serves_total") >= 2.0);
    assert!(
        edge.log().contains("serving a stale tag"),
        "the edge logs stale serves"
    );
    // Something never cached is a fast 404, not a 5xx.
    let (status, _, _) = manifest_by_tag(&edge.base_url(), "never-pulled");
    assert_eq!(status, 404);

    // A restart while upstream is still down: the edge starts and serves.
    edge.restart();
    let (status, warning, body) = manifest_by_tag(&edge.base_url(), "v1");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(warning.is_some_and(|w| w.starts_with("110 ")));
    skopeo_pull_and_verify(&skopeo, &edge.host(), "app", "v1", &image);
    assert!(edge_metric(&edge, "stale_serves_total") >= 2.0);
}

#[test]
fn an_upstream_without_content_length_is_filled_and_served() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(1 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let proxy = FaultProxy::start(&origin.registry.host());
    // Blob bodies delimited by the end of the connection, as some proxies and
    // CDNs in front of registries send them.
    proxy.set_strip_length(true);
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(&proxy.url(), cache.path(), Some(&origin.robot), &[]);
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client");
    for (digest, size) in image.blob_digests() {
        let url = format!("{}/v2/{PROJECT}/app/blobs/{digest}", edge.base_url());
        let res = client
            .get(&url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(res.status(), 200);
        let body = res.bytes().expect("body");
        assert_eq!(
            (digest_of(&body), body.len() as u64),
            (digest.clone(), size)
        );
        wait_cached(cache.path(), &digest);
    }
}

#[test]
fn a_hung_upstream_gets_stale_tags_and_fast_404s_not_hung_clients() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(256 << 10)
        .tag("v1")
        .build(&layout);
    let other = ImageBuilder::new()
        .layer_random(256 << 10)
        .tag("v2")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    origin.push(&layout, "v2", "app");
    let proxy = FaultProxy::start(&origin.registry.host());
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(
        &proxy.url(),
        cache.path(),
        Some(&origin.robot),
        &[
            ("BERTH_EDGE_TAG_FRESHNESS", "1s"),
            ("BERTH_EDGE_CONNECT_TIMEOUT", "1s"),
        ],
    );
    let base = edge.base_url();
    assert_eq!(manifest_by_tag(&base, "v1").0, 200);
    for (digest, _) in image.blob_digests() {
        get_blob_ok(&base, "app", &digest);
    }
    std::thread::sleep(std::time::Duration::from_millis(1200));

    // Upstream accepts connections and never answers (overloaded, half
    // dead): the edge must not keep its clients waiting with it.
    proxy.set_hang(true);
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client");
    let started = std::time::Instant::now();
    let res = client
        .get(format!("{base}/v2/{PROJECT}/app/manifests/v1"))
        .header("Accept", MANIFEST_ACCEPT)
        .send()
        .expect("a stale answer, not a hung request");
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("warning"));
    assert_eq!(res.bytes().expect("body").to_vec(), image.manifest.bytes);
    eprintln!("stale answer with upstream hung: {:?}", started.elapsed());
    for path in [
        format!("/v2/{PROJECT}/app/manifests/v2"),
        format!("/v2/{PROJECT}/app/blobs/{}", other.layers[0].digest()),
    ] {
        let started = std::time::Instant::now();
        let res = client
            .get(format!("{base}{path}"))
            .header("Accept", MANIFEST_ACCEPT)
            .send()
            .unwrap_or_else(|e| panic!("{path}: a 404, not a hung request: {e}"));
        assert_eq!(res.status(), 404, "{path}");
        eprintln!("{path} with upstream hung: 404 in {:?}", started.elapsed());
    }
    // Cached blobs never wait for upstream.
    for (digest, _) in image.blob_digests() {
        get_blob_ok(&base, "app", &digest);
    }
    proxy.set_hang(false);
}

#[test]
fn a_stalled_blob_transfer_resumes_instead_of_hanging_its_clients() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(2 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let proxy = FaultProxy::start(&origin.registry.host());
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(
        &proxy.url(),
        cache.path(),
        Some(&origin.robot),
        &[("BERTH_EDGE_CONNECT_TIMEOUT", "500ms")],
    );
    let layer = image.layers[0].digest().to_owned();
    // Upstream stops sending in the middle of the blob and never goes on.
    proxy.set_fault(Fault::StallAt {
        digest: layer.clone(),
        at: 1 << 20,
    });
    let started = std::time::Instant::now();
    get_blob_ok(&edge.base_url(), "app", &layer);
    eprintln!("stalled transfer completed after {:?}", started.elapsed());
    let gets = proxy.blob_gets(&layer);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].range.as_deref(), Some("bytes=1048576-"));
    wait_cached(cache.path(), &layer);
    proxy.set_fault(Fault::None);
}
