//! Proxy-cache projects of `berth serve`, end to end: Debian's
//! `docker-registry` with htpasswd plays the public registry, behind the
//! kit's counting proxy. Cold pulls by many clients at once cost the upstream
//! each layer once; cached tags are served stale (with a Warning) once the
//! upstream is gone, uncached ones fail at once and say why; pushes are
//! refused; a containerd mirror request (`?ns=docker.io`) reaches its project
//! through `proxy.hosts`; upstreams on private addresses are refused unless
//! the configuration allows them.

use std::time::Duration;

use berth_testkit::berth::{registry_with, ADMIN_PASSWORD};
use berth_testkit::fixtures::media_types::OCI_MANIFEST;
use berth_testkit::fixtures::{digest_of, sha256_hex};
use berth_testkit::http::{basic, push_blob_in_two_steps, send, Auth};
use berth_testkit::manifest::{config_for, image_manifest};
use berth_testkit::proxy::FaultProxy;
use berth_testkit::{berth_bin, wait_until, DistributionProcess};
use serde_json::json;

const UPSTREAM_USER: &str = "puller";
const UPSTREAM_PASSWORD: &str = "upstream-secret-0xC0FFEE";
const ACCEPT: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// GET as an anonymous client: status, Warning header, body.
fn get(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let res = http()
        .get(url)
        .header("Accept", ACCEPT)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    let warning = res
        .headers()
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, warning, res.bytes().expect("body").to_vec())
}

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn a_proxy_project_pulls_through_once_serves_stale_and_takes_no_pushes() {
    if !DistributionProcess::available() {
        eprintln!("skipping: docker-registry is not installed");
        return;
    }
    let creds = berth_testkit::Creds::new(UPSTREAM_USER, UPSTREAM_PASSWORD);
    let mut upstream = Some(DistributionProcess::builder().user(&creds).start());
    let up = upstream.as_ref().expect("upstream");
    let counting = FaultProxy::start(&up.host());
    let up_auth = basic(UPSTREAM_USER, UPSTREAM_PASSWORD);
    let config = config_for("library/app", "1.0");
    let (l1, l2) = (layer(1, 3 << 20), layer(2, 700 << 10));
    let up_base = format!("http://{}", up.host());
    for blob in [&config, &l1, &l2] {
        push_blob_in_two_steps(&http(), &up_base, &up_auth, "library/app", blob.to_vec());
    }
    let manifest = image_manifest(&config, &[&l1, &l2]);
    let manifest_digest = digest_of(&manifest);
    let a = send(
        &http(),
        "PUT",
        &format!("{up_base}/v2/library/app/manifests/1.0"),
        &up_auth,
        Some((OCI_MANIFEST, manifest)),
    );
    assert_eq!(a.status, 201, "manifest push upstream: {a:?}");

    let registry = registry_with(
        berth_bin!(),
        &[],
        &[
            ("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true"),
            ("BERTH_PROXY_HOSTS", "docker.io=hub"),
            ("BERTH_PROXY_TAG_FRESHNESS", "1s"),
            ("BERTH_PROXY_CONNECT_TIMEOUT", "1s"),
        ],
    );
    let base = registry.url();
    let admin = registry.admin();

    // Created public with upstream credentials: the answer says what that means
    // and never shows the password.
    let (status, created) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "hub", "public": true,
            "proxy": {"url": counting.url(), "username": UPSTREAM_USER, "password": UPSTREAM_PASSWORD}})),
    );
    assert_eq!(status, 201, "{created}");
    let text = created.to_string();
    assert!(!text.contains(UPSTREAM_PASSWORD), "password shown: {text}");
    assert!(
        !text.contains("ciphertext"),
        "sealed password shown: {text}"
    );
    assert_eq!(created["proxy"]["password_set"], json!(true), "{text}");
    assert!(
        created["warning"]
            .as_str()
            .is_some_and(|w| w.contains("anonymous users read through")),
        "{text}"
    );
    // Sealed at rest: the password is nowhere in the data directory.
    for file in berth_testkit::proc::files_under(&registry.data_dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes
                .windows(UPSTREAM_PASSWORD.len())
                .any(|w| w == UPSTREAM_PASSWORD.as_bytes()),
            "upstream password in the clear in {}",
            file.display()
        );
    }
    // Without `public`, a proxy project with credentials is private.
    let (status, private) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "hub-private",
            "proxy": {"url": counting.url(), "username": UPSTREAM_USER, "password": UPSTREAM_PASSWORD}})),
    );
    assert_eq!(status, 201, "{private}");
    assert_eq!(private["public"], json!(false), "{private}");
    let (status, _, _) = get(&format!("{base}/v2/hub-private/library/app/manifests/1.0"));
    assert_eq!(status, 401, "anonymous pull of a private proxy project");

    // 8 cold pulls at once: every client gets verified bytes, the upstream
    // sends each layer once.
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                let (status, _, manifest) =
                    get(&format!("{base}/v2/hub/library/app/manifests/1.0"));
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&manifest));
                let m: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest");
                let mut digests = vec![m["config"]["digest"].as_str().expect("config").to_string()];
                for l in m["layers"].as_array().expect("layers") {
                    digests.push(l["digest"].as_str().expect("digest").to_string());
                }
                for d in digests {
                    let (status, _, bytes) = get(&format!("{base}/v2/hub/library/app/blobs/{d}"));
                    assert_eq!(status, 200, "blob {d}");
                    assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), d, "blob bytes");
                }
                digest_of(&manifest)
            })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.join().expect("pull thread"), manifest_digest);
    }
    for l in [&l1, &l2] {
        let d = digest_of(l);
        let transfers: Vec<_> = counting
            .blob_gets(&d)
            .into_iter()
            .filter(|s| s.status == 200 || s.status == 206)
            .collect();
        assert_eq!(transfers.len(), 1, "upstream sent layer {d}: {transfers:?}");
    }

    // A containerd mirror request for docker.io reaches the project.
    let (status, _, m) = get(&format!("{base}/v2/library/app/manifests/1.0?ns=docker.io"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&m));
    assert_eq!(digest_of(&m), manifest_digest);

    // Nothing can be pushed into a proxy project, not even by an administrator.
    let a = send(
        &http(),
        "POST",
        &format!("{base}/v2/hub/library/app/blobs/uploads/"),
        &basic("admin", ADMIN_PASSWORD),
        None,
    );
    assert_eq!(a.describe(), "403 DENIED", "{a:?}");
    assert!(a.message.contains("proxy-cache project"), "{}", a.message);

    // The upstream goes away: the cached tag is served stale, once no longer fresh.
    drop(upstream.take());
    std::thread::sleep(Duration::from_millis(1500));
    let (status, warning, m) = get(&format!("{base}/v2/hub/library/app/manifests/1.0"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&m));
    assert_eq!(digest_of(&m), manifest_digest);
    assert!(
        warning.as_deref().is_some_and(|w| w.starts_with("110 ")),
        "stale answer without a Warning: {warning:?}"
    );
    // A tag never cached fails at once, saying why.
    let a = send(
        &http(),
        "GET",
        &format!("{base}/v2/hub/library/app/manifests/2.0"),
        &Auth::None,
        None,
    );
    assert_eq!(a.status, 404, "{a:?}");
    assert!(
        a.message.contains("not cached") && a.message.contains("unreachable"),
        "{}",
        a.message
    );
    // Layers stay pullable.
    let (status, _, bytes) = get(&format!(
        "{base}/v2/hub/library/app/blobs/{}",
        digest_of(&l1)
    ));
    assert_eq!(status, 200);
    assert_eq!(bytes, l1);
    wait_until("the stale serve counted", Duration::from_secs(5), || {
        registry.metric("berth_proxy_stale_serves_total") >= 1.0
    });
}

#[test]
fn upstreams_on_private_addresses_are_refused_unless_allowed() {
    let registry = registry_with(berth_bin!(), &[], &[]);
    let admin = registry.admin();
    for url in [
        "http://127.0.0.1:5000",
        "http://localhost:5000",
        "http://169.254.169.254",
        "http://10.0.0.8:5000",
        "http://[::1]:5000",
    ] {
        let (status, body) = admin.call(
            "POST",
            "/api/v1/projects",
            Some(json!({"name": "internal", "proxy": {"url": url}})),
        );
        assert_eq!(status, 400, "{url}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("proxy.allow_private_upstreams"),
            "{url}: {error}"
        );
    }
    let (status, body) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "internal", "proxy": {"url": "ftp://example.com"}})),
    );
    assert_eq!(status, 400, "{body}");
    // Only system administrators create proxy projects.
    admin.create_user("dev", "dev-password-1234");
    let (status, body) = admin.as_user("dev", "dev-password-1234").call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "mine", "proxy": {"url": "https://registry-1.docker.io"}})),
    );
    assert_eq!(status, 403, "{body}");
}
