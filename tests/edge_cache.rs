//! The edge cache end to end: the built `berth` binary as registry and edge
//! over 127.0.0.1, pulled through with skopeo and plain HTTP.

mod edge_support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use berth_testkit::berth_bin;
use berth_testkit::fixtures::{digest_of, ImageBuilder};
use berth_testkit::metrics::Metrics;
use berth_testkit::proc::exit_within;
use berth_testkit::proxy::{Fault, FaultProxy};
use berth_testkit::tools::{require_tools, Skopeo};
use berth_testkit::wait_until;
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
    let seen = proxy.seen();
    let count = |method: &str, what: &str| {
        seen.iter()
            .filter(|s| s.method == method && s.path.contains(what))
            .count()
    };
    eprintln!(
        "{clients} concurrent cold pulls: {} origin blob GETs for {} blobs, per blob {per_blob:?}; \
         upstream also saw {} blob HEADs, {} manifest HEADs, {} manifest GETs",
        after - before,
        blobs.len(),
        count("HEAD", "/blobs/"),
        count("HEAD", "/manifests/"),
        count("GET", "/manifests/"),
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
        wait_cached(cache.path(), digest);
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
    let edge = origin.edge(cache.path(), &[]);
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
    let edge = origin.edge(cache.path(), &[]);
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
                wait_until("the blob to be committed", Duration::from_secs(10), || {
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
    let mut child = std::process::Command::new(berth_bin!())
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
    let status = exit_within(
        &mut child,
        Duration::from_secs(20),
        &format!("berth edge --listen 0.0.0.0:{port} without protection to exit"),
    );
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

#[test]
fn capacity_evicts_least_recently_used_first_and_keeps_pinned_images() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    // Five one-layer images of 900 KiB; three fit in 3 MiB.
    let images: Vec<_> = ["p", "a", "b", "c", "d"]
        .iter()
        .map(|tag| {
            ImageBuilder::new()
                .layer_random(900 << 10)
                .tag(tag)
                .build(&layout)
        })
        .collect();
    for tag in ["p", "a", "b", "c", "d"] {
        origin.push(&layout, tag, "app");
    }
    let layer = |i: usize| images[i].layers[0].digest().to_owned();
    let (p, a, b, c, d) = (layer(0), layer(1), layer(2), layer(3), layer(4));
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = origin.edge(cache.path(), &[("BERTH_EDGE_CAPACITY", "3MiB")]);
    let base = edge.base_url();
    let read = |digest: &str| {
        get_blob_ok(&base, "app", digest);
        wait_cached(cache.path(), digest);
        // Distinct access times, so LRU order is unambiguous.
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let cached = |digests: &[&String]| -> Vec<bool> {
        digests.iter().map(|x| is_cached(cache.path(), x)).collect()
    };

    // p is prefetched and pinned first, so it is the least recently used.
    let job = prefetch(&base, &[&format!("{PROJECT}/app:p")], true);
    wait_job_done(&base, &job, 30);
    read(&a);
    read(&b);
    read(&a); // a is now more recent than b
    assert_eq!(edge_metric(&edge, "evictions_total"), 0.0);
    read(&c); // over capacity: b goes, not p (pinned) and not a (used later)
    wait_until("one eviction", Duration::from_secs(10), || {
        edge_metric(&edge, "evictions_total") >= 1.0
    });
    assert_eq!(
        cached(&[&p, &a, &b, &c]),
        [true, true, false, true],
        "[p, a, b, c] cached after reading c"
    );
    read(&d); // a is the least recently used unpinned blob now
    wait_until("a second eviction", Duration::from_secs(10), || {
        edge_metric(&edge, "evictions_total") >= 2.0
    });
    assert_eq!(
        cached(&[&p, &a, &b, &c, &d]),
        [true, false, false, true, true],
        "[p, a, b, c, d] cached after reading d"
    );
    assert_eq!(edge_metric(&edge, "evictions_total"), 2.0);
    assert!(edge_metric(&edge, "cached_bytes") <= (3 << 20) as f64);

    // Evicted blobs come back from upstream on demand.
    read(&b);
    assert!(is_cached(cache.path(), &p), "the pinned layer stays");

    // Once unpinned, p is an ordinary least-recently-used blob.
    let res = http()
        .post(format!("{base}/api/v1/unpin"))
        .json(&serde_json::json!({"images": [format!("{PROJECT}/app:p")]}))
        .send()
        .expect("unpin");
    assert_eq!(res.status(), 200);
    read(&a);
    wait_until(
        "p to be evicted once unpinned",
        Duration::from_secs(10),
        || !is_cached(cache.path(), &p),
    );
}

/// Sends a GET over a raw socket and reads only the response head and `n`
/// body bytes, leaving the rest unread (the server blocks writing it).
fn start_stalled_read(port: u16, path: &str, n: usize) -> (std::net::TcpStream, Vec<u8>, usize) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let k = s.read(&mut buf).expect("read");
        assert!(k > 0, "closed before the head");
        got.extend_from_slice(&buf[..k]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("content-length");
    let mut body = got.split_off(head_end);
    while body.len() < n {
        let k = s.read(&mut buf).expect("read");
        assert!(k > 0);
        body.extend_from_slice(&buf[..k]);
    }
    (s, body, len)
}

#[test]
fn a_blob_being_read_is_not_evicted_under_its_reader() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    // x is larger than the socket buffers, so a stalled reader keeps the
    // edge in the middle of reading it.
    let x = ImageBuilder::new()
        .layer_random(12 << 20)
        .tag("x")
        .build(&layout);
    let y = ImageBuilder::new()
        .layer_random(4 << 20)
        .tag("y")
        .build(&layout);
    let z = ImageBuilder::new()
        .layer_random(4 << 20)
        .tag("z")
        .build(&layout);
    for tag in ["x", "y", "z"] {
        origin.push(&layout, tag, "app");
    }
    let (x, y, z) = (
        x.layers[0].clone(),
        y.layers[0].clone(),
        z.layers[0].clone(),
    );
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = origin.edge(cache.path(), &[("BERTH_EDGE_CAPACITY", "18MiB")]);
    let base = edge.base_url();
    get_blob_ok(&base, "app", x.digest());
    get_blob_ok(&base, "app", y.digest());
    let (mut stalled, mut body, len) = start_stalled_read(
        edge.port(),
        &format!("/v2/{PROJECT}/app/blobs/{}", x.digest()),
        64 << 10,
    );
    assert_eq!(len as u64, x.size());
    std::thread::sleep(std::time::Duration::from_millis(20));
    get_blob_ok(&base, "app", y.digest()); // x is the least recently used now
    get_blob_ok(&base, "app", z.digest()); // over capacity
    wait_until("an eviction", Duration::from_secs(10), || {
        edge_metric(&edge, "evictions_total") >= 1.0
    });
    assert!(
        is_cached(cache.path(), x.digest()) && !is_cached(cache.path(), y.digest()),
        "x, being read, is skipped; y goes instead"
    );
    std::io::Read::read_to_end(&mut stalled, &mut body).expect("rest of x");
    assert_eq!(body.len(), len);
    assert_eq!(digest_of(&body), x.digest(), "the reader got x intact");
}

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
fn blobs_shared_by_repositories_are_fetched_stored_and_counted_once() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(1 << 20)
        .layer_random(1 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    origin.push(&layout, "v1", "other");
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = origin.edge(cache.path(), &[]);
    let base = edge.base_url();
    let blobs = image.blob_digests();
    let total: u64 = blobs.iter().map(|(_, s)| s).sum();
    let gets = origin.blob_gets();

    for (digest, _) in &blobs {
        get_blob_ok(&base, "app", digest);
    }
    // The same blobs for another repository: upstream confirms the link, no
    // second download, by a client and by a prefetch.
    get_blob_ok(&base, "other", &blobs[0].0);
    let id = prefetch(&base, &[&format!("{PROJECT}/other:v1")], false);
    let (job, _) = wait_job_done(&base, &id, 30);
    assert_eq!(job["bytes_done"].as_u64(), Some(total), "{job}");
    for (digest, _) in &blobs {
        get_blob_ok(&base, "other", digest);
    }
    assert_eq!(
        origin.blob_gets() - gets,
        blobs.len() as f64,
        "each blob downloaded once"
    );
    assert_eq!(
        edge_metric(&edge, "cached_bytes"),
        total as f64,
        "cached bytes count each blob once"
    );

    // Bytes lost under recorded metadata (a disk cleanup, a crash) are
    // fetched again on demand, and still counted once.
    std::fs::remove_file(cached_blob_path(cache.path(), &blobs[1].0)).expect("removing a blob");
    get_blob_ok(&base, "app", &blobs[1].0);
    wait_cached(cache.path(), &blobs[1].0);
    assert_eq!(edge_metric(&edge, "cached_bytes"), total as f64);
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

/// This machine's address on its default route, if it has one (not loopback).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn beyond_loopback_clients_must_present_the_edge_credentials() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new().tag("v1").build(&layout);
    origin.push(&layout, "v1", "app");
    let Some(ip) = non_loopback_ip() else {
        eprintln!("SKIP: no non-loopback address to reach the edge from");
        return;
    };
    let cache = tempfile::tempdir().expect("tempdir");
    let port = berth_testkit::free_port();
    let _edge = berth_testkit::ServerProcess::builder(berth_bin!(), port)
        .name("berth-edge")
        .arg("edge")
        .arg("--upstream")
        .arg(origin.registry.url())
        .arg("--listen")
        .arg(format!("0.0.0.0:{port}"))
        .arg("--cache-dir")
        .arg(cache.path())
        .env("BERTH_UPSTREAM_USER", &origin.robot.username)
        .env("BERTH_UPSTREAM_PASSWORD", &origin.robot.password)
        .env("BERTH_EDGE_CLIENT_USER", "node")
        .env("BERTH_EDGE_CLIENT_PASSWORD", "node-secret")
        .ready_path("/healthz")
        .spawn();
    let client = http();
    let manifest = format!("/v2/{PROJECT}/app/manifests/v1");
    let prefetch_jobs = "/api/v1/prefetch".to_owned();
    let status = "/api/v1/status".to_owned();
    for path in [&manifest, &prefetch_jobs, &status] {
        let url = format!("http://{ip}:{port}{path}");
        let res = client
            .get(&url)
            .header("Accept", MANIFEST_ACCEPT)
            .send()
            .expect("GET");
        assert_eq!(res.status(), 401, "{url} without credentials");
        assert!(res.headers().contains_key("www-authenticate"));
        let res = client
            .get(&url)
            .header("Accept", MANIFEST_ACCEPT)
            .basic_auth("node", Some("wrong"))
            .send()
            .expect("GET");
        assert_eq!(res.status(), 401, "{url} with a wrong password");
        let res = client
            .get(&url)
            .header("Accept", MANIFEST_ACCEPT)
            .basic_auth("node", Some("node-secret"))
            .send()
            .expect("GET");
        assert_eq!(res.status(), 200, "{url} with the edge's credentials");
    }
    // Loopback is the node itself (containerd): no credentials needed.
    let (status, _, body) = get(
        &format!("http://127.0.0.1:{port}{manifest}"),
        &[("Accept", MANIFEST_ACCEPT)],
    )
    .expect("GET");
    assert_eq!(status, 200);
    assert_eq!(body, image.manifest.bytes);
}

#[test]
fn cached_images_are_listed_and_can_be_deleted() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(512 << 10)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = origin.edge(cache.path(), &[]);
    let base = edge.base_url();
    let name = format!("{PROJECT}/app:v1");
    let id = prefetch(&base, &[&name], true);
    wait_job_done(&base, &id, 30);
    let total: u64 = image.blob_digests().iter().map(|(_, s)| s).sum();

    let listed: serde_json::Value = http()
        .get(format!("{base}/api/v1/images"))
        .send()
        .and_then(|r| r.json())
        .expect("GET /api/v1/images");
    let entry = listed
        .as_array()
        .expect("a list")
        .iter()
        .find(|i| i["image"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} listed: {listed}"))
        .clone();
    assert_eq!(entry["digest"].as_str(), Some(image.digest()), "{entry}");
    assert_eq!(entry["pinned"], true, "{entry}");
    assert_eq!(entry["cached_bytes"].as_u64(), Some(total), "{entry}");

    let res = http()
        .post(format!("{base}/api/v1/images/delete"))
        .json(&serde_json::json!({ "images": [name] }))
        .send()
        .expect("POST /api/v1/images/delete");
    assert_eq!(res.status(), 200);
    for (digest, _) in image.blob_digests() {
        assert!(!is_cached(cache.path(), &digest), "{digest} deleted");
    }
    assert_eq!(edge_metric(&edge, "cached_bytes"), 0.0);
    // Deleted is not gone for good: the next pull fills again.
    for (digest, _) in image.blob_digests() {
        get_blob_ok(&base, "app", &digest);
    }
}
