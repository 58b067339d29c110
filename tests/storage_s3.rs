//! Blobs and uploads on S3, end to end: two `berth serve` processes with
//! `storage.backend = "s3"` sharing one bucket on a real three-node Garage
//! cluster (replication factor 3), each through its own Garage node.
//!
//! A chunked upload (PATCH chunks from 1 byte to 7 MiB, around the 5 MiB
//! part size) alternates between the two processes and finishes on the
//! second; skopeo pushes and pulls images; then one Garage node is killed
//! with SIGKILL and pushes, chunked uploads and pulls go on.

mod common;

use berth_testkit::tools::{docker_ref, CopyOptions};
use berth_testkit::{
    digest_of, require_tools, Creds, GarageCluster, ImageBuilder, OciLayout, Skopeo,
};
use common::*;
use reqwest::Method;

const PART: usize = 5 << 20;

/// A registry storing in the cluster's bucket through Garage node `node`.
fn registry_on(garage: &GarageCluster, node: usize) -> Reg {
    let mut env = garage.berth_env(node);
    env.push(("BERTH_STORAGE_PART_SIZE".into(), "5MiB".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Reg::start_with(&env)
}

/// Sends `blob` in chunks of `sizes`, alternating between the registries
/// in `via` (the upload was begun on the first), each answered with the
/// whole range so far; finishes on the last of `via`, which then holds the
/// blob (each process has its own metadata). Returns the digest.
fn chunked_upload(via: &[&Reg], repo: &str, blob: &[u8], sizes: &[usize]) -> String {
    let location = via[0].start_upload(repo);
    let (mut at, mut turn) = (0usize, 0usize);
    for &n in sizes.iter().cycle() {
        if at == blob.len() {
            break;
        }
        let end = (at + n).min(blob.len());
        let r = via[turn % via.len()];
        let res = r.patch(&location, at as u64, &blob[at..end]);
        assert_eq!(res.status(), 202, "PATCH {at}..{end}: {}", describe(res));
        assert_eq!(header(&res, "range"), format!("0-{}", end - 1));
        at = end;
        turn += 1;
    }
    // Every process sees the upload where the last one left it, and none
    // keeps any of it on its own disk.
    for r in via {
        assert_eq!(r.upload_entries(), Vec::<std::path::PathBuf>::new());
        assert!(r.blob_files().is_empty(), "blobs stay in the bucket");
        let res = r.get(&location);
        assert_eq!(res.status(), 204, "upload status: {}", describe(res));
        assert_eq!(header(&res, "range"), format!("0-{}", blob.len() - 1));
    }
    let digest = digest_of(blob);
    let last = via[via.len() - 1];
    let res = last.finish(&location, &digest, b"");
    assert_eq!(res.status(), 201, "finish: {}", describe(res));
    digest
}

fn assert_served(r: &Reg, repo: &str, digest: &str, blob: &[u8]) {
    let res = r.get(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(res.status(), 200, "GET {digest}");
    let body = res.bytes().expect("blob body");
    assert!(body[..] == blob[..], "the blob comes back as it went in");
    let (from, to) = (PART - 2, PART + 1);
    let res = r
        .req(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
        .header("Range", format!("bytes={from}-{to}"))
        .send()
        .expect("ranged GET");
    assert_eq!(res.status(), 206);
    assert_eq!(&res.bytes().expect("range")[..], &blob[from..=to]);
}

/// skopeo pushes an image with a layer over two parts to `r` and pulls it back.
fn skopeo_round_trip(r: &Reg, dir: &std::path::Path, repo: &str, seed: u64) {
    let layout = OciLayout::create(dir.join(format!("src-{seed}")));
    let image = ImageBuilder::new()
        .layer_random_seeded(11 << 20, seed)
        .layer_file("etc/motd", "on s3\n")
        .tag("v1")
        .build(&layout);
    let skopeo = Skopeo::new();
    let admin = Creds::new("admin", berth_testkit::berth::ADMIN_PASSWORD);
    let target = docker_ref(&r.reg.host(), repo, "v1");
    let opts = CopyOptions::default()
        .preserving_digests()
        .with_dest_creds(&admin);
    skopeo.copy(&layout.reference("v1"), &target, &opts);
    let back = dir.join(format!("back-{seed}"));
    let pull = CopyOptions::default()
        .preserving_digests()
        .with_src_creds(&admin);
    skopeo.copy(&target, &format!("oci:{}:v1", back.display()), &pull);
    let back = OciLayout::open(&back);
    assert_eq!(back.resolve("v1").expect("pulled").digest, image.digest());
    for (digest, size) in image.blob_digests() {
        let bytes = back.read_blob(&digest);
        assert_eq!((digest_of(&bytes), bytes.len() as u64), (digest, size));
    }
}

#[test]
fn uploads_continue_across_replicas_and_survive_a_garage_node() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let Some(mut garage) = GarageCluster::start() else {
        return;
    };
    let a = registry_on(&garage, 0);
    let b = registry_on(&garage, 1);
    let tmp = tempfile::tempdir().expect("tmp");

    // 1 byte .. 7 MiB, below, at and over the part size, over two replicas.
    let sizes = [1, 100, 65_536, 1 << 20, PART - 1, PART, PART + 1, 7 << 20];
    let blob = bytes(19, sizes.iter().sum::<usize>() + 12_345);
    let digest = chunked_upload(&[&a, &b], "pub/chunks", &blob, &sizes);
    assert_served(&b, "pub/chunks", &digest, &blob);
    skopeo_round_trip(&a, tmp.path(), "pub/img", 1);

    // A node of three goes: quorum is two, so writes and reads go on.
    garage.kill(2);
    let blob2 = bytes(23, 3 * PART + 17);
    let digest2 = chunked_upload(&[&b, &a], "pub/after", &blob2, &[7 << 20, 1, PART + 3]);
    assert_served(&a, "pub/after", &digest2, &blob2);
    assert_served(&b, "pub/chunks", &digest, &blob);
    skopeo_round_trip(&b, tmp.path(), "pub/img2", 2);
}
