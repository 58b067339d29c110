//! Blobs: reads and ranges, monolithic, chunked and cancelled uploads, cross-repository
//! mounts, deletes (end-2, end-4a/b, end-5, end-6, end-10, end-11, end-13).

use super::*;

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
