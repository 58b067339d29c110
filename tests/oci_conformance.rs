//! The cases of the OCI distribution-spec conformance suite (its current
//! head, 1.1 profile) that berth once failed, reproduced against the built
//! binary (the suite is a Go program that cannot be built here), with the
//! rules around them:
//!
//! - the suite's image with non-distributable layers (one `…tar+gzip`, one
//!   plain `…tar`, both with `urls`, never pushed) plus one normal layer is
//!   accepted, stored and served, and nothing fetches those URLs;
//! - which layers may be missing (distribution's rule), and that such layers
//!   are linked and served when they were pushed after all;
//! - descriptor sizes must match what the registry holds;
//! - an index whose child is missing is `MANIFEST_BLOB_UNKNOWN`;
//! - a failed `HEAD` carries the `Content-Length` of the matching `GET`;
//! - GC, the edge's prefetch and a real client (skopeo) over such images.

mod common;
mod edge_support;

use std::net::TcpListener;

use berth_testkit::fixtures::media_types::*;
use berth_testkit::fixtures::{digest_of, Image, ImageBuilder, IndexBuilder, OciLayout};
use berth_testkit::manifest::*;
use berth_testkit::tools::{docker_ref, require_tools, CopyOptions, Creds, Skopeo};
use common::*;
use reqwest::Method;

/// Where the non-distributable layers say they live: a listener nobody
/// serves. A connection to it would wait in its backlog; `assert_untouched`
/// looks there, so a registry or edge that fetched a URL is caught.
struct LayerHost(TcpListener);

impl LayerHost {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        LayerHost(l)
    }
    fn url(&self, name: &str) -> String {
        let port = self.0.local_addr().expect("addr").port();
        format!("http://127.0.0.1:{port}/blobs/{name}")
    }
    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("something fetched a non-distributable layer's URL ({peer})"),
            Err(e) => panic!("layer host: {e}"),
        }
    }
}

/// The suite's "non-distributable-layers" image: a gzip and a plain
/// non-distributable layer with URLs, then one normal layer.
fn suite_image(layout: &OciLayout, host: &LayerHost) -> Image {
    ImageBuilder::new()
        .layer_non_distributable(
            OCI_LAYER_NONDISTRIBUTABLE_GZIP,
            &[&host.url("gzip")],
            "etc/nd-gzip",
            "compressed, non-distributable\n",
        )
        .layer_non_distributable(
            OCI_LAYER_NONDISTRIBUTABLE,
            &[&host.url("plain")],
            "etc/nd-plain",
            "plain, non-distributable\n",
        )
        .layer_file("etc/normal", "an ordinary layer\n")
        .tag("non-distributable-image")
        .build(layout)
}

/// Pushes the blobs a registry must hold for `image` over HTTP.
fn push_blobs(r: &Reg, repo: &str, layout: &OciLayout, image: &Image) {
    for (digest, _) in image.pushed_blob_digests() {
        r.push_blob(repo, &layout.read_blob(&digest));
    }
}

#[test]
fn non_distributable_layers_with_urls_are_accepted_without_their_blobs() {
    let r = Reg::start();
    let host = LayerHost::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("layout"));
    let image = suite_image(&layout, &host);
    assert_eq!(image.pushed_blob_digests().len(), 2, "config and one layer");
    let repo = "pub/nondist";
    push_blobs(&r, repo, &layout, &image);
    let manifest = &image.manifest.bytes;
    let digest = image.digest();

    // As the suite pushes: by digest, then the tag.
    let res = r.put_manifest(repo, digest, OCI_MANIFEST, manifest);
    assert_eq!(res.status(), 201, "{}", describe(res));
    let res = r.put_manifest(repo, "non-distributable-image", OCI_MANIFEST, manifest);
    assert_eq!(res.status(), 201, "{}", describe(res));
    assert_eq!(header(&res, "docker-content-digest"), digest);

    for reference in ["non-distributable-image", digest] {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let res = r.get(&path);
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&res, "docker-content-digest"), digest);
        assert_eq!(header(&res, "etag"), format!("\"{digest}\""));
        assert_eq!(header(&res, "content-length"), manifest.len().to_string());
        assert_eq!(res.bytes().expect("body").as_ref(), manifest.as_slice());
        let res = r.head(&path);
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-length"), manifest.len().to_string());
        assert_eq!(header(&res, "docker-content-digest"), digest);
        assert_eq!(header(&res, "content-type"), OCI_MANIFEST);
    }
    for (digest, _) in image.pushed_blob_digests() {
        assert_eq!(r.get(&format!("/v2/{repo}/blobs/{digest}")).status(), 200);
    }
    // The registry does not hold the non-distributable layers and does not
    // go and get them.
    for layer in &image.layers[..2] {
        let res = r.get(&format!("/v2/{repo}/blobs/{}", layer.digest()));
        expect_error(res, 404, "BLOB_UNKNOWN");
    }
    host.assert_untouched();

    // Docker's foreign layer is the same thing under another name.
    let docker = ImageBuilder::new()
        .docker()
        .layer_non_distributable(
            DOCKER_FOREIGN_LAYER,
            &[&host.url("foreign")],
            "Files/base",
            "a Windows base layer\n",
        )
        .layer_file("app/bin", "app\n")
        .build(&layout);
    push_blobs(&r, repo, &layout, &docker);
    let res = r.put_manifest(repo, "docker", DOCKER_MANIFEST, &docker.manifest.bytes);
    assert_eq!(res.status(), 201, "{}", describe(res));
    host.assert_untouched();
}

#[test]
fn which_layers_may_be_missing_is_distributions_rule() {
    let r = Reg::start();
    let host = LayerHost::start();
    let repo = "pub/rule";
    let config = config_for(repo, "rule");
    r.push_blob(repo, &config);
    let missing = bytes(31, 300);
    let layer = |media_type: &str, content: &[u8], urls: &[String]| {
        let mut d = descriptor(media_type, content);
        if !urls.is_empty() {
            d["urls"] = serde_json::json!(urls);
        }
        d
    };
    let manifest_of = |layers: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": layers,
        }))
        .expect("json")
    };
    let urls = [host.url("x")];

    // Non-distributable without URLs: an ordinary blob, which must be pushed.
    let m = manifest_of(vec![layer(OCI_LAYER_NONDISTRIBUTABLE, &missing, &[])]);
    let e = expect_error(
        r.put_manifest(repo, "a", OCI_MANIFEST, &m),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    assert_eq!(e["detail"]["digest"], digest_of(&missing));
    // A normal layer with URLs must be pushed too.
    let m = manifest_of(vec![layer(OCI_LAYER_GZIP, &missing, &urls)]);
    expect_error(
        r.put_manifest(repo, "b", OCI_MANIFEST, &m),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    // URLs a client cannot fetch are refused, naming the descriptor.
    for bad in [
        "ftp://example.com/layer",
        "https://example.com/layer#part",
        "layer.tar",
    ] {
        let m = manifest_of(vec![layer(
            OCI_LAYER_NONDISTRIBUTABLE,
            &missing,
            &[bad.to_string()],
        )]);
        let e = expect_error(
            r.put_manifest(repo, "c", OCI_MANIFEST, &m),
            400,
            "MANIFEST_INVALID",
        );
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(msg.contains(&digest_of(&missing)), "{bad}: {msg}");
    }
    for tag in ["a", "b", "c"] {
        let res = r.get(&format!("/v2/{repo}/manifests/{tag}"));
        expect_error(res, 404, "MANIFEST_UNKNOWN");
    }

    // Pushed after all: linked and served like any layer.
    let pushed = bytes(32, 400);
    r.push_blob(repo, &pushed);
    let m = manifest_of(vec![layer(OCI_LAYER_NONDISTRIBUTABLE_GZIP, &pushed, &urls)]);
    assert_eq!(
        r.put_manifest(repo, "pushed", OCI_MANIFEST, &m).status(),
        201
    );
    let res = r.get(&format!("/v2/{repo}/blobs/{}", digest_of(&pushed)));
    assert_eq!(res.bytes().expect("blob").as_ref(), pushed.as_slice());

    // Held by another repository only: the manifest is accepted, but that
    // does not give this repository the other one's blob.
    let elsewhere = bytes(33, 500);
    r.push_blob("pub/other", &elsewhere);
    let m = manifest_of(vec![layer(
        OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        &elsewhere,
        &urls,
    )]);
    assert_eq!(
        r.put_manifest(repo, "elsewhere", OCI_MANIFEST, &m).status(),
        201
    );
    let res = r.get(&format!("/v2/{repo}/blobs/{}", digest_of(&elsewhere)));
    expect_error(res, 404, "BLOB_UNKNOWN");
    host.assert_untouched();
}

#[test]
fn descriptor_sizes_must_match_what_the_registry_holds() {
    let r = Reg::start();
    let repo = "pub/sizes";
    let config = config_for(repo, "s");
    let layer = bytes(41, 20);
    r.push_blob(repo, &config);
    r.push_blob(repo, &layer);
    let with_sizes = |config_size: serde_json::Value, layer_size: serde_json::Value| {
        let mut m: serde_json::Value =
            serde_json::from_slice(&image_manifest(&config, &[&layer])).expect("json");
        m["config"]["size"] = config_size;
        m["layers"][0]["size"] = layer_size;
        serde_json::to_vec(&m).expect("json")
    };
    let (cs, ls) = (config.len(), layer.len());

    // The finding: a layer claiming 999,999,999 bytes for a 20-byte blob.
    let m = with_sizes(cs.into(), 999_999_999u64.into());
    let e = expect_error(
        r.put_manifest(repo, "s", OCI_MANIFEST, &m),
        400,
        "MANIFEST_INVALID",
    );
    let msg = e["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&digest_of(&layer)),
        "names the descriptor: {msg}"
    );
    assert_eq!(e["detail"]["digest"], digest_of(&layer));
    assert_eq!(e["detail"]["declared"], 999_999_999u64);
    assert_eq!(e["detail"]["actual"], 20);
    // The config is a descriptor too; off by one is off.
    let m = with_sizes((cs + 1).into(), ls.into());
    let e = expect_error(
        r.put_manifest(repo, "s", OCI_MANIFEST, &m),
        400,
        "MANIFEST_INVALID",
    );
    assert_eq!(e["detail"]["digest"], digest_of(&config));
    // Sizes no blob can have: negative, or past an int64.
    for absurd in [serde_json::json!(-20), serde_json::json!(u64::MAX)] {
        let m = with_sizes(cs.into(), absurd.clone());
        let res = r.put_manifest(repo, "s", OCI_MANIFEST, &m);
        expect_error(res, 400, "MANIFEST_INVALID");
    }
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/s")),
        404,
        "MANIFEST_UNKNOWN",
    );
    let good = with_sizes(cs.into(), ls.into());
    assert_eq!(r.put_manifest(repo, "s", OCI_MANIFEST, &good).status(), 201);

    // An index child's size is the size of the manifest stored.
    let mut index: serde_json::Value = serde_json::from_slice(&index_of(&[&good])).expect("json");
    index["manifests"][0]["size"] = (good.len() + 7).into();
    let bad = serde_json::to_vec(&index).expect("json");
    let e = expect_error(
        r.put_manifest(repo, "i", OCI_INDEX, &bad),
        400,
        "MANIFEST_INVALID",
    );
    assert_eq!(e["detail"]["digest"], digest_of(&good));
    assert_eq!(
        r.put_manifest(repo, "i", OCI_INDEX, &index_of(&[&good]))
            .status(),
        201
    );

    // A non-distributable layer that is not here cannot be measured: the
    // suite's own descriptors claim sizes (123456) unrelated to any blob.
    let mut m: serde_json::Value = serde_json::from_slice(&good).expect("json");
    m["layers"]
        .as_array_mut()
        .expect("layers")
        .push(serde_json::json!({
            "mediaType": OCI_LAYER_NONDISTRIBUTABLE_GZIP,
            "digest": digest_of(b"held elsewhere"),
            "size": 123456,
            "urls": ["https://store.example.com/blobs/sha256/x"],
        }));
    let m = serde_json::to_vec(&m).expect("json");
    assert_eq!(r.put_manifest(repo, "nd", OCI_MANIFEST, &m).status(), 201);
}

#[test]
fn an_index_whose_child_is_missing_is_manifest_blob_unknown() {
    let r = Reg::start();
    let repo = "pub/sparse";
    let (present, _) = r.push_image(repo, "amd64", &[&bytes(51, 1000)]);
    let absent = image_manifest(&config_for(repo, "arm64"), &[&bytes(52, 1000)]);
    let index = index_of(&[&present, &absent]);
    let e = expect_error(
        r.put_manifest(repo, "multi", OCI_INDEX, &index),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    assert_eq!(e["detail"]["digest"], digest_of(&absent));
    let res = r.get(&format!("/v2/{repo}/manifests/{}", digest_of(&index)));
    expect_error(res, 404, "MANIFEST_UNKNOWN");
}

#[test]
fn a_failed_head_carries_the_content_length_of_the_matching_get() {
    let r = Reg::start();
    r.reg.admin().create_project("hidden", false);
    let repo = "pub/heads";
    r.push_image(repo, "v1", &[&bytes(61, 100)]);
    let unknown = digest_of(b"never pushed");
    let cases: Vec<(Method, String, Option<&str>)> = vec![
        (Method::GET, format!("/v2/{repo}/manifests/nope"), None),
        (Method::GET, format!("/v2/{repo}/manifests/{unknown}"), None),
        (Method::GET, format!("/v2/{repo}/blobs/{unknown}"), None),
        (
            Method::GET,
            "/v2/pub/Bad_Name/manifests/v1".to_string(),
            None,
        ),
        (
            Method::GET,
            "/v2/hidden/app/manifests/v1".to_string(),
            Some("anonymous"),
        ),
        // An index the client's Accept does not list.
        (
            Method::GET,
            format!("/v2/{repo}/manifests/v1"),
            Some(OCI_INDEX),
        ),
    ];
    for (_, path, how) in &cases {
        let send = |m: Method| {
            let rb = match how {
                Some("anonymous") => r.anon(m, path),
                _ => r.req(m, path),
            };
            let rb = match how {
                Some(accept) if *accept != "anonymous" => rb.header("Accept", *accept),
                _ => rb,
            };
            rb.send().expect("request")
        };
        let get = send(Method::GET);
        let status = get.status();
        let content_type = header(&get, "content-type");
        let body = get.bytes().expect("GET body");
        assert!(status.as_u16() >= 400, "{path}: {status}");
        let head = send(Method::HEAD);
        assert_eq!(head.status(), status, "{path}");
        assert_eq!(
            header(&head, "content-length"),
            body.len().to_string(),
            "{path}"
        );
        assert_eq!(header(&head, "content-type"), content_type, "{path}");
        assert!(head.bytes().expect("HEAD body").is_empty(), "{path}");
    }
}

#[test]
fn gc_keeps_images_with_non_distributable_layers_and_collects_them_when_untagged() {
    let r = Reg::start_with(&[("BERTH_GC_GRACE", "0s")]);
    let host = LayerHost::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("layout"));
    let image = suite_image(&layout, &host);
    let repo = "pub/gcnd";
    push_blobs(&r, repo, &layout, &image);
    let res = r.put_manifest(repo, "v1", OCI_MANIFEST, &image.manifest.bytes);
    assert_eq!(res.status(), 201, "{}", describe(res));
    let gc = |r: &Reg| {
        let res = r.req(Method::POST, "/api/v1/gc").send().expect("POST gc");
        assert_eq!(res.status(), 200, "gc: {}", describe(res));
    };
    gc(&r);
    assert_eq!(r.get(&format!("/v2/{repo}/manifests/v1")).status(), 200);
    for (digest, _) in image.pushed_blob_digests() {
        assert_eq!(
            r.get(&format!("/v2/{repo}/blobs/{digest}")).status(),
            200,
            "{digest}"
        );
    }
    assert_eq!(r.delete(&format!("/v2/{repo}/manifests/v1")).status(), 202);
    gc(&r);
    for (digest, _) in image.pushed_blob_digests() {
        assert!(!r.has_blob_file(&digest), "{digest} collected");
    }
    host.assert_untouched();
}

/// Pushes `layout`'s `tag` to `docker://host/repo:tag` with skopeo, which
/// leaves out non-distributable layers with URLs (containers/image skips
/// "foreign" layers for registry destinations).
fn skopeo_push(
    skopeo: &Skopeo,
    layout: &OciLayout,
    tag: &str,
    host: &str,
    repo: &str,
    creds: &Creds,
) {
    skopeo.copy(
        &layout.reference(tag),
        &docker_ref(host, repo, tag),
        &CopyOptions::default()
            .preserving_digests()
            .with_dest_creds(creds),
    );
}

#[test]
fn skopeo_copies_an_image_with_non_distributable_layers_through_berth() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let r = Reg::start();
    let host = LayerHost::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("layout"));
    let image = suite_image(&layout, &host);
    let skopeo = Skopeo::new();
    let admin = Creds::new("admin", berth_testkit::berth::ADMIN_PASSWORD);
    let tag = "non-distributable-image";
    skopeo_push(&skopeo, &layout, tag, &r.reg.host(), "pub/skopeo", &admin);
    let src = docker_ref(&r.reg.host(), "pub/skopeo", tag);
    assert_eq!(skopeo.inspect_raw(&src, None), image.manifest.bytes);
    // Pulled back into a layout: the manifest unchanged, the layers it
    // could get, and the non-distributable ones left to their URLs.
    let dest_dir = tmp.path().join("pulled");
    let dest_ref = format!("oci:{}:{tag}", dest_dir.display());
    skopeo.copy(
        &src,
        &dest_ref,
        &CopyOptions::default().preserving_digests(),
    );
    let dest = OciLayout::open(&dest_dir);
    let pulled = dest.resolve(tag).expect("pulled manifest");
    assert_eq!(pulled.digest, image.digest());
    for (digest, _) in image.pushed_blob_digests() {
        assert!(dest.has_blob(&digest), "{digest}");
    }
    for layer in &image.layers[..2] {
        assert!(!dest.has_blob(layer.digest()), "{}", layer.digest());
    }
    host.assert_untouched();
}

#[test]
fn the_edge_prefetches_an_image_with_non_distributable_layers_without_them() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let origin = edge_support::Origin::start();
    let host = LayerHost::start();
    let layout = origin.layout("src");
    let image = suite_image(&layout, &host);
    let repo = format!("{}/nd", edge_support::PROJECT);
    let tag = "non-distributable-image";
    skopeo_push(
        &origin.skopeo,
        &layout,
        tag,
        &origin.registry.host(),
        &repo,
        &origin.admin_creds(),
    );
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = origin.edge(cache.path(), &[]);
    let base = edge.base_url();

    // What the controller waits for before it deploys: the job done, which
    // counts only the layers a node pulls through the edge.
    let id = edge_support::prefetch(&base, &[&format!("{repo}:{tag}")], true);
    let (job, _) = edge_support::wait_job_done(&base, &id, 60);
    let pushed = image.pushed_blob_digests();
    let total: u64 = pushed.iter().map(|(_, s)| s).sum();
    assert_eq!(job["bytes_total"].as_u64(), Some(total), "{job}");
    assert_eq!(job["bytes_done"].as_u64(), Some(total), "{job}");
    let img = &job["images"][0];
    assert_eq!(
        img["layers"].as_array().map(Vec::len),
        Some(pushed.len()),
        "{job}"
    );
    let mut external: Vec<&str> = img["external_layers"]
        .as_array()
        .expect("external layers listed")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    let mut expected: Vec<&str> = image.layers[..2].iter().map(|l| l.digest()).collect();
    external.sort();
    expected.sort();
    assert_eq!(external, expected, "{job}");
    for (digest, _) in &pushed {
        assert!(edge_support::is_cached(cache.path(), digest), "{digest}");
    }
    // A client that asks the edge for such a layer gets a fast 404 and
    // goes to the URLs; the edge fetches nothing from them either.
    let url = format!("{base}/v2/{repo}/blobs/{}", image.layers[0].digest());
    let (status, _, _) = edge_support::get(&url, &[]).expect("GET");
    assert_eq!(status, 404);
    host.assert_untouched();
}

#[test]
fn an_index_pushed_with_every_child_is_accepted_as_before() {
    // The other side of MANIFEST_BLOB_UNKNOWN: a complete multi-arch index.
    let r = Reg::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("layout"));
    let a = ImageBuilder::new().unrecorded().build(&layout);
    let b = ImageBuilder::new()
        .platform(berth_testkit::Platform::linux_arm64())
        .unrecorded()
        .build(&layout);
    let index = IndexBuilder::new()
        .image(&a)
        .image(&b)
        .tag("multi")
        .build(&layout);
    let repo = "pub/complete";
    for img in [&a, &b] {
        push_blobs(&r, repo, &layout, img);
        let res = r.put_manifest(repo, img.digest(), OCI_MANIFEST, &img.manifest.bytes);
        assert_eq!(res.status(), 201, "{}", describe(res));
    }
    let res = r.put_manifest(repo, "multi", OCI_INDEX, &index.manifest.bytes);
    assert_eq!(res.status(), 201, "{}", describe(res));
}
