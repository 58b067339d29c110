//! The edge's pull-through namespace over HTTP: what a cached manifest
//! brings with it (its place in its subject's referrers), listings while the
//! upstream is down (from the cache, with the stale `Warning`), and what the
//! edge settles at start-up (fills cut off before a durable byte, blob files
//! that no record counts).

mod edge_support;

use berth_testkit::berth::ADMIN_PASSWORD;
use berth_testkit::fixtures::{digest_of, media_types};
use berth_testkit::http::{basic, push_blob, push_image, send, Auth};
use berth_testkit::manifest::artifact_manifest;
use edge_support::*;

const SIG: &str = "application/vnd.example.sig";
const SBOM: &str = "application/vnd.example.sbom";

fn admin() -> Auth {
    basic("admin", ADMIN_PASSWORD)
}

/// Pushes an artifact of `artifact_type` referring to `subject` (pushed by
/// digest, untagged, as signing tools do); returns its digest.
fn push_referrer(base: &str, repo: &str, subject: &[u8], artifact_type: &str) -> String {
    let blob = format!("{{\"about\": \"{artifact_type}\"}}").into_bytes();
    push_blob(&http(), base, &admin(), repo, b"{}".to_vec());
    push_blob(&http(), base, &admin(), repo, blob.clone());
    let manifest = artifact_manifest(
        artifact_type,
        subject,
        media_types::OCI_MANIFEST,
        &blob,
        artifact_type,
    );
    let d = digest_of(&manifest);
    let a = send(
        &http(),
        "PUT",
        &format!("{base}/v2/{repo}/manifests/{d}"),
        &admin(),
        Some((media_types::OCI_MANIFEST, manifest)),
    );
    assert_eq!(a.status, 201, "referrer push: {a:?}");
    d
}

/// GET `path` through `base`: status, Warning header, body as JSON.
fn get_json(base: &str, path: &str) -> (u16, Option<String>, serde_json::Value) {
    let url = format!("{base}{path}");
    let (status, headers, body) =
        get(&url, &[("Accept", MANIFEST_ACCEPT)]).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let warning = headers
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, warning, v)
}

/// The digests of a referrers answer, sorted.
fn listed(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("a referrers index: {v}"))
        .iter()
        .map(|d| d["digest"].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

fn assert_stale(warning: &Option<String>, what: &str) {
    let w = warning
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: no Warning on an answer from the cache"));
    assert!(w.starts_with("110 "), "{what}: {w}");
}

/// Finding: the edge's manifest cache never wrote the referrers index, so
/// with the upstream down a verifier asking the edge for an image's
/// signatures got 200 with an empty list (and no Warning) although every
/// signature manifest was in the cache: an unsigned image, as far as it knew.
#[test]
fn referrers_of_cached_manifests_are_answered_stale_while_upstream_is_down() {
    let mut origin = Origin::start();
    let up = origin.registry.url();
    let repo = format!("{PROJECT}/signed");
    let pushed = push_image(&http(), &up, &admin(), &repo, "v1");
    let (subject, subject_digest) = (pushed.manifest, pushed.digest);
    let sig = push_referrer(&up, &repo, &subject, SIG);
    let sbom = push_referrer(&up, &repo, &subject, SBOM);
    let mut both = vec![sig.clone(), sbom.clone()];
    both.sort();

    let cache = tempfile::tempdir().expect("tempdir");
    let mut edge = origin.edge(cache.path(), &[]);
    let base = edge.base_url();
    let path = format!("/v2/{repo}/referrers/{subject_digest}");
    let (status, warning, v) = get_json(&base, &path);
    assert_eq!((status, warning), (200, None), "{v}");
    assert_eq!(listed(&v), both, "upstream's answer");
    // A verifier fetches the image and each referrer it will check.
    let (status, _, _) = get_json(&base, &format!("/v2/{repo}/manifests/v1"));
    assert_eq!(status, 200);
    for d in [&sig, &sbom] {
        let (status, _, m) = get_json(&base, &format!("/v2/{repo}/manifests/{d}"));
        assert_eq!(status, 200, "{m}");
    }

    origin.registry.server.terminate();
    let (status, warning, v) = get_json(&base, &path);
    assert_eq!(status, 200, "{v}");
    assert_eq!(listed(&v), both, "the cached referrers");
    assert_stale(&warning, "referrers");
    let sig_entry = v["manifests"]
        .as_array()
        .and_then(|m| m.iter().find(|d| d["digest"] == sig.as_str()))
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(sig_entry["artifactType"], SIG);
    assert_eq!(sig_entry["mediaType"], media_types::OCI_MANIFEST);
    let (status, warning, v) = get_json(&base, &format!("{path}?artifactType={SIG}"));
    assert_eq!((status, listed(&v)), (200, vec![sig.clone()]));
    assert_stale(&warning, "filtered referrers");
    // A subject nothing refers to in the cache: an empty index, still marked.
    let other = digest_of(b"not a subject");
    let (status, warning, v) = get_json(&base, &format!("/v2/{repo}/referrers/{other}"));
    assert_eq!((status, listed(&v)), (200, Vec::<String>::new()));
    assert_stale(&warning, "referrers of an unknown subject");
    // Tags too are what the cache knows, marked.
    let (status, warning, v) = get_json(&base, &format!("/v2/{repo}/tags/list"));
    assert_eq!((status, &v["tags"]), (200, &serde_json::json!(["v1"])));
    assert_stale(&warning, "tags");

    // What the cache recorded survives a restart with the upstream still down.
    edge.restart();
    let (status, warning, v) = get_json(&edge.base_url(), &path);
    assert_eq!((status, listed(&v)), (200, both));
    assert_stale(&warning, "referrers after a restart");
}

/// Where the edge's content store keeps ingests (fills in progress).
fn ingest_dir(cache: &std::path::Path, id: &str) -> std::path::PathBuf {
    cache.join("uploads").join(id)
}

/// At start-up the edge settles what a crash left: a fill that never wrote a
/// durable byte is discarded, and a blob file that no record counts (an
/// eviction cut off between its record and its bytes) is deleted; what is
/// recorded is served without asking upstream.
#[test]
fn the_edge_discards_unacknowledged_fills_and_unrecorded_blobs_at_start() {
    let origin = Origin::start();
    let up = origin.registry.url();
    let repo = format!("{PROJECT}/app");
    push_image(&http(), &up, &admin(), &repo, "v1");
    let cache = tempfile::tempdir().expect("tempdir");
    let mut edge = origin.edge(cache.path(), &[]);
    let base = edge.base_url();
    let (status, _, m) = get_json(&base, &format!("/v2/{repo}/manifests/v1"));
    assert_eq!(status, 200, "{m}");
    let layer = m["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    get_blob_ok(&base, "app", &layer);
    wait_cached(cache.path(), &layer);
    edge.terminate();

    // An unrecorded blob file, and a fill cut off before its first checkpoint.
    let orphan = b"no record counts this".to_vec();
    let orphan_digest = digest_of(&orphan);
    let orphan_path = cached_blob_path(cache.path(), &orphan_digest);
    std::fs::create_dir_all(orphan_path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&orphan_path, &orphan).expect("orphan");
    let cut = ingest_dir(cache.path(), &format!("fill-sha256-{}", "0".repeat(64)));
    std::fs::create_dir_all(&cut).expect("mkdir");
    std::fs::write(cut.join("data"), b"partial").expect("data");
    std::fs::write(
        cut.join("state.json"),
        serde_json::to_vec(&serde_json::json!({
            "owner": repo, "offset": 0, "algorithm": "sha256", "started": 0
        }))
        .expect("json"),
    )
    .expect("state");

    let blob_gets = origin.blob_gets();
    edge.start_again();
    assert!(!orphan_path.exists(), "the unrecorded blob file is deleted");
    assert!(!cut.exists(), "the unacknowledged fill is discarded");
    assert!(
        edge.log().contains("deleted blob files no record counts"),
        "{}",
        edge.log_tail(20)
    );
    get_blob_ok(&edge.base_url(), "app", &layer);
    assert_eq!(
        origin.blob_gets(),
        blob_gets,
        "the recorded layer is served from the cache"
    );
}
