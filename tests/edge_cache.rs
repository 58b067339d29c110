//! The edge cache end to end: the built `berth` binary as registry and edge
//! over 127.0.0.1, pulled through with skopeo and plain HTTP.

mod edge_support;

use std::sync::{Arc, Barrier};

use berth_testkit::fixtures::{digest_of, ImageBuilder};
use berth_testkit::tools::{require_tools, Skopeo};
use edge_support::*;

/// N clients GET every blob of a cold image at once through one edge, whose
/// upstream (a proxy in front of the registry) stalls in the middle of the
/// first layer until a reader has seen bytes of it: so every client joins a
/// fill in progress, and bytes reach clients while the blob downloads.
/// Returns the origin GETs per blob.
fn concurrent_cold_pulls(clients: usize) -> Vec<usize> {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(6 << 20)
        .layer_random(5 << 20)
        .layer_random(4 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let proxy = FaultProxy::start(&origin.registry.host());
    let first_layer = image.layers[0].digest().to_owned();
    proxy.set_fault(Fault::StallAt {
        digest: first_layer.clone(),
        at: 3 << 20,
    });
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(&proxy.url(), cache.path(), Some(&origin.robot), &[]);
    let before = origin.blob_gets();

    let barrier = Arc::new(Barrier::new(clients + 1));
    let base = edge.base_url();
    let blobs = image.blob_digests();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (barrier, base, blobs) = (barrier.clone(), base.clone(), blobs.clone());
            let manifest = image.manifest.bytes.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let url = format!("{base}/v2/{PROJECT}/app/manifests/v1");
                let (status, _, body) =
                    get(&url, &[("Accept", MANIFEST_ACCEPT)]).expect("manifest GET");
                assert_eq!(status, 200, "client {i}: manifest");
                assert_eq!(body, manifest, "client {i}: manifest bytes");
                // Half the clients walk the blobs backwards, so fills overlap.
                let mut order = blobs.clone();
                if i % 2 == 1 {
                    order.reverse();
                }
                for (digest, size) in order {
                    let bytes = get_blob_ok(&base, "app", &digest);
                    assert_eq!(bytes.len() as u64, size);
                }
            })
        })
        .collect();
    barrier.wait();
    // While upstream is stalled at 3 MiB, a reader gets the first 2 MiB: the
    // fill streams to clients before it is complete.
    let url = format!("{base}/v2/{PROJECT}/app/blobs/{first_layer}");
    let mut res = http().get(&url).send().expect("GET first layer");
    assert_eq!(res.status(), 200);
    let mut head = vec![0u8; 2 << 20];
    std::io::Read::read_exact(&mut res, &mut head).expect("first 2 MiB while the fill runs");
    assert!(!is_cached(cache.path(), &first_layer), "not committed yet");
    proxy.set_fault(Fault::None);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut res, &mut rest).expect("rest of the first layer");
    head.extend_from_slice(&rest);
    assert_eq!(digest_of(&head), first_layer);
    for t in threads {
        t.join().expect("client thread");
    }

    let after = origin.blob_gets();
    let per_blob: Vec<usize> = blobs
        .iter()
        .map(|(d, _)| proxy.blob_gets(d).len())
        .collect();
    eprintln!(
        "{clients} concurrent cold pulls: {} origin blob GETs for {} blobs, per blob {per_blob:?}",
        after - before,
        blobs.len()
    );
    let m = Metrics::scrape(&edge.base_url());
    assert_eq!(m.edge("fill_errors_total"), 0.0);
    assert_eq!(per_blob, vec![1; blobs.len()], "one upstream GET per blob");
    assert_eq!(
        after - before,
        blobs.len() as f64,
        "the registry served each blob once"
    );
    for (digest, _) in &blobs {
        assert!(is_cached(cache.path(), digest), "{digest} cached");
    }
    per_blob
}

#[test]
fn single_flight_8_concurrent_cold_pulls_fetch_each_blob_once() {
    concurrent_cold_pulls(8);
}

#[test]
fn single_flight_32_concurrent_cold_pulls_fetch_each_blob_once() {
    concurrent_cold_pulls(32);
}

#[test]
fn single_flight_8_concurrent_skopeo_pulls() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_file("etc/hello", "hello\n")
        .layer_random(6 << 20)
        .layer_random(6 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(
        &origin.registry.url(),
        cache.path(),
        Some(&origin.robot),
        &[],
    );
    let before = origin.blob_gets();
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (barrier, host, image) = (barrier.clone(), edge.host(), image.clone());
            std::thread::spawn(move || {
                let skopeo = Skopeo::new();
                barrier.wait();
                skopeo_pull_and_verify(&skopeo, &host, "app", "v1", &image);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("skopeo thread");
    }
    let gets = origin.blob_gets() - before;
    eprintln!(
        "8 concurrent skopeo pulls: {gets} origin blob GETs for {} blobs",
        image.blob_digests().len()
    );
    assert_eq!(gets, image.blob_digests().len() as f64);
}

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
    eventually(10, "fill_errors to count the corrupt transfer", || {
        edge_metric(&edge, "fill_errors_total") >= 1.0
    });
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
    eventually(20, "fill_errors to count the cut transfer", || {
        edge_metric(&edge, "fill_errors_total") > errors
    });
    assert!(!is_cached(cache.path(), cut.digest()));

    // Faults off: the next pulls succeed with the right bytes, and the cut
    // layer resumes where its kept partial data ends.
    proxy.set_fault(Fault::None);
    let gets_before = proxy.blob_gets(cut.digest()).len();
    get_blob_ok(&base, "app", flipped.digest());
    get_blob_ok(&base, "app", cut.digest());
    assert!(is_cached(cache.path(), flipped.digest()));
    assert!(is_cached(cache.path(), cut.digest()));
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
    assert!(is_cached(cache.path(), layer.digest()));
    assert_eq!(edge_metric(&edge, "fill_errors_total"), 0.0);
    if require_tools(&["skopeo"]) {
        skopeo_pull_and_verify(&Skopeo::new(), &edge.host(), "app", "v1", &image);
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
    let mut edge = edge(
        &origin.registry.url(),
        cache.path(),
        Some(&origin.robot),
        &[("BERTH_EDGE_TAG_FRESHNESS", "1s")],
    );
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
fn containerd_style_requests_ns_parameter_and_ranges() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(1 << 20)
        .layer_random(1 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = edge(
        &origin.registry.url(),
        cache.path(),
        Some(&origin.robot),
        &[],
    );
    let base = edge.base_url();
    let ns = format!("ns={}", origin.registry.host());
    let client = http();

    // Resolve as containerd does: HEAD by tag with ?ns=, digest from the headers.
    let res = client
        .head(format!("{base}/v2/{PROJECT}/app/manifests/v1?{ns}"))
        .header("Accept", format!("{MANIFEST_ACCEPT}, */*"))
        .send()
        .expect("HEAD manifest");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["docker-content-digest"].to_str().ok(),
        Some(image.digest())
    );
    assert_eq!(
        res.headers()["content-length"].to_str().ok(),
        Some(image.manifest.bytes.len().to_string().as_str())
    );
    let res = client
        .get(format!(
            "{base}/v2/{PROJECT}/app/manifests/{}?{ns}",
            image.digest()
        ))
        .header("Accept", MANIFEST_ACCEPT)
        .send()
        .expect("GET manifest");
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().expect("body").to_vec(), image.manifest.bytes);

    // Range on a cold blob (answered while it fills) and on a cached one.
    for layer in &image.layers {
        let full = layer.read();
        // HEAD of a cold blob: the size upstream has.
        let res = client
            .head(format!(
                "{base}/v2/{PROJECT}/app/blobs/{}?{ns}",
                layer.digest()
            ))
            .send()
            .expect("HEAD blob");
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-length"].to_str().ok(),
            Some(full.len().to_string().as_str()),
            "HEAD of a cold blob"
        );
        for round in ["cold", "cached"] {
            let res = client
                .get(format!(
                    "{base}/v2/{PROJECT}/app/blobs/{}?{ns}",
                    layer.digest()
                ))
                .header("Range", "bytes=1000-")
                .send()
                .expect("ranged GET");
            assert_eq!(res.status(), 206, "{round}");
            assert_eq!(
                res.headers()["content-range"].to_str().ok(),
                Some(format!("bytes 1000-{}/{}", full.len() - 1, full.len()).as_str()),
                "{round}"
            );
            assert_eq!(res.bytes().expect("body").to_vec(), full[1000..], "{round}");
            if round == "cold" {
                eventually(10, "the blob to be committed", || {
                    is_cached(cache.path(), layer.digest())
                });
            }
        }
        let res = client
            .get(format!(
                "{base}/v2/{PROJECT}/app/blobs/{}?{ns}",
                layer.digest()
            ))
            .header("Range", "bytes=10-19")
            .send()
            .expect("ranged GET");
        assert_eq!(res.status(), 206);
        assert_eq!(res.bytes().expect("body").to_vec(), full[10..20]);
    }
    // The config, unranged, with ?ns=.
    let res = client
        .get(format!(
            "{base}/v2/{PROJECT}/app/blobs/{}?{ns}",
            image.config.digest()
        ))
        .send()
        .expect("GET config");
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().expect("body").to_vec(), image.config.bytes);
}

#[test]
fn listening_beyond_loopback_without_protection_is_refused() {
    let cache = tempfile::tempdir().expect("tempdir");
    let port = berth_testkit::free_port();
    let mut child = std::process::Command::new(BIN)
        .args(["edge", "--upstream", "http://127.0.0.1:9", "--listen"])
        .arg(format!("0.0.0.0:{port}"))
        .arg("--cache-dir")
        .arg(cache.path())
        .env_remove("BERTH_EDGE_CLIENT_USER")
        .env_remove("BERTH_EDGE_TRUSTED_NETWORKS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning berth edge");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for berth edge") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth edge --listen 0.0.0.0:{port} without protection kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0")
            && stderr.contains("trusted_networks")
            && stderr.contains("client_user"),
        "a clear message naming the fix: {stderr}"
    );
    assert!(
        !cache.path().join("edge.redb").exists(),
        "refused before touching the cache"
    );
}
