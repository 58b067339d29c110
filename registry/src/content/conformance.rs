//! The content store's conformance suite: every backend must pass it.

use std::time::Duration;

use futures::TryStreamExt;

use super::*;
use crate::oci::Algorithm;

async fn collect(r: BlobRead) -> Vec<u8> {
    super::collect(r.body, r.len).await.expect("read").to_vec()
}

pub(super) async fn suite(store: ContentStore) {
    // Ingest in pieces, finish, place, read back whole and in ranges.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let mut ing = store
        .begin_ingest("u1", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    for chunk in data.chunks(700_000) {
        ing.write(Bytes::copy_from_slice(chunk))
            .await
            .expect("write");
    }
    ing.sync().await.expect("sync");
    assert_eq!(ing.acknowledged(), data.len() as u64);
    let done = ing
        .finish(&digest, Some(data.len() as u64))
        .await
        .expect("finish");
    store.place(done).await.expect("place");
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        Some(data.len() as u64)
    );
    assert!(
        store.ingest_state("u1").await.expect("state").is_some(),
        "the ingest stays until its blob is recorded"
    );
    store
        .abort_ingest("u1")
        .await
        .expect("remove the placed ingest");
    assert!(store.ingest_state("u1").await.expect("state").is_none());
    let whole = collect(store.read(&digest, None).await.expect("read")).await;
    assert_eq!(whole, data);
    let r = store
        .read(
            &digest,
            Some(ByteRange {
                start: 10,
                end: Some(19),
            }),
        )
        .await
        .expect("range");
    assert_eq!((r.start, r.len, r.size), (10, 10, data.len() as u64));
    assert_eq!(collect(r).await, &data[10..20]);
    let tail = store
        .read(
            &digest,
            Some(ByteRange {
                start: 2_999_990,
                end: None,
            }),
        )
        .await
        .expect("open range");
    assert_eq!(collect(tail).await, &data[2_999_990..]);

    // Identical content placed twice is stored once and stays readable.
    let mut again = store
        .begin_ingest("u2", "other/app", Algorithm::Sha256)
        .await
        .expect("begin");
    again.write(Bytes::from(data.clone())).await.expect("write");
    let done = again.finish(&digest, None).await.expect("finish");
    store.place(done).await.expect("place again");
    store
        .abort_ingest("u2")
        .await
        .expect("remove the placed ingest");
    assert_eq!(
        collect(store.read(&digest, None).await.expect("read"))
            .await
            .len(),
        data.len()
    );
    let listed: Vec<StoredBlob> = store.list().try_collect().await.expect("list");
    assert_eq!(listed.iter().filter(|b| b.digest == digest).count(), 1);

    // Wrong digest and wrong size: refused, nothing stored.
    let mut bad = store
        .begin_ingest("u3", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    bad.write(Bytes::from_static(b"hello"))
        .await
        .expect("write");
    let wrong = Digest::sha256_of(b"hellO");
    match bad.finish(&wrong, None).await {
        Err(ContentError::DigestMismatch { .. }) => {}
        other => panic!("expected digest mismatch, got {other:?}"),
    }
    assert_eq!(store.stat(&wrong).await.expect("stat"), None);
    let mut short = store
        .begin_ingest("u4", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    short
        .write(Bytes::from_static(b"hello"))
        .await
        .expect("write");
    assert!(matches!(
        short.finish(&Digest::sha256_of(b"hello"), Some(6)).await,
        Err(ContentError::SizeMismatch {
            expected: 6,
            actual: 5
        })
    ));
    store.abort_ingest("u3").await.expect("abort");
    store.abort_ingest("u4").await.expect("abort");
    store
        .abort_ingest("never-existed")
        .await
        .expect("abort unknown is fine");

    // Resume: bytes past the acknowledged offset are dropped, the prefix re-hashed.
    let mut r = store
        .begin_ingest("u5", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    r.write(Bytes::from_static(b"acked-")).await.expect("write");
    r.sync().await.expect("sync");
    r.write(Bytes::from_static(b"not-acked"))
        .await
        .expect("write");
    drop(r); // as if the process died here
    let mut r = store.resume_ingest("u5").await.expect("resume");
    assert_eq!(r.offset(), 6);
    assert_eq!(r.owner(), "proj/app");
    r.write(Bytes::from_static(b"rest")).await.expect("write");
    let want = Digest::sha256_of(b"acked-rest");
    let done = r
        .finish(&want, Some(10))
        .await
        .expect("finish after resume");
    store.place(done).await.expect("place");
    store
        .abort_ingest("u5")
        .await
        .expect("remove the placed ingest");
    assert_eq!(
        collect(store.read(&want, None).await.expect("read")).await,
        b"acked-rest"
    );
    assert!(matches!(
        store.resume_ingest("nope").await,
        Err(ContentError::IngestNotFound(_))
    ));

    // Start-up cleanup: ingests that never acknowledged a byte go, acknowledged ones stay.
    let mut cut = store
        .begin_ingest("u7", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    cut.write(Bytes::from_static(b"never acknowledged"))
        .await
        .expect("write");
    drop(cut);
    let mut kept = store
        .begin_ingest("u8", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    kept.write(Bytes::from_static(b"acked"))
        .await
        .expect("write");
    kept.sync().await.expect("sync");
    drop(kept);
    if store.uploads_in_bucket() {
        // Shared with other processes, which may have just begun theirs: left
        // to the expiry sweep.
        assert_eq!(store.discard_unacknowledged_ingests().expect("discard"), 0);
        assert_eq!(store.resume_ingest("u7").await.expect("resume").offset(), 0);
        assert_eq!(
            store
                .stale_ingests(Duration::ZERO)
                .await
                .expect("stale")
                .len(),
            2,
            "u7 and u8 are found by the sweep"
        );
        store.abort_ingest("u7").await.expect("abort");
    } else {
        assert_eq!(store.discard_unacknowledged_ingests().expect("discard"), 1);
    }
    assert!(store.ingest_state("u7").await.expect("state").is_none());
    assert_eq!(store.resume_ingest("u8").await.expect("resume").offset(), 5);
    store.abort_ingest("u8").await.expect("abort");

    // sha512, asked for only at the end.
    let mut s = store
        .begin_ingest("u6", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    s.write(Bytes::from_static(b"five hundred twelve"))
        .await
        .expect("write");
    let d512 = Digest::of(Algorithm::Sha512, b"five hundred twelve");
    store
        .place(s.finish(&d512, None).await.expect("finish"))
        .await
        .expect("place");
    store
        .abort_ingest("u6")
        .await
        .expect("remove the placed ingest");
    assert_eq!(store.stat(&d512).await.expect("stat"), Some(19));

    // put_bytes verifies; delete removes; missing blobs are NotFound.
    let small = Bytes::from_static(b"{\"manifest\":true}");
    let sd = Digest::sha256_of(&small);
    store.put_bytes(&sd, small.clone()).await.expect("put");
    assert!(store
        .put_bytes(&Digest::sha256_of(b"x"), small)
        .await
        .is_err());
    store.delete(&sd).await.expect("delete");
    store.delete(&sd).await.expect("delete twice");
    assert!(matches!(
        store.read(&sd, None).await,
        Err(ContentError::NotFound(_))
    ));
}

/// What a crash between `place_now` and the caller's record leaves, and what
/// start-up finds of it (local backend: placing moves the data file).
#[tokio::test]
async fn a_placed_but_unrecorded_ingest_is_found_at_start_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let store =
        ContentStore::local(&dir.path().join("store"), &dir.path().join("ingest")).expect("store");
    let finished = |id: &'static str, body: &'static [u8]| {
        let store = store.clone();
        async move {
            let mut i = store
                .begin_ingest(id, "proj/app", Algorithm::Sha256)
                .await
                .expect("begin");
            i.write(Bytes::from_static(body)).await.expect("write");
            i.sync().await.expect("sync");
            i.finish(&Digest::sha256_of(body), None)
                .await
                .expect("finish")
        }
    };
    // Marked and moved, never recorded: found, with what it became.
    let done = finished("moved", b"moved bytes").await;
    store.mark_placing(&done).await.expect("mark");
    store.place_now(done).expect("place");
    // Marked, the process died before the rename: a session to resume.
    let done = finished("kept", b"kept bytes").await;
    store.mark_placing(&done).await.expect("mark");
    drop(done);
    // Marked and moved, and its blob has gone since: nothing to recover.
    let done = finished("lost", b"lost bytes").await;
    store.mark_placing(&done).await.expect("mark");
    store.place_now(done).expect("place");
    store
        .delete(&Digest::sha256_of(b"lost bytes"))
        .await
        .expect("delete");

    let found = store.placed_ingests().expect("scan");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, "moved");
    assert_eq!(found[0].owner, "proj/app");
    assert_eq!(found[0].digest, Digest::sha256_of(b"moved bytes"));
    assert_eq!(found[0].size, 11);
    assert!(store.ingest_state("lost").await.expect("state").is_none());
    let mut resumed = store.resume_ingest("kept").await.expect("resume");
    assert_eq!(resumed.offset(), 10);
    resumed.sync().await.expect("sync");
    drop(resumed);
    let state = store.ingest_state("kept").await.expect("state");
    assert!(
        state.is_some_and(|s| s.placing.is_none()),
        "a resumed session forgets the placement that never happened"
    );
}

#[tokio::test]
async fn local_filesystem_backend() {
    let dir = tempfile::tempdir().expect("tmp");
    let store =
        ContentStore::local(&dir.path().join("store"), &dir.path().join("ingest")).expect("store");
    suite(store).await;
}

#[tokio::test]
async fn in_memory_backend() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = ContentStore::memory(&dir.path().join("ingest")).expect("store");
    suite(store).await;
}

#[tokio::test]
async fn in_memory_bucket_backend() {
    let dir = tempfile::tempdir().expect("tmp");
    let bucket = Arc::new(InMemory::new());
    // Parts far smaller than S3 allows, so that the suite's blobs span several.
    let store = ContentStore::in_bucket(bucket.clone(), 1 << 20, dir.path());
    suite(store.clone()).await;
    let other = ContentStore::in_bucket(bucket, 1 << 20, dir.path());
    super::handover::suite(store, other, 1 << 20).await;
}

/// The S3 backend on a real distributed S3 server: Garage, three nodes,
/// replication factor 3.
#[tokio::test]
async fn garage_bucket_backend() {
    let Some(garage) = berth_testkit::GarageCluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let open = |node: usize| {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&garage.bucket)
            .with_region("garage")
            .with_endpoint(garage.endpoint(node))
            .with_allow_http(true)
            .with_access_key_id(&garage.key_id)
            .with_secret_access_key(&garage.secret)
            .build()
            .expect("s3 client");
        ContentStore::in_bucket(Arc::new(s3), 5 << 20, dir.path())
    };
    suite(open(0)).await;
    // Two processes, each through its own Garage node.
    super::handover::suite(open(0), open(1), 5 << 20).await;
}
