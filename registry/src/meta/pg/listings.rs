//! Repositories and listings on PostgreSQL: tags, the catalog,
//! whole-repository deletion, pull counts and the tag listing with push
//! times.

use super::changes::Change;
use super::db::{begin_write, big, col, col_u64, commit, Cached, Ctx, PgMeta};
use super::usage::{check_immutable, release};
use crate::meta::{PullCount, Result, TagEntry, TagRecord, Visible};
use crate::oci::RepoName;

/// Repository names read at a time while the catalog filters them.
const CATALOG_PAGE: i64 = 1000;

impl PgMeta {
    pub(super) async fn repo_exists_q(&self, repo: &RepoName) -> Result<bool> {
        let conn = self.conn().await?;
        Ok(conn
            .cq_opt("SELECT 1 FROM repos WHERE name = $1", &[&repo.as_str()])
            .await
            .ctx("reading a repository")?
            .is_some())
    }

    pub(super) async fn tags_q(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)> {
        let conn = self.conn().await?;
        let rows = conn
            .cq(
                "SELECT tag FROM tags WHERE repo = $1 AND ($2::text IS NULL OR tag > $2)
                 ORDER BY tag LIMIT $3",
                &[&repo.as_str(), &last, &big((n as u64).saturating_add(1))],
            )
            .await
            .ctx("listing tags")?;
        let mut out: Vec<String> = rows
            .iter()
            .map(|r| col(r, 0, "tags.tag"))
            .collect::<Result<_>>()?;
        let more = out.len() > n;
        out.truncate(n);
        Ok((out, more))
    }

    pub(super) async fn tags_with_digests_q(
        &self,
        repo: &RepoName,
    ) -> Result<Vec<(String, String)>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT tag, digest FROM tags WHERE repo = $1 ORDER BY tag",
            &[&repo.as_str()],
        )
        .await
        .ctx("listing tags")?
        .iter()
        .map(|r| Ok((col(r, 0, "tags.tag")?, col(r, 1, "tags.digest")?)))
        .collect()
    }

    pub(super) async fn all_tags_q(&self) -> Result<Vec<TagEntry>> {
        let conn = self.conn().await?;
        conn.cq("SELECT repo, tag, digest FROM tags ORDER BY repo, tag", &[])
            .await
            .ctx("listing tags")?
            .iter()
            .map(|r| {
                Ok(TagEntry {
                    repo: col(r, 0, "tags.repo")?,
                    tag: col(r, 1, "tags.tag")?,
                    digest: col(r, 2, "tags.digest")?,
                })
            })
            .collect()
    }

    pub(super) async fn catalog_q(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)> {
        let conn = self.conn().await?;
        let mut after = last.map(str::to_string);
        let mut out = Vec::new();
        loop {
            let rows = conn
                .cq(
                    "SELECT name FROM repos WHERE $1::text IS NULL OR name > $1
                     ORDER BY name LIMIT $2",
                    &[&after, &CATALOG_PAGE],
                )
                .await
                .ctx("listing repositories")?;
            for r in &rows {
                let name: String = col(r, 0, "repos.name")?;
                if visible(&name) {
                    if out.len() == n {
                        return Ok((out, true));
                    }
                    out.push(name.clone());
                }
                after = Some(name);
            }
            if (rows.len() as i64) < CATALOG_PAGE {
                return Ok((out, false));
            }
        }
    }

    pub(super) async fn repos_with_prefix_q(&self, prefix: &str) -> Result<Vec<String>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT name FROM repos WHERE name >= $1 AND starts_with(name, $1) ORDER BY name",
            &[&prefix],
        )
        .await
        .ctx("listing repositories")?
        .iter()
        .map(|r| col(r, 0, "repos.name"))
        .collect()
    }

    pub(super) async fn delete_repo_q(&self, repo: &RepoName) -> Result<bool> {
        let what = "deleting a repository";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let r = repo.as_str();
        if tx
            .cq_opt("SELECT 1 FROM repos WHERE name = $1", &[&r])
            .await
            .ctx(what)?
            .is_none()
        {
            return Ok(false);
        }
        // Deleting the repository would delete its immutable tags.
        let tagged = tx
            .cq("SELECT tag FROM tags WHERE repo = $1 ORDER BY tag", &[&r])
            .await
            .ctx(what)?;
        for row in &tagged {
            let tag: String = col(row, 0, "tags.tag")?;
            check_immutable(&tx, repo, &tag, "deleting the repository with").await?;
        }
        // What the repository held stops counting in its project's usage.
        let mut released: Vec<String> = Vec::new();
        for q in [
            "DELETE FROM repo_blobs WHERE repo = $1 RETURNING digest",
            "DELETE FROM manifests WHERE repo = $1 RETURNING digest",
        ] {
            for row in tx.cq(q, &[&r]).await.ctx(what)? {
                released.push(col(&row, 0, "digest")?);
            }
        }
        for k in &released {
            release(&tx, repo.project(), k).await?;
        }
        for q in [
            "DELETE FROM tags WHERE repo = $1",
            "DELETE FROM referrers WHERE repo = $1",
            "DELETE FROM pulls WHERE repo = $1",
            "DELETE FROM repos WHERE name = $1",
        ] {
            tx.cexec(q, &[&r]).await.ctx(what)?;
        }
        let changes = vec![Change::Repo {
            repo: r.to_string(),
        }];
        self.commit_changed(tx, what, changes).await?;
        Ok(true)
    }

    pub(super) async fn pulls_record_q(&self, counts: &[PullCount]) -> Result<()> {
        let what = "recording pull counts";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        for c in counts {
            tx.cexec(
                "INSERT INTO pulls (repo, digest, count, last_pulled_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repo, digest) DO UPDATE SET
                   count = CASE WHEN pulls.count > 9223372036854775807 - EXCLUDED.count
                                THEN 9223372036854775807 ELSE pulls.count + EXCLUDED.count END,
                   last_pulled_at = GREATEST(pulls.last_pulled_at, EXCLUDED.last_pulled_at)",
                &[
                    &c.repository,
                    &c.digest,
                    &big(c.count),
                    &big(c.last_pulled_at),
                ],
            )
            .await
            .ctx(what)?;
        }
        commit(tx, what).await
    }

    pub(super) async fn pulls_q(&self, repo: &RepoName) -> Result<Vec<PullCount>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT digest, count, last_pulled_at FROM pulls WHERE repo = $1 ORDER BY digest",
            &[&repo.as_str()],
        )
        .await
        .ctx("reading pull counts")?
        .iter()
        .map(|r| {
            Ok(PullCount {
                repository: repo.to_string(),
                digest: col(r, 0, "pulls.digest")?,
                count: col_u64(r, 1, "pulls.count")?,
                last_pulled_at: col_u64(r, 2, "pulls.last_pulled_at")?,
            })
        })
        .collect()
    }

    pub(super) async fn tag_records_q(&self, repo: &RepoName) -> Result<Vec<TagRecord>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT t.tag, t.digest, m.media_type, m.pushed_at FROM tags t
             JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
             WHERE t.repo = $1 ORDER BY t.tag",
            &[&repo.as_str()],
        )
        .await
        .ctx("listing tags")?
        .iter()
        .map(|r| {
            Ok(TagRecord {
                tag: col(r, 0, "tags.tag")?,
                digest: col(r, 1, "tags.digest")?,
                media_type: col(r, 2, "manifests.media_type")?,
                pushed_at: col_u64(r, 3, "manifests.pushed_at")?,
            })
        })
        .collect()
    }
}
