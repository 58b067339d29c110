//! Blob records (`blobs`) and repository links (`repo_blobs`) on PostgreSQL.

use deadpool_postgres::Transaction;

use super::changes::Change;
use super::db::{
    begin_write, big, col, col_u64, commit, db_now, digest as parse_digest, project_of, run_step,
    Cached, Ctx, PgMeta,
};
use super::usage::{check, hold, release};
use crate::meta::read_cache::Lookup;
use crate::meta::{BlobRecord, LinkOutcome, Result, StoreStep};
use crate::oci::{Digest, RepoName};

impl PgMeta {
    pub(super) async fn linked_blob_q(&self, repo: &RepoName, d: &Digest) -> Result<Option<u64>> {
        let ticket = match self.read_cache().map(|c| c.link(repo.as_str(), d)) {
            Some(Lookup::Hit(size)) => return Ok(Some(size)),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let conn = self.conn().await?;
        let row = conn
            .cq_opt(
                "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
                 WHERE l.repo = $1 AND l.digest = $2",
                &[&repo.as_str(), &d.to_string()],
            )
            .await
            .ctx("reading a blob link")?;
        let size = row.map(|r| col_u64(&r, 0, "blobs.size")).transpose()?;
        if let (Some(c), Some(t), Some(size)) = (self.read_cache(), ticket, size) {
            c.put_link(t, repo.as_str(), d, size);
        }
        Ok(size)
    }

    pub(super) async fn blob_size_q(&self, d: &Digest) -> Result<Option<u64>> {
        let conn = self.conn().await?;
        let row = conn
            .cq_opt(
                "SELECT size FROM blobs WHERE digest = $1",
                &[&d.to_string()],
            )
            .await
            .ctx("reading a blob record")?;
        row.map(|r| col_u64(&r, 0, "blobs.size")).transpose()
    }

    pub(super) async fn link_blob_q(&self, repo: &RepoName, d: &Digest) -> Result<LinkOutcome> {
        let what = "linking a blob";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let key = d.to_string();
        let Some(size) = recorded_size(&tx, &key).await? else {
            return Ok(LinkOutcome::NotInStore);
        };
        let t = db_now(&tx).await?;
        link(&tx, repo, &key, size, t).await?;
        commit(tx, what).await?;
        Ok(LinkOutcome::Linked)
    }

    /// Records and links a blob, running `place` first under the same write
    /// lock when given. True when the record is new.
    pub(super) async fn record_and_link_q(
        &self,
        repo: &RepoName,
        d: &Digest,
        size: u64,
        place: Option<StoreStep>,
    ) -> Result<bool> {
        let what = "recording a blob";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let key = d.to_string();
        let recorded = recorded_size(&tx, &key).await?;
        // The quota first: a refused blob's bytes are never placed.
        check(&tx, repo.project(), &[(&key, recorded.unwrap_or(size))]).await?;
        if let Some(step) = place {
            run_step(step, &format!("placing blob {d} in the store")).await?;
        }
        let t = db_now(&tx).await?;
        if recorded.is_none() {
            tx.cexec(
                "INSERT INTO blobs (digest, size, recorded_at) VALUES ($1, $2, $3)",
                &[&key, &big(size), &big(t)],
            )
            .await
            .ctx(what)?;
        }
        link(&tx, repo, &key, recorded.unwrap_or(size), t).await?;
        commit(tx, what).await?;
        Ok(recorded.is_none())
    }

    pub(super) async fn mount_q(
        &self,
        to: &RepoName,
        d: &Digest,
        sources: &[String],
    ) -> Result<Option<u64>> {
        let what = "mounting a blob";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let key = d.to_string();
        let Some(size) = recorded_size(&tx, &key).await? else {
            return Ok(None);
        };
        let found = tx
            .cq_opt(
                "SELECT 1 FROM repo_blobs WHERE digest = $1 AND repo = ANY($2) LIMIT 1",
                &[&key, &sources],
            )
            .await
            .ctx(what)?
            .is_some();
        if !found {
            return Ok(None);
        }
        let t = db_now(&tx).await?;
        link(&tx, to, &key, size, t).await?;
        commit(tx, what).await?;
        Ok(Some(size))
    }

    pub(super) async fn unlink_blob_q(&self, repo: &RepoName, d: &Digest) -> Result<bool> {
        let what = "unlinking a blob";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let removed = unlink(&tx, repo.as_str(), &d.to_string()).await?;
        let changes = if removed {
            vec![Change::Link {
                repo: repo.to_string(),
                digest: d.to_string(),
            }]
        } else {
            Vec::new()
        };
        self.commit_changed(tx, what, changes).await?;
        Ok(removed)
    }

    pub(super) async fn forget_blob_q(&self, d: &Digest, delete: StoreStep) -> Result<Option<u64>> {
        let what = "forgetting a blob";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let key = d.to_string();
        let Some(row) = tx
            .cq_opt(
                "DELETE FROM blobs WHERE digest = $1 RETURNING size",
                &[&key],
            )
            .await
            .ctx(what)?
        else {
            return Ok(None);
        };
        let size = col_u64(&row, 0, "blobs.size")?;
        let repos: Vec<String> = tx
            .cq("SELECT repo FROM repo_blobs WHERE digest = $1", &[&key])
            .await
            .ctx(what)?
            .iter()
            .map(|r| col(r, 0, "repo_blobs.repo"))
            .collect::<Result<_>>()?;
        for r in repos {
            unlink(&tx, &r, &key).await?;
        }
        run_step(delete, &format!("deleting blob {d} from the store")).await?;
        self.commit_changed(tx, what, vec![Change::Blob { digest: key }])
            .await?;
        Ok(Some(size))
    }

    pub(super) async fn blob_records_page_q(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>> {
        let conn = self.conn().await?;
        let after = after.map(|d| d.to_string());
        let rows = conn
            .cq(
                "SELECT digest, size, recorded_at FROM blobs
                 WHERE $1::text IS NULL OR digest > $1 ORDER BY digest LIMIT $2",
                &[&after, &big(limit as u64)],
            )
            .await
            .ctx("reading blob records")?;
        rows.iter().map(record).collect()
    }

    pub(super) async fn blob_records_q(&self) -> Result<Vec<BlobRecord>> {
        let conn = self.conn().await?;
        let rows = conn
            .cq(
                "SELECT digest, size, recorded_at FROM blobs ORDER BY digest",
                &[],
            )
            .await
            .ctx("reading blob records")?;
        rows.iter().map(record).collect()
    }
}

fn record(r: &tokio_postgres::Row) -> Result<BlobRecord> {
    let d: String = col(r, 0, "blobs.digest")?;
    Ok(BlobRecord {
        digest: parse_digest(&d)?,
        size: col_u64(r, 1, "blobs.size")?,
        recorded_at: col_u64(r, 2, "blobs.recorded_at")?,
    })
}

/// The size the CAS records for `key`, under the caller's transaction.
pub(super) async fn recorded_size(tx: &Transaction<'_>, key: &str) -> Result<Option<u64>> {
    tx.cq_opt("SELECT size FROM blobs WHERE digest = $1", &[&key])
        .await
        .ctx("reading a blob record")?
        .map(|r| col_u64(&r, 0, "blobs.size"))
        .transpose()
}

pub(super) async fn ensure_repo(tx: &Transaction<'_>, repo: &RepoName, t: u64) -> Result<()> {
    tx.cexec(
        "INSERT INTO repos (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&repo.as_str(), &big(t)],
    )
    .await
    .ctx("recording a repository")?;
    Ok(())
}

/// Links a blob of `size` (its key) to `repo` at `t` (or refreshes the
/// link's time); checking and counting it in the project's usage when the
/// link is new.
pub(super) async fn link(
    tx: &Transaction<'_>,
    repo: &RepoName,
    key: &str,
    size: u64,
    t: u64,
) -> Result<()> {
    let what = "linking a blob";
    let exists = tx
        .cq_opt(
            "SELECT 1 FROM repo_blobs WHERE repo = $1 AND digest = $2",
            &[&repo.as_str(), &key],
        )
        .await
        .ctx(what)?
        .is_some();
    if !exists {
        check(tx, repo.project(), &[(key, size)]).await?;
        hold(tx, repo.project(), key, size).await?;
    }
    tx.cexec(
        "INSERT INTO repo_blobs (repo, digest, linked_at) VALUES ($1, $2, $3)
         ON CONFLICT (repo, digest) DO UPDATE SET linked_at = EXCLUDED.linked_at",
        &[&repo.as_str(), &key, &big(t)],
    )
    .await
    .ctx(what)?;
    ensure_repo(tx, repo, t).await
}

/// Removes a link, releasing it from the project's usage; false when there
/// was none.
pub(super) async fn unlink(tx: &Transaction<'_>, repo: &str, key: &str) -> Result<bool> {
    let n = tx
        .cexec(
            "DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2",
            &[&repo, &key],
        )
        .await
        .ctx("unlinking a blob")?;
    if n > 0 {
        release(tx, project_of(repo), key).await?;
    }
    Ok(n > 0)
}
