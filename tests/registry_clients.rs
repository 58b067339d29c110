//! Real clients against the built `berth` binary: skopeo (OCI images and
//! indexes, Docker schema2 images and manifest lists), podman (login, push,
//! pull), containerd's ctr (pull through hosts.toml), and oras-py (an
//! artifact with a subject, discovered through the referrers API).
//!
//! Images come from the kit's offline fixture builder, so every digest is
//! known in advance: what comes back must be byte for byte what went in.

mod common;

use berth_testkit::fixtures::{media_types, multi_arch_image};
use berth_testkit::tools::{docker_ref, CopyOptions};
use berth_testkit::tools::{oras_discover, oras_push, require_oras, CtrPull, OrasPush};
use berth_testkit::{
    digest_of, require_tools, ArtifactBuilder, Containerd, Creds, Flavor, ImageBuilder, OciLayout,
    Platform, Podman, Skopeo,
};
use common::*;

fn admin() -> Creds {
    Creds::new("admin", berth_testkit::berth::ADMIN_PASSWORD)
}

fn push_opts(all: bool) -> CopyOptions {
    let base = if all {
        CopyOptions::all()
    } else {
        CopyOptions::default()
    };
    base.preserving_digests().with_dest_creds(&admin())
}

/// The manifest bytes and Docker-Content-Digest berth serves for `repo:reference`.
fn served(r: &Reg, repo: &str, reference: &str) -> (Vec<u8>, String) {
    let res = r
        .req(
            reqwest::Method::GET,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("Accept", "*/*")
        .send()
        .expect("GET manifest");
    assert_eq!(res.status(), 200, "{repo}:{reference}");
    let digest = header(&res, "docker-content-digest");
    (res.bytes().expect("manifest").to_vec(), digest)
}

#[test]
fn skopeo_copies_oci_images_and_indexes_in_and_out() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("src"));
    let image = ImageBuilder::new()
        .layer_file("etc/motd", "hello from berth\n")
        .layer_random(3 << 20)
        .layer_files([
            ("usr/share/doc/a", b"a".to_vec()),
            ("usr/share/doc/b", b"b".to_vec()),
        ])
        .tag("v1")
        .build(&layout);
    let (index, children) = multi_arch_image(
        &layout,
        Flavor::Oci,
        &[
            Platform::linux_amd64(),
            Platform::linux_arm64(),
            Platform::linux_arm_v7(),
        ],
        64 << 10,
        "multi",
    );
    let r = Reg::start();
    let host = r.reg.host();
    let skopeo = Skopeo::new();

    skopeo.copy(
        &layout.reference("v1"),
        &docker_ref(&host, "pub/img", "v1"),
        &push_opts(false),
    );
    let (bytes, digest) = served(&r, "pub/img", "v1");
    assert_eq!(bytes, image.manifest.bytes);
    assert_eq!(digest, image.digest());
    // Anonymous skopeo reads the public project.
    assert_eq!(
        skopeo.inspect_raw(&docker_ref(&host, "pub/img", "v1"), None),
        image.manifest.bytes
    );
    for (d, size) in image.blob_digests() {
        let res = r.head(&format!("/v2/pub/img/blobs/{d}"));
        assert_eq!(res.status(), 200, "{d}");
        assert_eq!(header(&res, "content-length"), size.to_string());
    }

    skopeo.copy(
        &layout.reference("multi"),
        &docker_ref(&host, "pub/multi", "v1"),
        &push_opts(true),
    );
    let (bytes, digest) = served(&r, "pub/multi", "v1");
    assert_eq!(bytes, index.manifest.bytes);
    assert_eq!(digest, index.digest());
    for child in &children {
        let (bytes, _) = served(&r, "pub/multi", child.digest());
        assert_eq!(bytes, child.manifest.bytes);
    }
    // Without --all, a client resolves the index to its own platform.
    let summary = skopeo.inspect(&docker_ref(&host, "pub/multi", "v1"), None);
    assert_eq!(summary["Architecture"], "amd64");
    assert_eq!(
        skopeo.list_tags(&format!("docker://{host}/pub/multi"), None),
        ["v1"]
    );

    // And back out into fresh layouts: the same manifests and blobs.
    let back = tmp.path().join("back");
    skopeo.copy(
        &docker_ref(&host, "pub/img", "v1"),
        &format!("oci:{}:v1", back.display()),
        &CopyOptions::default().preserving_digests(),
    );
    skopeo.copy(
        &docker_ref(&host, "pub/multi", "v1"),
        &format!("oci:{}:multi", back.display()),
        &CopyOptions::all().preserving_digests(),
    );
    let back = OciLayout::open(&back);
    assert_eq!(back.resolve("v1").expect("v1").digest, image.digest());
    assert_eq!(back.resolve("multi").expect("multi").digest, index.digest());
    assert_eq!(back.read_blob(index.digest()), index.manifest.bytes);
    for (digest, size) in image
        .blob_digests()
        .into_iter()
        .chain(children.iter().flat_map(|c| c.blob_digests()))
    {
        let bytes = back.read_blob(&digest);
        assert_eq!((digest_of(&bytes), bytes.len() as u64), (digest, size));
    }

    // Pushing again is a no-op that keeps every digest (blobs are found by HEAD).
    skopeo.copy(
        &layout.reference("v1"),
        &docker_ref(&host, "pub/img", "v1"),
        &push_opts(false),
    );
    assert_eq!(served(&r, "pub/img", "v1").1, image.digest());
    // Pushing without credentials is refused.
    let denied = skopeo.try_copy(
        &layout.reference("v1"),
        &docker_ref(&host, "pub/img", "v2"),
        &CopyOptions::default(),
    );
    assert!(denied.is_err(), "anonymous push accepted");
}

#[test]
fn skopeo_copies_docker_schema2_images_and_manifest_lists() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("src"));
    let image = ImageBuilder::new()
        .docker()
        .layer_file("etc/hello", "docker\n")
        .layer_random(1 << 20)
        .tag("d1")
        .build(&layout);
    let (list, children) = multi_arch_image(
        &layout,
        Flavor::Docker,
        &[Platform::linux_amd64(), Platform::linux_arm64()],
        4096,
        "dlist",
    );
    let r = Reg::start();
    let host = r.reg.host();
    let skopeo = Skopeo::new();

    let src = layout.dir_transport("d1", tmp.path().join("d1"));
    skopeo.copy(
        &src,
        &docker_ref(&host, "pub/docker", "v1"),
        &push_opts(false),
    );
    let res = r
        .req(reqwest::Method::GET, "/v2/pub/docker/manifests/v1")
        .header("Accept", media_types::DOCKER_MANIFEST)
        .send()
        .expect("GET");
    assert_eq!(header(&res, "content-type"), media_types::DOCKER_MANIFEST);
    assert_eq!(header(&res, "docker-content-digest"), image.digest());
    assert_eq!(
        res.bytes().expect("body").as_ref(),
        image.manifest.bytes.as_slice()
    );

    let src = layout.dir_transport("dlist", tmp.path().join("dlist"));
    skopeo.copy(
        &src,
        &docker_ref(&host, "pub/docker", "list"),
        &push_opts(true),
    );
    let res = r
        .req(reqwest::Method::GET, "/v2/pub/docker/manifests/list")
        .header(
            "Accept",
            format!(
                "{}, {}",
                media_types::DOCKER_MANIFEST,
                media_types::DOCKER_MANIFEST_LIST
            ),
        )
        .send()
        .expect("GET");
    assert_eq!(
        header(&res, "content-type"),
        media_types::DOCKER_MANIFEST_LIST
    );
    assert_eq!(header(&res, "docker-content-digest"), list.digest());
    for child in &children {
        assert_eq!(
            skopeo.inspect_raw(&docker_ref(&host, "pub/docker", child.digest()), None),
            child.manifest.bytes
        );
    }

    // Back out through the dir: transport, byte for byte.
    let out = tmp.path().join("out");
    skopeo.copy(
        &docker_ref(&host, "pub/docker", "list"),
        &format!("dir:{}", out.display()),
        &CopyOptions::all().preserving_digests(),
    );
    assert_eq!(
        std::fs::read(out.join("manifest.json")).expect("manifest.json"),
        list.manifest.bytes
    );
    for child in &children {
        for (d, _) in child.blob_digests() {
            let hex = d.trim_start_matches("sha256:");
            let bytes = std::fs::read(out.join(hex)).expect("blob copied out");
            assert_eq!(digest_of(&bytes), d);
        }
    }
}

#[test]
fn podman_logs_in_pushes_and_pulls() {
    if !require_tools(&["podman", "skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("src"));
    let image = ImageBuilder::new()
        .layer_files([("etc/hello", "from podman\n")])
        .layer_random(2 << 20)
        .tag("v1")
        .build(&layout);
    let r = Reg::start();
    let host = r.reg.host();
    let podman = Podman::new();

    podman.login(&host, &admin());
    let name = format!("{host}/pub/podman:v1");
    let id = podman.pull_layout(&layout, "v1", &name);
    assert_eq!(format!("sha256:{id}"), image.config.digest());
    let pushed = podman.push(&name, None);
    let (bytes, digest) = served(&r, "pub/podman", "v1");
    assert_eq!(digest, pushed);
    assert_eq!(digest_of(&bytes), pushed);

    podman.rmi_all();
    assert!(!podman.image_exists(&name));
    let pulled = podman.pull(&name);
    assert_eq!(pulled, id);
    assert_eq!(podman.image_digest(&name), pushed);

    // Logged out, the public project still pulls; pushing does not.
    podman.logout(&host);
    podman.rmi_all();
    assert_eq!(podman.pull(&name), id);
    podman.tag(&id, &format!("{host}/pub/podman:v2"));
    assert!(podman
        .try_push(&format!("{host}/pub/podman:v2"), None)
        .is_err());
    // A wrong password is refused (last: the same account from this address waits
    // a moment after it).
    assert!(podman
        .try_login(&host, &Creds::new("admin", "wrong-password"))
        .is_err());
}

#[test]
fn containerd_pulls_and_unpacks_from_berth() {
    if !require_tools(&["containerd", "ctr", "skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("src"));
    let image = ImageBuilder::new()
        .layer_file("etc/hello", "from containerd\n")
        .layer_random(1 << 20)
        .tag("v1")
        .build(&layout);
    let r = Reg::start();
    let host = r.reg.host();
    Skopeo::new().copy(
        &layout.reference("v1"),
        &docker_ref(&host, "pub/ctr", "v1"),
        &push_opts(false),
    );
    let containerd = Containerd::start();
    containerd.write_hosts_toml(&host, &r.reg.url(), &[]);
    let reference = format!("{host}/pub/ctr:v1");
    containerd.pull(&reference, &CtrPull::default());
    assert_eq!(containerd.image_digest(&reference), image.digest());
    assert_eq!(
        containerd.read_file(&reference, None, "etc/hello"),
        b"from containerd\n"
    );
}

#[test]
fn oras_pushes_an_artifact_and_discovers_it_through_referrers() {
    if !require_tools(&["skopeo", "python3"]) || !require_oras() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = OciLayout::create(tmp.path().join("src"));
    let image = ImageBuilder::new().tag("v1").build(&layout);
    let fixture = ArtifactBuilder::new("application/vnd.example.sig")
        .subject(&image.descriptor())
        .blob("application/json", br#"{"signed":true}"#.to_vec())
        .tag("sig-fixture")
        .build(&layout);
    let r = Reg::start();
    let host = r.reg.host();
    let skopeo = Skopeo::new();
    skopeo.copy(
        &layout.reference("v1"),
        &docker_ref(&host, "pub/app", "v1"),
        &push_opts(false),
    );
    // Nothing refers to it yet: an empty list, not a 404 (no --allow-404).
    let none = oras_discover(&host, "pub/app", image.digest(), None, false, None);
    assert_eq!(none["status"], 200);
    assert_eq!(none["manifests"], serde_json::json!([]));

    let sbom = tmp.path().join("sbom.json");
    std::fs::write(&sbom, br#"{"sbom":true}"#).expect("writing sbom");
    let pushed = oras_push(
        &OrasPush::new(&host, "pub/app", "sbom")
            .artifact_type("application/vnd.example.sbom")
            .subject("v1")
            .file(&sbom, "application/json")
            .annotation("org.example.kind", "sbom")
            .creds(&admin()),
    );
    assert_eq!(pushed["status"], 201, "{pushed}");
    assert_eq!(pushed["header_digest"], pushed["digest"]);
    assert_eq!(pushed["subject_header"], image.digest());
    assert_eq!(pushed["manifest"]["subject"]["digest"], image.digest());
    assert_eq!(pushed["manifest"]["subject"]["size"], image.manifest.size());
    // The offline fixture artifact, copied by skopeo byte for byte.
    skopeo.copy(
        &layout.reference("sig-fixture"),
        &docker_ref(&host, "pub/app", "sig"),
        &push_opts(false),
    );

    let all = oras_discover(&host, "pub/app", image.digest(), None, false, None);
    assert_eq!(all["status"], 200, "{all}");
    assert_eq!(all["content_type"], media_types::OCI_INDEX);
    assert!(all["filters_applied"].is_null(), "{all}");
    let manifests = all["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2, "{all}");
    let sbom_entry = manifests
        .iter()
        .find(|m| m["digest"] == pushed["digest"])
        .unwrap_or_else(|| panic!("oras artifact in {all}"));
    assert_eq!(sbom_entry["artifactType"], "application/vnd.example.sbom");
    assert_eq!(sbom_entry["annotations"]["org.example.kind"], "sbom");
    assert_eq!(sbom_entry["size"], pushed["size"]);
    let sig_entry = manifests
        .iter()
        .find(|m| m["digest"] == fixture.digest())
        .unwrap_or_else(|| panic!("fixture artifact in {all}"));
    assert_eq!(sig_entry["artifactType"], "application/vnd.example.sig");
    assert_eq!(sig_entry["mediaType"], media_types::OCI_MANIFEST);

    let filtered = oras_discover(
        &host,
        "pub/app",
        image.digest(),
        Some("application/vnd.example.sig"),
        false,
        Some(&admin()),
    );
    assert_eq!(filtered["filters_applied"], "artifactType", "{filtered}");
    let only: Vec<&serde_json::Value> = filtered["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .collect();
    assert_eq!(only.len(), 1, "{filtered}");
    assert_eq!(only[0]["digest"], fixture.digest());
}
