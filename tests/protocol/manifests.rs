//! Manifests: by tag and digest, content negotiation and Docker types, references that
//! must exist, the size limit, tag parameters on a push by digest (end-3, end-7, end-9).

use super::*;

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
