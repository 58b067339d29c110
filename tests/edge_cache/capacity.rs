//! What the cache holds: LRU eviction under capacity, pins and readers, shared blobs stored
//! once, the cached images' list and deletion.

use super::*;

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
