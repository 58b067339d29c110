//! Copying one image: every manifest of its tree (an index's platforms),
//! the config and layers of each (non-distributable layers that name their
//! URLs stay where they are), then the tag, then the referrers
//! (signatures, SBOMs) of every manifest copied. Each blob crosses once: it
//! is skipped when the destination has it, mounted when the destination
//! has it in another repository this execution wrote to, and otherwise
//! sent in chunks through an upload that resumes at the offset the
//! destination reports, after a cut or a restart (its session is kept in
//! the execution's record).
//!
//! The record is saved whole, so it is saved when something settles (a
//! blob or image done, failed or retried, an upload started) and, between
//! those, at most every [`SAVE_EVERY`] as chunks arrive: the bytes done are
//! held in memory (the admin API reads them there while the execution runs
//! here). A restart resumes from the offset the destination reports, not
//! from the record's, so a record behind by a few chunks costs nothing with
//! a destination whose upload location stays the same (berth, zot, Harbor);
//! with one that signs the offset into each location (distribution), an
//! upload whose saved location is stale starts over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::limit::Limiter;
use super::sides::{Dest, Fault, Fetched, Source};
use crate::meta::{BlobProgress, BlobStatus, Execution, MetaStore};
use crate::oci::{manifest, Descriptor, Digest, RepoName};

/// Attempts of one step before it fails the image.
pub const ATTEMPTS: u32 = 12;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The longest a running execution's saved record lags behind its chunks.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

/// A running execution's record: in memory as it moves, saved as it settles.
pub struct Progress {
    pub exec: Arc<tokio::sync::Mutex<Execution>>,
    pub meta: Arc<dyn MetaStore>,
    pub metrics: Arc<super::ReplicationMetrics>,
    saved: std::sync::Mutex<SaveClock>,
}

/// When a record changing chunk by chunk is next saved.
#[derive(Default)]
struct SaveClock {
    last: Option<Instant>,
}

impl SaveClock {
    /// Whether a change at `now` is saved (`settled`: always), and if so notes it.
    fn save(&mut self, now: Instant, settled: bool) -> bool {
        let due = settled
            || self
                .last
                .is_none_or(|t| now.duration_since(t) >= SAVE_EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }
}

impl Progress {
    pub fn new(
        exec: Arc<tokio::sync::Mutex<Execution>>,
        meta: Arc<dyn MetaStore>,
        metrics: Arc<super::ReplicationMetrics>,
    ) -> Self {
        Progress {
            exec,
            meta,
            metrics,
            saved: std::sync::Mutex::new(SaveClock::default()),
        }
    }

    /// Changes the record and saves it.
    pub async fn update(&self, f: impl FnOnce(&mut Execution)) {
        self.change(f, true).await;
    }

    /// Changes the record; saves it only if the last save is `SAVE_EVERY` old.
    async fn advance(&self, f: impl FnOnce(&mut Execution)) {
        self.change(f, false).await;
    }

    async fn change(&self, f: impl FnOnce(&mut Execution), settled: bool) {
        let snapshot = {
            let mut e = self.exec.lock().await;
            f(&mut e);
            let mut clock = self.saved.lock().unwrap_or_else(|p| p.into_inner());
            if !clock.save(Instant::now(), settled) {
                return;
            }
            e.clone()
        };
        if let Err(e) = self.meta.execution_put(&snapshot).await {
            tracing::warn!(error = %e, "cannot save a replication execution's progress");
        }
    }

    async fn blob(&self, digest: &Digest) -> Option<BlobProgress> {
        let d = digest.to_string();
        self.exec
            .lock()
            .await
            .blobs
            .iter()
            .find(|b| b.digest == d)
            .cloned()
    }

    async fn set_blob(&self, b: BlobProgress) {
        self.update(|e| put_blob(e, b)).await;
    }

    /// A chunk arrived: the blob's progress, saved at most every `SAVE_EVERY`.
    async fn advance_blob(&self, b: BlobProgress) {
        self.advance(|e| put_blob(e, b)).await;
    }
}

fn put_blob(e: &mut Execution, b: BlobProgress) {
    match e.blobs.iter_mut().find(|x| x.digest == b.digest) {
        Some(x) => *x = b,
        None => e.blobs.push(b),
    }
}

pub struct Copier<'a> {
    pub src: &'a dyn Source,
    pub dst: &'a dyn Dest,
    pub limiter: &'a Limiter,
    pub progress: &'a Progress,
}

/// Waits before attempt `n` (from 1) of a step.
pub async fn backoff(n: u32) {
    let wait = FIRST_BACKOFF.saturating_mul(1 << n.min(8)).min(MAX_BACKOFF);
    tokio::time::sleep(wait).await;
}

/// Runs `op` until it succeeds, fails for good, or has failed `ATTEMPTS` times.
pub async fn with_retries<T, Fut>(what: &str, op: impl Fn() -> Fut) -> Result<T, Fault>
where
    Fut: std::future::Future<Output = Result<T, Fault>>,
{
    let mut n = 0;
    loop {
        match op().await {
            Err(Fault::Transient(why)) if n + 1 < ATTEMPTS => {
                n += 1;
                tracing::info!(%what, attempt = n, error = %why, "replication step failed; retrying");
                backoff(n).await;
            }
            Err(Fault::Transient(why)) => {
                return Err(Fault::Transient(format!(
                    "{what}: gave up after {ATTEMPTS} attempts: {why}"
                )))
            }
            other => return other,
        }
    }
}

impl Copier<'_> {
    /// Copies the image `top` of `src_repo` to `dst_repo` under `tag`.
    pub async fn image(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        tag: &str,
        top: &Fetched,
    ) -> Result<(), Fault> {
        let mut copied = Vec::new();
        self.tree(src_repo, dst_repo, top, &mut copied).await?;
        with_retries("putting the manifest", || {
            self.dst
                .put_manifest(dst_repo, tag, &top.media_type, top.bytes.clone())
        })
        .await?;
        let mut seen = copied.clone();
        for subject in copied {
            self.referrers(src_repo, dst_repo, &subject, &mut seen, 0)
                .await?;
        }
        Ok(())
    }

    /// Copies what `m` references (children first), not `m` itself; adds
    /// every manifest digest of the tree to `copied`.
    fn tree<'s>(
        &'s self,
        src_repo: &'s RepoName,
        dst_repo: &'s RepoName,
        m: &'s Fetched,
        copied: &'s mut Vec<Digest>,
    ) -> BoxFuture<'s, Result<(), Fault>> {
        async move {
            let summary = manifest::decode(&m.media_type, &m.bytes).map_err(|e| {
                Fault::Permanent(format!("manifest {} cannot be read: {e:?}", m.digest))
            })?;
            copied.push(m.digest.clone());
            for child in &summary.manifests {
                self.manifest_by_digest(src_repo, dst_repo, child, copied)
                    .await?;
            }
            for blob in &summary.blobs {
                if blob.fetched_from_urls() {
                    continue;
                }
                self.blob(src_repo, dst_repo, blob).await?;
            }
            Ok(())
        }
        .boxed()
    }

    /// Copies the manifest `d` (and its tree) unless the destination has it.
    async fn manifest_by_digest(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        d: &Descriptor,
        copied: &mut Vec<Digest>,
    ) -> Result<(), Fault> {
        let digest = d.digest.to_string();
        let there = with_retries("looking up a manifest at the destination", || {
            self.dst.manifest_digest(dst_repo, &digest)
        })
        .await?;
        if there.is_some() {
            copied.push(d.digest.clone());
            return Ok(());
        }
        let Some(child) = with_retries("reading a manifest at the source", || {
            self.src.manifest(src_repo, &digest)
        })
        .await?
        else {
            return Err(Fault::Permanent(format!(
                "manifest {digest} is not in {src_repo} at the source"
            )));
        };
        self.tree(src_repo, dst_repo, &child, copied).await?;
        with_retries("putting a manifest", || {
            self.dst
                .put_manifest(dst_repo, &digest, &child.media_type, child.bytes.clone())
        })
        .await
    }

    /// Copies the referrers of `subject`, and theirs, a few levels deep.
    fn referrers<'s>(
        &'s self,
        src_repo: &'s RepoName,
        dst_repo: &'s RepoName,
        subject: &'s Digest,
        seen: &'s mut Vec<Digest>,
        depth: u32,
    ) -> BoxFuture<'s, Result<(), Fault>> {
        async move {
            if depth > 3 {
                return Ok(());
            }
            let list = with_retries("listing referrers at the source", || {
                self.src.referrers(src_repo, subject)
            })
            .await?;
            for r in list {
                if seen.contains(&r.digest) {
                    continue;
                }
                let mut copied = Vec::new();
                self.manifest_by_digest(src_repo, dst_repo, &r, &mut copied)
                    .await?;
                seen.push(r.digest.clone());
                self.referrers(src_repo, dst_repo, &r.digest, seen, depth + 1)
                    .await?;
            }
            Ok(())
        }
        .boxed()
    }

    /// Brings blob `d` into `dst_repo`.
    async fn blob(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        d: &Descriptor,
    ) -> Result<(), Fault> {
        let here = dst_repo.to_string();
        let mut b = match self.progress.blob(&d.digest).await {
            Some(b) if b.repo == here && done(b.status) => return Ok(()),
            Some(b) if done(b.status) => {
                // At the destination in another repository: mount it.
                let from: RepoName = b
                    .repo
                    .parse()
                    .map_err(|e| Fault::Permanent(format!("{e}")))?;
                let mounted = with_retries("mounting a blob", || {
                    self.dst.mount(dst_repo, &d.digest, &from)
                })
                .await?;
                if mounted {
                    self.progress.metrics.blobs_skipped.inc();
                    let mut m = b.clone();
                    m.status = BlobStatus::Mounted;
                    m.repo = here;
                    self.progress.set_blob(m).await;
                    return Ok(());
                }
                fresh(d, &here)
            }
            Some(b) if b.repo == here => b,
            _ => fresh(d, &here),
        };
        let has = with_retries("looking up a blob at the destination", || {
            self.dst.has_blob(dst_repo, &d.digest)
        })
        .await?;
        if has {
            self.progress.metrics.blobs_skipped.inc();
            b.status = BlobStatus::Present;
            b.done = b.size;
            self.progress.set_blob(b).await;
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.transfer(src_repo, dst_repo, d, &mut b).await {
                Ok(()) => break,
                Err(Fault::Transient(why)) if attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    b.retries += 1;
                    b.error = Some(why);
                    self.progress.set_blob(b.clone()).await;
                    backoff(attempt).await;
                }
                Err(f) => {
                    b.status = BlobStatus::Failed;
                    b.error = Some(f.words().to_string());
                    self.progress.set_blob(b).await;
                    return Err(f);
                }
            }
        }
        self.progress.metrics.blobs_copied.inc();
        b.status = BlobStatus::Copied;
        b.session = None;
        b.error = None;
        b.done = b.size;
        self.progress.set_blob(b).await;
        Ok(())
    }

    /// One attempt: continues the upload where the destination says it
    /// stands, reads the rest from the source and finishes.
    async fn transfer(
        &self,
        src_repo: &RepoName,
        dst_repo: &RepoName,
        d: &Descriptor,
        b: &mut BlobProgress,
    ) -> Result<(), Fault> {
        let mut offset = match &b.session {
            Some(s) => self.dst.upload_offset(dst_repo, s).await?,
            None => None,
        };
        if offset.is_none() {
            b.session = Some(self.dst.start_upload(dst_repo).await?);
            offset = Some(0);
        }
        let (mut offset, mut session) =
            (offset.unwrap_or(0), b.session.clone().unwrap_or_default());
        b.done = offset;
        b.status = BlobStatus::Partial;
        self.progress.set_blob(b.clone()).await;
        if offset < d.size {
            let mut body = self.src.blob(src_repo, &d.digest, offset).await?;
            let chunk = self.dst.chunk();
            let mut buf = BytesMut::with_capacity(chunk);
            let mut broke = None;
            loop {
                let piece = match body.next().await {
                    Some(Ok(p)) => p,
                    Some(Err(f)) => {
                        broke = Some(f);
                        break;
                    }
                    None => break,
                };
                self.limiter.take(piece.len()).await;
                self.progress.metrics.bytes.inc_by(piece.len() as u64);
                buf.extend_from_slice(&piece);
                if buf.len() >= chunk {
                    let chunk = buf.split().freeze();
                    let n = chunk.len() as u64;
                    session = self.dst.append(dst_repo, &session, offset, chunk).await?;
                    offset += n;
                    b.session = Some(session.clone());
                    b.done = offset;
                    self.progress.advance_blob(b.clone()).await;
                }
            }
            // What arrived before a cut is kept: it is appended too.
            if !buf.is_empty() {
                let chunk = buf.split().freeze();
                let n = chunk.len() as u64;
                session = self.dst.append(dst_repo, &session, offset, chunk).await?;
                offset += n;
                b.session = Some(session.clone());
                b.done = offset;
                self.progress.advance_blob(b.clone()).await;
            }
            if let Some(f) = broke {
                return Err(f);
            }
        }
        if offset != d.size {
            return Err(Fault::Transient(format!(
                "blob {} ended at byte {offset} of {}",
                d.digest, d.size
            )));
        }
        self.dst.finish(dst_repo, &session, &d.digest).await
    }
}

fn done(s: BlobStatus) -> bool {
    matches!(
        s,
        BlobStatus::Present | BlobStatus::Mounted | BlobStatus::Copied
    )
}

fn fresh(d: &Descriptor, repo: &str) -> BlobProgress {
    BlobProgress {
        digest: d.digest.to_string(),
        size: d.size,
        done: 0,
        status: BlobStatus::Pending,
        repo: repo.to_string(),
        session: None,
        retries: 0,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_saved_at_most_every_interval_and_settled_changes_always() {
        let mut clock = SaveClock::default();
        let t0 = Instant::now();
        assert!(clock.save(t0, false), "the first change is saved");
        let step = SAVE_EVERY / 8;
        let chunks = (1..8).filter(|i| clock.save(t0 + step * *i, false)).count();
        assert_eq!(chunks, 0, "chunks within the interval stay in memory");
        assert!(clock.save(t0 + step * 7, true), "a settled change is saved");
        assert!(!clock.save(t0 + step * 8, false));
        assert!(clock.save(t0 + step * 7 + SAVE_EVERY, false));
    }
}
