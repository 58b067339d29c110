//! Single flight: concurrent cold pulls through one edge fetch each blob from upstream once.

use super::*;

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
