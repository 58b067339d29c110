//! The OCI distribution protocol cases, run by `registry_protocol.rs`
//! against one `berth serve` on its embedded defaults and by
//! `registry_protocol_replicated.rs` against two replicas on PostgreSQL and
//! S3 behind a balancer: one suite, two configurations.

use crate::common::*;
use berth_testkit::fixtures::media_types::*;
use berth_testkit::fixtures::{digest_of, sha512_digest_of};
use berth_testkit::manifest::*;
use reqwest::Method;

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

// ---------------------------------------------------------------- end-2

#[test]
fn end_2_blob_get_head_and_single_ranges() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/blobs";
    let content = bytes(1, 1000);
    let digest = r.push_blob(repo, &content);
    let path = format!("/v2/{repo}/blobs/{digest}");

    let res = r.get(&path);
    assert_eq!(res.status(), 200);
    let get_headers = res.headers().clone();
    assert_eq!(header_of(&get_headers, "docker-content-digest"), digest);
    assert_eq!(header_of(&get_headers, "content-length"), "1000");
    assert_eq!(header_of(&get_headers, "accept-ranges"), "bytes");
    assert_eq!(res.bytes().expect("body").as_ref(), content.as_slice());

    let res = r.head(&path);
    assert_eq!(res.status(), 200);
    let mut head_headers = res.headers().clone();
    let mut get_headers = get_headers;
    head_headers.remove("date");
    get_headers.remove("date");
    assert_eq!(head_headers, get_headers, "HEAD has GET's headers");
    assert!(res.bytes().expect("body").is_empty());
    // containerd adds ?ns=<registry> when it uses berth as a mirror.
    let res = r.get(&format!("{path}?ns=docker.io"));
    assert_eq!(res.status(), 200);

    // Anonymous pulls from a public project need no credentials.
    let res = r.anon(Method::GET, &path).send().expect("GET");
    assert_eq!(res.status(), 200);

    let ranged = |range: &str| {
        r.req(Method::GET, &path)
            .header("Range", range)
            .send()
            .expect("ranged GET")
    };
    let res = ranged("bytes=10-19");
    assert_eq!(res.status(), 206);
    assert_eq!(header(&res, "content-range"), "bytes 10-19/1000");
    assert_eq!(header(&res, "content-length"), "10");
    assert_eq!(header(&res, "docker-content-digest"), digest);
    assert_eq!(res.bytes().expect("body").as_ref(), &content[10..20]);

    // Resuming a broken download: `bytes=N-` (what containerd sends).
    let res = ranged("bytes=990-");
    assert_eq!(res.status(), 206);
    assert_eq!(header(&res, "content-range"), "bytes 990-999/1000");
    assert_eq!(res.bytes().expect("body").as_ref(), &content[990..]);

    // An end past the blob is clamped.
    let res = ranged("bytes=900-5000");
    assert_eq!(res.status(), 206);
    assert_eq!(header(&res, "content-range"), "bytes 900-999/1000");
    assert_eq!(res.bytes().expect("body").len(), 100);

    // Suffix range: the last 5 bytes.
    let res = ranged("bytes=-5");
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().expect("body").as_ref(), &content[995..]);

    // HEAD with a Range carries GET's headers.
    let res = r
        .req(Method::HEAD, &path)
        .header("Range", "bytes=0-99")
        .send()
        .expect("HEAD");
    assert_eq!(res.status(), 206);
    assert_eq!(header(&res, "content-range"), "bytes 0-99/1000");
    assert_eq!(header(&res, "content-length"), "100");

    for unsatisfiable in ["bytes=1000-", "bytes=5000-6000", "bytes=20-10"] {
        let res = ranged(unsatisfiable);
        assert_eq!(
            res.headers().get("content-range").map(|v| v.to_str().ok()),
            Some(Some("bytes */1000")),
            "{unsatisfiable}"
        );
        expect_error(res, 416, "SIZE_INVALID");
    }

    let unknown = digest_of(b"never pushed");
    let res = r.get(&format!("/v2/{repo}/blobs/{unknown}"));
    let e = expect_error(res, 404, "BLOB_UNKNOWN");
    assert_eq!(e["detail"]["digest"], unknown);
    let res = r.head(&format!("/v2/{repo}/blobs/{unknown}"));
    assert_eq!(res.status(), 404);
    assert_eq!(
        header(&res, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert!(res.bytes().expect("body").is_empty());
}

// ---------------------------------------------------------------- end-4b

#[test]
fn end_4b_monolithic_post_with_digest() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/mono";
    let content = bytes(2, 70_000);
    let digest = digest_of(&content);
    let res = r
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        )
        .header("Content-Type", "application/octet-stream")
        .body(content.clone())
        .send()
        .expect("POST");
    assert_eq!(res.status(), 201);
    assert_eq!(
        header(&res, "location"),
        format!("/v2/{repo}/blobs/{digest}")
    );
    assert_eq!(header(&res, "docker-content-digest"), digest);
    assert_eq!(header(&res, "content-length"), "0");
    let got = r.get(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(got.bytes().expect("body").as_ref(), content.as_slice());
    assert!(r.has_blob_file(&digest));

    // The empty blob (an empty layer).
    let empty = digest_of(b"");
    let res = r
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={empty}"),
        )
        .body(Vec::new())
        .send()
        .expect("POST");
    assert_eq!(res.status(), 201, "{}", describe(res));
    let res = r.get(&format!("/v2/{repo}/blobs/{empty}"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-length"), "0");
    assert!(res.bytes().expect("body").is_empty());
    assert_eq!(r.head(&format!("/v2/{repo}/blobs/{empty}")).status(), 200);

    // The wrong digest: refused, nothing stored, no upload left over.
    let other = bytes(3, 5000);
    let wrong = digest_of(b"something else");
    let res = r
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={wrong}"),
        )
        .body(other.clone())
        .send()
        .expect("POST");
    let e = expect_error(res, 400, "DIGEST_INVALID");
    assert_eq!(e["detail"]["expected"], wrong);
    assert_eq!(e["detail"]["actual"], digest_of(&other));
    assert!(!r.has_blob_file(&wrong));
    assert!(!r.has_blob_file(&digest_of(&other)));
    assert!(r.upload_entries().is_empty(), "{:?}", r.upload_entries());
    expect_error(
        r.get(&format!("/v2/{repo}/blobs/{wrong}")),
        404,
        "BLOB_UNKNOWN",
    );

    // A Content-Length that does not match the body is refused the same way
    // (here: the client claims fewer bytes than it sends).
    let res = r.raw(
        format!(
            "POST /v2/{repo}/blobs/uploads/?digest={} HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Basic {}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcdef",
            digest_of(b"abcdef"),
            basic_admin()
        )
        .as_bytes(),
    );
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    assert!(res.contains("DIGEST_INVALID"), "{res}");
    assert!(r.upload_entries().is_empty());
    r.assert_alive();
}

// ---------------------------------------------------------------- end-4a, end-6

#[test]
fn end_4a_and_end_6_post_then_put() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/twostep";
    let res = r
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .expect("POST");
    assert_eq!(res.status(), 202);
    let location = header(&res, "location");
    let id = header(&res, "docker-upload-uuid");
    assert_eq!(location, format!("/v2/{repo}/blobs/uploads/{id}"));
    assert_eq!(header(&res, "range"), "0-0");
    assert_eq!(header(&res, "oci-chunk-min-length"), "1048576");
    assert_eq!(header(&res, "content-length"), "0");

    let content = bytes(4, 123_456);
    let digest = digest_of(&content);
    let res = r.finish(&location, &digest, &content);
    assert_eq!(res.status(), 201, "{}", describe(res));
    // (re-fetch headers from a fresh request to check them)
    let res = r.get(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(res.bytes().expect("body").as_ref(), content.as_slice());

    // The session is gone once completed.
    expect_error(r.get(&location), 404, "BLOB_UPLOAD_UNKNOWN");
    expect_error(
        r.finish(&location, &digest, b""),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert!(r.upload_entries().is_empty());

    // PUT headers.
    let location = r.start_upload(repo);
    let small = b"small blob".to_vec();
    let res = r.finish(&location, &digest_of(&small), &small);
    assert_eq!(res.status(), 201);
    assert_eq!(
        header(&res, "location"),
        format!("/v2/{repo}/blobs/{}", digest_of(&small))
    );
    assert_eq!(header(&res, "docker-content-digest"), digest_of(&small));

    // A PUT without ?digest is refused and the session survives it.
    let location = r.start_upload(repo);
    let res = r
        .req(Method::PUT, &location)
        .body(small.clone())
        .send()
        .expect("PUT");
    expect_error(res, 400, "DIGEST_INVALID");
    let res = r.get(&location);
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "range"), "0-0");
    let res = r.finish(&location, &digest_of(&small), &small);
    assert_eq!(res.status(), 201);

    // A PUT with the wrong digest ends the session and stores nothing.
    let location = r.start_upload(repo);
    let content = bytes(5, 4000);
    let wrong = digest_of(b"not this");
    expect_error(r.finish(&location, &wrong, &content), 400, "DIGEST_INVALID");
    expect_error(r.get(&location), 404, "BLOB_UPLOAD_UNKNOWN");
    assert!(!r.has_blob_file(&wrong));
    assert!(!r.has_blob_file(&digest_of(&content)));
    assert!(r.upload_entries().is_empty(), "{:?}", r.upload_entries());
}

// ---------------------------------------------------------------- end-5, end-13

#[test]
fn end_5_and_end_13_chunked_upload_with_status() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/chunked";
    let content = bytes(6, 300_000);
    let digest = digest_of(&content);
    let (a, rest) = content.split_at(100_000);
    let (b, c) = rest.split_at(100_000);

    let location = r.start_upload(repo);
    let id = location.rsplit('/').next().expect("id").to_string();

    let res = r.patch(&location, 0, a);
    assert_eq!(res.status(), 202, "{}", describe(res));
    assert_eq!(header(&res, "range"), "0-99999");
    assert_eq!(header(&res, "location"), location);
    assert_eq!(header(&res, "docker-upload-uuid"), id);
    assert_eq!(header(&res, "content-length"), "0");

    // end-13: upload status.
    let res = r.get(&location);
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "range"), "0-99999");
    assert_eq!(header(&res, "location"), location);
    assert_eq!(header(&res, "docker-upload-uuid"), id);

    // Out of order: a chunk that skips ahead, and one that repeats.
    for start in [150_000u64, 0] {
        let res = r.patch(&location, start, b);
        assert_eq!(header(&res, "range"), "0-99999", "start {start}");
        expect_error(res, 416, "BLOB_UPLOAD_INVALID");
    }
    let res = r.get(&location);
    assert_eq!(header(&res, "range"), "0-99999");

    let res = r.patch(&location, 100_000, b);
    assert_eq!(res.status(), 202);
    assert_eq!(header(&res, "range"), "0-199999");

    // Last chunk with the PUT, with its Content-Range.
    let res = r
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .header("Content-Range", "200000-299999")
        .header("Content-Type", "application/octet-stream")
        .body(c.to_vec())
        .send()
        .expect("PUT");
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(header(&res, "docker-content-digest"), digest);
    let got = r.get(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(got.bytes().expect("body").as_ref(), content.as_slice());

    // A streamed PATCH without Content-Range appends; a zero-length PUT completes.
    let location = r.start_upload(repo);
    let res = r
        .req(Method::PATCH, &location)
        .body(a.to_vec())
        .send()
        .expect("PATCH");
    assert_eq!(res.status(), 202);
    assert_eq!(header(&res, "range"), "0-99999");
    let res = r
        .req(Method::PATCH, &location)
        .body(b.to_vec())
        .send()
        .expect("PATCH");
    assert_eq!(header(&res, "range"), "0-199999");
    let res = r.finish(&location, &digest_of(&content[..200_000]), b"");
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert!(r.upload_entries().is_empty());
}

#[test]
fn upload_cancel_discards_the_session() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/cancel";
    let location = r.start_upload(repo);
    assert_eq!(r.patch(&location, 0, &bytes(7, 5000)).status(), 202);
    assert_eq!(r.upload_entries().len(), 1);

    let res = r.delete(&location);
    assert_eq!(res.status(), 204);
    assert_eq!(
        header(&res, "docker-distribution-api-version"),
        "registry/2.0"
    );
    expect_error(r.get(&location), 404, "BLOB_UPLOAD_UNKNOWN");
    expect_error(
        r.patch(&location, 5000, b"more"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    expect_error(r.delete(&location), 404, "BLOB_UPLOAD_UNKNOWN");
    expect_error(
        r.finish(&location, &digest_of(b"x"), b"x"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert!(r.upload_entries().is_empty(), "{:?}", r.upload_entries());
    assert!(r.blob_files().is_empty());
}

// ---------------------------------------------------------------- end-11

#[test]
fn end_11_cross_repository_mount() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let admin = r.reg.admin();
    admin.create_project("secret", false);
    admin.create_user("dev", "dev-password-1");
    admin.add_member(PUBLIC, "dev", "developer");
    let content = bytes(8, 2048);
    let digest = r.push_blob("pub/source", &content);

    // With `from`: 201 and the blob is now served from the target.
    let res = r
        .req(
            Method::POST,
            &format!("/v2/pub/target/blobs/uploads/?mount={digest}&from=pub/source"),
        )
        .send()
        .expect("mount");
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(
        header(&res, "location"),
        format!("/v2/pub/target/blobs/{digest}")
    );
    assert_eq!(header(&res, "docker-content-digest"), digest);
    let got = r.get(&format!("/v2/pub/target/blobs/{digest}"));
    assert_eq!(got.bytes().expect("body").as_ref(), content.as_slice());

    // `from` a repository that does not have it: fall back to an upload session.
    let res = r
        .req(
            Method::POST,
            &format!("/v2/pub/other/blobs/uploads/?mount={digest}&from=pub/empty"),
        )
        .send()
        .expect("mount");
    assert_eq!(res.status(), 202);
    let location = header(&res, "location");
    assert!(
        location.starts_with("/v2/pub/other/blobs/uploads/"),
        "{location}"
    );
    assert_eq!(header(&res, "range"), "0-0");
    // The fallback session is a real one.
    assert_eq!(r.finish(&location, &digest, &content).status(), 201);

    // Unknown digest: fall back too.
    let res = r
        .req(
            Method::POST,
            &format!(
                "/v2/pub/other2/blobs/uploads/?mount={}&from=pub/source",
                digest_of(b"unknown")
            ),
        )
        .send()
        .expect("mount");
    assert_eq!(res.status(), 202);

    // Without `from`: mounted from a repository of the same project.
    let res = r
        .req(
            Method::POST,
            &format!("/v2/pub/nofrom/blobs/uploads/?mount={digest}"),
        )
        .send()
        .expect("mount");
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(
        r.head(&format!("/v2/pub/nofrom/blobs/{digest}")).status(),
        200
    );

    // A private project's blob cannot be mounted by someone who may not read it.
    let private = bytes(9, 1024);
    let pdigest = r.push_blob("secret/app", &private);
    let dev = |path: &str| {
        r.http
            .post(r.url(path))
            .basic_auth("dev", Some("dev-password-1"))
            .send()
            .expect("mount as dev")
    };
    let res = dev(&format!(
        "/v2/pub/steal/blobs/uploads/?mount={pdigest}&from=secret/app"
    ));
    assert_eq!(
        res.status(),
        202,
        "mount from an unreadable repo must fall back"
    );
    let res = r
        .http
        .get(r.url(&format!("/v2/pub/steal/blobs/{pdigest}")))
        .basic_auth("dev", Some("dev-password-1"))
        .send()
        .expect("GET");
    expect_error(res, 404, "BLOB_UNKNOWN");
    // Nor without `from` (other projects are never searched).
    let res = r
        .req(
            Method::POST,
            &format!("/v2/pub/nofrom2/blobs/uploads/?mount={pdigest}"),
        )
        .send()
        .expect("mount");
    assert_eq!(res.status(), 202);

    // A malformed mount digest is refused.
    let res = r
        .req(
            Method::POST,
            "/v2/pub/x/blobs/uploads/?mount=sha256:nothex&from=pub/source",
        )
        .send()
        .expect("mount");
    expect_error(res, 400, "DIGEST_INVALID");
}

// ---------------------------------------------------------------- end-3, end-7, end-9

#[test]
fn end_3_end_7_end_9_manifests_by_tag_and_digest() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/app";
    let (l1, l2) = (bytes(10, 3000), bytes(11, 4000));
    let config = config_for(repo, "v1");
    r.push_blob(repo, &config);
    r.push_blob(repo, &l1);
    r.push_blob(repo, &l2);
    let manifest = image_manifest(&config, &[&l1, &l2]);
    let digest = digest_of(&manifest);

    let res = r.put_manifest(repo, "v1", OCI_MANIFEST, &manifest);
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(header(&res, "docker-content-digest"), digest);
    assert_eq!(
        header(&res, "location"),
        format!("/v2/{repo}/manifests/{digest}")
    );
    assert!(res.headers().get("oci-subject").is_none());

    for reference in ["v1", digest.as_str()] {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let res = r
            .req(Method::GET, &path)
            .header("Accept", OCI_MANIFEST)
            .send()
            .expect("GET");
        assert_eq!(res.status(), 200);
        let mut get_headers = res.headers().clone();
        assert_eq!(header_of(&get_headers, "content-type"), OCI_MANIFEST);
        assert_eq!(header_of(&get_headers, "docker-content-digest"), digest);
        assert_eq!(
            header_of(&get_headers, "content-length"),
            manifest.len().to_string()
        );
        assert_eq!(res.bytes().expect("body").as_ref(), manifest.as_slice());

        let res = r
            .req(Method::HEAD, &path)
            .header("Accept", OCI_MANIFEST)
            .send()
            .expect("HEAD");
        assert_eq!(res.status(), 200);
        let mut head_headers = res.headers().clone();
        get_headers.remove("date");
        head_headers.remove("date");
        assert_eq!(head_headers, get_headers, "HEAD has GET's headers");
        assert!(res.bytes().expect("body").is_empty());

        // containerd's mirror resolve: HEAD with ?ns= and its Accept list.
        let res = r
            .req(Method::HEAD, &format!("{path}?ns=registry.example"))
            .header(
                "Accept",
                format!(
                    "{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}, {OCI_MANIFEST}, {OCI_INDEX}, */*"
                ),
            )
            .send()
            .expect("HEAD");
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "docker-content-digest"), digest);
        assert_eq!(header(&res, "content-length"), manifest.len().to_string());

        // Anonymous, no Accept at all: served as is.
        let res = r.anon(Method::GET, &path).send().expect("GET");
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "docker-content-digest"), digest);
    }

    // Re-pushing the same manifest under another tag is idempotent.
    let res = r.put_manifest(repo, "latest", OCI_MANIFEST, &manifest);
    assert_eq!(res.status(), 201);

    // end-9: delete the tag; the manifest stays reachable by digest.
    let res = r.delete(&format!("/v2/{repo}/manifests/v1"));
    assert_eq!(res.status(), 202);
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/v1")),
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_eq!(
        r.get(&format!("/v2/{repo}/manifests/{digest}")).status(),
        200
    );
    expect_error(
        r.delete(&format!("/v2/{repo}/manifests/v1")),
        404,
        "MANIFEST_UNKNOWN",
    );
    // Delete by digest removes the manifest and the tags pointing at it.
    let res = r.delete(&format!("/v2/{repo}/manifests/{digest}"));
    assert_eq!(res.status(), 202);
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/{digest}")),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/latest")),
        404,
        "MANIFEST_UNKNOWN",
    );
    let res = r.head(&format!("/v2/{repo}/manifests/{digest}"));
    assert_eq!(res.status(), 404);
    expect_error(
        r.delete(&format!("/v2/{repo}/manifests/{digest}")),
        404,
        "MANIFEST_UNKNOWN",
    );
    // Unknown tag in an unknown repository.
    expect_error(
        r.get("/v2/pub/nothing/manifests/v1"),
        404,
        "MANIFEST_UNKNOWN",
    );
}

#[test]
fn manifest_content_negotiation_and_docker_types() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/multi";
    let (m1, _) = r.push_image(repo, "amd64", &[&bytes(12, 100)]);
    let (m2, _) = r.push_image(repo, "arm64", &[&bytes(13, 100)]);
    let index = index_of(&[&m1, &m2]);
    let idigest = digest_of(&index);
    let res = r.put_manifest(repo, "list", OCI_INDEX, &index);
    assert_eq!(res.status(), 201, "{}", describe(res));

    let get = |accept: &str| {
        r.req(Method::GET, &format!("/v2/{repo}/manifests/list"))
            .header("Accept", accept)
            .send()
            .expect("GET")
    };
    let res = get(&format!("{OCI_MANIFEST}, {OCI_INDEX}"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), OCI_INDEX);
    assert_eq!(header(&res, "docker-content-digest"), idigest);
    let res = get("*/*");
    assert_eq!(res.status(), 200);
    // A client that only takes image manifests is not handed an index.
    let res = get(OCI_MANIFEST);
    let e = expect_error(res, 404, "MANIFEST_UNKNOWN");
    assert_eq!(e["detail"]["mediaType"], OCI_INDEX);
    // Several Accept headers are combined.
    let res = r
        .req(Method::GET, &format!("/v2/{repo}/manifests/list"))
        .header("Accept", DOCKER_MANIFEST)
        .header("Accept", OCI_INDEX)
        .send()
        .expect("GET");
    assert_eq!(res.status(), 200);

    // Docker schema2 image and manifest list.
    let config = config_for(repo, "docker");
    let layer = bytes(14, 500);
    r.push_blob(repo, &config);
    r.push_blob(repo, &layer);
    let docker = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", &config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", &layer)],
    }))
    .expect("json");
    let res = r.put_manifest(repo, "docker", DOCKER_MANIFEST, &docker);
    assert_eq!(res.status(), 201, "{}", describe(res));
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [{
            "mediaType": DOCKER_MANIFEST, "digest": digest_of(&docker), "size": docker.len(),
            "platform": {"architecture": "amd64", "os": "linux"}
        }],
    }))
    .expect("json");
    let res = r.put_manifest(repo, "dlist", DOCKER_MANIFEST_LIST, &list);
    assert_eq!(res.status(), 201, "{}", describe(res));
    let res = r
        .req(Method::GET, &format!("/v2/{repo}/manifests/dlist"))
        .header(
            "Accept",
            format!("{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}"),
        )
        .send()
        .expect("GET");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), DOCKER_MANIFEST_LIST);
    assert_eq!(res.bytes().expect("body").as_ref(), list.as_slice());
    let res = r
        .req(Method::GET, &format!("/v2/{repo}/manifests/docker"))
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .expect("GET");
    assert_eq!(header(&res, "content-type"), DOCKER_MANIFEST);

    // Manifests are content too: served through /blobs by digest.
    let res = r.get(&format!("/v2/{repo}/blobs/{idigest}"));
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().expect("body").as_ref(), index.as_slice());
}

#[test]
fn manifest_references_must_exist() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/refs";
    let config = config_for(repo, "x");
    let layer = bytes(15, 1000);
    r.push_blob(repo, &config);
    // The layer is missing.
    let manifest = image_manifest(&config, &[&layer]);
    let e = expect_error(
        r.put_manifest(repo, "x", OCI_MANIFEST, &manifest),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    assert_eq!(e["detail"]["digest"], digest_of(&layer));
    // The config is missing.
    let other_config = config_for(repo, "y");
    r.push_blob(repo, &layer);
    let manifest2 = image_manifest(&other_config, &[&layer]);
    let e = expect_error(
        r.put_manifest(repo, "y", OCI_MANIFEST, &manifest2),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    assert_eq!(e["detail"]["digest"], digest_of(&other_config));
    // A blob of another repository does not count.
    let foreign = bytes(16, 100);
    r.push_blob("pub/elsewhere", &foreign);
    let manifest3 = image_manifest(&config, &[&foreign]);
    expect_error(
        r.put_manifest(repo, "z", OCI_MANIFEST, &manifest3),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    // Nothing was stored or tagged by the refused pushes.
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/x")),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/{}", digest_of(&manifest))),
        404,
        "MANIFEST_UNKNOWN",
    );

    // An index whose child is not in the repository (manifest3 was refused):
    // the child is content the index needs, as distribution reports it.
    let ok = image_manifest(&config, &[&layer]);
    assert_eq!(r.put_manifest(repo, "ok", OCI_MANIFEST, &ok).status(), 201);
    let index = index_of(&[&ok, &manifest3]);
    let e = expect_error(
        r.put_manifest(repo, "idx", OCI_INDEX, &index),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    assert_eq!(e["detail"]["digest"], digest_of(&manifest3));
    let index = index_of(&[&ok]);
    assert_eq!(r.put_manifest(repo, "idx", OCI_INDEX, &index).status(), 201);
}

#[test]
fn manifest_size_limit_is_4_mib() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/big";
    let config = config_for(repo, "big");
    r.push_blob(repo, &config);
    let limit = 4 * 1024 * 1024;
    let padded = |total: usize| {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [],
            "annotations": {"pad": ""},
        });
        let base = serde_json::to_vec(&m).expect("json").len();
        m["annotations"]["pad"] = serde_json::Value::String("a".repeat(total - base));
        let v = serde_json::to_vec(&m).expect("json");
        assert_eq!(v.len(), total);
        v
    };
    // Exactly 4 MiB is accepted (the spec's recommended minimum).
    let at_limit = padded(limit);
    let res = r.put_manifest(repo, "limit", OCI_MANIFEST, &at_limit);
    assert_eq!(res.status(), 201, "{}", describe(res));
    let res = r.get(&format!("/v2/{repo}/manifests/limit"));
    assert_eq!(res.bytes().expect("body").len(), limit);

    // One byte more is refused, with or without a Content-Length.
    let over = padded(limit + 1);
    expect_error(
        r.put_manifest(repo, "over", OCI_MANIFEST, &over),
        413,
        "MANIFEST_INVALID",
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        over.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let res = r
        .req(Method::PUT, &format!("/v2/{repo}/manifests/over"))
        .header("Content-Type", OCI_MANIFEST)
        .body(reqwest::blocking::Body::new(ChunkReader::new(chunks)))
        .send()
        .expect("PUT chunked");
    expect_error(res, 413, "MANIFEST_INVALID");
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/over")),
        404,
        "MANIFEST_UNKNOWN",
    );
    r.assert_alive();
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

#[test]
fn put_manifest_by_digest_with_tag_parameters() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/tagged";
    let config = config_for(repo, "t");
    r.push_blob(repo, &config);
    let manifest = image_manifest(&config, &[]);
    let digest = digest_of(&manifest);
    let res = r
        .req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{digest}?tag=a&tag=b"),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .expect("PUT");
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(header(&res, "docker-content-digest"), digest);
    let mut tags = headers_all(&res, "oci-tag");
    tags.sort();
    assert_eq!(tags, ["a", "b"]);
    for t in ["a", "b"] {
        let res = r.get(&format!("/v2/{repo}/manifests/{t}"));
        assert_eq!(header(&res, "docker-content-digest"), digest);
    }
    // Without tag parameters there are no OCI-Tag headers.
    let res = r.put_manifest(repo, &digest, OCI_MANIFEST, &manifest);
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("oci-tag").is_none());
    // A bad tag parameter is refused and tags nothing.
    let res = r
        .req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{digest}?tag=ok&tag=-bad"),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .expect("PUT");
    expect_error(res, 400, "MANIFEST_INVALID");
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/ok")),
        404,
        "MANIFEST_UNKNOWN",
    );
    // By digest, the body must hash to it.
    let res = r.put_manifest(repo, &digest_of(b"other"), OCI_MANIFEST, &manifest);
    let e = expect_error(res, 400, "DIGEST_INVALID");
    assert_eq!(e["detail"]["actual"], digest);
}

// ---------------------------------------------------------------- end-8a, end-8b

#[test]
fn end_8_tags_list_with_pagination() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/tags";
    let (manifest, _) = r.push_image(repo, "v3", &[]);
    for t in ["v1", "a", "v2", "b-1", "Z"] {
        assert_eq!(
            r.put_manifest(repo, t, OCI_MANIFEST, &manifest).status(),
            201
        );
    }
    let all = ["Z", "a", "b-1", "v1", "v2", "v3"];
    let res = r.get(&format!("/v2/{repo}/tags/list"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "application/json");
    assert!(res.headers().get("link").is_none());
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["name"], repo);
    assert_eq!(v["tags"], serde_json::json!(all));

    // Pages of 2, following Link.
    let mut next = Some(format!("/v2/{repo}/tags/list?n=2"));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        let res = r.get(&path);
        assert_eq!(res.status(), 200);
        next = res.headers().get("link").map(|l| {
            let l = l.to_str().expect("link");
            assert!(l.ends_with(">; rel=\"next\""), "{l}");
            l.trim_start_matches('<')
                .split('>')
                .next()
                .expect("link target")
                .to_string()
        });
        let v: serde_json::Value = res.json().expect("json");
        let page: Vec<String> = serde_json::from_value(v["tags"].clone()).expect("tags");
        assert!(page.len() <= 2);
        seen.extend(page);
    }
    assert_eq!(seen, all);
    assert_eq!(pages, 3);

    // `last` alone, and `n` larger than what is left.
    let res = r.get(&format!("/v2/{repo}/tags/list?n=10&last=b-1"));
    assert!(res.headers().get("link").is_none());
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2", "v3"]));
    let res = r.get(&format!("/v2/{repo}/tags/list?n=1&last=v1"));
    assert_eq!(
        header(&res, "link"),
        format!("</v2/{repo}/tags/list?n=1&last=v2>; rel=\"next\"")
    );
    let res = r.get(&format!("/v2/{repo}/tags/list?n=0"));
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["tags"], serde_json::json!([]));

    expect_error(
        r.get(&format!("/v2/{repo}/tags/list?n=lots")),
        400,
        "UNSUPPORTED",
    );
    expect_error(r.get("/v2/pub/none/tags/list"), 404, "NAME_UNKNOWN");
    // Anonymous listing of a public repository.
    let res = r
        .anon(Method::GET, &format!("/v2/{repo}/tags/list"))
        .send()
        .expect("GET");
    assert_eq!(res.status(), 200);
}

#[test]
fn catalog_pagination() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    r.reg.admin().create_project("hidden", false);
    let repos = ["pub/a", "pub/b", "pub/c/d", "pub/e", "hidden/x"];
    for (i, repo) in repos.iter().enumerate() {
        r.push_blob(repo, &bytes(100 + i as u64, 10));
    }
    let res = r.get("/v2/_catalog");
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(
        v["repositories"],
        serde_json::json!(["hidden/x", "pub/a", "pub/b", "pub/c/d", "pub/e"])
    );

    let res = r.get("/v2/_catalog?n=2");
    assert_eq!(
        header(&res, "link"),
        "</v2/_catalog?n=2&last=pub/a>; rel=\"next\""
    );
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["repositories"], serde_json::json!(["hidden/x", "pub/a"]));
    let res = r.get("/v2/_catalog?n=2&last=pub/a");
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["repositories"], serde_json::json!(["pub/b", "pub/c/d"]));
    let res = r.get("/v2/_catalog?n=2&last=pub/c/d");
    assert!(res.headers().get("link").is_none());
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["repositories"], serde_json::json!(["pub/e"]));

    // Anonymous callers see only public projects.
    let res = r.anon(Method::GET, "/v2/_catalog").send().expect("GET");
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(
        v["repositories"],
        serde_json::json!(["pub/a", "pub/b", "pub/c/d", "pub/e"])
    );
    expect_error(r.get("/v2/_catalog?n=-1"), 400, "UNSUPPORTED");
}

// ---------------------------------------------------------------- end-12a, end-12b

#[test]
fn end_12_referrers_api() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/signed";
    let (subject, sdigest) = r.push_image(repo, "v1", &[&bytes(20, 100)]);
    let path = format!("/v2/{repo}/referrers/{sdigest}");

    // No referrers yet: an empty index, never 404 - also for unknown digests
    // and unknown repositories.
    for p in [
        path.clone(),
        format!("/v2/{repo}/referrers/{}", digest_of(b"unknown")),
        format!("/v2/pub/nothing/referrers/{sdigest}"),
    ] {
        let res = r.get(&p);
        assert_eq!(res.status(), 200, "{p}");
        assert_eq!(header(&res, "content-type"), OCI_INDEX);
        let v: serde_json::Value = res.json().expect("json");
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["manifests"], serde_json::json!([]));
    }

    r.push_blob(repo, b"{}");
    let sbom_blob = br#"{"sbom":true}"#;
    let sig_blob = br#"{"sig":true}"#;
    r.push_blob(repo, sbom_blob);
    r.push_blob(repo, sig_blob);
    let sbom = artifact_manifest(
        "application/vnd.example.sbom",
        &subject,
        OCI_MANIFEST,
        sbom_blob,
        "sbom",
    );
    let sig = artifact_manifest(
        "application/vnd.example.sig",
        &subject,
        OCI_MANIFEST,
        sig_blob,
        "sig",
    );
    for (m, tag) in [(&sbom, "sbom"), (&sig, "sig")] {
        let res = r.put_manifest(repo, tag, OCI_MANIFEST, m);
        assert_eq!(res.status(), 201, "{}", describe(res));
        assert_eq!(header(&res, "oci-subject"), sdigest);
    }
    // Pushed by digest (no tag), still a referrer.
    let note_blob = br#"{"note":1}"#;
    r.push_blob(repo, note_blob);
    let note = artifact_manifest(
        "application/vnd.example.sbom",
        &subject,
        OCI_MANIFEST,
        note_blob,
        "note",
    );
    let res = r.put_manifest(repo, &digest_of(&note), OCI_MANIFEST, &note);
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "oci-subject"), sdigest);

    // An index can refer to a subject too.
    let bundle = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.bundle",
        "manifests": [descriptor(OCI_MANIFEST, &sbom)],
        "subject": descriptor(OCI_MANIFEST, &subject),
        "annotations": {"org.example.note": "bundle"},
    }))
    .expect("json");
    let res = r.put_manifest(repo, &digest_of(&bundle), OCI_INDEX, &bundle);
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(header(&res, "oci-subject"), sdigest);

    let res = r.get(&path);
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("oci-filters-applied").is_none());
    let v: serde_json::Value = res.json().expect("json");
    let manifests = v["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 4, "{v}");
    let b = manifests
        .iter()
        .find(|d| d["digest"] == digest_of(&bundle))
        .unwrap_or_else(|| panic!("the index listed in {v}"));
    assert_eq!(b["mediaType"], OCI_INDEX);
    assert_eq!(b["artifactType"], "application/vnd.example.bundle");
    assert_eq!(b["size"], bundle.len());
    for (m, at, note) in [
        (&sbom, "application/vnd.example.sbom", "sbom"),
        (&sig, "application/vnd.example.sig", "sig"),
        (&note, "application/vnd.example.sbom", "note"),
    ] {
        let d = manifests
            .iter()
            .find(|d| d["digest"] == digest_of(m))
            .unwrap_or_else(|| panic!("{} listed in {v}", digest_of(m)));
        assert_eq!(d["mediaType"], OCI_MANIFEST);
        assert_eq!(d["size"], m.len());
        assert_eq!(d["artifactType"], at);
        assert_eq!(d["annotations"]["org.example.note"], note);
    }

    let res = r.get(&format!("{path}?artifactType=application/vnd.example.sig"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "oci-filters-applied"), "artifactType");
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["manifests"][0]["digest"], digest_of(&sig));
    let res = r.get(&format!(
        "{path}?artifactType=application%2Fvnd.example.none"
    ));
    assert_eq!(header(&res, "oci-filters-applied"), "artifactType");
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["manifests"], serde_json::json!([]));

    // A referrer may be pushed before its subject exists.
    let future = image_manifest(&config_for(repo, "future"), &[]);
    let early = artifact_manifest(
        "application/vnd.example.sig",
        &future,
        OCI_MANIFEST,
        sig_blob,
        "early",
    );
    let res = r.put_manifest(repo, "early", OCI_MANIFEST, &early);
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(header(&res, "oci-subject"), digest_of(&future));
    let v: serde_json::Value = r
        .get(&format!("/v2/{repo}/referrers/{}", digest_of(&future)))
        .json()
        .expect("json");
    assert_eq!(v["manifests"][0]["digest"], digest_of(&early));

    // Deleting a referrer removes it from the list.
    assert_eq!(
        r.delete(&format!("/v2/{repo}/manifests/{}", digest_of(&sig)))
            .status(),
        202
    );
    let v: serde_json::Value = r.get(&path).json().expect("json");
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(3));

    expect_error(
        r.get(&format!("/v2/{repo}/referrers/sha256:abc")),
        400,
        "DIGEST_INVALID",
    );
}

// ---------------------------------------------------------------- end-10

#[test]
fn end_10_blob_delete() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/del";
    let content = bytes(30, 500);
    let digest = r.push_blob(repo, &content);
    r.push_blob("pub/keeper", &content);
    let res = r.delete(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(res.status(), 202);
    assert_eq!(
        header(&res, "docker-distribution-api-version"),
        "registry/2.0"
    );
    expect_error(
        r.get(&format!("/v2/{repo}/blobs/{digest}")),
        404,
        "BLOB_UNKNOWN",
    );
    expect_error(
        r.delete(&format!("/v2/{repo}/blobs/{digest}")),
        404,
        "BLOB_UNKNOWN",
    );
    // Unlinking from one repository leaves the other's link alone.
    assert_eq!(
        r.get(&format!("/v2/pub/keeper/blobs/{digest}")).status(),
        200
    );
    // Anonymous users may not delete.
    let res = r
        .anon(Method::DELETE, &format!("/v2/pub/keeper/blobs/{digest}"))
        .send()
        .expect("DELETE");
    expect_error(res, 401, "UNAUTHORIZED");
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

// ---------------------------------------------------------------- bad input

#[test]
fn invalid_names_tags_and_digests_are_refused() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let d = digest_of(b"x");
    let long = format!("pub/{}", "a".repeat(300));
    for path in [
        "/v2/UPPER/tags/list".to_string(),
        "/v2/pub/Bad/manifests/v1".to_string(),
        "/v2/pub/-x/blobs/uploads/".to_string(),
        format!("/v2/pub/a__-b/blobs/{d}"),
        format!("/v2/{long}/tags/list"),
        "/v2/pub/a.../referrers/".to_string() + &d,
    ] {
        let method = if path.ends_with("/uploads/") {
            Method::POST
        } else {
            Method::GET
        };
        let e = expect_error(
            r.req(method, &path).send().expect("request"),
            400,
            "NAME_INVALID",
        );
        assert!(e["detail"]["name"].is_string(), "{e}");
    }
    // Path segments that normalize differently must not escape the grammar.
    for raw_path in [
        "/v2/pub/../x/tags/list",
        "/v2/pub//x/tags/list",
        "/v2/pub/%2e%2e/tags/list",
    ] {
        let out = r.raw(
            format!(
                "GET {raw_path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
                basic_admin()
            )
            .as_bytes(),
        );
        assert!(
            out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.1 404"),
            "{raw_path}: {out}"
        );
        assert!(
            out.to_ascii_lowercase()
                .contains("docker-distribution-api-version: registry/2.0"),
            "{out}"
        );
    }

    for (reference, code) in [
        ("-tag", "MANIFEST_INVALID"),
        (".tag", "MANIFEST_INVALID"),
        (&"t".repeat(129) as &str, "MANIFEST_INVALID"),
        ("sha256:short", "DIGEST_INVALID"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "DIGEST_INVALID"),
        (
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "DIGEST_INVALID",
        ),
    ] {
        expect_error(
            r.get(&format!("/v2/pub/app/manifests/{reference}")),
            400,
            code,
        );
        let res = r.put_manifest("pub/app", reference, OCI_MANIFEST, b"{}");
        expect_error(res, 400, code);
    }
    for digest in ["sha256:zz", "sha256", "sha999:00", "sha512:abcd"] {
        expect_error(
            r.get(&format!("/v2/pub/app/blobs/{digest}")),
            400,
            "DIGEST_INVALID",
        );
        let res = r
            .req(
                Method::POST,
                &format!("/v2/pub/app/blobs/uploads/?digest={digest}"),
            )
            .body("x")
            .send()
            .expect("POST");
        expect_error(res, 400, "DIGEST_INVALID");
    }
    // A push into a project that does not exist.
    let res = r
        .req(Method::POST, "/v2/noproject/app/blobs/uploads/")
        .send()
        .expect("POST");
    assert!(
        res.status() == 404 || res.status() == 403,
        "{}",
        describe(res)
    );
    assert!(r.upload_entries().is_empty(), "{:?}", r.upload_entries());
    assert!(r.blob_files().is_empty());
    r.assert_alive();
}

#[test]
fn invalid_manifests_are_refused() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/bad";
    let config = config_for(repo, "c");
    r.push_blob(repo, &config);
    let good = image_manifest(&config, &[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"{not json".to_vec()),
        (OCI_MANIFEST, b"".to_vec()),
        (OCI_MANIFEST, b"[]".to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion": 1}"#.to_vec()),
        (
            OCI_MANIFEST,
            br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}"#
                .to_vec(),
        ),
        // Content-Type and mediaType disagree.
        (OCI_INDEX, good.clone()),
        (DOCKER_MANIFEST, good.clone()),
        // Unknown media types.
        ("text/plain", good.clone()),
        ("application/vnd.example.thing+json", good.clone()),
        // Docker schema1.
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            br#"{"schemaVersion": 1, "fsLayers": []}"#.to_vec(),
        ),
        // A descriptor with a bad digest.
        (
            OCI_MANIFEST,
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": "sha256:nothex", "size": 1},
                "layers": []
            }))
            .expect("json"),
        ),
        // Negative size.
        (
            OCI_MANIFEST,
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": digest_of(&config), "size": -1},
                "layers": []
            }))
            .expect("json"),
        ),
    ];
    for (i, (media_type, body)) in cases.iter().enumerate() {
        let res = r.put_manifest(repo, &format!("bad{i}"), media_type, body);
        expect_error(res, 400, "MANIFEST_INVALID");
    }
    let res = r.get(&format!("/v2/{repo}/tags/list"));
    let v: serde_json::Value = res.json().expect("json");
    assert_eq!(v["tags"], serde_json::json!([]));
    // The good one still goes in, with or without Content-Type (mediaType decides).
    assert_eq!(
        r.put_manifest(repo, "good", OCI_MANIFEST, &good).status(),
        201
    );
    let res = r
        .req(Method::PUT, &format!("/v2/{repo}/manifests/good2"))
        .body(good.clone())
        .send()
        .expect("PUT");
    assert_eq!(res.status(), 201);
    let res = r.get(&format!("/v2/{repo}/manifests/good2"));
    assert_eq!(header(&res, "content-type"), OCI_MANIFEST);
    r.assert_alive();
}

#[test]
fn bad_content_ranges_and_unknown_upload_ids() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let repo = "pub/ranges";
    let location = r.start_upload(repo);
    assert_eq!(r.patch(&location, 0, &bytes(70, 1000)).status(), 202);
    for bad in [
        "abc",
        "10",
        "-5",
        "5-",
        "9-3",
        "bytes=x-y",
        "0-18446744073709551616",
    ] {
        let res = r
            .req(Method::PATCH, &location)
            .header("Content-Range", bad)
            .body(vec![0u8; 10])
            .send()
            .expect("PATCH");
        let status = res.status().as_u16();
        assert!(status == 400 || status == 416, "{bad}: {status}");
        expect_error(res, status, "BLOB_UPLOAD_INVALID");
    }
    // A Content-Range that announces more bytes than the body has: discarded.
    let res = r
        .req(Method::PATCH, &location)
        .header("Content-Range", "1000-1999")
        .body(vec![1u8; 10])
        .send()
        .expect("PATCH");
    expect_error(res, 400, "BLOB_UPLOAD_INVALID");
    // The upload is where it was.
    let res = r.get(&location);
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "range"), "0-999");
    assert_eq!(r.patch(&location, 1000, &[2u8; 24]).status(), 202);
    let res = r.get(&location);
    assert_eq!(header(&res, "range"), "0-1023");

    // Unknown upload ids, well-formed or not, on every upload method.
    let id = location.rsplit('/').next().expect("id").to_string();
    for path in [
        format!("/v2/{repo}/blobs/uploads/00000000-0000-4000-8000-000000000000"),
        format!("/v2/{repo}/blobs/uploads/not-a-uuid"),
        format!("/v2/{repo}/blobs/uploads/..%2F..%2Fberth.redb"),
        // Another repository's session.
        format!("/v2/pub/elsewhere/blobs/uploads/{id}"),
    ] {
        expect_error(r.get(&path), 404, "BLOB_UPLOAD_UNKNOWN");
        expect_error(r.patch(&path, 0, b"data"), 404, "BLOB_UPLOAD_UNKNOWN");
        expect_error(
            r.finish(&path, &digest_of(b"x"), b"x"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        );
        expect_error(r.delete(&path), 404, "BLOB_UPLOAD_UNKNOWN");
    }
    // The real session is unharmed by all that.
    let res = r.get(&location);
    assert_eq!(header(&res, "range"), "0-1023");
    assert!(!r.embedded() || r.reg.data_dir.join("berth.redb").is_file());
    assert_eq!(r.delete(&location).status(), 204);
    assert!(r.upload_entries().is_empty());
    r.assert_alive();
}

#[test]
fn garbage_requests_do_not_take_the_server_down() {
    let Some(r) = crate::setup::start() else {
        return;
    };
    let auth = basic_admin();
    let requests: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"\x00\x01\x02\x03\r\n\r\n".to_vec(),
        format!("GET /v2/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a/".repeat(5000)).into_bytes(),
        format!(
            "PATCH /v2/pub/x/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n"
        )
        .into_bytes(),
        format!(
            "PUT /v2/pub/x/manifests/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: {OCI_MANIFEST}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"schema"
        )
        .into_bytes(),
        format!(
            "GET /v2/pub/x/manifests/v1?%zz=%%%&tag HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
             Accept: \u{7f}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        format!(
            "GET /v2/pub/x/blobs/{} HTTP/1.1\r\nHost: x\r\nRange: bytes=99999999999999999999999-\r\n\
             Authorization: Basic {auth}\r\nConnection: close\r\n\r\n",
            digest_of(b"x")
        )
        .into_bytes(),
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!notbase64\r\nConnection: close\r\n\r\n"
            .to_vec(),
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.b.c\r\nConnection: close\r\n\r\n"
            .to_vec(),
    ];
    for req in &requests {
        let out = raw_truncated(r.port(), req);
        assert!(
            !out.contains(" 500 "),
            "{}: {out}",
            String::from_utf8_lossy(req)
        );
    }
    // An upload whose body breaks off half way: the session keeps its offset.
    let location = r.start_upload("pub/x");
    let out = raw_truncated(
        r.port(),
        format!(
            "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
             Content-Length: 100000\r\nConnection: close\r\n\r\n{}",
            "z".repeat(5000)
        )
        .as_bytes(),
    );
    let _ = out;
    let res = r.get(&location);
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "range"), "0-0");
    r.assert_alive();
    assert!(!r.logs().contains("panicked"), "{}", r.logs());
}

#[test]
fn refusals_of_large_bodies_reach_the_client() {
    // A server that answers before reading a body and then closes makes the
    // client's send fail with a broken pipe, often before it reads the answer:
    // the client never sees the 416 and its Range, and cannot resume.
    let Some(r) = crate::setup::start() else {
        return;
    };
    let location = r.start_upload("pub/early");
    assert_eq!(r.patch(&location, 0, &bytes(1, 1000)).status(), 202);
    let big = vec![7u8; 4 << 20];
    for i in 0..40 {
        let res = r
            .req(Method::PATCH, &location)
            .header("Content-Range", format!("5000-{}", 5000 + big.len() - 1))
            .body(big.clone())
            .send()
            .unwrap_or_else(|e| panic!("out-of-order chunk {i}: no answer: {e:?}"));
        assert_eq!(header(&res, "range"), "0-999");
        expect_error(res, 416, "BLOB_UPLOAD_INVALID");
    }
    // The same for a manifest over the limit and an unauthenticated upload.
    let over = vec![b' '; 5 << 20];
    for _ in 0..5 {
        let res = r
            .req(Method::PUT, "/v2/pub/early/manifests/big")
            .header("Content-Type", OCI_MANIFEST)
            .body(over.clone())
            .send()
            .expect("an answer to the oversized manifest");
        expect_error(res, 413, "MANIFEST_INVALID");
        let res = r
            .anon(
                Method::POST,
                &format!("/v2/pub/early/blobs/uploads/?digest={}", digest_of(&big)),
            )
            .body(big.clone())
            .send()
            .expect("an answer to the anonymous upload");
        expect_error(res, 401, "UNAUTHORIZED");
    }
    let res = r.get(&location);
    assert_eq!(header(&res, "range"), "0-999");
    assert!(r.blob_files().is_empty());
}
