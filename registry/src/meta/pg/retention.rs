//! Retention rules (`retention_policies`: project → JSON RetentionPolicy)
//! and the tag removal a retention run makes, on PostgreSQL.

use super::changes::Change;
use super::db::{begin_write, col, commit, from_json, to_json, Cached, Ctx, PgMeta};
use super::usage::check_immutable;
use crate::meta::retention::RetentionPolicy;
use crate::meta::Result;
use crate::oci::RepoName;

impl PgMeta {
    pub(super) async fn retention_policy_q(
        &self,
        project: &str,
    ) -> Result<Option<RetentionPolicy>> {
        let conn = self.conn().await?;
        let row = conn
            .cq_opt(
                "SELECT policy::text FROM retention_policies WHERE project = $1",
                &[&project],
            )
            .await
            .ctx("reading a retention policy")?;
        row.map(|r| from_json(&col::<String>(&r, 0, "policy")?, "a retention policy"))
            .transpose()
    }

    pub(super) async fn retention_policies_q(&self) -> Result<Vec<(String, RetentionPolicy)>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT project, policy::text FROM retention_policies ORDER BY project",
            &[],
        )
        .await
        .ctx("reading the retention policies")?
        .iter()
        .map(|r| {
            let policy: String = col(r, 1, "policy")?;
            Ok((
                col(r, 0, "retention_policies.project")?,
                from_json(&policy, "a retention policy")?,
            ))
        })
        .collect()
    }

    pub(super) async fn retention_policy_set_q(
        &self,
        project: &str,
        policy: Option<&RetentionPolicy>,
    ) -> Result<()> {
        let what = "saving a retention policy";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        match policy {
            Some(p) => {
                tx.cexec(
                    "INSERT INTO retention_policies (project, policy) VALUES ($1, $2::text::jsonb)
                     ON CONFLICT (project) DO UPDATE SET policy = EXCLUDED.policy",
                    &[&project, &to_json(p, "encoding a retention policy")?],
                )
                .await
                .ctx(what)?;
            }
            None => {
                tx.cexec(
                    "DELETE FROM retention_policies WHERE project = $1",
                    &[&project],
                )
                .await
                .ctx(what)?;
            }
        }
        commit(tx, what).await
    }

    pub(super) async fn retention_untag_q(
        &self,
        repo: &RepoName,
        tag: &str,
        digest: &str,
        override_immutable: bool,
    ) -> Result<bool> {
        let what = "removing a tag for retention";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let current: Option<String> = tx
            .cq_opt(
                "SELECT digest FROM tags WHERE repo = $1 AND tag = $2",
                &[&repo.as_str(), &tag],
            )
            .await
            .ctx(what)?
            .map(|r| col(&r, 0, "tags.digest"))
            .transpose()?;
        // Moved since the plan (or gone): the plan no longer speaks for it.
        if current.as_deref() != Some(digest) {
            return Ok(false);
        }
        if !override_immutable {
            check_immutable(&tx, repo, tag, "deleting").await?;
        }
        tx.cexec(
            "DELETE FROM tags WHERE repo = $1 AND tag = $2",
            &[&repo.as_str(), &tag],
        )
        .await
        .ctx(what)?;
        let changes = vec![Change::Tag {
            repo: repo.to_string(),
            tag: tag.to_string(),
        }];
        self.commit_changed(tx, what, changes).await?;
        Ok(true)
    }
}
