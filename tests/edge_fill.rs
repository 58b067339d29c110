//! A fill's clients and its commit, end to end: a client's last byte waits
//! for the blob's digest to be checked, not for the cache to commit the blob.

mod edge_support;

use std::time::Duration;

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::wait_until;
use edge_support::*;

/// The commit runs after the clients have their (verified) last byte: one
/// that fails then (the directory the blob is renamed into is a file) costs
/// the cache its copy, not the client its pull.
#[test]
fn a_client_gets_its_verified_last_byte_even_when_the_commit_then_fails() {
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_random(3 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = origin.edge(cache.path(), &[]);
    let base = edge.base_url();
    let layer = image.layers[0].digest();

    let blob = cached_blob_path(cache.path(), layer);
    let fan_out = blob.parent().expect("the blob's directory").to_path_buf();
    std::fs::create_dir_all(fan_out.parent().expect("the algorithm's directory"))
        .expect("creating the blobs directory");
    std::fs::write(&fan_out, b"not a directory").expect("a file in the way");

    let body = get_blob_ok(&base, "app", layer);
    assert_eq!(body.len() as u64, image.layers[0].size());
    wait_until(
        "the failed commit to be counted",
        Duration::from_secs(20),
        || edge_metric(&edge, "fill_errors_total") >= 1.0,
    );
    assert!(!is_cached(cache.path(), layer));

    // The disk put right, the next client's fill commits it.
    std::fs::remove_file(&fan_out).expect("removing the file in the way");
    get_blob_ok(&base, "app", layer);
    wait_cached(cache.path(), layer);
}
