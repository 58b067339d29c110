//! The edge's clients: containerd's requests (ns parameter, ranges), and who may reach an
//! edge beyond loopback.

use super::*;

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
