//! GC's store sweep without the writer: the digests whose bytes GC is
//! deleting right now, so that a write recording the same digest waits for
//! that one deletion instead of every write waiting for a whole batch.
//!
//! GC claims a digest on the writer thread when it sees no record of it
//! (`RedbMeta::delete_unrecorded`), then deletes its bytes off that thread;
//! a write that places or records a blob waits, on the writer thread, until
//! the digest is no longer claimed (`Deleting::wait_for`). Every record is
//! written on that thread, so either the record came first (and
//! GC did not claim the digest) or the claim did (and the write places its
//! bytes only after they were deleted). Claims live in memory: a crash loses
//! none that matters, since the records were dropped (durably) before any
//! claim, and bytes left behind are unrecorded objects the next collection
//! lists and deletes.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};

use crate::oci::Digest;

/// The digests being deleted.
#[derive(Default)]
pub(crate) struct Deleting {
    claimed: Mutex<HashSet<Digest>>,
    released: Condvar,
}

impl Deleting {
    /// Claims `d`; the claim ends when the returned guard drops (deleted,
    /// failed, or the sweep was cancelled).
    pub(crate) fn claim(self: &Arc<Self>, d: Digest) -> Claim {
        self.lock().insert(d.clone());
        Claim {
            set: self.clone(),
            digest: d,
        }
    }

    /// Blocks until no deletion of `d` is in progress. Called from a write
    /// on the blocking pool; the deletion it waits for needs no writer.
    pub(crate) fn wait_for(&self, d: &Digest) {
        let mut claimed = self.lock();
        while claimed.contains(d) {
            claimed = self
                .released
                .wait(claimed)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Digest>> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One digest GC is deleting.
pub(crate) struct Claim {
    set: Arc<Deleting>,
    digest: Digest,
}

impl Claim {
    pub(crate) fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.set.lock().remove(&self.digest);
        self.set.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::redb::RedbMeta;
    use crate::meta::{DeleteStep, MetaStore, StoreStep};
    use crate::oci::RepoName;
    use std::time::Duration;

    /// A store of digests, and a deletion step that waits for `go`.
    struct Store {
        objects: Arc<Mutex<HashSet<Digest>>>,
        go: Arc<tokio::sync::Semaphore>,
    }

    impl Store {
        fn new(objects: &[&Digest]) -> Self {
            Store {
                objects: Arc::new(Mutex::new(objects.iter().map(|d| (*d).clone()).collect())),
                go: Arc::new(tokio::sync::Semaphore::new(0)),
            }
        }
        fn delete(&self) -> DeleteStep {
            let (objects, go) = (self.objects.clone(), self.go.clone());
            Arc::new(move |d: Digest| -> StoreStep {
                let (objects, go) = (objects.clone(), go.clone());
                Box::pin(async move {
                    let _go = go.acquire().await.map_err(|e| e.to_string())?;
                    objects.lock().map_err(|e| e.to_string())?.remove(&d);
                    Ok(())
                })
            })
        }
        fn place(&self, d: &Digest) -> StoreStep {
            let (objects, d) = (self.objects.clone(), d.clone());
            Box::pin(async move {
                objects.lock().map_err(|e| e.to_string())?.insert(d);
                Ok(())
            })
        }
        fn has(&self, d: &Digest) -> bool {
            self.objects.lock().expect("lock").contains(d)
        }
    }

    /// While GC deletes an unrecorded object, a push of another blob does
    /// not wait for it, and a push of the same digest places its bytes only
    /// after they were deleted, so the record it writes has its bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_push_waits_only_for_the_deletion_of_its_own_digest() {
        let dir = tempfile::tempdir().expect("tmp");
        let meta = RedbMeta::open(&dir.path().join("berth.redb")).expect("meta");
        let repo: RepoName = "p/app".parse().expect("name");
        let (doomed, other) = (Digest::sha256_of(b"doomed"), Digest::sha256_of(b"other"));
        let store = Arc::new(Store::new(&[&doomed]));
        let sweep = {
            let (meta, step, d) = (meta.clone(), store.delete(), doomed.clone());
            tokio::spawn(async move { meta.delete_unrecorded(&[d], step).await })
        };
        // The sweep has claimed `doomed` once its deletion waits for `go`.
        for _ in 0..6000 {
            if meta.deleting.lock().contains(&doomed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(meta.deleting.lock().contains(&doomed), "claimed");
        let place = store.place(&other);
        tokio::time::timeout(
            Duration::from_secs(60),
            meta.place_record_and_link(&repo, &other, 5, place),
        )
        .await
        .expect("another blob's push does not wait for the deletion")
        .expect("push");
        let same = {
            let (meta, repo, d, place) = (
                meta.clone(),
                repo.clone(),
                doomed.clone(),
                store.place(&doomed),
            );
            tokio::spawn(async move { meta.place_record_and_link(&repo, &d, 6, place).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !same.is_finished(),
            "the same digest waits for its deletion"
        );
        store.go.add_permits(1);
        assert_eq!(sweep.await.expect("sweep").expect("deleted"), 1);
        assert!(same.await.expect("push").expect("recorded"));
        assert!(store.has(&doomed), "placed after the deletion, so kept");
        assert_eq!(meta.blob_size(&doomed).await.expect("size"), Some(6));
        assert!(meta.deleting.lock().is_empty());
    }

    #[test]
    fn a_wait_ends_when_the_claim_drops() {
        let set = Arc::new(Deleting::default());
        let d = Digest::sha256_of(b"x");
        set.wait_for(&d); // nothing claimed: returns at once
        let claim = set.claim(d.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let (set, d) = (set.clone(), d.clone());
            std::thread::spawn(move || {
                set.wait_for(&d);
                tx.send(()).expect("send");
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "waits while claimed"
        );
        drop(claim);
        rx.recv_timeout(Duration::from_secs(30))
            .expect("released when the claim drops");
        waiter.join().expect("waiter");
    }
}
