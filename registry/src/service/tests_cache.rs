//! The calls a pull-through cache makes of `LocalRegistry`: caching
//! manifests, committing fills, evicting, and recovering at start-up.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::content::ContentStore;
use crate::meta::RedbMeta;
use crate::oci::{media, Algorithm, Digest, Reference, RepoName, Tag};

fn registry(dir: &Path) -> Arc<LocalRegistry> {
    let meta = RedbMeta::open(&dir.join("edge.redb")).expect("meta");
    let content = ContentStore::local(dir, &dir.join("uploads")).expect("content");
    Arc::new(LocalRegistry::embedded(
        meta,
        content,
        Arc::new(metrics::Metrics::new()),
    ))
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::sha256_of(bytes).to_string(),
        "size": bytes.len(),
    })
}

fn json(v: serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&v).expect("json"))
}

/// Commits `bytes` into `repo` the way a fill does.
async fn fill(reg: &LocalRegistry, repo: &RepoName, bytes: &[u8]) -> Committed {
    let digest = Digest::sha256_of(bytes);
    let id = format!("fill-{}", digest.hex());
    let mut ingest = reg
        .open_ingest(&id, repo, Algorithm::Sha256)
        .await
        .expect("ingest");
    ingest
        .write(Bytes::copy_from_slice(bytes))
        .await
        .expect("write");
    let done = ingest.finish(&digest, None).await.expect("verified");
    reg.commit_verified(repo, done).await.expect("commit")
}

async fn read_all(reg: &LocalRegistry, repo: &RepoName, digest: &Digest) -> Option<Vec<u8>> {
    let read = reg.blob_read(repo, digest, None).await.ok()?;
    let bytes = crate::content::collect(read.body, read.len).await.ok()?;
    Some(bytes.to_vec())
}

#[tokio::test]
async fn a_cached_manifest_is_recorded_like_a_pushed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = registry(dir.path());
    let repo: RepoName = "p/app".parse().expect("name");
    // Neither its config nor its layer is here: they arrive on demand.
    let image = json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", b"config"),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", b"layer")],
    }));
    let image_digest = Digest::sha256_of(&image);
    let tag: Tag = "v1".parse().expect("tag");
    reg.cache_manifest(
        &repo,
        &image_digest,
        media::OCI_MANIFEST,
        image.clone(),
        Some(&tag),
    )
    .await
    .expect("cache the image");
    let signature = json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": descriptor(media::OCI_EMPTY_CONFIG, b"{}"),
        "layers": [descriptor("application/octet-stream", b"sig")],
        "subject": descriptor(media::OCI_MANIFEST, &image),
    }));
    let sig_digest = Digest::sha256_of(&signature);
    reg.cache_manifest(
        &repo,
        &sig_digest,
        media::OCI_MANIFEST,
        signature.clone(),
        None,
    )
    .await
    .expect("cache the signature");
    // An index of which only one platform's child will ever be fetched.
    let index = json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [descriptor(media::OCI_MANIFEST, &image), descriptor(media::OCI_MANIFEST, b"arm64")],
    }));
    let index_digest = Digest::sha256_of(&index);
    reg.cache_manifest(&repo, &index_digest, media::OCI_INDEX, index, None)
        .await
        .expect("an index whose other platforms' children are absent");

    let m = reg
        .manifest(&repo, &Reference::Tag(tag.clone()))
        .await
        .expect("by tag");
    assert_eq!((m.digest, m.bytes), (image_digest.clone(), image.clone()));
    let referrers = reg
        .referrers(&repo, &image_digest)
        .await
        .expect("referrers");
    assert_eq!(referrers.manifests.len(), 1, "{referrers:?}");
    let r = &referrers.manifests[0];
    assert_eq!(r.digest, sig_digest);
    assert_eq!(r.size, signature.len() as u64);
    assert_eq!(
        r.artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );
    let page = reg.tags(&repo, None, 10).await.expect("tags");
    assert_eq!(page.tags, ["v1"]);

    // Content that is not what its digest says is refused.
    let err = reg
        .cache_manifest(
            &repo,
            &image_digest,
            media::OCI_MANIFEST,
            json(serde_json::json!({})),
            None,
        )
        .await
        .expect_err("a manifest under another's digest");
    assert_eq!(err.code(), Some(ErrorCode::DigestInvalid));
}

#[tokio::test]
async fn a_commit_puts_back_the_bytes_of_a_recorded_blob_that_went_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = registry(dir.path());
    let repo: RepoName = "p/app".parse().expect("name");
    let bytes = b"a layer".to_vec();
    let digest = Digest::sha256_of(&bytes);
    let first = fill(&reg, &repo, &bytes).await;
    assert_eq!(
        first,
        Committed {
            size: 7,
            new_blob: true
        }
    );
    reg.content.delete(&digest).await.expect("lose the bytes");
    assert_eq!(read_all(&reg, &repo, &digest).await, None);
    let again = fill(&reg, &repo, &bytes).await;
    assert_eq!(
        again,
        Committed {
            size: 7,
            new_blob: false
        },
        "still recorded once"
    );
    assert_eq!(read_all(&reg, &repo, &digest).await, Some(bytes));
    assert!(
        std::fs::read_dir(dir.path().join("uploads"))
            .expect("uploads")
            .next()
            .is_none(),
        "no ingest is left"
    );
}

#[tokio::test]
async fn eviction_removes_a_blobs_records_and_bytes_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = registry(dir.path());
    let (a, b): (RepoName, RepoName) = ("p/a".parse().expect("a"), "p/b".parse().expect("b"));
    let bytes = b"shared layer".to_vec();
    let digest = Digest::sha256_of(&bytes);
    fill(&reg, &a, &bytes).await;
    assert_eq!(
        reg.link_recorded_blob(&b, &digest).await.expect("link"),
        Some(12)
    );
    assert_eq!(
        reg.recorded_blobs().await.expect("blobs"),
        [(digest.clone(), 12)]
    );

    assert_eq!(reg.evict_blob(&digest).await.expect("evict"), Some(12));
    for repo in [&a, &b] {
        assert!(reg.blob_stat(repo, &digest).await.is_err(), "{repo}");
    }
    assert_eq!(reg.stored_blob_size(&digest).await.expect("stat"), None);
    assert_eq!(reg.recorded_blob_size(&digest).await.expect("record"), None);
    assert_eq!(reg.evict_blob(&digest).await.expect("again"), None);
}

#[tokio::test]
async fn start_up_sweeps_unrecorded_blob_files_and_unacknowledged_ingests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo: RepoName = "p/app".parse().expect("name");
    let kept = b"recorded".to_vec();
    let orphan = Bytes::from_static(b"placed, never recorded");
    let orphan_digest = Digest::sha256_of(&orphan);
    {
        let reg = registry(dir.path());
        fill(&reg, &repo, &kept).await;
        reg.content
            .put_bytes(&orphan_digest, orphan.clone())
            .await
            .expect("an unrecorded blob file");
        // A fill cut off before its first durable checkpoint.
        let mut cut = reg
            .open_ingest("fill-cut", &repo, Algorithm::Sha256)
            .await
            .expect("ingest");
        cut.write(Bytes::from_static(b"partial"))
            .await
            .expect("write");
    }
    let reg = registry(dir.path());
    let recovery = reg.recover_at_start(true).await.expect("recover");
    assert_eq!(
        recovery,
        Recovery {
            recorded: 0,
            discarded: 1,
            swept: 1
        }
    );
    assert_eq!(
        reg.stored_blob_size(&orphan_digest).await.expect("stat"),
        None
    );
    let kept_digest = Digest::sha256_of(&kept);
    assert_eq!(read_all(&reg, &repo, &kept_digest).await, Some(kept));
    // Without the sweep (a registry on a shared store), unrecorded files are GC's.
    reg.content
        .put_bytes(&orphan_digest, orphan)
        .await
        .expect("again");
    assert_eq!(reg.recover_at_start(false).await.expect("recover").swept, 0);
    assert_eq!(
        reg.stored_blob_size(&orphan_digest).await.expect("stat"),
        Some(22)
    );
}
