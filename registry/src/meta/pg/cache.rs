//! `CacheBook` on PostgreSQL: a pull-through cache's bookkeeping, in the
//! `cache_*` tables of the registry's schema (the two tag clocks apart by
//! `owner`). Each call is one statement or one transaction.

use async_trait::async_trait;

use super::db::{big, col, col_u64, commit, Cached, Ctx, PgMeta};
use crate::meta::{CacheBook, Result, TagClockOwner};

fn owner_key(owner: TagClockOwner) -> &'static str {
    match owner {
        TagClockOwner::Edge => "edge",
        TagClockOwner::Proxy => "proxy",
    }
}

#[async_trait]
impl CacheBook for PgMeta {
    async fn tag_fetched(
        &self,
        owner: TagClockOwner,
        repo: &str,
        tag: &str,
    ) -> Result<Option<u64>> {
        let conn = self.conn().await?;
        conn.cq_opt(
            "SELECT at_ms FROM cache_tag_fetched WHERE owner = $1 AND repo = $2 AND tag = $3",
            &[&owner_key(owner), &repo, &tag],
        )
        .await
        .ctx("reading when a tag was last confirmed")?
        .map(|r| col_u64(&r, 0, "cache_tag_fetched.at_ms"))
        .transpose()
    }

    async fn set_tag_fetched(
        &self,
        owner: TagClockOwner,
        repo: &str,
        tag: &str,
        at_ms: u64,
    ) -> Result<()> {
        let conn = self.conn().await?;
        conn.cexec(
            "INSERT INTO cache_tag_fetched (owner, repo, tag, at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (owner, repo, tag) DO UPDATE SET at_ms = EXCLUDED.at_ms",
            &[&owner_key(owner), &repo, &tag, &big(at_ms)],
        )
        .await
        .ctx("recording when a tag was confirmed")?;
        Ok(())
    }

    async fn tag_clocks(&self, owner: TagClockOwner) -> Result<Vec<(String, String, u64)>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT repo, tag, at_ms FROM cache_tag_fetched WHERE owner = $1 ORDER BY repo, tag",
            &[&owner_key(owner)],
        )
        .await
        .ctx("reading when tags were last confirmed")?
        .iter()
        .map(|r| {
            Ok((
                col(r, 0, "cache_tag_fetched.repo")?,
                col(r, 1, "cache_tag_fetched.tag")?,
                col_u64(r, 2, "cache_tag_fetched.at_ms")?,
            ))
        })
        .collect()
    }

    async fn access_times(&self) -> Result<Vec<(String, u64)>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT digest, at_ms FROM cache_access ORDER BY digest",
            &[],
        )
        .await
        .ctx("reading blob access times")?
        .iter()
        .map(|r| {
            Ok((
                col(r, 0, "cache_access.digest")?,
                col_u64(r, 1, "cache_access.at_ms")?,
            ))
        })
        .collect()
    }

    async fn put_access_times(&self, times: &[(String, u64)]) -> Result<()> {
        let what = "recording blob access times";
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.ctx(what)?;
        for (d, at) in times {
            tx.cexec(
                "INSERT INTO cache_access (digest, at_ms) VALUES ($1, $2)
                 ON CONFLICT (digest) DO UPDATE SET at_ms = EXCLUDED.at_ms",
                &[d, &big(*at)],
            )
            .await
            .ctx(what)?;
        }
        commit(tx, what).await
    }

    async fn forget_access(&self, digest: &str) -> Result<()> {
        let conn = self.conn().await?;
        conn.cexec("DELETE FROM cache_access WHERE digest = $1", &[&digest])
            .await
            .ctx("forgetting a blob's access time")?;
        Ok(())
    }

    async fn pin(&self, image: &str, digests: &[String]) -> Result<()> {
        let conn = self.conn().await?;
        conn.cexec(
            "INSERT INTO cache_pins (image, digest) SELECT $1, unnest($2::text[])
             ON CONFLICT DO NOTHING",
            &[&image, &digests],
        )
        .await
        .ctx("pinning blobs")?;
        Ok(())
    }

    async fn unpin(&self, image: &str) -> Result<usize> {
        let conn = self.conn().await?;
        let n = conn
            .cexec("DELETE FROM cache_pins WHERE image = $1", &[&image])
            .await
            .ctx("unpinning blobs")?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn pins(&self) -> Result<Vec<(String, String)>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT image, digest FROM cache_pins ORDER BY image, digest",
            &[],
        )
        .await
        .ctx("reading pins")?
        .iter()
        .map(|r| {
            Ok((
                col(r, 0, "cache_pins.image")?,
                col(r, 1, "cache_pins.digest")?,
            ))
        })
        .collect()
    }

    async fn put_job(&self, id: &str, json: &[u8]) -> Result<()> {
        let conn = self.conn().await?;
        conn.cexec(
            "INSERT INTO cache_jobs (id, job) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET job = EXCLUDED.job",
            &[&id, &json],
        )
        .await
        .ctx("saving a prefetch job")?;
        Ok(())
    }

    async fn jobs(&self) -> Result<Vec<Vec<u8>>> {
        let conn = self.conn().await?;
        conn.cq("SELECT job FROM cache_jobs ORDER BY id", &[])
            .await
            .ctx("reading prefetch jobs")?
            .iter()
            .map(|r| col(r, 0, "cache_jobs.job"))
            .collect()
    }
}
