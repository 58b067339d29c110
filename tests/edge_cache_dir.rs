//! An edge whose cache directory is removed under it while it runs (an
//! operator freeing a disk, a node clean-up job): it recreates what it needs
//! and refills from upstream, and `/healthz` reports unhealthy (503, with the
//! reason) only while the directory cannot be recreated.

mod edge_support;

use berth_testkit::fixtures::ImageBuilder;
use edge_support::*;

fn healthz(base: &str) -> (u16, String) {
    let res = http()
        .get(format!("{base}/healthz"))
        .send()
        .expect("GET /healthz");
    let status = res.status().as_u16();
    (status, res.text().unwrap_or_default())
}

fn pull_all(base: &str, repo: &str, tag: &str, blobs: &[(String, u64)]) {
    let url = format!("{base}/v2/{PROJECT}/{repo}/manifests/{tag}");
    let (status, _, body) =
        get(&url, &[("Accept", MANIFEST_ACCEPT)]).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    for (digest, _) in blobs {
        get_blob_ok(base, repo, digest);
    }
}

#[test]
fn a_removed_cache_directory_is_recreated_and_refilled() {
    if !berth_testkit::require_tools(&["skopeo"]) {
        return;
    }
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_file("etc/hello", "hello\n")
        .layer_random(2 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let mut edge = origin.edge(&cache, &[]);
    let base = edge.base_url();
    let blobs = image.blob_digests();
    pull_all(&base, "app", "v1", &blobs);
    for (digest, _) in &blobs {
        wait_cached(&cache, digest);
    }

    std::fs::remove_dir_all(&cache).expect("rm -rf the cache directory");
    // Pulls work again at once, refilled from upstream into a new cache.
    pull_all(&base, "app", "v1", &blobs);
    for (digest, _) in &blobs {
        wait_cached(&cache, digest);
    }
    assert!(
        cache.join("edge.redb").is_file(),
        "the database was recreated"
    );
    assert_eq!(healthz(&base), (200, "ok".to_string()));

    // What was recorded after the removal is in the new database, so it
    // survives a restart: the cache serves it without asking upstream.
    edge.terminate();
    let blob_gets = origin.blob_gets();
    edge.start_again();
    pull_all(&base, "app", "v1", &blobs);
    assert_eq!(origin.blob_gets(), blob_gets, "served from the cache");

    // Where the directory cannot be recreated, the edge says so.
    std::fs::remove_dir_all(&cache).expect("rm -rf the cache directory");
    std::fs::write(&cache, b"not a directory").expect("a file in its place");
    let (status, reason) = healthz(&base);
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains(&cache.display().to_string()), "{reason}");
    std::fs::remove_file(&cache).expect("remove the file");
    assert_eq!(healthz(&base), (200, "ok".to_string()));
    pull_all(&base, "app", "v1", &blobs);
}
