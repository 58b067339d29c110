//! GC's reads, its sweeps and its history on PostgreSQL. Each sweep is one
//! write transaction (under the write lock) that re-checks what GC saw in
//! its snapshot, so that a push between the snapshot and the batch, on this
//! replica or another, is never undone (see `MetaStore`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use deadpool_postgres::Transaction;

use super::blobs::unlink;
use super::changes::Change;
use super::db::{
    begin_read, begin_write, big, col, col_u64, commit, from_json, to_json, Cached, Ctx, PgMeta,
};
use super::usage::release;
use crate::meta::{
    kept_in_sweep, BlobRecord, DeleteStep, GcRun, RepoGcView, RepoSweep, RepoSwept, Result, Seen,
};
use crate::oci::{Digest, ManifestSummary, RepoName};

impl PgMeta {
    pub(super) async fn gc_view_q(&self, repo: &RepoName) -> Result<RepoGcView> {
        let what = "reading a repository for GC";
        let mut conn = self.conn().await?;
        let tx = begin_read(&mut conn, what).await?;
        let r = repo.as_str();
        let mut view = RepoGcView::default();
        for row in tx
            .cq(
                "SELECT m.digest, m.pushed_at, c.summary::text FROM manifests m
                 LEFT JOIN manifest_contents c ON c.digest = m.digest WHERE m.repo = $1",
                &[&r],
            )
            .await
            .ctx(what)?
        {
            let Ok(d) = col::<String>(&row, 0, "manifests.digest")?.parse::<Digest>() else {
                continue;
            };
            let summary: Option<String> = col(&row, 2, "manifest_contents.summary")?;
            let summary = summary.and_then(|s| serde_json::from_str(&s).ok());
            view.manifests
                .insert(d, (col_u64(&row, 1, "manifests.pushed_at")?, summary));
        }
        for row in tx
            .cq("SELECT digest FROM tags WHERE repo = $1", &[&r])
            .await
            .ctx(what)?
        {
            if let Ok(d) = col::<String>(&row, 0, "tags.digest")?.parse() {
                view.tagged.insert(d);
            }
        }
        for row in tx
            .cq(
                "SELECT digest, linked_at FROM repo_blobs WHERE repo = $1",
                &[&r],
            )
            .await
            .ctx(what)?
        {
            if let Ok(d) = col::<String>(&row, 0, "repo_blobs.digest")?.parse() {
                view.links
                    .insert(d, col_u64(&row, 1, "repo_blobs.linked_at")?);
            }
        }
        commit(tx, what).await?;
        Ok(view)
    }

    pub(super) async fn gc_sweep_manifests_q(
        &self,
        repo: &RepoName,
        dead: &[Seen],
        seen_at: u64,
    ) -> Result<Vec<Digest>> {
        let what = "sweeping manifests";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let mut changes = Vec::new();
        let (removed, _) = sweep_manifests(&tx, repo, dead, seen_at, &mut changes).await?;
        self.commit_changed(tx, what, changes).await?;
        Ok(removed)
    }

    pub(super) async fn gc_sweep_links_q(
        &self,
        repo: &RepoName,
        dead: &[Seen],
        seen_at: u64,
    ) -> Result<u64> {
        let what = "sweeping blob links";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let mut changes = Vec::new();
        let n = sweep_links(&tx, repo, dead, seen_at, &HashSet::new(), &mut changes).await?;
        self.commit_changed(tx, what, changes).await?;
        Ok(n)
    }

    pub(super) async fn gc_sweep_repos_q(
        &self,
        sweeps: &[RepoSweep],
        seen_at: u64,
    ) -> Result<Vec<RepoSwept>> {
        let what = "sweeping repositories";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let mut changes = Vec::new();
        let mut out = Vec::with_capacity(sweeps.len());
        for s in sweeps {
            let (manifests, kept_blobs) =
                sweep_manifests(&tx, &s.repo, &s.manifests, seen_at, &mut changes).await?;
            let links =
                sweep_links(&tx, &s.repo, &s.links, seen_at, &kept_blobs, &mut changes).await?;
            out.push(RepoSwept { manifests, links });
        }
        self.commit_changed(tx, what, changes).await?;
        Ok(out)
    }

    pub(super) async fn gc_drop_blobs_q(
        &self,
        candidates: &[Digest],
        cutoff: u64,
    ) -> Result<Vec<BlobRecord>> {
        let what = "dropping blob records";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let keys: Vec<String> = candidates.iter().map(Digest::to_string).collect();
        let rows = tx
            .cq(
                "DELETE FROM blobs b WHERE b.digest = ANY($1) AND b.recorded_at <= $2
                 AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest)
                 RETURNING b.digest, b.size, b.recorded_at",
                &[&keys, &big(cutoff)],
            )
            .await
            .ctx(what)?;
        let mut found: HashMap<String, (u64, u64)> = HashMap::new();
        for row in &rows {
            found.insert(
                col(row, 0, "blobs.digest")?,
                (
                    col_u64(row, 1, "blobs.size")?,
                    col_u64(row, 2, "blobs.recorded_at")?,
                ),
            );
        }
        commit(tx, what).await?;
        // In the order of the candidates, as they were asked for.
        Ok(candidates
            .iter()
            .filter_map(|d| {
                found
                    .remove(&d.to_string())
                    .map(|(size, recorded_at)| BlobRecord {
                        digest: d.clone(),
                        size,
                        recorded_at,
                    })
            })
            .collect())
    }

    pub(super) async fn unrecorded_q(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let conn = self.conn().await?;
        let keys: Vec<String> = digests.iter().map(Digest::to_string).collect();
        let recorded: HashSet<String> = conn
            .cq("SELECT digest FROM blobs WHERE digest = ANY($1)", &[&keys])
            .await
            .ctx("reading blob records")?
            .iter()
            .map(|row| col(row, 0, "blobs.digest"))
            .collect::<Result<_>>()?;
        Ok(digests
            .iter()
            .filter(|d| !recorded.contains(&d.to_string()))
            .cloned()
            .collect())
    }

    pub(super) async fn delete_unrecorded_q(
        &self,
        digests: &[Digest],
        delete: &DeleteStep,
    ) -> Result<u64> {
        // Holding the write lock keeps commits from recording these digests
        // while the store is swept; nothing is written, it rolls back.
        let what = "sweeping the store";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let keys: Vec<String> = digests.iter().map(Digest::to_string).collect();
        let recorded: HashSet<String> = tx
            .cq("SELECT digest FROM blobs WHERE digest = ANY($1)", &[&keys])
            .await
            .ctx(what)?
            .iter()
            .map(|row| col(row, 0, "blobs.digest"))
            .collect::<Result<_>>()?;
        let mut n = 0;
        for d in digests {
            if recorded.contains(&d.to_string()) {
                continue;
            }
            super::db::run_step(delete(d.clone()), &format!("deleting blob {d}")).await?;
            n += 1;
        }
        tx.rollback().await.ctx(what)?;
        Ok(n)
    }

    pub(super) async fn gc_run_record_q(&self, run: &GcRun, keep: usize) -> Result<u64> {
        let what = "recording a GC run";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let row = tx
            .cq_one("SELECT COALESCE(max(id), 0) + 1 FROM gc_runs", &[])
            .await
            .ctx(what)?;
        let id = col_u64(&row, 0, "gc_runs.id")?;
        let run = GcRun { id, ..run.clone() };
        tx.cexec(
            "INSERT INTO gc_runs (id, started_at, finished_at, outcome, run)
             VALUES ($1, $2, $3, $4, $5::text::jsonb)",
            &[
                &big(id),
                &big(run.started_at),
                &big(run.finished_at),
                &run.outcome,
                &to_json(&run, "encoding a GC run")?,
            ],
        )
        .await
        .ctx(what)?;
        let cut = id.saturating_sub(keep as u64);
        tx.cexec("DELETE FROM gc_runs WHERE id <= $1", &[&big(cut)])
            .await
            .ctx(what)?;
        commit(tx, what).await?;
        Ok(id)
    }

    pub(super) async fn gc_runs_q(&self, limit: usize) -> Result<Vec<GcRun>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT run::text FROM gc_runs ORDER BY id DESC LIMIT $1",
            &[&big(limit as u64)],
        )
        .await
        .ctx("reading GC's history")?
        .iter()
        .map(|r| from_json(&col::<String>(r, 0, "gc_runs.run")?, "a GC run"))
        .collect()
    }
}

/// Removes each manifest of `dead` (parents first) still in `repo` as GC
/// saw it (see `MetaStore::gc_sweep_manifests`), noting the changes. The
/// digests removed, and the blobs the manifests of `dead` it kept reference.
async fn sweep_manifests(
    tx: &Transaction<'_>,
    repo: &RepoName,
    dead: &[Seen],
    seen_at: u64,
    changes: &mut Vec<Change>,
) -> Result<(Vec<Digest>, HashSet<String>)> {
    if dead.is_empty() {
        return Ok((Vec::new(), HashSet::new()));
    }
    let what = "sweeping manifests";
    let r = repo.as_str();
    let (batch, survivors) = sweep_batch(tx, r, dead, seen_at, what).await?;
    let (keep, kept_blobs) = kept_in_sweep(&batch, &survivors);
    let removed = delete_manifests(tx, repo, &batch, &keep, what).await?;
    // The content of manifests no repository holds any more.
    let gone: Vec<String> = removed.iter().map(Digest::to_string).collect();
    tx.cexec(
        "DELETE FROM manifest_contents c WHERE c.digest = ANY($1)
         AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = c.digest)",
        &[&gone],
    )
    .await
    .ctx(what)?;
    changes.extend(gone.into_iter().map(|digest| Change::Manifest {
        repo: r.to_string(),
        digest,
    }));
    Ok((removed, kept_blobs))
}

/// The manifests of `dead` still in the repository, by digest, with those
/// that survive: pushed again since GC saw them, tagged, or a child of a
/// manifest pushed since.
async fn sweep_batch(
    tx: &Transaction<'_>,
    r: &str,
    dead: &[Seen],
    seen_at: u64,
    what: &str,
) -> Result<(BTreeMap<String, Option<ManifestSummary>>, BTreeSet<String>)> {
    let young = pushed_since(tx, r, seen_at).await?;
    let tagged: HashSet<String> = tx
        .cq("SELECT digest FROM tags WHERE repo = $1", &[&r])
        .await
        .ctx(what)?
        .iter()
        .map(|row| col(row, 0, "tags.digest"))
        .collect::<Result<_>>()?;
    let in_batch: HashSet<String> = dead.iter().map(|s| s.digest.to_string()).collect();
    // Children of manifests pushed since the snapshot (a new index
    // whose push found them present), unless those are dead themselves.
    let young_children: HashSet<String> = young
        .iter()
        .filter(|(d, _)| !in_batch.contains(*d))
        .flat_map(|(_, s)| s.manifests.iter().map(|m| m.digest.to_string()))
        .collect();
    let current = manifests_now(tx, r, &in_batch).await?;
    let mut batch: BTreeMap<String, Option<ManifestSummary>> = BTreeMap::new();
    let mut survivors: BTreeSet<String> = BTreeSet::new();
    for s in dead {
        let key = s.digest.to_string();
        let Some((pushed, summary)) = current.get(&key) else {
            continue; // gone already
        };
        if *pushed != s.at || tagged.contains(&key) || young_children.contains(&key) {
            survivors.insert(key.clone());
        }
        batch.insert(key, summary.clone());
    }
    Ok((batch, survivors))
}

/// Deletes the batch's manifests outside `keep`, with their project usage
/// and referrer rows. The digests removed.
async fn delete_manifests(
    tx: &Transaction<'_>,
    repo: &RepoName,
    batch: &BTreeMap<String, Option<ManifestSummary>>,
    keep: &BTreeSet<String>,
    what: &str,
) -> Result<Vec<Digest>> {
    let r = repo.as_str();
    let mut removed = Vec::new();
    for key in batch.keys().filter(|k| !keep.contains(*k)) {
        tx.cexec(
            "DELETE FROM manifests WHERE repo = $1 AND digest = $2",
            &[&r, key],
        )
        .await
        .ctx(what)?;
        release(tx, repo.project(), key).await?;
        tx.cexec(
            "DELETE FROM referrers WHERE repo = $1 AND referrer = $2",
            &[&r, key],
        )
        .await
        .ctx(what)?;
        if let Ok(d) = key.parse::<Digest>() {
            removed.push(d);
        }
    }
    Ok(removed)
}

/// Removes each link of `dead` still in `repo` with the link time GC saw,
/// unless a manifest pushed since references the blob or it is in `keep`,
/// noting the changes. How many went.
async fn sweep_links(
    tx: &Transaction<'_>,
    repo: &RepoName,
    dead: &[Seen],
    seen_at: u64,
    keep: &HashSet<String>,
    changes: &mut Vec<Change>,
) -> Result<u64> {
    if dead.is_empty() {
        return Ok(0);
    }
    let what = "sweeping blob links";
    let r = repo.as_str();
    let young_blobs: HashSet<String> = pushed_since(tx, r, seen_at)
        .await?
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
            .cq_opt(
                "SELECT linked_at FROM repo_blobs WHERE repo = $1 AND digest = $2",
                &[&r, &key],
            )
            .await
            .ctx(what)?
            .map(|row| col_u64(&row, 0, "repo_blobs.linked_at"))
            .transpose()?;
        if at == Some(s.at) {
            unlink(tx, r, &key).await?;
            n += 1;
            changes.push(Change::Link {
                repo: r.to_string(),
                digest: key,
            });
        }
    }
    Ok(n)
}

/// The push times and summaries of those of `digests` that `repo` holds now.
async fn manifests_now(
    tx: &Transaction<'_>,
    r: &str,
    digests: &HashSet<String>,
) -> Result<HashMap<String, (u64, Option<ManifestSummary>)>> {
    let what = "sweeping manifests";
    let keys: Vec<String> = digests.iter().cloned().collect();
    let mut current: HashMap<String, (u64, Option<ManifestSummary>)> = HashMap::new();
    for row in tx
        .cq(
            "SELECT m.digest, m.pushed_at, c.summary::text FROM manifests m
             LEFT JOIN manifest_contents c ON c.digest = m.digest
             WHERE m.repo = $1 AND m.digest = ANY($2)",
            &[&r, &keys],
        )
        .await
        .ctx(what)?
    {
        let summary: Option<String> = col(&row, 2, "manifest_contents.summary")?;
        current.insert(
            col(&row, 0, "manifests.digest")?,
            (
                col_u64(&row, 1, "manifests.pushed_at")?,
                summary.and_then(|s| serde_json::from_str(&s).ok()),
            ),
        );
    }
    Ok(current)
}

/// Manifests of `repo` pushed at or after `since`, with what they reference.
async fn pushed_since(
    tx: &Transaction<'_>,
    repo: &str,
    since: u64,
) -> Result<BTreeMap<String, ManifestSummary>> {
    let mut out = BTreeMap::new();
    for row in tx
        .cq(
            "SELECT m.digest, c.summary::text FROM manifests m
             JOIN manifest_contents c ON c.digest = m.digest
             WHERE m.repo = $1 AND m.pushed_at >= $2",
            &[&repo, &big(since)],
        )
        .await
        .ctx("reading manifests pushed during GC")?
    {
        let summary: String = col(&row, 1, "manifest_contents.summary")?;
        if let Ok(s) = serde_json::from_str(&summary) {
            out.insert(col(&row, 0, "manifests.digest")?, s);
        }
    }
    Ok(out)
}
