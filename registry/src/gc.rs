//! Garbage collection, while the registry serves.
//!
//! 1. **Mark each repository on a snapshot, sweep its metadata in batches.**
//!    Roots are tags, manifests younger than the grace window (or than a
//!    retention rule's `untagged_hours`, if longer), and, with
//!    `delete_untagged = false`, every manifest. From the roots, index
//!    children and referrers of live manifests are live. Dead manifests lose
//!    their entries; a repository keeps a blob link if a live manifest
//!    references the blob or the link is younger than the grace window; a
//!    blob record with no links left (and older than the window) is dropped.
//!    The mark reads a snapshot without holding the writer; the sweep is
//!    `MetaStore` operations of at most `BATCH` records each, every one a
//!    write transaction that removes only what is still as the snapshot saw
//!    it (same push or link time, untagged, not the child of a manifest
//!    pushed since, no link left), so a sweep never holds the single writer
//!    for long and never undoes a push that landed after the snapshot. A
//!    manifest a batch keeps keeps what it reaches (its children and
//!    referrers, as the mark would), and dead manifests are swept parents
//!    (and subjects) first. A push that lands before a batch is seen by its
//!    re-checks; one after it finds its blobs still linked, since links are
//!    refreshed by every upload, mount and manifest push and are protected
//!    for the grace window.
//! 2. **Sweep the store lazily.** Each batch of dropped records is
//!    committed (durably) before its objects go. Objects without a record
//!    are deleted only if they are older than the grace window, re-checked
//!    against the metadata (`MetaStore::delete_unrecorded`: under its write
//!    lock, or, on redb, claimed under the writers' turn so that only a
//!    write of the same digest waits for the deletion). On the local backend
//!    an upload renames its file into place and records it under that lock
//!    (`MetaStore::place_record_and_link`), so there an object is either
//!    recorded or not placed yet; on other backends the placed object
//!    carries a fresh mtime until it is recorded, and fresh objects are
//!    skipped (with a grace window). Then the whole store is listed for
//!    objects nothing recorded (a crash between placing and recording, or
//!    between dropping records and deleting their objects), their records
//!    looked up a page at a time (`MetaStore::unrecorded`).
//! 3. Upload sessions untouched for `upload_ttl` are discarded.
//!
//! Non-distributable layers with URLs (`Descriptor::fetched_from_urls`) need
//! nothing of their own: one that was never pushed has no link and no record,
//! so there is nothing to keep or collect, and one that was pushed is kept
//! while a live manifest references it, like any blob.
//!
//! The grace window is the answer to distribution's "GC during push" bugs:
//! a layer uploaded and acknowledged waits at least that long for its manifest.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::content::ContentStore;
use crate::meta::retention::{untagged_hold, RetentionPolicy};
use crate::meta::{
    BlobRecord, DeleteStep, MetaError, MetaStore, RepoGcView, RepoSweep, Seen, StoreStep,
};
use crate::oci::{Digest, ManifestSummary, RepoName};
use crate::service::LocalRegistry;

pub use crate::meta::mark;
pub use crate::service::GcRoots;

/// Records removed per metadata write transaction.
pub const BATCH: usize = 128;

/// Links removed per write transaction: each is a point lookup and three
/// removals, without an fsync, so a repository's dead links usually go in
/// one transaction (GC's transactions queue behind pushes' fsyncs, so
/// their number, more than their size, sets how long a collection takes).
const LINK_BATCH: usize = 512;

/// Dead manifests and links swept per write transaction when several
/// small repositories share one (`MetaStore::gc_sweep_repos`). Small on
/// purpose: in `benches/gc_scale` at its fifth size, sharing up to 512
/// (two repositories of 20 dead manifests and 200 dead links each) cut the
/// repositories phase from 12.2 s to 9.0 s but made pushes wait behind
/// each long transaction (longest 579 ms against 126 ms; 43 pushes in
/// the phase instead of 347). At 128, only repositories with a few dead
/// records share a transaction (many tiny repositories: far fewer
/// transactions), and none is longer than a batch of manifests.
const SWEEP_BUDGET: usize = BATCH;

/// Blob records read at a time when looking for those to drop.
const RECORD_PAGE: usize = 4096;

/// Objects deleted from the store per call of `delete_unrecorded` (per
/// hold of the metadata's writer, on a backend that deletes under it).
const STORE_BATCH: usize = 16;

/// Calls of `delete_unrecorded` in flight at once.
const STORE_BATCHES_IN_FLIGHT: usize = 4;

/// Objects listed from the store per lookup of their records.
const ORPHAN_PAGE: usize = 4096;

/// Blob records dropped per write transaction: each is a point lookup and
/// a removal, and each transaction an fsync (the sweeps before it commit
/// without one). A push waits for at most one of them: at 1,024 random
/// removals the flush of the pages they touched held a push for up to
/// 99 ms (`benches/gc_scale`); at 256 it is a quarter of that.
const DROP_BATCH: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    pub grace: Duration,
    pub upload_ttl: Duration,
    pub delete_untagged: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub manifests_deleted: u64,
    pub links_removed: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub uploads_purged: u64,
    pub orphans_deleted: u64,
    pub duration_ms: u64,
    /// How long each phase took, in order (logged; not part of the API).
    #[serde(skip)]
    pub phases: Vec<(&'static str, Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Content(#[from] crate::content::ContentError),
    #[error("{0}")]
    Service(#[from] crate::service::ServiceError),
}

/// One collection's view of time and its roots outside the metadata.
struct Sweep<'a> {
    meta: &'a dyn MetaStore,
    opts: GcOptions,
    /// Things last touched at or before this (unix seconds) are past the grace window.
    cutoff: u64,
    /// When the snapshots were taken (no earlier than this second).
    seen_at: u64,
    /// repo → manifest digests held by others (the controller).
    extra_roots: BTreeMap<String, BTreeSet<String>>,
    /// Projects' retention rules: their `untagged_hours` hold untagged
    /// manifests past the grace window.
    retention: BTreeMap<String, RetentionPolicy>,
}

/// Runs a full collection.
pub async fn run(registry: &LocalRegistry, opts: GcOptions) -> Result<GcReport, GcError> {
    let started = Instant::now();
    let (meta, content, metrics) = registry.gc_parts();
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // References held outside the registry's own metadata (the controller's
    // publications deploy digests whatever their tags do since).
    let mut extra_roots: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for h in registry.gc_roots() {
        for (repo, digest) in h.roots().await {
            extra_roots.entry(repo).or_default().insert(digest);
        }
    }
    let retention = meta.retention_policies().await?.into_iter().collect();
    // The metadata's clock, not this machine's: with replicas, the times
    // GC compares were recorded by the database (`MetaStore::clock`).
    let now = meta.clock().await?;
    let sweep = Sweep {
        meta,
        opts,
        cutoff: now.saturating_sub(opts.grace.as_secs()),
        seen_at: now,
        extra_roots,
        retention,
    };
    let mut still_linked = Fingerprints::default();
    let mut phase = Instant::now();
    let mut lap = |report: &mut GcReport, name: &'static str| {
        report.phases.push((name, phase.elapsed()));
        phase = Instant::now();
    };
    let mut last: Option<String> = None;
    let mut group = Group::default();
    loop {
        let (names, more) = meta.catalog(last.as_deref(), 1000, &|_| true).await?;
        for name in &names {
            match name.parse::<RepoName>() {
                Ok(repo) => {
                    sweep
                        .repository(&repo, &mut report, &mut still_linked, &mut group)
                        .await?
                }
                Err(e) => {
                    tracing::warn!(repo = %name, error = %e, "GC skips a repository whose name does not parse")
                }
            }
        }
        last = names.last().cloned();
        if !more || last.is_none() {
            break;
        }
    }
    sweep.flush(&mut group, &mut report).await?;
    lap(&mut report, "repositories");
    sweep
        .blob_records(content, &still_linked, &mut report)
        .await?;
    lap(&mut report, "blob records and their bytes");
    if !opts.dry_run {
        // Objects with no record at all (a crash between placing and recording).
        report.orphans_deleted = sweep_orphans(meta, content, opts.grace).await?;
        lap(&mut report, "unrecorded objects");
        report.uploads_purged = registry.purge_stale_uploads(opts.upload_ttl).await? as u64;
        lap(&mut report, "uploads");
        metrics.gc_runs.inc();
        metrics.gc_blobs_deleted.inc_by(report.blobs_deleted);
        metrics.gc_bytes_freed.inc_by(report.bytes_freed);
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    let phases: Vec<String> = report
        .phases
        .iter()
        .map(|(name, took)| format!("{name} {:.1} s", took.as_secs_f64()))
        .collect();
    tracing::info!(?report, phases = %phases.join(", "), "garbage collection finished");
    Ok(report)
}

impl Sweep<'_> {
    /// Marks one repository and sweeps its dead manifests, then its dead
    /// links; a small repository's sweep joins `group`, swept with others
    /// in one transaction. Adds the blobs it keeps linked to `still_linked`
    /// (a hint for the drop of records, which re-checks every link).
    async fn repository(
        &self,
        repo: &RepoName,
        report: &mut GcReport,
        still_linked: &mut Fingerprints,
        group: &mut Group,
    ) -> Result<(), GcError> {
        let view = self.meta.gc_view(repo).await?;
        let summaries: BTreeMap<String, Option<ManifestSummary>> = view
            .manifests
            .iter()
            .map(|(d, (_, s))| (d.to_string(), s.clone()))
            .collect();
        let mut live = mark(&summaries, &self.roots(repo, &view));
        let dead: Vec<Seen> = parents_first(&summaries, &live)
            .into_iter()
            .filter_map(|d| {
                let digest: Digest = d.parse().ok()?;
                let at = view.manifests.get(&digest)?.0;
                Some(Seen { digest, at })
            })
            .collect();
        if self.opts.dry_run {
            report.manifests_deleted += dead.len() as u64;
        } else if dead.len() + view.links.len() <= SWEEP_BUDGET {
            // Small: manifests and links in one sweep, shared with others
            // up to the budget.
            let links = self.dead_links(&view, &live, &summaries, still_linked);
            let records = dead.len() + links.len();
            if group.records + records > SWEEP_BUDGET {
                self.flush(group, report).await?;
            }
            group.records += records;
            group.sweeps.push(RepoSweep {
                repo: repo.clone(),
                manifests: dead,
                links,
            });
            return Ok(());
        } else {
            let kept = self.sweep_manifests(repo, dead, &summaries, report).await?;
            live.extend(kept);
        }
        let dead_links = self.dead_links(&view, &live, &summaries, still_linked);
        if self.opts.dry_run {
            report.links_removed += dead_links.len() as u64;
            return Ok(());
        }
        for batch in dead_links.chunks(LINK_BATCH) {
            report.links_removed += self.meta.gc_sweep_links(repo, batch, self.seen_at).await?;
        }
        Ok(())
    }

    /// The links of `view` neither used by a manifest of `live` nor younger
    /// than the grace window; adds the others to `still_linked`.
    fn dead_links(
        &self,
        view: &RepoGcView,
        live: &BTreeSet<String>,
        summaries: &BTreeMap<String, Option<ManifestSummary>>,
        still_linked: &mut Fingerprints,
    ) -> Vec<Seen> {
        let live_blobs: HashSet<Digest> = live
            .iter()
            .filter_map(|d| summaries.get(d).cloned().flatten())
            .flat_map(|s| s.blobs.into_iter().map(|b| b.digest))
            .collect();
        let mut dead_links = Vec::new();
        for (d, at) in &view.links {
            if live_blobs.contains(d) || *at > self.cutoff {
                still_linked.insert(d);
            } else {
                dead_links.push(Seen {
                    digest: d.clone(),
                    at: *at,
                });
            }
        }
        dead_links
    }

    /// Sweeps the repositories gathered in `group`, in one transaction.
    async fn flush(&self, group: &mut Group, report: &mut GcReport) -> Result<(), GcError> {
        if group.sweeps.is_empty() {
            return Ok(());
        }
        let sweeps = std::mem::take(&mut group.sweeps);
        group.records = 0;
        for swept in self.meta.gc_sweep_repos(&sweeps, self.seen_at).await? {
            report.manifests_deleted += swept.manifests.len() as u64;
            report.links_removed += swept.links;
        }
        Ok(())
    }

    fn roots(&self, repo: &RepoName, view: &RepoGcView) -> BTreeSet<String> {
        let mut roots: BTreeSet<String> = view.tagged.iter().map(|d| d.to_string()).collect();
        if let Some(extra) = self.extra_roots.get(repo.as_str()) {
            roots.extend(extra.iter().cloned());
        }
        let hold = self
            .retention
            .get(repo.project())
            .and_then(|p| untagged_hold(repo.project(), p, repo.as_str()));
        let cutoff = match hold {
            Some(h) => self.cutoff.min(self.seen_at.saturating_sub(h)),
            None => self.cutoff,
        };
        for (d, (pushed, _)) in &view.manifests {
            if !self.opts.delete_untagged || *pushed > cutoff {
                roots.insert(d.to_string());
            }
        }
        roots
    }

    /// Sweeps dead manifests in batches; returns those a batch kept (pushed
    /// or tagged since the snapshot) and everything they reach.
    async fn sweep_manifests(
        &self,
        repo: &RepoName,
        dead: Vec<Seen>,
        summaries: &BTreeMap<String, Option<ManifestSummary>>,
        report: &mut GcReport,
    ) -> Result<BTreeSet<String>, GcError> {
        let mut kept = BTreeSet::new();
        let mut pending: VecDeque<Seen> = dead.into();
        while !pending.is_empty() {
            let batch: Vec<Seen> = pending.drain(..pending.len().min(BATCH)).collect();
            let removed: HashSet<Digest> = self
                .meta
                .gc_sweep_manifests(repo, &batch, self.seen_at)
                .await?
                .into_iter()
                .collect();
            report.manifests_deleted += removed.len() as u64;
            let survivors: BTreeSet<String> = batch
                .iter()
                .filter(|s| !removed.contains(&s.digest))
                .map(|s| s.digest.to_string())
                .collect();
            if !survivors.is_empty() {
                let reach = mark(summaries, &survivors);
                pending.retain(|s| !reach.contains(&s.digest.to_string()));
                kept.extend(reach);
            }
        }
        Ok(kept)
    }

    /// Drops the records of blobs no repository links any more, paging
    /// through the records and dropping in batches, and deletes the bytes
    /// of each batch once its drop is committed (so nothing of the size of
    /// the store is held in memory).
    async fn blob_records(
        &self,
        content: &ContentStore,
        still_linked: &Fingerprints,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .meta
                .blob_records_page(after.as_ref(), RECORD_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let candidates: Vec<BlobRecord> = page
                .into_iter()
                .filter(|r| r.recorded_at <= self.cutoff && !still_linked.contains(&r.digest))
                .collect();
            if self.opts.dry_run {
                report.blobs_deleted += candidates.len() as u64;
                report.bytes_freed += candidates.iter().map(|r| r.size).sum::<u64>();
                continue;
            }
            for batch in candidates.chunks(DROP_BATCH) {
                let digests: Vec<Digest> = batch.iter().map(|r| r.digest.clone()).collect();
                let dropped = self.meta.gc_drop_blobs(&digests, self.cutoff).await?;
                report.blobs_deleted += dropped.len() as u64;
                report.bytes_freed += dropped.iter().map(|r| r.size).sum::<u64>();
                let doomed: Vec<Digest> = dropped.into_iter().map(|r| r.digest).collect();
                sweep_store(self.meta, content, &doomed, self.opts.grace).await?;
            }
        }
        Ok(())
    }
}

/// Small repositories' sweeps waiting to share a transaction.
#[derive(Default)]
struct Group {
    sweeps: Vec<RepoSweep>,
    /// Dead manifests and links in `sweeps`.
    records: usize,
}

/// The blobs GC saw linked, as 64-bit fingerprints of their digests: a
/// million take some 16 MB instead of a hundred. Two digests sharing a
/// fingerprint only keep a dead blob until the next run (the drop itself
/// re-checks every link under the write lock).
#[derive(Default)]
struct Fingerprints(HashSet<u64>);

impl Fingerprints {
    fn of(d: &Digest) -> u64 {
        let hex = d.hex();
        hex.get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or_else(|| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                hex.hash(&mut h);
                h.finish()
            })
    }
    fn insert(&mut self, d: &Digest) {
        self.0.insert(Self::of(d));
    }
    fn contains(&self, d: &Digest) -> bool {
        self.0.contains(&Self::of(d))
    }
}

/// The dead manifests (those not in `live`) in an order where each comes
/// after every dead manifest that reaches it (as an index its child, as a
/// subject its referrer): a batch never removes what a later survivor needs.
fn parents_first(
    summaries: &BTreeMap<String, Option<ManifestSummary>>,
    live: &BTreeSet<String>,
) -> Vec<String> {
    let dead: BTreeSet<&str> = summaries
        .keys()
        .map(String::as_str)
        .filter(|d| !live.contains(*d))
        .collect();
    let mut reaches: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (d, s) in summaries.iter().filter(|(d, _)| dead.contains(d.as_str())) {
        let Some(s) = s else { continue };
        for c in &s.manifests {
            reaches
                .entry(d.as_str())
                .or_default()
                .push(c.digest.to_string());
        }
        if let Some(subject) = &s.subject {
            let subject = subject.digest.to_string();
            if let Some(subject) = dead.get(subject.as_str()) {
                reaches.entry(subject).or_default().push(d.clone());
            }
        }
    }
    // Depth-first post-order, reversed.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut order: Vec<String> = Vec::new();
    for start in &dead {
        let mut stack: Vec<(&str, bool)> = vec![(start, false)];
        while let Some((d, done)) = stack.pop() {
            if done {
                order.push(d.to_string());
                continue;
            }
            if !seen.insert(d) {
                continue;
            }
            stack.push((d, true));
            for next in reaches.get(d).into_iter().flatten() {
                if let Some(next) = dead.get(next.as_str()) {
                    if !seen.contains(next) {
                        stack.push((next, false));
                    }
                }
            }
        }
    }
    order.reverse();
    order
}

/// Deletes the objects in the store that have no record (and are older
/// than the grace window), looked up as the listing streams, a page at a
/// time (a store of a million objects is never held in memory). How many
/// went.
async fn sweep_orphans(
    meta: &dyn MetaStore,
    content: &ContentStore,
    grace: Duration,
) -> Result<u64, GcError> {
    let mut pages = content.list_digests().chunks(ORPHAN_PAGE);
    let mut deleted = 0;
    while let Some(page) = pages.next().await {
        let listed: Vec<Digest> = page.into_iter().collect::<Result<_, _>>()?;
        let orphans = meta.unrecorded(&listed).await?;
        if !orphans.is_empty() {
            // The step checks the age of each (most objects have a record,
            // so none is asked its age before its record is looked up).
            deleted += sweep_store(meta, content, &orphans, grace).await?;
        }
    }
    Ok(deleted)
}

/// Deletes objects whose records are gone, each re-checked against the
/// metadata (`MetaStore::delete_unrecorded`: a digest recorded meanwhile
/// stays), and skipped if placed within the grace window (by an upload that
/// has not recorded it yet, on a backend that cannot place under the
/// lock). How many went.
async fn sweep_store(
    meta: &dyn MetaStore,
    content: &ContentStore,
    doomed: &[Digest],
    grace: Duration,
) -> Result<u64, GcError> {
    let content = content.clone();
    let deleted = Arc::new(AtomicU64::new(0));
    let counted = deleted.clone();
    let delete: DeleteStep = Arc::new(move |d: Digest| -> StoreStep {
        let (content, counted) = (content.clone(), counted.clone());
        Box::pin(async move {
            let modified = content.modified(&d).await.map_err(|e| e.to_string())?;
            let fresh = modified
                .map(|m| SystemTime::now().duration_since(m).unwrap_or_default() <= grace)
                .unwrap_or(false);
            if modified.is_none() || (fresh && !grace.is_zero()) {
                return Ok(());
            }
            content.delete(&d).await.map_err(|e| e.to_string())?;
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    });
    // A backend that deletes under its write lock holds it for one small
    // batch at a time; several batches are in flight, so one that checks
    // under the lock and deletes outside it (redb) keeps the store busy.
    let batches: Vec<Vec<Digest>> = doomed.chunks(STORE_BATCH).map(<[_]>::to_vec).collect();
    let calls = batches.into_iter().map(|batch| {
        let delete = delete.clone();
        async move { meta.delete_unrecorded(&batch, delete).await }
    });
    futures::stream::iter(calls)
        .buffer_unordered(STORE_BATCHES_IN_FLIGHT)
        .try_collect::<Vec<u64>>()
        .await?;
    Ok(deleted.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Descriptor;

    fn desc(d: &str) -> Descriptor {
        Descriptor {
            media_type: "x".into(),
            digest: Digest::sha256_of(d.as_bytes()),
            size: 1,
            artifact_type: None,
            annotations: None,
            platform: None,
            urls: None,
        }
    }

    #[test]
    fn mark_follows_children_and_referrers() {
        let k = |s: &str| Digest::sha256_of(s.as_bytes()).to_string();
        let summary = |children: &[&str], subject: Option<&str>| ManifestSummary {
            media_type: "x".into(),
            blobs: vec![],
            manifests: children.iter().map(|c| desc(c)).collect(),
            subject: subject.map(desc),
            artifact_type: None,
            annotations: None,
        };
        let mut m = BTreeMap::new();
        m.insert(k("index"), Some(summary(&["amd64", "arm64"], None)));
        m.insert(k("amd64"), Some(summary(&[], None)));
        m.insert(k("arm64"), Some(summary(&[], None)));
        m.insert(k("sig"), Some(summary(&[], Some("index"))));
        m.insert(k("sig-of-sig"), Some(summary(&[], Some("sig"))));
        m.insert(k("orphan"), Some(summary(&[], None)));
        m.insert(k("orphan-sbom"), Some(summary(&[], Some("orphan"))));
        let live = mark(&m, &BTreeSet::from([k("index")]));
        for l in ["index", "amd64", "arm64", "sig", "sig-of-sig"] {
            assert!(live.contains(&k(l)), "{l} should live");
        }
        assert!(!live.contains(&k("orphan")));
        assert!(!live.contains(&k("orphan-sbom")));
    }

    #[test]
    fn dead_manifests_are_swept_parents_and_subjects_first() {
        let k = |s: &str| Digest::sha256_of(s.as_bytes()).to_string();
        let summary = |children: &[&str], subject: Option<&str>| ManifestSummary {
            media_type: "x".into(),
            blobs: vec![],
            manifests: children.iter().map(|c| desc(c)).collect(),
            subject: subject.map(desc),
            artifact_type: None,
            annotations: None,
        };
        let mut m = BTreeMap::new();
        m.insert(k("amd64"), Some(summary(&[], None)));
        m.insert(k("sig"), Some(summary(&[], Some("amd64"))));
        m.insert(k("index"), Some(summary(&["amd64", "arm64"], None)));
        m.insert(k("arm64"), Some(summary(&[], None)));
        m.insert(k("live"), Some(summary(&[], None)));
        let order = parents_first(&m, &BTreeSet::from([k("live")]));
        let at = |s: &str| order.iter().position(|d| *d == k(s)).expect(s);
        assert_eq!(order.len(), 4, "only the dead");
        assert!(at("index") < at("amd64") && at("index") < at("arm64"));
        assert!(at("amd64") < at("sig"), "the subject before its referrer");
    }

    /// A sweep of more dead manifests, links and blobs than one batch holds
    /// collects them all, over several write transactions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_larger_than_a_batch_collects_everything() {
        let dir = tempfile::tempdir().expect("tmp");
        let meta = crate::meta::RedbMeta::open(&dir.path().join("berth.redb")).expect("meta");
        let content = ContentStore::local(&dir.path().join("store"), &dir.path().join("uploads"))
            .expect("content");
        let metrics = Arc::new(crate::service::metrics::Metrics::new());
        let registry = LocalRegistry::embedded(meta, content, metrics);
        let (m, content, _) = registry.gc_parts();
        let repo: RepoName = "p/app".parse().expect("name");
        let n = BATCH * 2 + 3;
        let config = bytes::Bytes::from_static(b"{}");
        let mut layers = Vec::new();
        for i in 0..n {
            let layer = bytes::Bytes::from(format!("layer {i}"));
            for b in [&config, &layer] {
                let d = Digest::sha256_of(b);
                content.put_bytes(&d, b.clone()).await.expect("bytes");
                m.record_and_link(&repo, &d, b.len() as u64)
                    .await
                    .expect("record");
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": crate::oci::media::OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len()}],
            });
            let body = bytes::Bytes::from(serde_json::to_vec(&manifest).expect("json"));
            let summary = crate::oci::manifest::decode(crate::oci::media::OCI_MANIFEST, &body)
                .expect("manifest");
            let tags: Vec<crate::oci::Tag> = (i == 0)
                .then(|| "kept".parse().expect("tag"))
                .into_iter()
                .collect();
            let d = Digest::sha256_of(&body);
            m.put_manifest(
                &repo,
                &d,
                body,
                &summary,
                &tags,
                crate::meta::References::Required,
            )
            .await
            .expect("put")
            .expect("accepted");
            layers.push(Digest::sha256_of(&layer));
        }
        let opts = GcOptions {
            grace: Duration::ZERO,
            upload_ttl: Duration::from_secs(3600),
            delete_untagged: true,
            dry_run: true,
        };
        let dry = run(&registry, opts).await.expect("dry run");
        let report = run(
            &registry,
            GcOptions {
                dry_run: false,
                ..opts
            },
        )
        .await
        .expect("gc");
        let dead = (n - 1) as u64;
        for r in [&dry, &report] {
            assert_eq!(
                (r.manifests_deleted, r.links_removed, r.blobs_deleted),
                (dead, dead, dead),
                "{r:?}"
            );
        }
        assert_eq!(m.blob_size(&layers[0]).await.expect("size"), Some(7));
        assert!(content.stat(&layers[0]).await.expect("stat").is_some());
        for d in &layers[1..] {
            assert_eq!(m.blob_size(d).await.expect("size"), None);
            assert_eq!(content.stat(d).await.expect("stat"), None, "{d}");
        }
        let again = run(
            &registry,
            GcOptions {
                dry_run: false,
                ..opts
            },
        )
        .await
        .expect("gc");
        assert_eq!((again.manifests_deleted, again.blobs_deleted), (0, 0));
    }
}
