//! A proxy-cache project whose upstream is another berth, speaking Docker's
//! token flow: the upstream's project is private, so every fetch needs a
//! Bearer token from the upstream's `/v2/token` for the account the proxy
//! project was given. Eight cold pulls at once cost the upstream each layer
//! once (counted at the kit's proxy in front of it); a wrong password is a
//! refusal that says to check the upstream credentials, not a 5xx.

use std::time::Duration;

use berth_testkit::berth::{registry_with, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::{digest_of, sha256_hex};
use berth_testkit::http::{basic, push_image_with, send, Auth};
use berth_testkit::manifest::config_for;
use berth_testkit::proxy::FaultProxy;
use serde_json::{json, Value};

const PULLER: &str = "puller";
const PULLER_PASSWORD: &str = "puller2024ok";
const ACCEPT: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed))
        .collect()
}

/// Anonymous GET: status and body.
fn get(url: &str) -> (u16, Vec<u8>) {
    let res = http()
        .get(url)
        .header("Accept", ACCEPT)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (res.status().as_u16(), res.bytes().expect("body").to_vec())
}

#[test]
fn a_proxy_project_reads_a_private_project_of_another_berth_with_tokens() {
    // The upstream: a berth with a private project only `puller` may read.
    let upstream = registry_with(berth_bin!(), &[], &[]);
    let up_admin = upstream.admin();
    up_admin.create_project("vendor", false);
    up_admin.create_user(PULLER, PULLER_PASSWORD);
    up_admin.add_member("vendor", PULLER, "guest");
    let config = config_for("vendor/app", "1.0");
    let (l1, l2) = (layer(3, 2 << 20), layer(4, 300 << 10));
    let (manifest, manifest_digest) = push_image_with(
        &http(),
        &upstream.url(),
        &basic("admin", ADMIN_PASSWORD),
        ("vendor/app", "1.0"),
        &config,
        &[&l1, &l2],
    );
    // Anonymous readers get the token challenge: the project is private.
    let a = send(
        &http(),
        "GET",
        &format!("{}/v2/vendor/app/manifests/1.0", upstream.url()),
        &Auth::None,
        None,
    );
    assert_eq!(a.status, 401, "{a:?}");
    let counting = FaultProxy::start(&upstream.host());

    let registry = registry_with(
        berth_bin!(),
        &[],
        &[("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true")],
    );
    let admin = registry.admin();
    let (status, created) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "partner", "public": true,
            "proxy": {"url": counting.url(), "username": PULLER, "password": PULLER_PASSWORD}})),
    );
    assert_eq!(status, 201, "{created}");
    let base = registry.url();

    // Eight cold pulls at once: each client gets verified bytes, the
    // upstream sends each layer once.
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                let (status, m) = get(&format!("{base}/v2/partner/vendor/app/manifests/1.0"));
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&m));
                let parsed: Value = serde_json::from_slice(&m).expect("manifest");
                let mut digests = vec![parsed["config"]["digest"]
                    .as_str()
                    .expect("config")
                    .to_string()];
                for l in parsed["layers"].as_array().expect("layers") {
                    digests.push(l["digest"].as_str().expect("digest").to_string());
                }
                for d in digests {
                    let (status, bytes) = get(&format!("{base}/v2/partner/vendor/app/blobs/{d}"));
                    assert_eq!(status, 200, "blob {d}");
                    assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), d, "blob bytes");
                }
                m
            })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.join().expect("pull thread"), manifest);
    }
    assert_eq!(digest_of(&manifest), manifest_digest);
    for l in [&l1, &l2] {
        let d = digest_of(l);
        let sent: Vec<_> = counting
            .blob_gets(&d)
            .into_iter()
            .filter(|s| s.status == 200 || s.status == 206)
            .collect();
        assert_eq!(sent.len(), 1, "upstream sent layer {d}: {sent:?}");
    }
    // The fetches went with tokens: the upstream answered the first request
    // without one with its challenge, and nothing after a token was refused.
    let seen = counting.seen();
    assert!(
        seen.iter().any(|s| s.status == 401),
        "no token challenge was seen: {seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|s| s.path.contains("/blobs/"))
            .all(|s| s.status != 401 && s.status != 403),
        "a blob fetch was refused: {seen:?}"
    );

    // The same upstream with a wrong password: a refusal naming the
    // credentials, never a server error.
    let (status, created) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "partner-bad", "public": true,
            "proxy": {"url": counting.url(), "username": PULLER, "password": "wrong2024pass"}})),
    );
    assert_eq!(status, 201, "{created}");
    let a = send(
        &http(),
        "GET",
        &format!("{base}/v2/partner-bad/vendor/app/manifests/1.0"),
        &Auth::None,
        None,
    );
    assert!(a.status < 500, "wrong upstream password: {a:?}");
    assert!(
        a.message.contains("upstream") && a.message.contains("credentials"),
        "{a:?}"
    );
}
