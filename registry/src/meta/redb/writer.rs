//! The thread every metadata write runs on.
//!
//! redb's writer blocks, so writes cannot run on the async workers; they
//! used to run on tokio's blocking pool, one at a time. Each blocking
//! thread allocates from its own malloc arena (glibc gives a thread that
//! finds the others busy an arena of its own, up to eight per core), and
//! redb's page cache is filled by whichever thread reads or writes a page:
//! pages a write brought in and a later read evicted went back to an arena
//! no other thread allocates from, so under GC at scale (a write per
//! repository or batch, on whichever of dozens of pool threads was free) the
//! process held several copies' worth of the 64 MiB cache. Writes are
//! serialised anyway (the writers' turn in `RedbMeta::write`), so they all
//! run here, on one thread with one arena, which reuses what it freed.
//!
//! Blob records queued one behind another are taken together, in one
//! transaction (`records.rs`): a push of many small blobs then pays one
//! disk flush per group rather than one per blob.
//!
//! A write that panics fails alone (its caller gets an error, as a panicked
//! blocking task did); the thread goes on. It ends when the last clone of
//! the store is dropped.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Mutex};

use super::records::{self, Record, MAX_BATCH};
use crate::meta::{MetaError, Result};

/// What the thread runs: a write of its own, or a blob record, taken
/// together with the records queued right behind it.
enum Job {
    Alone(Box<dyn FnOnce() + Send>),
    Record(Record),
}

/// The sending end of the writer thread's queue (started on first use).
#[derive(Default)]
pub(super) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    /// Writes handed to the thread so far (tests wait on it).
    #[cfg(test)]
    pub(super) begun: std::sync::atomic::AtomicU64,
    /// Groups of blob records the thread has begun (tests wait on it).
    #[cfg(test)]
    pub(super) groups: std::sync::atomic::AtomicU64,
}

impl Writer {
    /// Runs `f` on the writer thread and waits for its result.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        #[cfg(test)]
        self.begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let job = Job::Alone(Box::new(move || {
            let out = catch_unwind(AssertUnwindSafe(f));
            // The caller may have gone (its request was cancelled).
            let _ = tx.send(out.map_err(|_| ()));
        }));
        self.send(job)?;
        match rx.await {
            Ok(Ok(out)) => out,
            Ok(Err(())) => Err(MetaError::Db("metadata write task panicked".into())),
            Err(_) => Err(MetaError::Db(
                "metadata write task: writer thread gone".into(),
            )),
        }
    }

    /// Queues a blob record; its caller waits on the record's reply.
    pub(super) fn record(&self, r: Record) -> Result<()> {
        self.send(Job::Record(r))?;
        #[cfg(test)]
        self.begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn send(&self, job: Job) -> Result<()> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let job = match queue.as_ref() {
            Some(q) => match q.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(job)) => job, // the thread died: start another
            },
            None => job,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("berth-meta-writer".into())
            .spawn(move || work(rx))
            .map_err(|e| MetaError::Db(format!("starting the metadata writer thread: {e}")))?;
        tx.send(job)
            .map_err(|_| MetaError::Db("metadata writer thread gone".into()))?;
        *queue = Some(tx);
        Ok(())
    }
}

/// The thread's loop: each job in turn, blob records in groups.
fn work(rx: mpsc::Receiver<Job>) {
    let mut next = rx.recv().ok();
    while let Some(job) = next.take() {
        match job {
            Job::Alone(f) => f(),
            Job::Record(first) => {
                let mut group = vec![first];
                while group.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Job::Record(r)) => group.push(r),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // A panic drops the group's replies: each caller gets an error.
                let _ = catch_unwind(AssertUnwindSafe(|| records::record_all(group)));
            }
        }
        if next.is_none() {
            next = rx.recv().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_run_on_one_thread_and_a_panic_fails_only_its_own() {
        let w = Writer::default();
        let first = w
            .run(|| Ok(std::thread::current().id()))
            .await
            .expect("first");
        let err = w
            .run(|| -> Result<()> { panic!("a write that panics") })
            .await
            .expect_err("the panic is an error");
        assert!(err.to_string().contains("panicked"), "{err}");
        let after = w
            .run(|| Ok(std::thread::current().id()))
            .await
            .expect("after");
        assert_eq!(first, after, "the same thread, still running");
        assert_ne!(first, std::thread::current().id());
    }
}
