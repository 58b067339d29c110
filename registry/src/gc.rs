//! Garbage collection, while the registry serves.
//!
//! 1. **Mark and sweep metadata in one redb write transaction.** Roots are
//!    tags, manifests younger than the grace window (and, with
//!    `delete_untagged = false`, every manifest). From the roots, index
//!    children and referrers of live manifests are live. Dead manifests lose
//!    their entries; a repository keeps a blob link if a live manifest
//!    references the blob or the link is younger than the grace window; a
//!    blob record with no links left (and older than the window) is dropped.
//!    Because pushes change metadata in write transactions too, a manifest
//!    push either lands before the sweep (and is seen as live) or after it
//!    (and then finds its blobs still linked, since links are refreshed by
//!    every upload and mount and are protected for the grace window).
//! 2. **Sweep the store lazily.** Objects without a record are deleted only
//!    if they are older than the grace window, re-checked under the metadata
//!    write lock. On the local backend an upload renames its file into place
//!    and records it inside one write transaction, so under that lock an
//!    object is either recorded or not placed yet; on other backends the
//!    placed object carries a fresh mtime until it is recorded, and fresh
//!    objects are skipped (with a grace window).
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
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::TryStreamExt;
use redb::{ReadableTable, WriteTransaction};
use serde::Serialize;

use crate::content::ContentStore;
use crate::meta::{
    self, Meta, MetaError, BLOBS, MANIFESTS, MANIFEST_BYTES, MANIFEST_REFS, REFERRERS, REPO_BLOBS,
    TAGS,
};
use crate::oci::{Digest, ManifestSummary};
use crate::service::LocalRegistry;

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

fn db<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Db(e.to_string())
}

/// The pure part of mark: given a repository's manifests and roots, which manifests live.
pub fn mark(
    manifests: &BTreeMap<String, Option<ManifestSummary>>,
    roots: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = roots
        .iter()
        .filter(|r| manifests.contains_key(*r))
        .cloned()
        .collect();
    // subject -> referrers, so that referrers of live manifests become live.
    let mut referrers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (d, s) in manifests {
        if let Some(subj) = s.as_ref().and_then(|s| s.subject.as_ref()) {
            referrers
                .entry(subj.digest.to_string())
                .or_default()
                .push(d.clone());
        }
    }
    while let Some(d) = stack.pop() {
        if !live.insert(d.clone()) {
            continue;
        }
        if let Some(Some(s)) = manifests.get(&d) {
            for child in &s.manifests {
                let c = child.digest.to_string();
                if manifests.contains_key(&c) && !live.contains(&c) {
                    stack.push(c);
                }
            }
        }
        if let Some(rs) = referrers.get(&d) {
            stack.extend(rs.iter().filter(|r| !live.contains(*r)).cloned());
        }
    }
    live
}

/// Step 1: everything in one write transaction. Returns blob digests whose
/// records were dropped, with their sizes.
fn sweep_metadata(
    tx: &WriteTransaction,
    opts: &GcOptions,
    extra_roots: &BTreeMap<String, BTreeSet<String>>,
    report: &mut GcReport,
) -> Result<Vec<(Digest, u64)>, MetaError> {
    let now = meta::now();
    let cutoff = now.saturating_sub(opts.grace.as_secs());
    // repo -> digest -> (pushed_at)
    let mut by_repo: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    {
        let t = tx.open_table(MANIFESTS).map_err(db)?;
        for r in t.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            let (repo, d) = k.value();
            by_repo
                .entry(repo.to_string())
                .or_default()
                .insert(d.to_string(), v.value().1);
        }
    }
    let refs_table = tx.open_table(MANIFEST_REFS).map_err(db)?;
    let summary_of = |d: &str| -> Option<ManifestSummary> {
        refs_table
            .get(d)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(v.value()).ok())
    };
    let mut tags_by_repo: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    {
        let t = tx.open_table(TAGS).map_err(db)?;
        for r in t.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            tags_by_repo
                .entry(k.value().0.to_string())
                .or_default()
                .insert(v.value().to_string());
        }
    }
    let mut live_blobs: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut dead_manifests: Vec<(String, String, Option<ManifestSummary>)> = Vec::new();
    let mut live_manifest_digests: HashSet<String> = HashSet::new();
    for (repo, ms) in &by_repo {
        let summaries: BTreeMap<String, Option<ManifestSummary>> =
            ms.keys().map(|d| (d.clone(), summary_of(d))).collect();
        let mut roots: BTreeSet<String> = tags_by_repo.get(repo).cloned().unwrap_or_default();
        if let Some(extra) = extra_roots.get(repo) {
            roots.extend(extra.iter().cloned());
        }
        for (d, pushed) in ms {
            if !opts.delete_untagged || *pushed > cutoff {
                roots.insert(d.clone());
            }
        }
        let live = mark(&summaries, &roots);
        let blobs = live_blobs.entry(repo.clone()).or_default();
        for (d, s) in summaries {
            if live.contains(&d) {
                if let Some(s) = &s {
                    blobs.extend(s.blobs.iter().map(|b| b.digest.to_string()));
                }
                live_manifest_digests.insert(d);
            } else {
                dead_manifests.push((repo.clone(), d, s));
            }
        }
    }
    drop(refs_table);
    report.manifests_deleted = dead_manifests.len() as u64;
    {
        let mut mt = tx.open_table(MANIFESTS).map_err(db)?;
        let mut rt = tx.open_table(REFERRERS).map_err(db)?;
        for (repo, d, s) in &dead_manifests {
            mt.remove((repo.as_str(), d.as_str())).map_err(db)?;
            if let Some(subj) = s.as_ref().and_then(|s| s.subject.as_ref()) {
                rt.remove((repo.as_str(), subj.digest.to_string().as_str(), d.as_str()))
                    .map_err(db)?;
            }
        }
    }
    {
        // Manifest content no repository holds any more.
        let mut bytes = tx.open_table(MANIFEST_BYTES).map_err(db)?;
        let mut refs = tx.open_table(MANIFEST_REFS).map_err(db)?;
        let orphaned: BTreeSet<&String> = dead_manifests
            .iter()
            .map(|(_, d, _)| d)
            .filter(|d| !live_manifest_digests.contains(*d))
            .collect();
        for d in orphaned {
            bytes.remove(d.as_str()).map_err(db)?;
            refs.remove(d.as_str()).map_err(db)?;
        }
    }
    // Links.
    let mut still_linked: HashSet<String> = HashSet::new();
    {
        let mut links = tx.open_table(REPO_BLOBS).map_err(db)?;
        let mut doomed: Vec<(String, String)> = Vec::new();
        for r in links.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            let (repo, d) = k.value();
            let referenced = live_blobs.get(repo).is_some_and(|s| s.contains(d));
            if referenced || v.value() > cutoff {
                still_linked.insert(d.to_string());
            } else {
                doomed.push((repo.to_string(), d.to_string()));
            }
        }
        report.links_removed = doomed.len() as u64;
        for (repo, d) in doomed {
            links.remove((repo.as_str(), d.as_str())).map_err(db)?;
        }
    }
    // Blob records.
    let mut dropped = Vec::new();
    {
        let mut blobs = tx.open_table(BLOBS).map_err(db)?;
        let mut doomed = Vec::new();
        for r in blobs.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            let (size, recorded) = v.value();
            if !still_linked.contains(k.value()) && recorded <= cutoff {
                doomed.push((k.value().to_string(), size));
            }
        }
        for (d, size) in doomed {
            blobs.remove(d.as_str()).map_err(db)?;
            if let Ok(digest) = d.parse::<Digest>() {
                dropped.push((digest, size));
            }
        }
    }
    Ok(dropped)
}

/// Something outside the registry's metadata that holds manifests alive:
/// `(repository, manifest digest)` pairs that GC treats like tags.
pub trait GcRoots: Send + Sync {
    fn roots(&self) -> Vec<(String, String)>;
}

/// Runs a full collection.
pub async fn run(registry: &LocalRegistry, opts: GcOptions) -> Result<GcReport, GcError> {
    let started = Instant::now();
    let (meta, content, metrics) = registry.gc_parts();
    let (meta, content) = (meta.clone(), content.clone());
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // References held outside the registry's own metadata (the controller's
    // publications deploy digests whatever their tags do since).
    let mut extra: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let holders: Vec<Arc<dyn GcRoots>> = registry.gc_roots();
    for h in holders {
        for (repo, digest) in h.roots() {
            extra.entry(repo).or_default().insert(digest);
        }
    }
    let sweeping = meta.clone();
    let (dropped, mut report) = tokio::task::spawn_blocking(move || -> Result<_, MetaError> {
        let tx = sweeping.begin_write()?;
        let dropped = sweep_metadata(&tx, &opts, &extra, &mut report)?;
        if opts.dry_run {
            tx.abort().map_err(db)?;
        } else {
            tx.commit().map_err(db)?;
        }
        Ok((dropped, report))
    })
    .await
    .map_err(|e| MetaError::Db(e.to_string()))??;

    report.blobs_deleted = dropped.len() as u64;
    report.bytes_freed = dropped.iter().map(|(_, s)| *s).sum();
    if !opts.dry_run {
        let doomed: Vec<Digest> = dropped.into_iter().map(|(d, _)| d).collect();
        sweep_store(&meta, &content, doomed, opts.grace).await?;
        // Objects with no record at all (a crash between placing and recording).
        let orphans = orphaned_objects(&meta, &content, opts.grace).await?;
        report.orphans_deleted = orphans.len() as u64;
        sweep_store(&meta, &content, orphans, opts.grace).await?;
        report.uploads_purged = registry.purge_stale_uploads(opts.upload_ttl).await? as u64;
        metrics.gc_runs.inc();
        metrics.gc_blobs_deleted.inc_by(report.blobs_deleted);
        metrics.gc_bytes_freed.inc_by(report.bytes_freed);
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(?report, "garbage collection finished");
    Ok(report)
}

async fn orphaned_objects(
    meta: &Meta,
    content: &ContentStore,
    grace: Duration,
) -> Result<Vec<Digest>, GcError> {
    let listed: Vec<crate::content::StoredBlob> = content.list().try_collect().await?;
    let now = SystemTime::now();
    let mut out = Vec::new();
    for b in listed {
        if now.duration_since(b.modified).unwrap_or_default() > grace
            && meta.blob_size(&b.digest)?.is_none()
        {
            out.push(b.digest);
        }
    }
    Ok(out)
}

/// Deletes objects whose records are gone, each re-checked under the write lock.
async fn sweep_store(
    meta: &Meta,
    content: &ContentStore,
    doomed: Vec<Digest>,
    grace: Duration,
) -> Result<(), GcError> {
    for batch in doomed.chunks(64) {
        let meta = meta.clone();
        let content = content.clone();
        let batch = batch.to_vec();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || -> Result<(), GcError> {
            // Holding the write transaction keeps uploads from recording these
            // digests while we decide; nothing is written, it is aborted.
            let tx = meta.begin_write()?;
            {
                let blobs = tx.open_table(BLOBS).map_err(db)?;
                for d in &batch {
                    if blobs.get(d.to_string().as_str()).map_err(db)?.is_some() {
                        continue; // re-uploaded since the metadata sweep
                    }
                    let fresh = handle
                        .block_on(content.modified(d))?
                        .map(|m| SystemTime::now().duration_since(m).unwrap_or_default() <= grace)
                        .unwrap_or(false);
                    if fresh && !grace.is_zero() {
                        continue; // just placed by an upload that has not recorded it yet
                    }
                    handle.block_on(content.delete(d))?;
                }
            }
            tx.abort().map_err(db)?;
            Ok(())
        })
        .await
        .map_err(|e| MetaError::Db(e.to_string()))??;
    }
    Ok(())
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
}
