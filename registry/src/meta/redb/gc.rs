//! GC's reads and its sweep, in bounded batches: each batch is one write
//! transaction that re-checks what GC saw in its snapshot, so that a push
//! between the snapshot and the batch is never undone (see `MetaStore`).
//!
//! redb has no secondary indexes: "does any repository still link this
//! blob" reads `blob_links`, the reverse of `repo_blobs` kept beside it;
//! "does any repository still hold this manifest" reads
//! `manifest_holders`, the reverse of `manifests`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ::redb::{ReadableTable, WriteTransaction};
use futures::{StreamExt, TryStreamExt};

use super::blobs::unlink;
use super::deleting::Claim;
use super::usage::release;
use super::{
    corrupt, decode_summary, RedbMeta, BLOBS, BLOB_LINKS, GC_RUNS, HIGH, MANIFESTS, MANIFEST_BYTES,
    MANIFEST_HOLDERS, MANIFEST_REFS, REFERRERS, REPO_BLOBS, TAGS,
};
use crate::meta::{
    kept_in_sweep, BlobRecord, DeleteStep, GcRun, MetaError, RepoGcView, RepoSweep, RepoSwept,
    Result, Seen,
};
use crate::oci::{Digest, ManifestSummary, RepoName};

impl RedbMeta {
    pub(super) fn gc_view_now(&self, repo: &RepoName) -> Result<RepoGcView> {
        let tx = self.db().begin_read()?;
        let r = repo.as_str();
        let mut view = RepoGcView::default();
        let refs = tx.open_table(MANIFEST_REFS)?;
        for row in tx.open_table(MANIFESTS)?.range((r, "")..(r, HIGH))? {
            let (k, v) = row?;
            let Ok(d) = k.value().1.parse::<Digest>() else {
                continue;
            };
            let summary = refs
                .get(k.value().1)?
                .and_then(|s| decode_summary(s.value()));
            view.manifests.insert(d, (v.value().1, summary));
        }
        for row in tx.open_table(TAGS)?.range((r, "")..(r, HIGH))? {
            let (_, v) = row?;
            if let Ok(d) = v.value().parse() {
                view.tagged.insert(d);
            }
        }
        for row in tx.open_table(REPO_BLOBS)?.range((r, "")..(r, HIGH))? {
            let (k, v) = row?;
            if let Ok(d) = k.value().1.parse() {
                view.links.insert(d, v.value());
            }
        }
        Ok(view)
    }

    pub(super) fn gc_sweep_manifests_now(
        &self,
        repo: &RepoName,
        dead: &[Seen],
        seen_at: u64,
    ) -> Result<Vec<Digest>> {
        let tx = self.unsynced(self.db().begin_write()?);
        let (removed, _) = sweep_manifests(&tx, repo, dead, seen_at)?;
        tx.commit()?;
        Ok(removed)
    }

    pub(super) fn gc_sweep_links_now(
        &self,
        repo: &RepoName,
        dead: &[Seen],
        seen_at: u64,
    ) -> Result<u64> {
        let tx = self.unsynced(self.db().begin_write()?);
        let n = sweep_links(&tx, repo, dead, seen_at, &HashSet::new())?;
        tx.commit()?;
        Ok(n)
    }

    pub(super) fn gc_sweep_repos_now(
        &self,
        sweeps: &[RepoSweep],
        seen_at: u64,
    ) -> Result<Vec<RepoSwept>> {
        let tx = self.unsynced(self.db().begin_write()?);
        let mut out = Vec::with_capacity(sweeps.len());
        for s in sweeps {
            let (manifests, kept_blobs) = sweep_manifests(&tx, &s.repo, &s.manifests, seen_at)?;
            let links = sweep_links(&tx, &s.repo, &s.links, seen_at, &kept_blobs)?;
            out.push(RepoSwept { manifests, links });
        }
        tx.commit()?;
        Ok(out)
    }

    pub(super) fn gc_drop_blobs_now(
        &self,
        candidates: &[Digest],
        cutoff: u64,
    ) -> Result<Vec<BlobRecord>> {
        let tx = self.db().begin_write()?;
        let mut dropped = Vec::new();
        {
            let index = tx.open_table(BLOB_LINKS)?;
            let mut blobs = tx.open_table(BLOBS)?;
            for d in candidates {
                let key = d.to_string();
                if index
                    .range((key.as_str(), "")..(key.as_str(), HIGH))?
                    .next()
                    .is_some()
                {
                    continue; // linked somewhere
                }
                let Some((size, recorded_at)) = blobs.get(key.as_str())?.map(|v| v.value()) else {
                    continue;
                };
                if recorded_at > cutoff {
                    continue;
                }
                blobs.remove(key.as_str())?;
                dropped.push(BlobRecord {
                    digest: d.clone(),
                    size,
                    recorded_at,
                });
            }
        }
        tx.commit()?;
        Ok(dropped)
    }

    /// Deletes the bytes of those of `digests` without a record: claims
    /// them on the writer thread (no record is written meanwhile), then
    /// deletes with the turn released, `STORE_CONCURRENCY` at a time, so a
    /// push waits for none of it unless it records one of these digests
    /// (`deleting.rs`).
    pub(super) async fn delete_unrecorded_claimed(
        &self,
        digests: &[Digest],
        delete: DeleteStep,
    ) -> Result<u64> {
        // On the writer thread, where every record is written.
        let wanted = digests.to_vec();
        let claims: Vec<Claim> = self
            .write(move |m| {
                let tx = m.db().begin_read()?;
                let blobs = tx.open_table(BLOBS)?;
                let mut claims = Vec::new();
                for d in wanted {
                    if blobs.get(d.to_string().as_str())?.is_none() {
                        claims.push(m.deleting.claim(d));
                    }
                }
                Ok(claims)
            })
            .await?;
        let n = claims.len() as u64;
        let deletions = claims.into_iter().map(|claim| {
            let step = delete(claim.digest().clone());
            async move {
                let done = step.await;
                let d = claim.digest().clone();
                drop(claim);
                done.map_err(|e| MetaError::Store(format!("deleting blob {d}: {e}")))
            }
        });
        futures::stream::iter(deletions)
            .buffer_unordered(STORE_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(n)
    }

    /// Those of `digests` without a record, from one snapshot.
    pub(super) fn unrecorded_now(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let tx = self.db().begin_read()?;
        let blobs = tx.open_table(BLOBS)?;
        let mut out = Vec::new();
        for d in digests {
            if blobs.get(d.to_string().as_str())?.is_none() {
                out.push(d.clone());
            }
        }
        Ok(out)
    }
}

/// Store deletions of one sweep in flight at once (each a stat and an
/// unlink, or a HEAD and a DELETE on a bucket).
const STORE_CONCURRENCY: usize = 16;

/// GC's sweeps of manifests and links between two durable ones. The next
/// durable commit (often a push's) flushes the pages the sweeps before it
/// changed: after 31 unsynced sweeps that took a push's commit up to 71 ms
/// (`benches/gc_scale`); after 7 it is a quarter of the pages.
const SWEEPS_PER_SYNC: u64 = 8;

impl RedbMeta {
    /// A sweep of manifests or links commits without an fsync
    /// (`Durability::None`; redb's `Eventual` fsyncs like `Immediate` on
    /// Linux, which held the writers' turn for a disk flush per sweep):
    /// lost in a crash, what it removed is there again and the next
    /// collection takes it. The next durable commit (any push, or GC's drop
    /// of blob records, which precedes every deletion of bytes) makes it
    /// durable with everything before it, so no blob's bytes go while a
    /// record or link of it could come back. Every `SWEEPS_PER_SYNC`th
    /// sweep is durable itself: redb frees the pages a commit replaced
    /// only at a durable commit, so on a store nobody writes to meanwhile
    /// the file would otherwise grow by every sweep's pages.
    fn unsynced(&self, mut tx: WriteTransaction) -> WriteTransaction {
        let n = self
            .gc_sweeps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if !n.is_multiple_of(SWEEPS_PER_SYNC) {
            tx.set_durability(::redb::Durability::None);
        }
        tx
    }
}

/// Removes each manifest of `dead` (parents first) that is still in
/// `repo` as GC saw it (see `MetaStore::gc_sweep_manifests`). The digests
/// removed, and the blobs the manifests of `dead` it kept reference.
fn sweep_manifests(
    tx: &WriteTransaction,
    repo: &RepoName,
    dead: &[Seen],
    seen_at: u64,
) -> Result<(Vec<Digest>, HashSet<String>)> {
    if dead.is_empty() {
        return Ok((Vec::new(), HashSet::new()));
    }
    let r = repo.as_str();
    let young = pushed_since(tx, repo, seen_at)?;
    let tagged: HashSet<String> = tx
        .open_table(TAGS)?
        .range((r, "")..(r, HIGH))?
        .filter_map(|x| x.ok().map(|(_, v)| v.value().to_string()))
        .collect();
    // What GC saw dead, with what each references; then what must stay.
    let in_batch: HashSet<String> = dead.iter().map(|s| s.digest.to_string()).collect();
    // Children of manifests pushed since the snapshot (a new index
    // whose push found them present), unless those are dead themselves.
    let young_children: HashSet<String> = young
        .iter()
        .filter(|(d, _)| !in_batch.contains(*d))
        .flat_map(|(_, s)| s.manifests.iter().map(|m| m.digest.to_string()))
        .collect();
    let mut batch: BTreeMap<String, Option<ManifestSummary>> = BTreeMap::new();
    let mut survivors: BTreeSet<String> = BTreeSet::new();
    {
        let manifests = tx.open_table(MANIFESTS)?;
        let refs = tx.open_table(MANIFEST_REFS)?;
        for s in dead {
            let key = s.digest.to_string();
            let Some(pushed) = manifests.get((r, key.as_str()))?.map(|v| v.value().1) else {
                continue; // gone already
            };
            let summary = refs
                .get(key.as_str())?
                .and_then(|v| decode_summary(v.value()));
            if pushed != s.at || tagged.contains(&key) || young_children.contains(&key) {
                survivors.insert(key.clone());
            }
            batch.insert(key, summary);
        }
    }
    let (keep, kept_blobs) = kept_in_sweep(&batch, &survivors);
    let mut removed = Vec::new();
    {
        let mut manifests = tx.open_table(MANIFESTS)?;
        let mut holders = tx.open_table(MANIFEST_HOLDERS)?;
        let mut referrers = tx.open_table(REFERRERS)?;
        for (key, summary) in &batch {
            if keep.contains(key) {
                continue;
            }
            manifests.remove((r, key.as_str()))?;
            release(tx, repo.project(), key)?;
            holders.remove((key.as_str(), r))?;
            if let Some(subject) = summary.as_ref().and_then(|s| s.subject.as_ref()) {
                referrers.remove((r, subject.digest.to_string().as_str(), key.as_str()))?;
            }
            if let Ok(d) = key.parse::<Digest>() {
                removed.push(d);
            }
        }
    }
    drop_unheld_content(tx, &removed)?;
    Ok((removed, kept_blobs))
}

/// Removes each link of `dead` still in `repo` with the link time GC saw,
/// unless a manifest pushed since references the blob or it is in `keep`.
/// How many went.
fn sweep_links(
    tx: &WriteTransaction,
    repo: &RepoName,
    dead: &[Seen],
    seen_at: u64,
    keep: &HashSet<String>,
) -> Result<u64> {
    if dead.is_empty() {
        return Ok(0);
    }
    let r = repo.as_str();
    let young_blobs: HashSet<String> = pushed_since(tx, repo, seen_at)?
        .values()
        .flat_map(|s| s.blobs.iter().map(|b| b.digest.to_string()))
        .collect();
    let mut n = 0;
    for s in dead {
        let key = s.digest.to_string();
        if young_blobs.contains(&key) || keep.contains(&key) {
            continue;
        }
        let at = tx
            .open_table(REPO_BLOBS)?
            .get((r, key.as_str()))?
            .map(|v| v.value());
        if at == Some(s.at) {
            unlink(tx, r, &key)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Manifests of `repo` pushed at or after `since`, with what they reference.
fn pushed_since(
    tx: &WriteTransaction,
    repo: &RepoName,
    since: u64,
) -> Result<BTreeMap<String, ManifestSummary>> {
    let r = repo.as_str();
    let refs = tx.open_table(MANIFEST_REFS)?;
    let mut out = BTreeMap::new();
    for row in tx.open_table(MANIFESTS)?.range((r, "")..(r, HIGH))? {
        let (k, v) = row?;
        if v.value().1 < since {
            continue;
        }
        if let Some(s) = refs
            .get(k.value().1)?
            .and_then(|s| decode_summary(s.value()))
        {
            out.insert(k.value().1.to_string(), s);
        }
    }
    Ok(out)
}

/// Removes the content of manifests that no repository holds any more.
fn drop_unheld_content(tx: &WriteTransaction, removed: &[Digest]) -> Result<()> {
    let holders = tx.open_table(MANIFEST_HOLDERS)?;
    let mut bytes = tx.open_table(MANIFEST_BYTES)?;
    let mut refs = tx.open_table(MANIFEST_REFS)?;
    for d in removed {
        let d = d.to_string();
        if holders
            .range((d.as_str(), "")..(d.as_str(), HIGH))?
            .next()
            .is_some()
        {
            continue;
        }
        bytes.remove(d.as_str())?;
        refs.remove(d.as_str())?;
    }
    Ok(())
}

impl RedbMeta {
    pub(super) fn gc_run_record_now(&self, run: &GcRun, keep: usize) -> Result<u64> {
        let tx = self.db().begin_write()?;
        let id = {
            let mut runs = tx.open_table(GC_RUNS)?;
            let id = runs.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            let run = GcRun { id, ..run.clone() };
            let json = serde_json::to_vec(&run).map_err(corrupt)?;
            runs.insert(id, json.as_slice())?;
            let cut = id.saturating_sub(keep as u64);
            let old: Vec<u64> = runs
                .range(..=cut)?
                .filter_map(|r| r.ok().map(|(k, _)| k.value()))
                .collect();
            for k in old {
                runs.remove(k)?;
            }
            id
        };
        tx.commit()?;
        Ok(id)
    }

    pub(super) fn gc_runs_now(&self, limit: usize) -> Result<Vec<GcRun>> {
        let tx = self.db().begin_read()?;
        let runs = tx.open_table(GC_RUNS)?;
        let mut out = Vec::new();
        for r in runs.iter()?.rev().take(limit) {
            out.push(serde_json::from_slice(r?.1.value()).map_err(corrupt)?);
        }
        Ok(out)
    }
}
