//! Per-project usage, storage limits and immutable-tag rules on PostgreSQL
//! (see `meta::quota`).
//!
//! `project_content` holds, per project and digest, the size and how many
//! holders it has in the project (links of a blob to one of its
//! repositories, manifests in them); `project_usage` the sum of the sizes.
//! Every write that adds or removes a link or a manifest calls `hold` or
//! `release` in its own transaction, so the counter never drifts from the
//! rows it counts; `recount` rebuilds both from the links and manifests.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;

use super::db::{begin_write, big, col, col_u64, col_u64_opt, commit, Ctx, PgMeta};
use crate::meta::quota::{
    protecting, ImmutableRule, ImmutableTag, ProjectQuota, QuotaExceeded, QuotaSetting, Recount,
};
use crate::meta::{now, MetaError, Result};
use crate::oci::{Digest, RepoName};

/// The `quota_limits` row of the registry default.
const DEFAULT: &str = "";

/// One more holder of `digest` in `project`; its size counts when it is the first.
pub(super) async fn hold(
    tx: &Transaction<'_>,
    project: &str,
    digest: &str,
    size: u64,
) -> Result<()> {
    let row = tx
        .query_one(
            "INSERT INTO project_content (project, digest, size, holders) VALUES ($1, $2, $3, 1)
             ON CONFLICT (project, digest) DO UPDATE SET holders = project_content.holders + 1
             RETURNING holders",
            &[&project, &digest, &big(size)],
        )
        .await
        .ctx("counting a project's usage")?;
    if col::<i64>(&row, 0, "project_content.holders")? == 1 {
        add_usage(tx, project, big(size)).await?;
    }
    Ok(())
}

/// One holder of `digest` in `project` fewer; its size stops counting with the last.
pub(super) async fn release(tx: &Transaction<'_>, project: &str, digest: &str) -> Result<()> {
    let Some(row) = tx
        .query_opt(
            "UPDATE project_content SET holders = holders - 1
             WHERE project = $1 AND digest = $2 RETURNING holders, size",
            &[&project, &digest],
        )
        .await
        .ctx("counting a project's usage")?
    else {
        return Ok(());
    };
    if col::<i64>(&row, 0, "project_content.holders")? <= 0 {
        let size: i64 = col(&row, 1, "project_content.size")?;
        tx.execute(
            "DELETE FROM project_content WHERE project = $1 AND digest = $2",
            &[&project, &digest],
        )
        .await
        .ctx("counting a project's usage")?;
        add_usage(tx, project, -size).await?;
    }
    Ok(())
}

async fn add_usage(tx: &Transaction<'_>, project: &str, delta: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO project_usage (project, bytes) VALUES ($1, GREATEST($2::bigint, 0))
         ON CONFLICT (project) DO UPDATE SET bytes = GREATEST(project_usage.bytes + $2::bigint, 0)",
        &[&project, &delta],
    )
    .await
    .ctx("counting a project's usage")?;
    tx.execute(
        "DELETE FROM project_usage WHERE project = $1 AND bytes = 0",
        &[&project],
    )
    .await
    .ctx("counting a project's usage")?;
    Ok(())
}

/// The limit that applies to `project`: None when unlimited.
async fn limit_of(tx: &Transaction<'_>, project: &str) -> Result<Option<u64>> {
    let rows = tx
        .query(
            "SELECT project, bytes FROM quota_limits WHERE project IN ($1, $2)",
            &[&project, &DEFAULT],
        )
        .await
        .ctx("reading the storage limits")?;
    let mut own = None;
    let mut default = None;
    for r in &rows {
        let p: String = col(r, 0, "quota_limits.project")?;
        let bytes = col_u64_opt(r, 1, "quota_limits.bytes")?;
        if p == project && !project.is_empty() {
            own = Some(bytes);
        } else {
            default = bytes;
        }
    }
    Ok(match own {
        Some(bytes) => bytes,
        None => default,
    })
}

/// Refuses adding `digests` (with their sizes) to `project` when the
/// digests it does not hold yet would take it over its limit.
pub(super) async fn check(
    tx: &Transaction<'_>,
    project: &str,
    digests: &[(&str, u64)],
) -> Result<()> {
    let Some(limit) = limit_of(tx, project).await? else {
        return Ok(());
    };
    let keys: Vec<&str> = digests.iter().map(|(d, _)| *d).collect();
    let held: std::collections::HashSet<String> = tx
        .query(
            "SELECT digest FROM project_content WHERE project = $1 AND digest = ANY($2)",
            &[&project, &keys],
        )
        .await
        .ctx("reading a project's usage")?
        .iter()
        .map(|r| col(r, 0, "project_content.digest"))
        .collect::<Result<_>>()?;
    let mut adding = 0u64;
    let mut seen = std::collections::HashSet::new();
    for (d, size) in digests {
        if seen.insert(*d) && !held.contains(*d) {
            adding = adding.saturating_add(*size);
        }
    }
    if adding == 0 {
        return Ok(());
    }
    let usage = usage_in(tx, project).await?;
    if usage.saturating_add(adding) > limit {
        return Err(MetaError::Quota(QuotaExceeded {
            project: project.to_string(),
            limit,
            usage,
            adding,
        }));
    }
    Ok(())
}

async fn usage_in(client: &impl deadpool_postgres::GenericClient, project: &str) -> Result<u64> {
    let row = client
        .query_opt(
            "SELECT bytes FROM project_usage WHERE project = $1",
            &[&project],
        )
        .await
        .ctx("reading a project's usage")?;
    row.map(|r| col_u64(&r, 0, "project_usage.bytes"))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Refuses changing `tag` of `repo` when a rule of its project protects it.
pub(super) async fn check_immutable(
    tx: &Transaction<'_>,
    repo: &RepoName,
    tag: &str,
    doing: &'static str,
) -> Result<()> {
    let rules: Vec<String> = tx
        .query(
            "SELECT pattern FROM immutable_rules WHERE project = $1 ORDER BY pattern",
            &[&repo.project()],
        )
        .await
        .ctx("reading the immutable-tag rules")?
        .iter()
        .map(|r| col(r, 0, "immutable_rules.pattern"))
        .collect::<Result<_>>()?;
    match protecting(&rules, tag) {
        Some(rule) => Err(MetaError::Immutable(ImmutableTag {
            repo: repo.to_string(),
            tag: tag.to_string(),
            rule: rule.to_string(),
            doing,
        })),
        None => Ok(()),
    }
}

/// What `project` holds, counted from its links and manifests: digest →
/// (size, holders).
async fn held(tx: &Transaction<'_>, project: &str) -> Result<BTreeMap<String, (u64, u64)>> {
    let mine = "(x.repo = $1 OR starts_with(x.repo, $1 || '/'))";
    let links = format!(
        "SELECT x.digest, COALESCE(b.size, 0), count(*) FROM repo_blobs x
         LEFT JOIN blobs b ON b.digest = x.digest WHERE {mine} GROUP BY x.digest, b.size"
    );
    let manifests = format!(
        "SELECT x.digest, COALESCE(octet_length(c.bytes)::bigint, 0), count(*) FROM manifests x
         LEFT JOIN manifest_contents c ON c.digest = x.digest WHERE {mine}
         GROUP BY x.digest, c.bytes"
    );
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for q in [links, manifests] {
        for r in tx
            .query(q.as_str(), &[&project])
            .await
            .ctx("recounting a project's usage")?
        {
            let d: String = col(&r, 0, "digest")?;
            let size = col_u64(&r, 1, "size")?;
            let n = col_u64(&r, 2, "holders")?;
            out.entry(d).or_insert((size, 0)).1 += n;
        }
    }
    Ok(out)
}

/// Rebuilds `project`'s rows and counter from its links and manifests.
pub(super) async fn recount(tx: &Transaction<'_>, project: &str) -> Result<Recount> {
    let counted = usage_in(tx, project).await?;
    let held = held(tx, project).await?;
    tx.execute(
        "DELETE FROM project_content WHERE project = $1",
        &[&project],
    )
    .await
    .ctx("recounting a project's usage")?;
    for (d, (size, n)) in &held {
        tx.execute(
            "INSERT INTO project_content (project, digest, size, holders) VALUES ($1, $2, $3, $4)",
            &[&project, d, &big(*size), &big(*n)],
        )
        .await
        .ctx("recounting a project's usage")?;
    }
    let recounted: u64 = held.values().map(|(s, _)| s).sum();
    tx.execute("DELETE FROM project_usage WHERE project = $1", &[&project])
        .await
        .ctx("recounting a project's usage")?;
    if recounted > 0 {
        tx.execute(
            "INSERT INTO project_usage (project, bytes) VALUES ($1, $2)",
            &[&project, &big(recounted)],
        )
        .await
        .ctx("recounting a project's usage")?;
    }
    Ok(Recount { counted, recounted })
}

impl PgMeta {
    pub(super) async fn quota_q(&self, project: &str) -> Result<ProjectQuota> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT project, bytes FROM quota_limits WHERE project IN ($1, $2)",
                &[&project, &DEFAULT],
            )
            .await
            .ctx("reading the storage limits")?;
        let mut q = ProjectQuota::default();
        for r in &rows {
            let p: String = col(r, 0, "quota_limits.project")?;
            let bytes = col_u64_opt(r, 1, "quota_limits.bytes")?;
            if p == DEFAULT {
                q.default = bytes;
            }
            if p == project {
                q.own = Some(bytes.map_or(QuotaSetting::Unlimited, QuotaSetting::Bytes));
            }
        }
        q.usage = usage_in(&conn, project).await?;
        Ok(q)
    }

    pub(super) async fn project_holds_q(&self, project: &str, digest: &Digest) -> Result<bool> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt(
                "SELECT 1 FROM project_content WHERE project = $1 AND digest = $2",
                &[&project, &digest.to_string()],
            )
            .await
            .ctx("reading a project's usage")?
            .is_some())
    }

    pub(super) async fn set_quota_q(
        &self,
        project: Option<&str>,
        setting: Option<QuotaSetting>,
    ) -> Result<()> {
        let what = "setting a storage limit";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let key = project.unwrap_or(DEFAULT);
        let bytes = match setting {
            None => None,
            Some(QuotaSetting::Unlimited) if project.is_none() => None,
            Some(QuotaSetting::Unlimited) => Some(None),
            Some(QuotaSetting::Bytes(n)) => Some(Some(big(n))),
        };
        match bytes {
            None => {
                tx.execute("DELETE FROM quota_limits WHERE project = $1", &[&key])
                    .await
                    .ctx(what)?;
            }
            Some(b) => {
                tx.execute(
                    "INSERT INTO quota_limits (project, bytes) VALUES ($1, $2)
                     ON CONFLICT (project) DO UPDATE SET bytes = EXCLUDED.bytes",
                    &[&key, &b],
                )
                .await
                .ctx(what)?;
            }
        }
        commit(tx, what).await
    }

    pub(super) async fn recount_usage_q(&self, project: &str) -> Result<Recount> {
        let what = "recounting a project's usage";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let r = recount(&tx, project).await?;
        commit(tx, what).await?;
        Ok(r)
    }

    pub(super) async fn immutable_rules_q(&self, project: &str) -> Result<Vec<ImmutableRule>> {
        let conn = self.conn().await?;
        conn.query(
            "SELECT pattern, created_at FROM immutable_rules WHERE project = $1 ORDER BY pattern",
            &[&project],
        )
        .await
        .ctx("reading the immutable-tag rules")?
        .iter()
        .map(|r| {
            Ok(ImmutableRule {
                pattern: col(r, 0, "immutable_rules.pattern")?,
                created: col_u64(r, 1, "immutable_rules.created_at")?,
            })
        })
        .collect()
    }

    pub(super) async fn immutable_rule_add_q(&self, project: &str, pattern: &str) -> Result<bool> {
        let what = "adding an immutable-tag rule";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let n = tx
            .execute(
                "INSERT INTO immutable_rules (project, pattern, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (project, pattern) DO NOTHING",
                &[&project, &pattern, &big(now())],
            )
            .await
            .ctx(what)?;
        commit(tx, what).await?;
        Ok(n > 0)
    }

    pub(super) async fn immutable_rule_remove_q(
        &self,
        project: &str,
        pattern: &str,
    ) -> Result<bool> {
        let what = "removing an immutable-tag rule";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let n = tx
            .execute(
                "DELETE FROM immutable_rules WHERE project = $1 AND pattern = $2",
                &[&project, &pattern],
            )
            .await
            .ctx(what)?;
        commit(tx, what).await?;
        Ok(n > 0)
    }

    pub(super) async fn forget_project_q(&self, project: &str) -> Result<()> {
        let what = "forgetting a deleted project";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        for q in [
            "DELETE FROM quota_limits WHERE project = $1",
            "DELETE FROM retention_policies WHERE project = $1",
            "DELETE FROM immutable_rules WHERE project = $1",
        ] {
            tx.execute(q, &[&project]).await.ctx(what)?;
        }
        recount(&tx, project).await?;
        commit(tx, what).await
    }
}
