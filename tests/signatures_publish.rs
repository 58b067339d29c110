//! The controller and signatures: a project whose `require_signature` policy
//! an image does not meet cannot publish it (the same refusal a pull gets),
//! and publishes it once it is signed. `berth serve` with the controller and
//! a real `berth edge` as the node, as in `controller_e2e.rs`; the signature
//! comes from the kit's independent cosign-format signer.

mod controller_support;

use std::time::Duration;

use berth_testkit::digest_of;
use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::http::{self, basic};
use berth_testkit::tools::{require_signer, CosignKey};
use controller_support::*;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

/// Pushes a cosign signature manifest for `digest` under its `sha256-<hex>.sig`
/// tag in `repo`, over plain HTTP (the project is private).
fn push_tag_signature(site: &Site, repo: &str, digest: &str, key: &CosignKey) {
    let payload_path = site.tmp.path().join("payload.json");
    let sig = key.sign(
        digest,
        &format!("{}/{repo}", site.registry.host()),
        &payload_path,
    );
    let payload = std::fs::read(&payload_path).expect("payload");
    let base = site.registry_url();
    let client = reqwest::blocking::Client::new();
    let auth = basic("admin", berth_testkit::berth::ADMIN_PASSWORD);
    let config = b"{}".to_vec();
    http::push_blob(&client, &base, &auth, repo, config.clone());
    http::push_blob(&client, &base, &auth, repo, payload.clone());
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": digest_of(&payload), "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": sig.signature}}]
    }))
    .expect("manifest");
    let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    let a = http::send(
        &client,
        "PUT",
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &auth,
        Some(("application/vnd.oci.image.manifest.v1+json", manifest)),
    );
    assert_eq!(a.status, 201, "signature push: {a:?}");
}

#[test]
fn unsigned_images_of_a_signing_project_are_not_published() {
    if !tools_present() || !require_signer() {
        return;
    }
    let mut site = Site::start();
    let url = site.registry_url();
    site.add_edge("n1", &url, json!({}));
    let key = CosignKey::generate(site.tmp.path(), "key");
    let (s, v) = site.admin.call(
        "PATCH",
        &format!("/api/v1/projects/{PROJECT}"),
        Some(json!({"require_signature": {"public_keys": [key.public_pem]}})),
    );
    assert_eq!(s, 200, "{v}");
    let img = site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "w", "image": "acme/web:1"}]}}));
    site.publish("web", json!({"nodes": ["n1"]}));
    let p = site
        .wait_publication("web", "n1", "refused by the policy", LONG, |p| {
            p.and_then(|p| p["reason"].as_str())
                .is_some_and(|r| r.contains("require_signature"))
        })
        .expect("publication");
    let reason = p["reason"].as_str().unwrap_or_default();
    assert_eq!(p["state"], "failed", "{p:#}");
    assert!(
        reason.contains(&format!(
            "acme/web@{} is refused by project acme's require_signature policy: the image is not signed",
            img.digest()
        )),
        "{reason}"
    );
    assert!(site.manifests("n1").is_empty());

    // Signed: the publication goes through; the edge fetched the image through the policy.
    push_tag_signature(&site, "acme/web", img.digest(), &key);
    site.wait_state("web", "n1", "running", LONG);
    assert!(!site.manifests("n1").is_empty());
}
