//! Signatures shown and enforced: a project's `require_signature` policy
//! against signatures made by an independent signer (the kit's Python cosign
//! signer, with its key in cosign's encrypted format) and pushed with oras,
//! both under cosign's `sha256-<hex>.sig` tag and as OCI 1.1 referrers.
//!
//! Debian's skopeo and podman are built with sigstore signing disabled, so
//! skopeo only pushes the multi-platform image here. The projects are public:
//! the policy holds for anonymous pulls as for members' (and oras-py's token
//! flow does not get a push token for private projects).

mod common;

use std::path::Path;

use berth_testkit::fixtures::multi_arch_image;
use berth_testkit::tools::{
    docker_ref, oras_push, require_signer, CopyOptions, CosignKey, OrasPush,
};
use berth_testkit::{require_tools, Creds, Flavor, OciLayout, Platform, Skopeo};
use common::*;
use reqwest::Method;
use serde_json::json;

const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const COSIGN_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const NOTATION_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn admin_creds() -> Creds {
    Creds::new("admin", berth_testkit::berth::ADMIN_PASSWORD)
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn set_policy(r: &Reg, project: &str, keys: &[&CosignKey]) -> serde_json::Value {
    let pems: Vec<&str> = keys.iter().map(|k| k.public_pem.as_str()).collect();
    let (s, v) = r.reg.admin().call(
        "PATCH",
        &format!("/api/v1/projects/{project}"),
        Some(json!({"require_signature": {"public_keys": pems}})),
    );
    assert_eq!(s, 200, "{v}");
    v
}

/// Pushes `payload` with `signature` as a cosign layer: under the image's
/// `sha256-<hex>.sig` tag, or as a referrer of it. Returns the manifest digest.
fn push_signature(
    r: &Reg,
    repo: &str,
    image: (&str, u64),
    payload: &Path,
    signature: &str,
    as_referrer: bool,
) -> String {
    let host = r.reg.host();
    let push = if as_referrer {
        OrasPush::new(&host, repo, &format!("cosign-{}", &hex(image.0)[..12]))
            .artifact_type(COSIGN_ARTIFACT)
            .subject_descriptor(image.0, OCI_MANIFEST, image.1)
    } else {
        OrasPush::new(&host, repo, &format!("sha256-{}.sig", hex(image.0)))
    };
    let out = oras_push(
        &push
            .file(payload, SIMPLE_SIGNING)
            .file_annotation(SIGNATURE_ANNOTATION, signature)
            .creds(&admin_creds()),
    );
    out["digest"].as_str().expect("pushed digest").to_owned()
}

/// Signs `image` with `key` (the payload names `names`) and pushes the signature.
fn sign(
    r: &Reg,
    key: &CosignKey,
    repo: &str,
    image: (&str, u64),
    names: &str,
    as_referrer: bool,
    dir: &Path,
) -> String {
    let payload = dir.join(format!(
        "payload-{}-{}.json",
        &hex(image.0)[..12],
        as_referrer
    ));
    let sig = key.sign(names, &format!("{}/{repo}", r.reg.host()), &payload);
    push_signature(r, repo, image, &payload, &sig.signature, as_referrer)
}

#[track_caller]
fn assert_pulls(r: &Reg, repo: &str, reference: &str) {
    for method in [Method::GET, Method::HEAD] {
        let res = r
            .req(method.clone(), &format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", "*/*")
            .send()
            .expect("manifest request");
        assert_eq!(
            res.status(),
            200,
            "{method} {repo}:{reference}: {}",
            describe(res)
        );
    }
}

#[track_caller]
fn assert_denied(r: &Reg, repo: &str, reference: &str, why: &str) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let res = r
        .req(Method::HEAD, &path)
        .header("Accept", "*/*")
        .send()
        .expect("HEAD");
    assert_eq!(res.status(), 403, "HEAD {repo}:{reference}");
    let res = r
        .req(Method::GET, &path)
        .header("Accept", "*/*")
        .send()
        .expect("GET");
    let e = expect_error(res, 403, "DENIED");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("require_signature") && message.contains(why),
        "{repo}:{reference}: {message}"
    );
}

#[test]
fn pulls_need_a_signature_the_policy_keys_verify() {
    if !require_signer() || !require_tools(&["skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Reg::start();
    let admin = r.reg.admin();
    admin.create_project("signed", true);
    admin.create_project("plain", true);
    let trusted = CosignKey::generate(tmp.path(), "trusted");
    let other = CosignKey::generate(tmp.path(), "other");
    let v = set_policy(&r, "signed", &[&trusted]);
    assert_eq!(
        v["require_signature"]["public_keys"][0],
        trusted.public_pem.as_str()
    );

    let push = |tag: &str| {
        let (bytes, digest) = r.push_image("signed/app", tag, &[tag.as_bytes()]);
        (digest, bytes.len() as u64)
    };
    let (d1, d2, d3, d4, d5) = (push("v1"), push("v2"), push("v3"), push("v4"), push("v5"));
    let s1 = sign(
        &r,
        &trusted,
        "signed/app",
        (&d1.0, d1.1),
        &d1.0,
        false,
        tmp.path(),
    );
    sign(
        &r,
        &other,
        "signed/app",
        (&d3.0, d3.1),
        &d3.0,
        false,
        tmp.path(),
    );
    // A genuine signature, but for v1: pushed as v4's.
    sign(
        &r,
        &trusted,
        "signed/app",
        (&d4.0, d4.1),
        &d1.0,
        false,
        tmp.path(),
    );
    // A signature for v5 whose payload was changed after signing.
    let payload = tmp.path().join("v5.json");
    let sig = trusted.sign(&d5.0, "signed/app", &payload);
    let tampered = std::fs::read_to_string(&payload)
        .expect("payload")
        .replace("signed/app", "signed/evil");
    std::fs::write(&payload, tampered).expect("tampered payload");
    push_signature(
        &r,
        "signed/app",
        (&d5.0, d5.1),
        &payload,
        &sig.signature,
        false,
    );

    assert_pulls(&r, "signed/app", "v1");
    assert_pulls(&r, "signed/app", &d1.0);
    assert_denied(&r, "signed/app", "v2", "is not signed");
    assert_denied(&r, "signed/app", &d2.0, "is not signed");
    assert_denied(&r, "signed/app", "v3", "no key of the policy verifies");
    assert_denied(&r, "signed/app", "v4", &format!("is for {}", d1.0));
    assert_denied(&r, "signed/app", "v5", "no key of the policy verifies");
    // The signatures themselves stay pullable, by tag and by digest.
    assert_pulls(&r, "signed/app", &format!("sha256-{}.sig", hex(&d1.0)));
    assert_pulls(&r, "signed/app", &s1);
    assert_pulls(&r, "signed/app", &format!("sha256-{}.sig", hex(&d3.0)));

    // Signed later, as a referrer: the refusal is not remembered past the push,
    // and comes back when the signature is deleted.
    let referrer = sign(
        &r,
        &trusted,
        "signed/app",
        (&d2.0, d2.1),
        &d2.0,
        true,
        tmp.path(),
    );
    assert_pulls(&r, "signed/app", "v2");
    assert_pulls(&r, "signed/app", &referrer);
    let res = r.delete(&format!("/v2/signed/app/manifests/{referrer}"));
    assert_eq!(res.status(), 202, "{}", describe(res));
    assert_denied(&r, "signed/app", "v2", "is not signed");

    // A project without the policy is not affected.
    r.push_image("plain/app", "v1", &[b"plain"]);
    assert_pulls(&r, "plain/app", "v1");

    // Changing the keys changes the verdicts at once; removing the policy lifts it.
    set_policy(&r, "signed", &[&other]);
    assert_denied(&r, "signed/app", "v1", "no key of the policy verifies");
    assert_pulls(&r, "signed/app", "v3");
    let (s, v) = admin.call(
        "PATCH",
        "/api/v1/projects/signed",
        Some(json!({"require_signature": null})),
    );
    assert_eq!(s, 200, "{v}");
    assert!(v.get("require_signature").is_none(), "{v}");
    assert_pulls(&r, "signed/app", "v2");
}

#[test]
fn a_signed_index_keeps_its_children_pullable() {
    if !require_signer() || !require_tools(&["skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("src"));
    let (index, children) = multi_arch_image(
        &layout,
        Flavor::Oci,
        &[Platform::linux_amd64(), Platform::linux_arm64()],
        16 << 10,
        "multi",
    );
    let r = Reg::start();
    r.reg.admin().create_project("signed", true);
    let key = CosignKey::generate(tmp.path(), "key");
    set_policy(&r, "signed", &[&key]);
    Skopeo::new().copy(
        &layout.reference("multi"),
        &docker_ref(&r.reg.host(), "signed/multi", "v1"),
        &CopyOptions::all()
            .preserving_digests()
            .with_dest_creds(&admin_creds()),
    );
    assert_denied(&r, "signed/multi", "v1", "is not signed");
    for c in &children {
        assert_denied(&r, "signed/multi", c.digest(), "is not signed");
    }
    let size = index.manifest.bytes.len() as u64;
    sign(
        &r,
        &key,
        "signed/multi",
        (index.digest(), size),
        index.digest(),
        false,
        tmp.path(),
    );
    assert_pulls(&r, "signed/multi", "v1");
    for c in &children {
        assert_pulls(&r, "signed/multi", c.digest());
    }
    // skopeo pulls the whole signed image back out.
    Skopeo::new().copy(
        &docker_ref(&r.reg.host(), "signed/multi", "v1"),
        &format!("oci:{}:back", tmp.path().join("back").display()),
        &CopyOptions::all()
            .preserving_digests()
            .with_src_creds(&admin_creds()),
    );
}

#[test]
fn tags_show_their_signatures_and_only_project_admins_set_the_policy() {
    if !require_signer() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Reg::start();
    let admin = r.reg.admin();
    admin.create_project("signed", true);
    let key = CosignKey::generate(tmp.path(), "key");
    let (b1, d1) = r.push_image("signed/app", "v1", &[b"one"]);
    let (_, d2) = r.push_image("signed/app", "v2", &[b"two"]);
    let tag_sig = sign(
        &r,
        &key,
        "signed/app",
        (&d1, b1.len() as u64),
        &d1,
        false,
        tmp.path(),
    );
    let ref_sig = sign(
        &r,
        &key,
        "signed/app",
        (&d1, b1.len() as u64),
        &d1,
        true,
        tmp.path(),
    );
    let envelope = tmp.path().join("notation.jws");
    std::fs::write(&envelope, b"{\"payload\":\"not checked here\"}").expect("envelope");
    oras_push(
        &OrasPush::new(&r.reg.host(), "signed/app", "notation-v2")
            .artifact_type(NOTATION_ARTIFACT)
            .subject(&d2)
            .file(&envelope, "application/jose+json")
            .creds(&admin_creds()),
    );

    let tags = |r: &Reg| {
        let (s, v) =
            r.reg
                .admin()
                .call("GET", "/api/v1/projects/signed/repositories/app/tags", None);
        assert_eq!(s, 200, "{v}");
        v.as_array().expect("tags").clone()
    };
    let find = |tags: &[serde_json::Value], name: &str| {
        tags.iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no tag {name} in {tags:?}"))
            .clone()
    };
    let listed = tags(&r);
    let v1 = find(&listed, "v1");
    let sigs = v1["signatures"].as_array().expect("signatures");
    assert_eq!(sigs.len(), 2, "{v1}");
    assert_eq!(sigs[0]["format"], "cosign");
    assert_eq!(sigs[0]["stored_as"], "tag");
    assert_eq!(sigs[0]["manifest"], tag_sig.as_str());
    assert_eq!(sigs[0]["tag"], format!("sha256-{}.sig", hex(&d1)).as_str());
    assert_eq!(sigs[0]["signed_digest"], d1.as_str());
    assert_eq!(sigs[0]["creator"], "berth-testkit cosign_sign.py");
    assert_eq!(sigs[1]["stored_as"], "referrer");
    assert_eq!(sigs[1]["manifest"], ref_sig.as_str());
    assert!(v1.get("signature_policy").is_none(), "no policy yet: {v1}");
    let v2 = find(&listed, "v2");
    assert_eq!(v2["signatures"][0]["format"], "notation", "{v2}");
    assert_eq!(v2["signatures"][0]["stored_as"], "referrer", "{v2}");

    // Project admins set the policy; developers may not; bad keys are refused.
    admin.create_user("dev", "devpass123");
    admin.add_member("signed", "dev", "developer");
    admin.create_user("boss", "bosspass123");
    admin.add_member("signed", "boss", "project-admin");
    let body = json!({"require_signature": {"public_keys": [key.public_pem]}});
    let (s, v) = admin.as_user("dev", "devpass123").call(
        "PATCH",
        "/api/v1/projects/signed",
        Some(body.clone()),
    );
    assert_eq!(s, 403, "{v}");
    let (s, v) = admin.call(
        "PATCH",
        "/api/v1/projects/signed",
        Some(json!({"require_signature": {"public_keys": ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("public_keys[0]"),
        "{v}"
    );
    let (s, v) =
        admin
            .as_user("boss", "bosspass123")
            .call("PATCH", "/api/v1/projects/signed", Some(body));
    assert_eq!(s, 200, "{v}");

    let listed = tags(&r);
    assert_eq!(
        find(&listed, "v1")["signature_policy"]["pull_allowed"],
        true
    );
    let v2 = find(&listed, "v2");
    assert_eq!(v2["signature_policy"]["pull_allowed"], false, "{v2}");
    let reason = v2["signature_policy"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("notation signatures do not satisfy"),
        "{reason}"
    );
    assert_denied(&r, "signed/app", "v2", "notation signatures do not satisfy");
    // The signature tag itself is listed as pullable.
    let sig_tag = find(&listed, &format!("sha256-{}.sig", hex(&d1)));
    assert_eq!(
        sig_tag["signature_policy"]["pull_allowed"], true,
        "{sig_tag}"
    );

    // The OpenAPI document describes both.
    let (s, doc) = admin.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(s, 200);
    let schemas = &doc["components"]["schemas"];
    // TagView flattens the image details in: its own properties are in one
    // of the `allOf` parts.
    let tag_view = &schemas["TagView"];
    assert!(
        tag_view["properties"]["signatures"].is_object()
            || tag_view["allOf"].as_array().is_some_and(|parts| parts
                .iter()
                .any(|p| p["properties"]["signatures"].is_object())),
        "{tag_view}"
    );
    assert!(schemas["ProjectPatch"]["properties"]["require_signature"].is_object());
    assert!(schemas["RequireSignature"]["properties"]["public_keys"].is_object());
}
