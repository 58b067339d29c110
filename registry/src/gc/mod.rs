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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::meta::retention::RetentionPolicy;
use crate::meta::{MetaError, MetaStore};
use crate::oci::{Digest, RepoName};
use crate::service::LocalRegistry;

pub use crate::meta::mark;
pub use crate::service::GcRoots;

mod repository;
mod store;
#[cfg(test)]
mod tests;

use repository::Group;
use store::sweep_orphans;

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
