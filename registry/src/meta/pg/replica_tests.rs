//! Two `PgMeta`s over one database, each with its own pool: two replicas.
//! What one writes the other reads, limits are one counter, and GC on one
//! while the other takes pushes never loses an acknowledged manifest.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_testkit::postgres::Postgres;
use bytes::Bytes;

use super::{connect, migrate, PgMeta, MIGRATIONS};
use crate::content::ContentStore;
use crate::gc::{self, GcOptions};
use crate::meta::quota::QuotaSetting;
use crate::meta::{BadReference, MetaError, MetaStore, References, StoreStep};
use crate::oci::{manifest, media, Digest, RepoName, Tag};
use crate::service::metrics::Metrics;
use crate::service::LocalRegistry;

/// Two replicas of one fresh database.
async fn replicas() -> (PgMeta, PgMeta) {
    let url = Postgres::shared().database();
    let a = connect(&url, 4).expect("pool a");
    let b = connect(&url, 4).expect("pool b");
    migrate(&a, &[MIGRATIONS]).await.expect("migrate a");
    migrate(&b, &[MIGRATIONS])
        .await
        .expect("migrate b (nothing left to do)");
    (PgMeta::new(a), PgMeta::new(b))
}

fn name(s: &str) -> RepoName {
    s.parse().expect("repository name")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

/// An image manifest over `config` and `layer`: its digest, bytes and summary.
fn image(config: &[u8], layer: &[u8]) -> (Digest, Bytes, crate::oci::ManifestSummary) {
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    });
    let bytes = Bytes::from(serde_json::to_vec(&v).expect("json"));
    let summary = manifest::decode(media::OCI_MANIFEST, &bytes).expect("manifest");
    (Digest::sha256_of(&bytes), bytes, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_sees_the_others_writes_and_one_quota() {
    let (a, b) = replicas().await;
    let r = name("team/app");
    let (config, layer) = (b"{}".as_slice(), b"layer one".as_slice());
    for blob in [config, layer] {
        a.record_and_link(&r, &Digest::sha256_of(blob), blob.len() as u64)
            .await
            .expect("record on a");
    }
    let (d, bytes, summary) = image(config, layer);
    a.put_manifest(
        &r,
        &d,
        bytes.clone(),
        &summary,
        &[tag("1")],
        References::Required,
    )
    .await
    .expect("put on a")
    .expect("accepted");
    assert_eq!(
        b.resolve_tag(&r, &tag("1")).await.expect("resolve on b"),
        Some(d.clone())
    );
    let got = b
        .get_manifest(&r, &d)
        .await
        .expect("get on b")
        .expect("there");
    assert_eq!(got.bytes, bytes);
    assert_eq!(
        b.linked_blob(&r, &Digest::sha256_of(layer))
            .await
            .expect("link on b"),
        Some(layer.len() as u64)
    );
    // A tag deleted on b is gone on a.
    assert!(b.delete_tag(&r, &tag("1")).await.expect("delete on b"));
    assert_eq!(a.resolve_tag(&r, &tag("1")).await.expect("on a"), None);
    // One usage counter: a limit set on b refuses a push on a.
    let used = a.quota("team").await.expect("quota").usage;
    b.set_quota(Some("team"), Some(QuotaSetting::Bytes(used + 3)))
        .await
        .expect("limit on b");
    let big = b"more than three bytes";
    let err = a
        .record_and_link(&r, &Digest::sha256_of(big), big.len() as u64)
        .await
        .expect_err("over the limit set on the other replica");
    assert!(matches!(err, MetaError::Quota(_)), "{err}");
    // Both read one clock.
    let (ta, tb) = (
        a.clock().await.expect("clock"),
        b.clock().await.expect("clock"),
    );
    assert!(ta <= tb, "b read the database's clock after a: {ta} > {tb}");
}

/// Places `bytes` in the store and records them, under the write lock, as
/// an upload to the local store does.
async fn upload(meta: &PgMeta, content: &ContentStore, r: &RepoName, bytes: &[u8]) {
    let d = Digest::sha256_of(bytes);
    let (c, dd, b) = (content.clone(), d.clone(), Bytes::copy_from_slice(bytes));
    let place: StoreStep =
        Box::pin(async move { c.put_bytes(&dd, b).await.map_err(|e| e.to_string()) });
    meta.place_record_and_link(r, &d, bytes.len() as u64, place)
        .await
        .expect("upload");
}

/// Uploads an image's blobs and pushes its manifest tagged `t` through
/// `meta`, as a client does: uploading again when the push finds a blob
/// gone (GC took it while it was unreferenced). The manifest's digest, once
/// acknowledged.
async fn push(
    meta: &PgMeta,
    content: &ContentStore,
    r: &RepoName,
    config: &[u8],
    layer: &[u8],
    t: &Tag,
) -> Digest {
    let (d, bytes, summary) = image(config, layer);
    for _ in 0..50 {
        upload(meta, content, r, config).await;
        upload(meta, content, r, layer).await;
        let pushed = meta
            .put_manifest(
                r,
                &d,
                bytes.clone(),
                &summary,
                std::slice::from_ref(t),
                References::Required,
            )
            .await
            .expect("put");
        match pushed {
            Ok(()) => return d,
            Err(BadReference::Blob(_)) => continue,
            Err(other) => panic!("push {t}: {other:?}"),
        }
    }
    panic!("push {t} never got through");
}

/// Replica A pushes tagged images (and leaves garbage: untagged manifests
/// and blobs no manifest references) while replica B collects with no grace
/// window at all, over and over. A client whose manifest push is refused
/// for a blob GC took (allowed: it was unreferenced and past the window)
/// uploads it again; once a push is acknowledged, its manifest, tag, links,
/// records and bytes must all survive every collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_on_one_replica_during_gc_on_the_other_loses_nothing_acknowledged() {
    let (a, b) = replicas().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = |_| {
        ContentStore::local(&dir.path().join("store"), &dir.path().join("uploads"))
            .expect("content")
    };
    let (content_a, content_b) = (store(0), store(1));
    let metrics = Arc::new(Metrics::new());
    let registry_b =
        LocalRegistry::new(Arc::new(b.clone()), Arc::new(b.clone()), content_b, metrics);
    let done = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let collector = {
        let (done, runs) = (done.clone(), runs.clone());
        tokio::spawn(async move {
            let opts = GcOptions {
                grace: Duration::ZERO,
                upload_ttl: Duration::from_secs(3600),
                delete_untagged: true,
                dry_run: false,
            };
            while !done.load(Ordering::SeqCst) {
                gc::run(&registry_b, opts).await.expect("gc on b");
                runs.fetch_add(1, Ordering::SeqCst);
                // Collections back to back with no grace window can take
                // every blob a client uploads before its manifest lands,
                // run after run (a livelock no registry runs into: GC runs
                // minutes apart, with a grace window); a pause gives each
                // retry a chance, and pushes still overlap collections.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            registry_b
        })
    };
    let r = name("team/app");
    let config = b"{\"config\":true}".as_slice();
    let mut acknowledged = Vec::new();
    let mut i = 0;
    // At least 40 pushes, and until B has collected a few times meanwhile.
    while i < 40 || runs.load(Ordering::SeqCst) < 3 {
        assert!(i < 5000, "the collector made no progress");
        let layer = format!("layer {i}").into_bytes();
        let t = tag(&format!("v{i}"));
        let d = push(&a, &content_a, &r, config, &layer, &t).await;
        acknowledged.push((t, d, layer));
        // Garbage for B: an untagged manifest and a blob nothing references.
        let junk = format!("junk {i}").into_bytes();
        upload(&a, &content_a, &r, &junk).await;
        let (jd, jbytes, jsummary) = image(config, &junk);
        let _ = a
            .put_manifest(&r, &jd, jbytes, &jsummary, &[], References::Required)
            .await
            .expect("junk put");
        upload(&a, &content_a, &r, format!("loose {i}").as_bytes()).await;
        i += 1;
    }
    done.store(true, Ordering::SeqCst);
    let registry_b = collector.await.expect("collector");
    // One more collection after the pushes stopped.
    gc::run(
        &registry_b,
        GcOptions {
            grace: Duration::ZERO,
            upload_ttl: Duration::from_secs(3600),
            delete_untagged: true,
            dry_run: false,
        },
    )
    .await
    .expect("last gc");
    assert!(runs.load(Ordering::SeqCst) >= 3);
    for (t, d, layer) in &acknowledged {
        assert_eq!(
            b.resolve_tag(&r, t).await.expect("resolve"),
            Some(d.clone()),
            "{t}"
        );
        assert!(b.get_manifest(&r, d).await.expect("get").is_some(), "{t}");
        for blob in [config, layer.as_slice()] {
            let bd = Digest::sha256_of(blob);
            assert_eq!(
                b.linked_blob(&r, &bd).await.expect("link"),
                Some(blob.len() as u64),
                "{t}: {bd} lost its link or record"
            );
            assert!(
                content_a.stat(&bd).await.expect("stat").is_some(),
                "{t}: {bd} lost its bytes"
            );
        }
    }
    // And the garbage went: no untagged manifest is left.
    let view = b.gc_view(&r).await.expect("view");
    assert_eq!(view.manifests.len(), acknowledged.len());
}
