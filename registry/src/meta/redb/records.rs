//! Blob records in groups: every blob an upload or an edge fill commits is
//! recorded and linked by the writer thread together with the others
//! queued behind it, in one transaction and one disk flush (a group
//! commit), their bytes placed into the store side by side first.
//!
//! A record's bytes are placed before the transaction that records them
//! commits, and only once its quota check has passed, as when each blob had
//! a transaction of its own; what a failure costs is unchanged too: a blob
//! whose check or placement fails gets its own error and the others go on
//! without it (the transaction is begun again without it, so nothing of it
//! is committed); a failed commit fails them all, and bytes placed for them
//! are unrecorded objects the next collection removes.

use ::redb::ReadableTable;
use tokio::sync::oneshot;

use super::blobs::link;
use super::usage::check;
use super::{RedbMeta, BLOBS};
use crate::meta::{now, MetaError, Result, StoreStep};
use crate::oci::{Digest, RepoName};

/// Records taken into one transaction at most.
pub(super) const MAX_BATCH: usize = 128;

/// A blob to record and link to a repository, waiting for its group.
pub(super) struct Record {
    meta: RedbMeta,
    blob: Blob,
    /// True when the record is new.
    reply: oneshot::Sender<Result<bool>>,
}

struct Blob {
    repo: RepoName,
    digest: Digest,
    size: u64,
    /// Puts the bytes into the store (the runtime to run it on, and the step).
    place: Option<(tokio::runtime::Handle, StoreStep)>,
}

impl RedbMeta {
    /// Records and links a blob, running `place` first (under the same
    /// transaction) when given; true when the record is new.
    pub(super) async fn record_in_group(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        place: Option<StoreStep>,
    ) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        let place = place.map(|step| (tokio::runtime::Handle::current(), step));
        self.writer.record(Record {
            meta: self.clone(),
            blob: Blob {
                repo: repo.clone(),
                digest: digest.clone(),
                size,
                place,
            },
            reply,
        })?;
        answer.await.unwrap_or_else(|_| {
            Err(MetaError::Db(
                "metadata write task panicked or its thread is gone".into(),
            ))
        })
    }
}

/// Records a group (on the writer thread): see the module's doc. The
/// answers go out once the thread holds no handle on the store any more
/// (a caller may close it and open the file again at once).
pub(super) fn record_all(group: Vec<Record>) {
    let mut meta = None;
    let mut replies = Vec::with_capacity(group.len());
    let mut blobs = Vec::with_capacity(group.len());
    for r in group {
        meta.get_or_insert(r.meta);
        replies.push(r.reply);
        blobs.push(r.blob);
    }
    let Some(meta) = meta else {
        return;
    };
    let answers = record_blobs(&meta, blobs);
    drop(meta);
    for (reply, answer) in replies.into_iter().zip(answers) {
        // The caller may have gone (its request was cancelled).
        let _ = reply.send(answer);
    }
}

/// Records `blobs` in as few transactions as failures need; an answer
/// for each, in order.
fn record_blobs(meta: &RedbMeta, blobs: Vec<Blob>) -> Vec<Result<bool>> {
    #[cfg(test)]
    meta.writer
        .groups
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut answers: Vec<Option<Result<bool>>> = blobs.iter().map(|_| None).collect();
    // Each with its position in `answers`.
    let mut group: Vec<(usize, Blob)> = blobs.into_iter().enumerate().collect();
    // Bytes of these digests GC is deleting go before these are placed.
    for (_, b) in &group {
        meta.deleting.wait_for(&b.digest);
    }
    while !group.is_empty() {
        let tx = match meta.db().begin_write() {
            Ok(tx) => tx,
            Err(e) => return fail_rest(answers, &e.to_string()),
        };
        // The quota first: a refused blob's bytes are never placed.
        let mut new = Vec::with_capacity(group.len());
        let mut refused = None;
        for (at, (_, b)) in group.iter().enumerate() {
            match apply(&tx, b) {
                Ok(n) => new.push(n),
                Err(e) => {
                    refused = Some((at, e));
                    break;
                }
            }
        }
        if let Some((at, e)) = refused {
            // Again without it: what it wrote goes with this transaction.
            drop(tx);
            answers[group.remove(at).0] = Some(Err(e));
            continue;
        }
        let failed = place_all(&mut group);
        if !failed.is_empty() {
            drop(tx);
            for (at, e) in failed.into_iter().rev() {
                answers[group.remove(at).0] = Some(Err(e));
            }
            continue;
        }
        match tx.commit() {
            Ok(()) => {
                for ((i, _), n) in group.into_iter().zip(new) {
                    answers[i] = Some(Ok(n));
                }
            }
            Err(e) => {
                for (i, _) in group {
                    answers[i] = Some(Err(MetaError::Db(e.to_string())));
                }
            }
        }
        break;
    }
    fail_rest(answers, "not recorded")
}

/// The answers, with any still missing failed with `why`.
fn fail_rest(answers: Vec<Option<Result<bool>>>, why: &str) -> Vec<Result<bool>> {
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(MetaError::Db(why.to_string()))))
        .collect()
}

/// One record's writes: checked against the quota, then the record (when
/// new) and the link. True when the record is new.
fn apply(tx: &::redb::WriteTransaction, r: &Blob) -> Result<bool> {
    let key = r.digest.to_string();
    let recorded = tx
        .open_table(BLOBS)?
        .get(key.as_str())?
        .map(|v| v.value().0);
    let size = recorded.unwrap_or(r.size);
    check(tx, r.repo.project(), &[(&key, size)])?;
    let t = now();
    if recorded.is_none() {
        tx.open_table(BLOBS)?.insert(key.as_str(), (size, t))?;
    }
    link(tx, &r.repo, &key, size, t)?;
    Ok(recorded.is_none())
}

/// Runs the placements still to run, all at once; the positions (in
/// ascending order) of those that failed, with their errors.
fn place_all(group: &mut [(usize, Blob)]) -> Vec<(usize, MetaError)> {
    let running: Vec<_> = group
        .iter_mut()
        .enumerate()
        .filter_map(|(i, (_, r))| {
            let (handle, step) = r.place.take()?;
            let what = format!("placing blob {} in the store", r.digest);
            Some(async move {
                let done = match handle.spawn(step).await {
                    Ok(done) => done,
                    Err(e) => Err(format!("the placement task failed: {e}")),
                };
                done.map_err(|e| (i, MetaError::Store(format!("{what}: {e}"))))
            })
        })
        .collect();
    if running.is_empty() {
        return Vec::new();
    }
    futures::executor::block_on(futures::future::join_all(running))
        .into_iter()
        .filter_map(|r| r.err())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::meta::quota::QuotaSetting;
    use crate::meta::MetaStore;

    async fn until(what: &str, n: u64, counter: impl Fn() -> u64) {
        for _ in 0..1000 {
            if counter() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what} never reached {n}");
    }

    /// A placement that notes it ran, and fails when told to.
    fn placement(ran: &Arc<AtomicBool>, fails: bool) -> StoreStep {
        let ran = ran.clone();
        Box::pin(async move {
            ran.store(true, Ordering::SeqCst);
            if fails {
                Err("no space left on device".to_string())
            } else {
                Ok(())
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_behind_a_busy_writer_commit_as_one_group_and_failures_stay_their_own() {
        let dir = tempfile::tempdir().expect("tmp");
        let meta = RedbMeta::open(&dir.path().join("berth.redb")).expect("open");
        meta.set_quota(Some("small"), Some(QuotaSetting::Bytes(10)))
            .await
            .expect("quota");
        let begun = |m: &RedbMeta| {
            let m = m.clone();
            move || m.writer.begun.load(Ordering::SeqCst)
        };
        let groups = |m: &RedbMeta| {
            let m = m.clone();
            move || m.writer.groups.load(Ordering::SeqCst)
        };
        let before = begun(&meta)();
        let lock = meta.hold_write_lock().expect("lock");

        // The first group: one record, waiting for the lock.
        let free: RepoName = "free/app".parse().expect("name");
        let first = {
            let (m, r) = (meta.clone(), free.clone());
            tokio::spawn(async move { m.record_and_link(&r, &Digest::sha256_of(b"0"), 1).await })
        };
        until("groups begun", 1, groups(&meta)).await;

        // Behind it: a refused record, a failing placement and good ones.
        let small: RepoName = "small/app".parse().expect("name");
        let ran: Vec<Arc<AtomicBool>> = (0..12).map(|_| Arc::default()).collect();
        let mut queued = Vec::new();
        for (i, flag) in ran.iter().enumerate() {
            let (repo, size, fails) = match i {
                3 => (small.clone(), 20, false), // over the 10-byte limit
                7 => (free.clone(), 5, true),    // the store refuses it
                _ => (free.clone(), 5, false),
            };
            let m = meta.clone();
            let d = Digest::sha256_of(format!("blob {i}").as_bytes());
            let step = placement(flag, fails);
            queued.push((
                repo.clone(),
                d.clone(),
                tokio::spawn(async move { m.place_record_and_link(&repo, &d, size, step).await }),
            ));
            // Queued in this order.
            until("records queued", before + i as u64 + 2, begun(&meta)).await;
        }
        drop(lock);

        assert!(first.await.expect("task").expect("first"), "a new record");
        for (i, (repo, d, task)) in queued.into_iter().enumerate() {
            let out = task.await.expect("task");
            let linked = meta.linked_blob(&repo, &d).await.expect("read");
            match i {
                3 => {
                    let err = out.expect_err("over the quota");
                    assert!(matches!(err, MetaError::Quota(_)), "{err}");
                    assert!(
                        !ran[i].load(Ordering::SeqCst),
                        "a refused blob is never placed"
                    );
                    assert_eq!(linked, None);
                }
                7 => {
                    let err = out.expect_err("the placement failed");
                    assert!(err.to_string().contains("no space left"), "{err}");
                    assert_eq!(linked, None, "nothing of it committed");
                }
                _ => {
                    assert!(out.expect("recorded"), "new record {i}");
                    assert!(ran[i].load(Ordering::SeqCst), "placed {i}");
                    assert_eq!(linked, Some(5), "linked {i}");
                }
            }
        }
        assert_eq!(
            groups(&meta)(),
            2,
            "the twelve queued records were one group"
        );
        let usage = meta.quota("free").await.expect("quota").usage;
        assert_eq!(usage, 1 + 10 * 5, "only what was recorded counts");
        assert_eq!(meta.quota("small").await.expect("quota").usage, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_blob_twice_in_a_group_is_new_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let meta = RedbMeta::open(&dir.path().join("berth.redb")).expect("open");
        let lock = meta.hold_write_lock().expect("lock");
        let d = Digest::sha256_of(b"shared");
        let tasks: Vec<_> = ["a/one", "a/two", "b/one"]
            .into_iter()
            .map(|r| {
                let (m, d) = (meta.clone(), d.clone());
                let r: RepoName = r.parse().expect("name");
                tokio::spawn(async move { m.record_and_link(&r, &d, 7).await })
            })
            .collect();
        let m = meta.clone();
        until("records queued", 3, move || {
            m.writer.begun.load(Ordering::SeqCst)
        })
        .await;
        drop(lock);
        let mut new = 0;
        for t in tasks {
            new += u64::from(t.await.expect("task").expect("recorded"));
        }
        assert_eq!(new, 1, "one record, three links");
        assert_eq!(
            meta.quota("a").await.expect("quota").usage,
            7,
            "counted once per project"
        );
        assert_eq!(meta.quota("b").await.expect("quota").usage, 7);
    }
}
