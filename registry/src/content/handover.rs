//! Uploads in a bucket shared by two processes (two `ContentStore`s over
//! the same bucket): what one began, the other continues, through chunks of
//! any size, parts uploaded by either, a crash with bytes not acknowledged,
//! and the end of an upload seen by the one that no longer holds it.

use std::time::Duration;

use futures::TryStreamExt;

use super::*;
use crate::oci::Algorithm;

/// Bytes that differ at every position, so a misplaced chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn write_all(ing: &mut Ingest, bytes: &[u8], sizes: &[usize]) {
    let mut at = 0;
    for &n in sizes.iter().cycle() {
        if at == bytes.len() {
            break;
        }
        let end = (at + n).min(bytes.len());
        ing.write(Bytes::copy_from_slice(&bytes[at..end]))
            .await
            .expect("write");
        at = end;
    }
}

fn held(ing: &Ingest) -> (usize, usize) {
    match &ing.held {
        Held::Bucket(b) => b.held(),
        Held::Spool(_) => panic!("an upload in the bucket"),
    }
}

async fn objects_under(store: &ContentStore, id: &str) -> Vec<String> {
    let prefix = ObjPath::from(format!("_uploads/{id}"));
    store
        .objects
        .list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list")
}

/// Waits for a listing without upload `id`'s objects: a distributed store
/// may list a deleted object for a moment (reads of it fail at once).
async fn all_gone(store: &ContentStore, id: &str) {
    let mut left = Vec::new();
    for _ in 0..100 {
        left = objects_under(store, id).await;
        if left.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("objects of upload {id} left after it ended: {left:?}");
}

/// `a` and `b` share one bucket; `part` is their part size.
pub(super) async fn suite(a: ContentStore, b: ContentStore, part: usize) {
    let data = pattern(part * 2 + part / 2 + 12_345);
    let digest = Digest::sha256_of(&data);
    let (p1, p2, p3, p4) = (part / 3, part + part / 4, part * 2 + 7, part * 2 + part / 3);

    // A begins; B, which never saw it, knows the session.
    let mut on_a = a
        .begin_ingest("h1", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin on A");
    let st = b
        .ingest_state("h1")
        .await
        .expect("state")
        .expect("known to B");
    assert_eq!((st.owner.as_str(), st.offset), ("proj/app", 0));

    // A: small chunks, below a part.
    write_all(&mut on_a, &data[..p1], &[1, 1000, 65_536]).await;
    on_a.sync().await.expect("sync on A");

    // B takes over and fills the first part (uploaded by B).
    let mut on_b = b.resume_ingest("h1").await.expect("resume on B");
    assert_eq!(on_b.offset(), p1 as u64);
    write_all(&mut on_b, &data[p1..p2], &[7, 1 << 20]).await;
    on_b.sync().await.expect("sync on B");

    // A still holds its copy: it catches up instead of writing over B's bytes.
    on_a.catch_up().await.expect("catch up");
    assert_eq!(on_a.offset(), p2 as u64);
    write_all(&mut on_a, &data[p2..p3], &[3 << 20, 1]).await;
    on_a.sync().await.expect("sync on A");

    // A writes more and dies before acknowledging it (a part may be up).
    write_all(&mut on_a, &data[p3..p4], &[part]).await;
    drop(on_a);

    // B catches up from the acknowledged state and finishes.
    on_b.catch_up().await.expect("catch up");
    assert_eq!(on_b.offset(), p3 as u64);
    let Held::Bucket(taken) = &on_b.held else {
        panic!("an upload in the bucket")
    };
    assert!(
        taken.hashes_in_memory(),
        "B goes on hashing from the state A wrote with its parts"
    );
    assert_eq!(on_b.acknowledged(), p3 as u64);
    write_all(&mut on_b, &data[p3..], &[1, 999_999]).await;
    let done = on_b
        .finish(&digest, Some(data.len() as u64))
        .await
        .expect("finish on B");
    b.place(done).await.expect("place");
    let read = a.read(&digest, None).await.expect("read on A");
    assert_eq!(read.size, data.len() as u64);
    let whole = super::collect(read.body, read.len).await.expect("body");
    assert!(
        whole[..] == data[..],
        "the blob is the bytes sent, in order"
    );
    let r = a
        .read(
            &digest,
            Some(ByteRange {
                start: part as u64 - 3,
                end: Some(part as u64 + 2),
            }),
        )
        .await
        .expect("a range across a part boundary");
    let got = super::collect(r.body, r.len).await.expect("range body");
    assert_eq!(&got[..], &data[part - 3..part + 3]);
    b.abort_ingest("h1")
        .await
        .expect("remove the placed upload");
    assert!(a.ingest_state("h1").await.expect("state").is_none());
    all_gone(&a, "h1").await;

    // A wrong digest after a takeover (hashed from the completed object).
    let mut on_a = a
        .begin_ingest("h2", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    write_all(&mut on_a, &data[..part + 1], &[part / 2]).await;
    on_a.sync().await.expect("sync");
    let mut on_b = b.resume_ingest("h2").await.expect("resume");
    on_b.write(Bytes::from_static(b"x")).await.expect("write");
    let wrong = Digest::sha256_of(&data[..part + 2]);
    assert!(matches!(
        on_b.finish(&wrong, None).await,
        Err(ContentError::DigestMismatch { .. })
    ));
    assert_eq!(a.stat(&wrong).await.expect("stat"), None);
    b.abort_ingest("h2").await.expect("abort");
    assert!(a.ingest_state("h2").await.expect("state").is_none());
    all_gone(&a, "h2").await;

    // Many small acknowledged chunks: the state lists a few objects, and
    // an upload between requests holds no bytes in memory.
    let mut on_a = a
        .begin_ingest("h4", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    let small = &data[..part + 20_000];
    let mut pieces = vec![&small[..part - 20_000]];
    pieces.extend(small[part - 20_000..].chunks(1001));
    for (i, piece) in pieces.into_iter().enumerate() {
        if i == 20 {
            // Just before the part fills, B goes on from what A left.
            drop(on_a);
            on_a = b.resume_ingest("h4").await.expect("resume on B");
        }
        on_a.write(Bytes::copy_from_slice(piece))
            .await
            .expect("write");
        on_a.sync().await.expect("sync");
        let (bytes, chunks) = held(&on_a);
        assert_eq!(bytes, 0, "nothing held in memory between requests");
        assert!(chunks <= 16, "{chunks} chunk objects listed");
    }
    let done = on_a
        .finish(&Digest::sha256_of(small), Some(small.len() as u64))
        .await
        .expect("finish");
    a.place(done).await.expect("place");
    a.abort_ingest("h4").await.expect("remove");

    // An upload one process ended is gone for the other that held it.
    let mut on_a = a
        .begin_ingest("h3", "proj/app", Algorithm::Sha256)
        .await
        .expect("begin");
    write_all(&mut on_a, &data[..part + 10], &[part / 4]).await;
    on_a.sync().await.expect("sync");
    assert_eq!(
        b.stale_ingests(Duration::ZERO).await.expect("stale"),
        vec!["h3".to_string()]
    );
    b.abort_ingest("h3")
        .await
        .expect("the expiry sweep aborts it");
    assert!(matches!(
        on_a.catch_up().await,
        Err(ContentError::IngestNotFound(_))
    ));
    all_gone(&a, "h3").await;
}
