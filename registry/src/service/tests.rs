//! Upload sessions and commits of `LocalRegistry` under crashes and races.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::*;
use crate::content::ContentStore;
use crate::meta::RedbMeta;
use crate::oci::{Digest, ErrorCode, RepoName};

fn registry(dir: &Path) -> Arc<LocalRegistry> {
    let meta = RedbMeta::open(&dir.join("berth.redb")).expect("meta");
    let content = ContentStore::local(&dir.join("store"), &dir.join("uploads")).expect("content");
    Arc::new(LocalRegistry::embedded(
        meta,
        content,
        Arc::new(metrics::Metrics::new()),
    ))
}

fn body(bytes: &[u8]) -> BodyStream {
    let b = Bytes::copy_from_slice(bytes);
    futures::stream::once(async move { Ok(b) }).boxed()
}

/// Polls `cond` every millisecond, at most `tries` times.
async fn wait_for(tries: u32, mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cond()
}

/// Finding: a kill -9 during the final PUT of a chunked upload lost the
/// session while the complete blob lay in the store unrecorded. A crash
/// right after the rename, before the metadata commit, must leave the
/// blob recorded after the restart (or the session resumable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_placing_and_recording_leaves_the_blob_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo: RepoName = "p/app".parse().expect("name");
    let content: Vec<u8> = (0..3u32 << 20).map(|i| (i % 249) as u8).collect();
    let digest = Digest::sha256_of(&content);
    let ack = 1usize << 20;
    let id = {
        let reg = registry(dir.path());
        let up = reg.upload_start(&repo).await.expect("start");
        reg.upload_append(
            &repo,
            &up.id,
            Some((0, ack as u64 - 1)),
            body(&content[..ack]),
        )
        .await
        .expect("acknowledged chunk");
        reg.crash_before_record
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let range = Some((ack as u64, content.len() as u64 - 1));
        let res = reg
            .upload_finish(&repo, &up.id, &digest, range, Some(body(&content[ack..])))
            .await;
        assert!(res.is_err(), "the simulated crash fails the PUT");
        up.id
    };
    // The restart: the same directories, start-up recovery, as `RegistryApp::open`.
    let reg = registry(dir.path());
    let recovered = reg.recover_at_start(false).await.expect("recover").recorded;
    let recorded = reg.blob_stat(&repo, &digest).await.ok();
    let resumable = reg.upload_status(&repo, &id).await.ok();
    assert!(
        recorded.is_some() || resumable.is_some(),
        "the session is lost and the blob unrecorded"
    );
    assert_eq!(recovered, 1);
    assert_eq!(recorded, Some(content.len() as u64), "the blob is recorded");
    assert!(resumable.is_none(), "its session ended with it");
    let read = reg.blob_read(&repo, &digest, None).await.expect("blob");
    let stored = crate::content::collect(read.body, read.len)
        .await
        .expect("blob bytes");
    assert_eq!(Digest::sha256_of(&stored), digest);
    assert!(
        std::fs::read_dir(dir.path().join("uploads"))
            .expect("uploads dir")
            .next()
            .is_none(),
        "nothing is left of the upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_request_during_the_final_put_does_not_resurrect_the_upload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = registry(dir.path());
    let repo: RepoName = "p/app".parse().expect("name");
    let content: Vec<u8> = (0..9u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&content);
    let up = reg.upload_start(&repo).await.expect("start");
    let ack = 1u64 << 20;
    reg.upload_append(
        &repo,
        &up.id,
        Some((0, ack - 1)),
        body(&content[..ack as usize]),
    )
    .await
    .expect("first chunk");

    // Hold the metadata lock: the final PUT verifies its data, then waits for it.
    let meta = reg.embedded.clone().expect("an embedded database");
    let tx = meta.hold_write_lock().expect("write lock");
    // The upload's requests write no metadata before the commit.
    let begun = meta.writes_begun();
    let fin = tokio::spawn({
        let (reg, repo, id, digest) = (reg.clone(), repo.clone(), up.id.clone(), digest.clone());
        let rest = content[ack as usize..].to_vec();
        let range = Some((ack, content.len() as u64 - 1));
        async move {
            reg.upload_finish(&repo, &id, &digest, range, Some(body(&rest)))
                .await
        }
    });
    let spool = dir.path().join("uploads").join(&up.id).join("data");
    let spooled = || std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0);
    assert!(
        wait_for(60_000, || spooled() == content.len() as u64).await,
        "the final chunk never reached the spool"
    );
    // Past its data, the PUT verifies it and goes on to its commit, which
    // waits for the lock held above.
    assert!(
        wait_for(60_000, || meta.writes_begun() > begun).await,
        "the final PUT never reached its metadata commit"
    );

    // A client asks for the upload's status meanwhile.
    let status = tokio::spawn({
        let (reg, repo, id) = (reg.clone(), repo.clone(), up.id.clone());
        async move { reg.upload_status(&repo, &id).await }
    });
    wait_for(200, || status.is_finished()).await;
    tx.abort().expect("release the lock");

    let size = fin.await.expect("PUT task").expect("the PUT succeeds");
    assert_eq!(size, content.len() as u64);
    match status.await.expect("status task") {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::BlobUploadUnknown)),
        Ok(s) => panic!("the finishing upload came back at offset {}", s.offset),
    }
    let read = reg.blob_read(&repo, &digest, None).await.expect("blob");
    let stored = crate::content::collect(read.body, read.len)
        .await
        .expect("blob bytes");
    assert_eq!(stored.len(), content.len(), "stored blob length");
    assert_eq!(Digest::sha256_of(&stored), digest);
    assert!(
        reg.upload_status(&repo, &up.id).await.is_err(),
        "the session is gone"
    );
}

/// Finding (replication through a broken link): a PATCH whose link died
/// where only the client heard of it held the session until its body timed
/// out, so the client's retry waited as long. A newer request for the
/// session takes it over at once, from the last acknowledged offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_request_takes_over_a_session_whose_body_stopped_arriving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = registry(dir.path());
    let repo: RepoName = "p/app".parse().expect("name");
    let content: Vec<u8> = (0..3u32 << 20).map(|i| (i % 241) as u8).collect();
    let digest = Digest::sha256_of(&content);
    let up = reg.upload_start(&repo).await.expect("start");
    let ack = 1u64 << 20;
    reg.upload_append(
        &repo,
        &up.id,
        Some((0, ack - 1)),
        body(&content[..ack as usize]),
    )
    .await
    .expect("first chunk");

    // The next chunk's body: half of it, then nothing ever again.
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let half = Bytes::copy_from_slice(&content[ack as usize..(ack + (ack >> 1)) as usize]);
    let dead: BodyStream = futures::stream::once(async move {
        let _ = started_tx.send(());
        Ok(half)
    })
    .chain(futures::stream::pending())
    .boxed();
    let stuck = tokio::spawn({
        let (reg, repo, id) = (reg.clone(), repo.clone(), up.id.clone());
        async move {
            reg.upload_append(&repo, &id, Some((ack, 2 * ack - 1)), dead)
                .await
        }
    });
    started.await.expect("the dead body was read");

    // The client gave up on it and asks where the upload stands.
    let status = tokio::time::timeout(Duration::from_secs(60), reg.upload_status(&repo, &up.id))
        .await
        .expect("the status request does not wait for the dead body")
        .expect("status");
    assert_eq!(status.offset, ack, "the acknowledged offset");
    match stuck.await.expect("append task") {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::BlobUploadInvalid)),
        Ok(o) => panic!("the dead body was acknowledged at {}", o.offset),
    }
    let end = content.len() as u64 - 1;
    let size = reg
        .upload_finish(
            &repo,
            &up.id,
            &digest,
            Some((ack, end)),
            Some(body(&content[ack as usize..])),
        )
        .await
        .expect("the upload finishes from the acknowledged offset");
    assert_eq!(size, content.len() as u64);
}
