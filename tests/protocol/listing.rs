//! Lists: tags and the catalog with pagination, the referrers API (end-8, end-12).

use super::*;

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
