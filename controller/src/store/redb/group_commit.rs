//! Group commit of the reconcilers' publication writes.
//!
//! Owns: the queue of `replace_publication` calls waiting for the database.
//! Every redb commit fsyncs and rewrites the pages it touched, and only one
//! write transaction runs at a time; a publish to thousands of nodes makes
//! several compare-and-swap writes per node, each its own commit. Calls that
//! arrive while a commit is in progress wait in the queue and the next
//! transaction takes all of them: each is still its own compare-and-swap
//! (checked and applied in arrival order, so a second write of the same
//! publication in a batch sees the first), but they share one commit.
//!
//! Nothing is acknowledged before its commit. When one write of a batch
//! fails, the transaction is dropped and each write of the batch runs again
//! alone, so one bad record never fails the others.
//!
//! Must not touch: what a write checks or records (`publications.rs`).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::model::Publication;

use super::{RedbControllerStore, Result, StoreError};

/// What one write answers: what it replaced (`None`: changed meanwhile or
/// gone, nothing written) and the publication as written.
type Answer = Result<(Option<Publication>, Publication)>;

type Waiting = (Publication, oneshot::Sender<Answer>);

/// Publication writes waiting for the next commit.
#[derive(Default)]
pub(super) struct WriteQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    waiting: Vec<Waiting>,
    /// A blocking task is taking batches off `waiting`.
    flushing: bool,
}

/// Lets the next write start a flusher again, however this one ends (a
/// panic included: the writes it held are answered by their dropped senders).
struct FlushingGuard(Arc<WriteQueue>);

impl Drop for FlushingGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.flushing = false;
        }
    }
}

impl RedbControllerStore {
    /// `replace_publication`, committed together with the writes that wait
    /// beside it.
    pub(super) async fn replace_publication_grouped(&self, p: Publication) -> Answer {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s =
                self.writes.state.lock().map_err(|_| {
                    StoreError::Task("the publication write queue is poisoned".into())
                })?;
            s.waiting.push((p, tx));
            !std::mem::replace(&mut s.flushing, true)
        };
        if start {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.flush_publication_writes());
        }
        rx.await
            .map_err(|_| StoreError::Task("a publication write was dropped".into()))?
    }

    /// Commits batches until no write waits.
    fn flush_publication_writes(&self) {
        let _guard = FlushingGuard(self.writes.clone());
        loop {
            let batch = match self.writes.state.lock() {
                Ok(mut s) if !s.waiting.is_empty() => std::mem::take(&mut s.waiting),
                _ => return,
            };
            let (pubs, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let answers = match self.replace_batch(pubs.clone()) {
                Ok(answers) => answers,
                Err(_) => pubs.into_iter().map(|p| self.replace_alone(p)).collect(),
            };
            for (tx, answer) in senders.into_iter().zip(answers) {
                // A caller that went away (cancelled) needs no answer.
                let _ = tx.send(answer);
            }
        }
        // `_guard` clears `flushing` only after the queue was seen empty
        // under the lock; a write pushed after that starts a new flusher.
    }

    /// Every write of the batch in one transaction; `Err` when any failed
    /// (nothing committed).
    fn replace_batch(&self, pubs: Vec<Publication>) -> Result<Vec<Answer>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::with_capacity(pubs.len());
        for mut p in pubs {
            let replaced = self.replace_in(&txn, &mut p)?;
            out.push(Ok((replaced, p)));
        }
        txn.commit()?;
        Ok(out)
    }

    fn replace_alone(&self, mut p: Publication) -> Answer {
        let replaced = self.replace_publication(&mut p)?;
        Ok((replaced, p))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::fixtures::*;
    use crate::model::{Cluster, PublicationState};
    use crate::store::ControllerStore;

    /// Writes sent at once, two for each publication from the same read:
    /// each is its own compare-and-swap whatever batch it shares, so one of
    /// the two wins and the other is told it lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn grouped_writes_are_each_a_compare_and_swap() {
        let (_dir, s) = temp_store();
        s.create_cluster(&Cluster {
            name: "edge".into(),
            kubeconfig: KC.into(),
            eip_pool: None,
            created_at: 1,
        })
        .expect("cluster");
        let nodes: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        for n in &nodes {
            s.create_node(&mut node(n)).expect("node");
        }
        s.create_app("shop", "web", &spec("shop/web:1"), "alice", None, 1)
            .expect("app");
        let pubs = s.publish("shop", "web", None, &nodes, 10).expect("publish");
        let s: Arc<dyn ControllerStore> = Arc::new(s);
        let mut writes = Vec::new();
        for p in &pubs {
            for detail in ["first", "second"] {
                let (s, mut p) = (s.clone(), p.clone());
                writes.push(tokio::spawn(async move {
                    p.set_state(PublicationState::Deploying, detail, 11);
                    let wrote = s.update_publication(&mut p).await.expect("write");
                    (p.node.clone(), wrote, p.revision)
                }));
            }
        }
        let mut won = std::collections::BTreeMap::new();
        for w in writes {
            let (node, wrote, revision) = w.await.expect("task");
            if wrote {
                assert!(won.insert(node.clone(), revision).is_none(), "{node} twice");
            }
        }
        assert_eq!(won.len(), 40, "one write per publication wins");
        for p in &pubs {
            let stored = s
                .get_publication(&p.key())
                .await
                .expect("get")
                .expect("there");
            assert_eq!(stored.revision, p.revision + 1);
            assert_eq!(Some(&stored.revision), won.get(&p.node));
            assert_eq!(stored.state, PublicationState::Deploying);
        }
    }
}
