//! The site tier end to end: node edges whose upstream is a regional edge,
//! itself in front of the registry. Cold pulls of one image by every node at
//! once cost the registry one transfer of each layer, and the regional edge
//! one per node.

mod edge_support;

use std::sync::{Arc, Barrier};

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::proxy::{FaultProxy, Seen};
use edge_support::*;

const NODES: usize = 4;
const CLIENTS_PER_NODE: usize = 2;

/// Transfers of `digest` a proxy forwarded (whole or ranged).
fn transfers(proxy: &FaultProxy, digest: &str) -> Vec<Seen> {
    proxy
        .blob_gets(digest)
        .into_iter()
        .filter(|s| s.status == 200 || s.status == 206)
        .collect()
}

#[test]
fn node_edges_behind_a_regional_edge_cost_the_registry_each_layer_once() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(3 << 20)
        .layer_random(2 << 20)
        .layer_random(1 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let before = origin.blob_gets();

    // registry <- (counted) <- regional edge <- (counted) <- node edges
    let at_registry = FaultProxy::start(&origin.registry.host());
    let regional_dir = tempfile::tempdir().expect("tempdir");
    let regional = edge(
        &at_registry.url(),
        regional_dir.path(),
        Some(&origin.robot),
        &[],
    );
    let at_regional = FaultProxy::start(&regional.host());
    let node_dirs: Vec<_> = (0..NODES)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let nodes: Vec<_> = node_dirs
        .iter()
        .map(|d| edge(&at_regional.url(), d.path(), None, &[]))
        .collect();

    let blobs = image.blob_digests();
    let barrier = Arc::new(Barrier::new(NODES * CLIENTS_PER_NODE));
    let pulls: Vec<_> = nodes
        .iter()
        .flat_map(|n| std::iter::repeat_n(n.base_url(), CLIENTS_PER_NODE))
        .enumerate()
        .map(|(i, base)| {
            let (barrier, blobs) = (barrier.clone(), blobs.clone());
            let manifest = image.manifest.bytes.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let url = format!("{base}/v2/{PROJECT}/app/manifests/v1");
                let (status, _, body) =
                    get(&url, &[("Accept", MANIFEST_ACCEPT)]).expect("manifest GET");
                assert_eq!(
                    status,
                    200,
                    "client {i}: {}",
                    String::from_utf8_lossy(&body)
                );
                assert_eq!(body, manifest, "client {i}: manifest bytes");
                for (digest, size) in blobs {
                    let bytes = get_blob_ok(&base, "app", &digest);
                    assert_eq!(bytes.len() as u64, size, "client {i}: {digest}");
                }
            })
        })
        .collect();
    for p in pulls {
        p.join().expect("client thread");
    }

    for (digest, _) in &blobs {
        let up = transfers(&at_registry, digest);
        assert_eq!(up.len(), 1, "the registry sent {digest}: {up:?}");
        let down = transfers(&at_regional, digest);
        assert_eq!(
            down.len(),
            NODES,
            "the regional edge sent {digest} once per node: {down:?}"
        );
    }
    assert_eq!(
        origin.blob_gets() - before,
        blobs.len() as f64,
        "the registry served each blob once"
    );
    for (digest, _) in &blobs {
        wait_cached(regional_dir.path(), digest);
        for d in &node_dirs {
            wait_cached(d.path(), digest);
        }
    }
    for n in &nodes {
        assert_eq!(edge_metric(n, "fill_errors_total"), 0.0);
    }
    assert_eq!(edge_metric(&regional, "fill_errors_total"), 0.0);
}
