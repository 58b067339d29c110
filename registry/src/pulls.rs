//! Pull counts and last-pull times of manifests, for the image list and
//! retention. `/v2` counts each manifest GET in memory (`PullCounter`, a
//! `PullSink`); the registry writes what it counted to the metadata in one
//! transaction per flush (`MetaStore::pulls_record`), never on the GET
//! itself. An edge counts the pulls it serves the same way and reports them
//! to its registry in batches (`POST /api/v1/pulls`, `berth_edge`'s
//! reporter), which adds them to its own counter.
//!
//! Owns: the counting and the flush loop. Must not touch: who may report
//! (the admin API checks that), how a report travels (the edge's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::meta::PullCount;
use crate::meta::{self, MetaStore};
use crate::oci::{Digest, RepoName};

/// Sent by a pull-through cache (an edge, a proxy project) with the
/// manifest GETs that fill it: those are not counted as pulls, since the
/// cache counts (and an edge reports) the pulls it serves itself.
pub const FILL_HEADER: &str = "x-berth-fill";

/// Told of every manifest GET served.
pub trait PullSink: Send + Sync {
    fn pulled(&self, repo: &RepoName, digest: &Digest);
}

/// Distinct manifests counted between flushes before a flush is due early.
const EARLY_FLUSH: usize = 10_000;

/// Pulls counted since the last flush, by (repository, digest).
#[derive(Default)]
pub struct PullCounter {
    pending: Mutex<Pending>,
    full: tokio::sync::Notify,
}

/// Counts and last times by repository, then manifest: a manifest GET finds
/// its entry without allocating once it has been counted.
#[derive(Default)]
struct Pending {
    by_repo: HashMap<String, HashMap<Digest, (u64, u64)>>,
    manifests: usize,
}

impl PullCounter {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Adds `count` pulls, the last at `at` (unix seconds).
    pub fn add(&self, repository: &RepoName, digest: &Digest, count: u64, at: u64) {
        let mut guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = &mut *guard;
        if !p.by_repo.contains_key(repository.as_str()) {
            p.by_repo
                .insert(repository.as_str().to_string(), HashMap::new());
        }
        let Some(counts) = p.by_repo.get_mut(repository.as_str()) else {
            return;
        };
        match counts.get_mut(digest) {
            Some(e) => {
                e.0 = e.0.saturating_add(count);
                e.1 = e.1.max(at);
            }
            None => {
                counts.insert(digest.clone(), (count, at));
                p.manifests += 1;
            }
        }
        if p.manifests >= EARLY_FLUSH {
            self.full.notify_one();
        }
    }

    /// Everything counted so far, leaving nothing.
    pub fn take(&self) -> Vec<PullCount> {
        let p = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Vec::with_capacity(p.manifests);
        for (repository, counts) in p.by_repo {
            for (digest, (count, last_pulled_at)) in counts {
                out.push(PullCount {
                    repository: repository.clone(),
                    digest: digest.to_string(),
                    count,
                    last_pulled_at,
                });
            }
        }
        out
    }

    /// Puts back what a flush could not deliver, to go with the next.
    /// (`take` wrote them from names and digests that parse.)
    pub fn restore(&self, counts: Vec<PullCount>) {
        for c in counts {
            if let (Ok(repo), Ok(digest)) = (c.repository.parse(), c.digest.parse()) {
                self.add(&repo, &digest, c.count, c.last_pulled_at);
            }
        }
    }

    /// Waits until `every` has passed or so many manifests were counted
    /// that a flush is due early.
    pub async fn due(&self, every: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = self.full.notified() => {}
        }
    }

    /// Writes what was counted to `meta` every `every` (and once more when
    /// `stop` fires), one transaction each.
    pub fn spawn_flush(
        self: &Arc<Self>,
        meta: Arc<dyn MetaStore>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = me.due(every) => false,
                };
                me.flush(meta.as_ref()).await;
                if stopping {
                    return;
                }
            }
        });
    }

    /// Writes what was counted now.
    pub async fn flush(&self, meta: &dyn MetaStore) {
        let counts = self.take();
        if counts.is_empty() {
            return;
        }
        if let Err(e) = meta.pulls_record(&counts).await {
            tracing::warn!(error = %e, manifests = counts.len(), "cannot record pull counts; kept for the next flush");
            self.restore(counts);
        }
    }
}

impl PullSink for PullCounter {
    fn pulled(&self, repo: &RepoName, digest: &Digest) {
        self.add(repo, digest, 1, meta::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_manifest_and_keep_the_last_time() {
        let c = PullCounter::new();
        let (a, b): (RepoName, RepoName) = ("p/a".parse().expect("a"), "p/b".parse().expect("b"));
        let d: Digest = format!("sha256:{}", "1".repeat(64))
            .parse()
            .expect("digest");
        c.add(&a, &d, 1, 10);
        c.add(&a, &d, 2, 5);
        c.add(&b, &d, 1, 7);
        let mut taken = c.take();
        taken.sort_by(|x, y| x.repository.cmp(&y.repository));
        assert_eq!(
            taken
                .iter()
                .map(|p| (
                    p.repository.as_str(),
                    p.digest.as_str(),
                    p.count,
                    p.last_pulled_at
                ))
                .collect::<Vec<_>>(),
            vec![
                ("p/a", d.to_string().as_str(), 3, 10),
                ("p/b", d.to_string().as_str(), 1, 7)
            ]
        );
        assert!(c.take().is_empty(), "taken once");
        c.add(&a, &d, 1, 20);
        c.restore(taken);
        let again = c.take();
        assert_eq!(again.len(), 2, "one entry per repository and manifest");
        let a = again.iter().find(|p| p.repository == "p/a").expect("p/a");
        assert_eq!(
            (a.count, a.last_pulled_at),
            (4, 20),
            "a failed flush comes back"
        );
    }
}
