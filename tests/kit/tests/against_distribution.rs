//! Validates the kit for real, without berth: the fixtures, the process harness
//! and every client wrapper against CNCF distribution 2.8 (Debian's
//! `docker-registry`). If these pass, a failing berth end-to-end test points
//! at berth, not at the kit.
//!
//! A test whose tools are missing prints `SKIP:` and passes, except under CI,
//! where `.ci/run` installs them and a missing tool fails the test.

use std::time::{Duration, Instant};

use berth_testkit::distribution::DistributionProcess;
use berth_testkit::fixtures::{
    digest_of, media_types, multi_arch_image, ArtifactBuilder, Flavor, ImageBuilder, OciLayout,
    Platform,
};
use berth_testkit::tools::{
    docker_ref, oras_discover, oras_push, oras_push_try, require_oras, require_tools, Containerd,
    CopyOptions, Creds, CtrPull, OrasPush, Podman, Skopeo,
};
use berth_testkit::wait_until;

fn layout_in(dir: &tempfile::TempDir, name: &str) -> OciLayout {
    OciLayout::create(dir.path().join(name))
}

/// How long distribution's proxy may take to store a blob it streamed.
const STORED_WITHIN: Duration = Duration::from_secs(10);

#[test]
fn skopeo_copies_images_and_indexes_there_and_back_with_identical_digests() {
    if !require_tools(&["skopeo", "docker-registry"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = layout_in(&tmp, "src");
    let image = ImageBuilder::new()
        .layer_files([("etc/hello", "hello\n"), ("usr/share/berth/readme", "x")])
        .layer_random(64 << 20)
        .layer_random(1 << 20)
        .annotation("org.opencontainers.image.source", "berth-testkit")
        .tag("v1")
        .build(&layout);
    let (index, children) = multi_arch_image(
        &layout,
        Flavor::Oci,
        &[Platform::linux_amd64(), Platform::linux_arm64()],
        256 << 10,
        "multi",
    );
    let registry = DistributionProcess::start();
    let host = registry.host();
    let skopeo = Skopeo::new();

    let started = Instant::now();
    skopeo.copy(
        &layout.reference("v1"),
        &docker_ref(&host, "test/img", "v1"),
        &CopyOptions::default().preserving_digests(),
    );
    eprintln!("skopeo copy of a 65 MiB image: {:?}", started.elapsed());
    let served = skopeo.inspect_raw(&docker_ref(&host, "test/img", "v1"), None);
    assert_eq!(served, image.manifest.bytes);
    assert_eq!(digest_of(&served), image.digest());
    for (digest, _) in image.blob_digests() {
        assert!(registry.has_blob(&digest), "{digest} stored");
    }

    skopeo.copy(
        &layout.reference("multi"),
        &docker_ref(&host, "test/multi", "v1"),
        &CopyOptions::all().preserving_digests(),
    );
    assert_eq!(
        skopeo.manifest_digest(&docker_ref(&host, "test/multi", "v1"), None),
        index.digest()
    );
    for child in &children {
        let raw = skopeo.inspect_raw(&docker_ref(&host, "test/multi", child.digest()), None);
        assert_eq!(raw, child.manifest.bytes);
    }
    // Without --all, skopeo inspect resolves the index to this machine's platform.
    let summary = skopeo.inspect(&docker_ref(&host, "test/multi", "v1"), None);
    assert_eq!(summary["Architecture"], "amd64");

    // And back into a fresh layout: same manifests, same blobs.
    let back = tmp.path().join("back");
    skopeo.copy(
        &docker_ref(&host, "test/img", "v1"),
        &format!("oci:{}:v1", back.display()),
        &CopyOptions::default().preserving_digests(),
    );
    skopeo.copy(
        &docker_ref(&host, "test/multi", "v1"),
        &format!("oci:{}:multi", back.display()),
        &CopyOptions::all().preserving_digests(),
    );
    let back = OciLayout::open(&back);
    assert_eq!(
        back.resolve("v1").expect("v1 in copy").digest,
        image.digest()
    );
    assert_eq!(
        back.resolve("multi").expect("multi in copy").digest,
        index.digest()
    );
    for (digest, size) in image
        .blob_digests()
        .into_iter()
        .chain(children.iter().flat_map(|c| c.blob_digests()))
    {
        let bytes = back.read_blob(&digest);
        assert_eq!((digest_of(&bytes), bytes.len() as u64), (digest, size));
    }
}

#[test]
fn skopeo_copies_docker_schema2_images_and_lists_from_dir_transport() {
    if !require_tools(&["skopeo", "docker-registry"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = layout_in(&tmp, "src");
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
    let registry = DistributionProcess::start();
    let host = registry.host();
    let skopeo = Skopeo::new();

    let src = layout.dir_transport("d1", tmp.path().join("d1"));
    skopeo.copy(
        &src,
        &docker_ref(&host, "test/docker", "v1"),
        &CopyOptions::default().preserving_digests(),
    );
    let served = skopeo.inspect_raw(&docker_ref(&host, "test/docker", "v1"), None);
    assert_eq!(served, image.manifest.bytes);
    let json: serde_json::Value = serde_json::from_slice(&served).expect("manifest JSON");
    assert_eq!(json["mediaType"], media_types::DOCKER_MANIFEST);

    let src = layout.dir_transport("dlist", tmp.path().join("dlist"));
    skopeo.copy(
        &src,
        &docker_ref(&host, "test/docker", "list"),
        &CopyOptions::all().preserving_digests(),
    );
    assert_eq!(
        skopeo.manifest_digest(&docker_ref(&host, "test/docker", "list"), None),
        list.digest()
    );
    for child in &children {
        assert_eq!(
            skopeo.inspect_raw(&docker_ref(&host, "test/docker", child.digest()), None),
            child.manifest.bytes
        );
    }
}

#[test]
fn podman_pulls_from_layout_pushes_and_pulls_back() {
    if !require_tools(&["podman", "skopeo", "docker-registry"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = layout_in(&tmp, "src");
    let image = ImageBuilder::new()
        .layer_files([("etc/hello", "from podman\n")])
        .layer_random(2 << 20)
        .tag("v1")
        .build(&layout);
    let registry = DistributionProcess::start();
    let host = registry.host();
    let podman = Podman::new();

    let name = format!("{host}/test/podman:v1");
    let id = podman.pull_layout(&layout, "v1", &name);
    // The image ID is the config digest: the layout's config survived unpacking.
    assert_eq!(format!("sha256:{id}"), image.config.digest());

    let pushed = podman.push(&name, None);
    let skopeo = Skopeo::new();
    assert_eq!(
        skopeo.manifest_digest(&docker_ref(&host, "test/podman", "v1"), None),
        pushed
    );

    podman.rmi_all();
    assert!(!podman.image_exists(&name));
    let pulled = podman.pull(&name);
    assert_eq!(pulled, id);
    assert_eq!(podman.image_digest(&name), pushed);

    // One platform of a multi-arch index, pushed by skopeo, pulled by podman.
    let (index, children) = multi_arch_image(
        &layout,
        Flavor::Oci,
        &[Platform::linux_amd64(), Platform::linux_arm64()],
        0,
        "multi",
    );
    skopeo.copy(
        &layout.reference("multi"),
        &docker_ref(&host, "test/multi", "v1"),
        &CopyOptions::all(),
    );
    let arm = podman.pull_platform(&format!("{host}/test/multi:v1"), "linux/arm64");
    assert_eq!(format!("sha256:{arm}"), children[1].config.digest());
    assert_eq!(
        podman.image_format(&format!("{host}/test/multi:v1"), "{{.Architecture}}"),
        "arm64"
    );
    assert_eq!(
        podman.image_digest(&format!("{host}/test/multi:v1")),
        index.digest()
    );
}

#[test]
fn containerd_pulls_through_a_hosts_toml_mirror() {
    if !require_tools(&["containerd", "ctr", "skopeo", "docker-registry"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = layout_in(&tmp, "src");
    let image = ImageBuilder::new()
        .layer_file("etc/hello", "from containerd\n")
        .layer_random(3 << 20)
        .tag("v1")
        .build(&layout);
    let (index, _) = multi_arch_image(
        &layout,
        Flavor::Oci,
        &[Platform::linux_amd64(), Platform::linux_arm64()],
        0,
        "multi",
    );
    let origin = DistributionProcess::start();
    let mirror = DistributionProcess::start_proxy(&origin.base_url());
    assert_eq!(mirror.proxy_remote(), Some(origin.base_url().as_str()));
    let skopeo = Skopeo::new();
    skopeo.copy(
        &layout.reference("v1"),
        &docker_ref(&origin.host(), "test/img", "v1"),
        &CopyOptions::default(),
    );
    skopeo.copy(
        &layout.reference("multi"),
        &docker_ref(&origin.host(), "test/multi", "v1"),
        &CopyOptions::all(),
    );

    let containerd = Containerd::start();
    let hosts_toml = containerd.write_hosts_toml(
        &origin.host(),
        &origin.base_url(),
        &[mirror.base_url().as_str()],
    );
    assert!(std::fs::read_to_string(&hosts_toml)
        .expect("hosts.toml")
        .contains("capabilities = [\"pull\", \"resolve\"]"));

    let reference = format!("{}/test/img:v1", origin.host());
    containerd.pull(&reference, &CtrPull::default());
    assert_eq!(containerd.image_digest(&reference), image.digest());
    assert_eq!(
        containerd.read_file(&reference, None, "etc/hello"),
        b"from containerd\n"
    );
    // The mirror served (and so cached) the content, not the origin fallback.
    for layer in &image.layers {
        wait_until(
            &format!("mirror caching {}", layer.digest()),
            STORED_WITHIN,
            || mirror.has_blob(layer.digest()),
        );
    }

    let multi = format!("{}/test/multi:v1", origin.host());
    containerd.pull(&multi, &CtrPull::platform("linux/arm64"));
    assert_eq!(containerd.image_digest(&multi), index.digest());
    assert_eq!(
        containerd.read_file(&multi, Some("linux/arm64"), "etc/platform"),
        b"linux/arm64/v8\n"
    );
    assert!(containerd
        .content_digests()
        .contains(&image.layers[1].digest().to_owned()));
}

#[test]
fn containerd_overlayfs_snapshotter_unpacks_too() {
    if !require_tools(&["containerd", "ctr", "skopeo", "docker-registry"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = layout_in(&tmp, "src");
    ImageBuilder::new()
        .layer_file("etc/hello", "overlay\n")
        .layer_file("etc/second", "layer two\n")
        .tag("v1")
        .build(&layout);
    let registry = DistributionProcess::start();
    Skopeo::new().copy(
        &layout.reference("v1"),
        &docker_ref(&registry.host(), "test/img", "v1"),
        &CopyOptions::default(),
    );
    let containerd = Containerd::start().with_snapshotter("overlayfs");
    containerd.write_hosts_toml(
        &registry.host(),
        &registry.base_url(),
        &[registry.base_url().as_str()],
    );
    let reference = format!("{}/test/img:v1", registry.host());
    containerd.pull(&reference, &CtrPull::default());
    assert_eq!(
        containerd.read_file(&reference, None, "etc/hello"),
        b"overlay\n"
    );
    assert_eq!(
        containerd.read_file(&reference, None, "etc/second"),
        b"layer two\n"
    );
}

#[test]
fn oras_pushes_an_artifact_with_a_subject() {
    if !require_tools(&["skopeo", "docker-registry", "python3"]) || !require_oras() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = layout_in(&tmp, "src");
    let image = ImageBuilder::new().tag("v1").build(&layout);
    // The offline artifact fixture: skopeo copies it byte for byte too.
    let fixture = ArtifactBuilder::new("application/vnd.example.sbom")
        .subject(&image.descriptor())
        .blob("application/json", br#"{"sbom":true}"#.to_vec())
        .tag("sbom-fixture")
        .build(&layout);
    let registry = DistributionProcess::start();
    let host = registry.host();
    let skopeo = Skopeo::new();
    skopeo.copy(
        &layout.reference("v1"),
        &docker_ref(&host, "test/app", "v1"),
        &CopyOptions::default(),
    );
    skopeo.copy(
        &layout.reference("sbom-fixture"),
        &docker_ref(&host, "test/app", "sbom-fixture"),
        &CopyOptions::default().preserving_digests(),
    );
    assert_eq!(
        skopeo.inspect_raw(&docker_ref(&host, "test/app", "sbom-fixture"), None),
        fixture.manifest.bytes
    );

    let sbom = tmp.path().join("sbom.json");
    std::fs::write(&sbom, fixture.blobs[0].bytes.as_slice()).expect("writing sbom");
    let pushed = oras_push(
        &OrasPush::new(&host, "test/app", "sbom")
            .artifact_type("application/vnd.example.sbom")
            .subject("v1")
            .file(&sbom, "application/json")
            .annotation("org.example.kind", "sbom"),
    );
    assert_eq!(pushed["status"], 201, "{pushed}");
    assert_eq!(pushed["header_digest"], pushed["digest"]);
    let manifest = &pushed["manifest"];
    assert_eq!(manifest["artifactType"], "application/vnd.example.sbom");
    assert_eq!(manifest["subject"]["digest"], image.digest());
    assert_eq!(manifest["subject"]["size"], image.manifest.size());
    assert_eq!(manifest["layers"][0]["digest"], fixture.blobs[0].digest());
    assert!(registry.has_blob(fixture.blobs[0].digest()));

    // distribution 2.8 has no referrers API: 404, tolerated only when asked.
    let discovered = oras_discover(&host, "test/app", image.digest(), None, true, None);
    assert_eq!(discovered["status"], 404);
    assert_eq!(discovered["manifests"], serde_json::json!([]));
    let strict = berth_testkit::tools::oras_py_try([
        "discover",
        "--registry",
        &host,
        "--repo",
        "test/app",
        "--digest",
        image.digest(),
    ]);
    assert!(strict.is_err(), "a 404 without --allow-404 must fail");
}

#[test]
fn htpasswd_auth_with_skopeo_creds_podman_login_and_oras() {
    if !require_tools(&["skopeo", "podman", "docker-registry", "python3"]) || !require_oras() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = layout_in(&tmp, "src");
    let image = ImageBuilder::new().tag("v1").build(&layout);
    let alice = Creds::new("alice", "s3cret-pass");
    let registry = DistributionProcess::builder().user(&alice).start();
    let host = registry.host();
    let skopeo = Skopeo::new();
    let target = docker_ref(&host, "private/app", "v1");

    let denied = skopeo.try_copy(&layout.reference("v1"), &target, &CopyOptions::default());
    let denied = denied.expect_err("push without credentials must fail");
    assert!(
        denied.stderr.contains("401") || denied.stderr.to_lowercase().contains("unauthorized"),
        "{denied}"
    );
    skopeo.copy(
        &layout.reference("v1"),
        &target,
        &CopyOptions::default().with_dest_creds(&alice),
    );
    assert!(skopeo.try_inspect_raw(&target, None).is_err());
    assert_eq!(
        skopeo.manifest_digest(&target, Some(&alice)),
        image.digest()
    );

    let podman = Podman::new();
    let name = format!("{host}/private/app:v1");
    assert!(podman.try_pull(&name).is_err());
    assert!(podman
        .try_login(&host, &Creds::new("alice", "wrong"))
        .is_err());
    podman.login(&host, &alice);
    podman.pull(&name);
    assert_eq!(podman.image_digest(&name), image.digest());
    podman.logout(&host);
    podman.rmi_all();
    assert!(podman.try_pull(&name).is_err());

    let push = OrasPush::new(&host, "private/app", "note")
        .artifact_type("application/vnd.example.note")
        .subject("v1");
    assert!(oras_push_try(&push).is_err(), "oras without credentials");
    let pushed = oras_push(&push.creds(&alice));
    assert_eq!(pushed["manifest"]["subject"]["digest"], image.digest());
}

#[test]
fn distribution_survives_kill9_and_restart_with_its_data() {
    if !require_tools(&["skopeo", "docker-registry"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = layout_in(&tmp, "src");
    let image = ImageBuilder::new().tag("v1").build(&layout);
    let mut registry = DistributionProcess::start();
    let skopeo = Skopeo::new();
    let target = docker_ref(&registry.host(), "test/img", "v1");
    skopeo.copy(&layout.reference("v1"), &target, &CopyOptions::default());

    registry.server_mut().kill9();
    assert!(skopeo.try_inspect_raw(&target, None).is_err());
    registry.server_mut().start_again();
    assert_eq!(skopeo.manifest_digest(&target, None), image.digest());

    registry.server_mut().restart();
    assert_eq!(skopeo.manifest_digest(&target, None), image.digest());
    registry.server_mut().terminate();
    assert!(registry.server().log().contains("==== start #3"));
}
