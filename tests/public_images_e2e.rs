//! Apps that use images of other registries, end to end: Debian's
//! `docker-registry` with htpasswd plays a public registry behind the kit's
//! counting proxy; `berth serve` maps its host to a proxy-cache project
//! (`proxy.hosts`); an app names the image by that host. Publishing resolves
//! the tag once through the proxy project, both nodes' edges prefetch it
//! through the registry, and the rendered pod spec names the image by its
//! host, pinned by digest, which each node's containerd pulls through its
//! edge (hosts.toml for the upstream's host). The upstream sends each layer
//! once. Hosts without a proxy project, and host-less names of missing
//! projects, are refused when the app is created, saying what to do.

mod controller_support;

use std::time::Duration;

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::proxy::FaultProxy;
use berth_testkit::tools::{docker_ref, require_tools, Containerd, CopyOptions, Creds, CtrPull};
use berth_testkit::DistributionProcess;
use controller_support::*;
use serde_json::json;

const LONG: Duration = Duration::from_secs(90);
const UPSTREAM_USER: &str = "puller";
const UPSTREAM_PASSWORD: &str = "upstream-secret-0xBEEF";

#[test]
fn an_app_naming_a_public_image_by_host_runs_on_two_nodes_and_upstream_sends_each_layer_once() {
    if !tools_present() || !require_tools(&["containerd", "ctr"]) {
        return;
    }
    if !DistributionProcess::available() {
        eprintln!("skipping: docker-registry is not installed");
        return;
    }
    let creds = Creds::new(UPSTREAM_USER, UPSTREAM_PASSWORD);
    let upstream = DistributionProcess::builder().user(&creds).start();
    let counting = FaultProxy::start(&upstream.host());
    // What references name: the public registry as the nodes know it.
    let public_host = format!("127.0.0.1:{}", counting.port());
    let hosts = format!("{public_host}=public");
    let env = [
        ("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true"),
        ("BERTH_PROXY_HOSTS", hosts.as_str()),
    ];
    let mut site = Site::start_with(&env);

    let image = ImageBuilder::new()
        .layer_file("etc/greeting", "hello from a public registry\n")
        .layer_random(2 << 20)
        .tag("upstream-1.0")
        .build(&site.layout);
    site.skopeo.copy(
        &site.layout.reference("upstream-1.0"),
        &docker_ref(&upstream.host(), "library/app", "1.0"),
        &CopyOptions::default()
            .preserving_digests()
            .with_dest_creds(&creds),
    );

    // Refused when the app is written, in words that say what to do.
    for (image, says) in [
        ("ghcr.io/org/app:1", "proxy.hosts"),
        ("nginx:1.25", "docker.io"),
        ("team-b/web:1.0", "project team-b does not exist"),
        (&format!("{public_host}/library/app:1.0") as &str, "public"),
    ] {
        let (status, v) = site.api(
            "POST",
            &format!("/api/v1/projects/{PROJECT}/apps"),
            Some(json!({"name": "early", "spec": {"kind": "Deployment",
                "containers": [{"name": "c", "image": image}]}})),
        );
        assert_eq!(status, 400, "{image}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{image}: {error}");
        if image.starts_with("ghcr.io") {
            assert!(error.contains("POST /api/v1/projects"), "{error}");
        }
    }

    // The proxy project its host maps to; public, so the edges' robot reads it.
    let (status, v) = site.api(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "public", "public": true,
            "proxy": {"url": counting.url(), "username": UPSTREAM_USER,
                      "password": UPSTREAM_PASSWORD}})),
    );
    assert_eq!(status, 201, "{v}");
    let registry = site.registry_url();
    for n in ["p1", "p2"] {
        site.start_edge_with(n, &registry, &env);
        let url = site.edge(n).url();
        site.register_node(n, &url, json!({}));
    }

    let reference = format!("{public_host}/library/app:1.0");
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": reference}]}}));
    site.publish("web", json!({"nodes": ["p1", "p2"]}));
    let pinned = format!("{public_host}/library/app@{}", image.digest());
    for n in ["p1", "p2"] {
        let p = site.wait_state("web", n, "running", LONG);
        assert_eq!(p["images"][0]["digest"], image.digest(), "{p:#}");
        assert_eq!(p["images"][0]["repository"], "public/library/app", "{p:#}");
        let file = format!("{PROJECT}-web-deployment-web-{n}.yaml");
        let d = site.read_manifest(n, &file);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"], pinned,
            "{d:#}"
        );
        let edge = site.edge(n);
        assert!(
            edge.pinned(&format!("public/library/app@{}", image.digest())),
            "{n}: {:#?}",
            edge.images()
        );
        assert_eq!(
            edge.missing_blobs(&blob_digests(&image)),
            Vec::<String>::new()
        );
    }

    // Each node's containerd pulls the pinned reference through its edge.
    for n in ["p1", "p2"] {
        let containerd = Containerd::start();
        let edge_url = site.edge(n).url();
        containerd.write_hosts_toml(&public_host, &counting.url(), &[&edge_url]);
        containerd.pull(&pinned, &CtrPull::default());
        assert_eq!(containerd.image_digest(&pinned), image.digest());
        assert_eq!(
            containerd.read_file(&pinned, None, "etc/greeting"),
            b"hello from a public registry\n"
        );
    }

    // Two nodes, two containerd pulls: the public registry sent each layer once.
    for (digest, _) in image.blob_digests() {
        let transfers: Vec<_> = counting
            .blob_gets(&digest)
            .into_iter()
            .filter(|s| s.status == 200 || s.status == 206)
            .collect();
        assert_eq!(transfers.len(), 1, "upstream sent {digest}: {transfers:?}");
    }
}
