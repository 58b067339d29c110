//! containerd pulling private images through the edge cache as its mirror
//! (hosts.toml), the way a node does.

mod edge_support;

use std::time::Instant;

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::metrics::Metrics;
use berth_testkit::tools::{require_tools, Containerd, CtrPull};
use edge_support::*;

#[test]
fn ctr_pulls_a_private_image_through_the_edge_mirror() {
    if !require_tools(&["containerd", "ctr"]) {
        return;
    }
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_file("etc/hello", "hello from the edge\n")
        .layer_random(3 << 20)
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = origin.edge(cache.path(), &[]);

    let containerd = Containerd::start();
    let host = origin.registry.host();
    containerd.write_hosts_toml(&host, &origin.registry.url(), &[&edge.base_url()]);
    let reference = format!("{host}/{PROJECT}/app:v1");
    // No credentials for containerd: the registry itself would refuse it, so
    // a successful pull came from the mirror.
    containerd.pull(&reference, &CtrPull::default());
    assert_eq!(containerd.image_digest(&reference), image.digest());
    assert_eq!(
        containerd.read_file(&reference, None, "etc/hello"),
        b"hello from the edge\n"
    );
    let m = Metrics::scrape(&edge.base_url());
    assert!(m.edge("misses_total") > 0.0, "the edge went upstream");
    assert!(m.edge("served_bytes_total") >= image.layers[1].size() as f64);
    for (digest, _) in image.blob_digests() {
        wait_cached(cache.path(), &digest);
    }
    let requests = m.get(
        "berth_http_requests_total",
        &[("method", "GET"), ("route", "blob"), ("status", "200")],
    );
    assert_eq!(requests, image.blob_digests().len() as f64, "{}", m.text);

    // A second node-local pull (fresh containerd) is all hits.
    let misses = m.edge("misses_total");
    let gets = origin.blob_gets();
    let second = Containerd::start();
    second.write_hosts_toml(&host, &origin.registry.url(), &[&edge.base_url()]);
    second.pull(&reference, &CtrPull::default());
    assert_eq!(
        second.read_file(&reference, None, "etc/hello"),
        b"hello from the edge\n"
    );
    assert_eq!(edge_metric(&edge, "misses_total"), misses);
    assert_eq!(
        origin.blob_gets(),
        gets,
        "nothing fetched from the origin again"
    );
}

#[test]
fn without_upstream_credentials_the_edge_answers_404_and_containerd_falls_back() {
    if !require_tools(&["containerd", "ctr"]) {
        return;
    }
    let origin = Origin::start();
    let layout = origin.layout("src");
    let image = ImageBuilder::new()
        .layer_file("etc/hello", "private\n")
        .tag("v1")
        .build(&layout);
    origin.push(&layout, "v1", "app");
    let cache = tempfile::tempdir().expect("tempdir");
    // No robot: the edge's upstream account cannot read the private project.
    let edge = edge(&origin.registry.url(), cache.path(), None, &[]);
    let base = edge.base_url();

    let host = origin.registry.host();
    let ns = format!("ns={host}");
    for path in [
        format!("/v2/{PROJECT}/app/manifests/v1?{ns}"),
        format!("/v2/{PROJECT}/app/manifests/{}?{ns}", image.digest()),
        format!("/v2/{PROJECT}/app/blobs/{}?{ns}", image.layers[0].digest()),
    ] {
        let started = Instant::now();
        let (status, _, body) =
            get(&format!("{base}{path}"), &[("Accept", MANIFEST_ACCEPT)]).expect("GET");
        eprintln!("{path}: {status} in {:?}", started.elapsed());
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("OCI error body");
        assert!(v["errors"][0]["code"].is_string(), "{v}");
    }
    assert!(!is_cached(cache.path(), image.layers[0].digest()));

    let containerd = Containerd::start();
    containerd.write_hosts_toml(&host, &origin.registry.url(), &[&base]);
    let reference = format!("{host}/{PROJECT}/app:v1");
    // Neither the mirror nor (without credentials) the registry serves it.
    let failure = containerd
        .try_pull(&reference, &CtrPull::default())
        .expect_err("a private image without any credentials");
    eprintln!("{failure}");
    assert!(
        failure.stderr.contains("trying next host"),
        "containerd moved on from the mirror's 404"
    );
    // With the user's credentials containerd falls back to the registry.
    containerd.pull(
        &reference,
        &CtrPull {
            creds: Some(origin.robot.clone()),
            ..CtrPull::default()
        },
    );
    assert_eq!(containerd.image_digest(&reference), image.digest());
    assert_eq!(
        containerd.read_file(&reference, None, "etc/hello"),
        b"private\n"
    );
    let m = Metrics::scrape(&base);
    assert_eq!(
        m.get(
            "berth_http_requests_total",
            &[("method", "GET"), ("route", "blob"), ("status", "500")]
        ),
        0.0
    );
}
