//! The OCI distribution protocol cases, run by `registry_protocol.rs`
//! against one `berth serve` on its embedded defaults and by
//! `registry_protocol_replicated.rs` against two replicas on PostgreSQL and
//! S3 behind a balancer: one suite, two configurations.

use crate::common::*;
use berth_testkit::fixtures::media_types::*;
use berth_testkit::fixtures::{digest_of, sha512_digest_of};
use berth_testkit::manifest::*;
use reqwest::Method;

mod bad_input;
mod blobs;
mod listing;
mod manifests;

// ---------------------------------------------------------------- end-1

#[test]
fn end_1_base_answers_200_with_credentials_and_challenges_without() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let res = r.get("/v2/");
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(res.text().expect("body"), "{}");
    let res = r.head("/v2/");
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "docker-distribution-api-version"),
        "registry/2.0"
    );

    let res = r.anon(Method::GET, "/v2/").send().expect("GET");
    assert!(header(&res, "www-authenticate").starts_with("Bearer realm="));
    expect_error(res, 401, "UNAUTHORIZED");
    // Only GET and HEAD are defined on /v2/.
    expect_error(
        r.req(Method::POST, "/v2/").send().expect("POST"),
        405,
        "UNSUPPORTED",
    );
    // Last: after a wrong password, admin from this address waits a moment.
    let res = r
        .http
        .get(r.url("/v2/"))
        .basic_auth("admin", Some("wrong-password"))
        .send()
        .expect("GET");
    expect_error(res, 401, "UNAUTHORIZED");
}

/// A reader without a known length, so reqwest sends `Transfer-Encoding: chunked`.
struct ChunkReader {
    chunks: std::collections::VecDeque<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl ChunkReader {
    fn new(chunks: Vec<Result<Vec<u8>, std::io::Error>>) -> Self {
        ChunkReader {
            chunks: chunks.into_iter().filter_map(Result::ok).collect(),
            current: std::io::Cursor::new(Vec::new()),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.chunks.pop_front() {
                Some(c) => self.current = std::io::Cursor::new(c),
                None => return Ok(0),
            }
        }
    }
}

// ---------------------------------------------------------------- headers, digests, links

#[test]
fn api_version_header_is_on_every_response() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/hdr";
    let digest = r.push_blob(repo, b"hello");
    let location = r.start_upload(repo);
    let checks: Vec<(Method, String)> = vec![
        (Method::GET, "/v2/".into()),
        (Method::GET, "/v2/_catalog".into()),
        (Method::GET, format!("/v2/{repo}/tags/list")),
        (Method::GET, format!("/v2/{repo}/blobs/{digest}")),
        (Method::HEAD, format!("/v2/{repo}/blobs/{digest}")),
        (
            Method::GET,
            format!("/v2/{repo}/blobs/{}", digest_of(b"no")),
        ),
        (Method::GET, format!("/v2/{repo}/manifests/none")),
        (Method::HEAD, format!("/v2/{repo}/manifests/none")),
        (Method::GET, format!("/v2/{repo}/referrers/{digest}")),
        (Method::GET, location.clone()),
        (Method::GET, "/v2/BAD/tags/list".into()),
        (Method::GET, "/v2/pub/x/whatever".into()),
        (Method::GET, "/v2/pub/x/blobs/sha256:1".into()),
        (Method::PATCH, format!("/v2/{repo}/manifests/x")),
        (Method::PUT, format!("/v2/{repo}/manifests/x")),
        (Method::DELETE, format!("/v2/{repo}/blobs/uploads/nope")),
        (Method::GET, "/v2/nope/x/tags/list".into()),
    ];
    for (method, path) in checks {
        let res = r.req(method.clone(), &path).send().expect("request");
        assert_eq!(
            res.headers()
                .get("docker-distribution-api-version")
                .and_then(|v| v.to_str().ok()),
            Some("registry/2.0"),
            "{method} {path} -> {}",
            res.status()
        );
    }
    let res = r.anon(Method::PUT, &location).send().expect("PUT");
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "docker-distribution-api-version"),
        "registry/2.0"
    );
}

#[test]
fn sha512_blobs_and_manifests() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/sha512";
    let content = bytes(40, 10_000);
    let d512 = sha512_digest_of(&content);
    let res = r
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={d512}"),
        )
        .body(content.clone())
        .send()
        .expect("POST");
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(header(&res, "docker-content-digest"), d512);
    let res = r.get(&format!("/v2/{repo}/blobs/{d512}"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "docker-content-digest"), d512);
    assert_eq!(res.bytes().expect("body").as_ref(), content.as_slice());
    assert!(r.has_blob_file(&d512));

    // A chunked upload finished with a sha512 digest.
    let other = bytes(41, 3000);
    let location = r.start_upload(repo);
    assert_eq!(r.patch(&location, 0, &other).status(), 202);
    let res = r.finish(&location, &sha512_digest_of(&other), b"");
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(
        r.head(&format!("/v2/{repo}/blobs/{}", sha512_digest_of(&other)))
            .status(),
        200
    );
    // A wrong sha512 digest.
    let res = r
        .req(
            Method::POST,
            &format!(
                "/v2/{repo}/blobs/uploads/?digest={}",
                sha512_digest_of(b"nope")
            ),
        )
        .body(content.clone())
        .send()
        .expect("POST");
    expect_error(res, 400, "DIGEST_INVALID");

    // A manifest referencing a sha512 layer, pushed by its sha512 digest.
    let config = config_for(repo, "512");
    r.push_blob(repo, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": d512, "size": content.len()}],
    }))
    .expect("json");
    let m512 = sha512_digest_of(&manifest);
    let res = r.put_manifest(repo, &m512, OCI_MANIFEST, &manifest);
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(header(&res, "docker-content-digest"), m512);
    assert_eq!(
        header(&res, "location"),
        format!("/v2/{repo}/manifests/{m512}")
    );
    let res = r.get(&format!("/v2/{repo}/manifests/{m512}"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "docker-content-digest"), m512);
    assert_eq!(res.bytes().expect("body").as_ref(), manifest.as_slice());
    let res = r.head(&format!("/v2/{repo}/manifests/{m512}"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "docker-content-digest"), m512);
}

#[test]
fn blobs_are_served_only_from_repositories_they_are_linked_to() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let admin = r.reg.admin();
    admin.create_project("teama", false);
    admin.create_project("teamb", true);
    let private = bytes(50, 4096);
    let digest = r.push_blob("teama/app", &private);
    assert_eq!(
        r.get(&format!("/v2/teama/app/blobs/{digest}")).status(),
        200
    );

    // Knowing the digest gives nothing through another project's repository.
    for path in [
        format!("/v2/teamb/app/blobs/{digest}"),
        format!("/v2/pub/app/blobs/{digest}"),
        format!("/v2/teama/other/blobs/{digest}"),
    ] {
        expect_error(r.get(&path), 404, "BLOB_UNKNOWN");
        assert_eq!(r.head(&path).status(), 404, "{path}");
        let res = r
            .req(Method::GET, &path)
            .header("Range", "bytes=0-10")
            .send()
            .expect("GET");
        expect_error(res, 404, "BLOB_UNKNOWN");
        // Anonymous callers: the same 404 where they may read, a challenge where not.
        let res = r.anon(Method::GET, &path).send().expect("GET");
        let want = if path.starts_with("/v2/teama/") {
            401
        } else {
            404
        };
        assert_eq!(res.status(), want, "{path}");
    }
    // Nor can a manifest in another repository reference it.
    let config = config_for("teamb/app", "x");
    r.push_blob("teamb/app", &config);
    let manifest = image_manifest(&config, &[&private]);
    expect_error(
        r.put_manifest("teamb/app", "x", OCI_MANIFEST, &manifest),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    // Anonymous users cannot read the private project at all.
    let res = r
        .anon(Method::GET, &format!("/v2/teama/app/blobs/{digest}"))
        .send()
        .expect("GET");
    assert_eq!(res.status(), 401);
}

#[test]
fn identical_content_is_stored_once() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    r.reg.admin().create_project("other", false);
    let layer = bytes(60, 200_000);
    let digest = r.push_blob("pub/one", &layer);
    r.push_blob("pub/two", &layer);
    r.push_blob("other/app", &layer);
    r.push_blob("pub/one", &layer);
    let location = r.start_upload("pub/three");
    assert_eq!(r.patch(&location, 0, &layer).status(), 202);
    assert_eq!(r.finish(&location, &digest, b"").status(), 201);
    let files = r.blob_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(r.has_blob_file(&digest));
    assert_eq!(r.stored_size(&files[0]), layer.len() as u64);
    for repo in ["pub/one", "pub/two", "pub/three", "other/app"] {
        assert_eq!(r.head(&format!("/v2/{repo}/blobs/{digest}")).status(), 200);
    }
    assert!(r.upload_entries().is_empty());
}
