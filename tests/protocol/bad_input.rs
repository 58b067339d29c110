//! Bad input: invalid names, tags, digests and manifests, bad ranges and upload ids,
//! garbage requests and large bodies, each refused without falling over.

use super::*;

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
