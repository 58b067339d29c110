//! Per-project usage, storage limits and immutable-tag rules (see
//! `meta::quota`).
//!
//! `project_content` holds, per project and digest, the size and how many
//! holders it has in the project (links of a blob to one of its
//! repositories, manifests in them); `project_usage` the sum of the sizes.
//! Every write that adds or removes a link or a manifest calls `hold` or
//! `release` in its own transaction, so the counter never drifts from the
//! rows it counts; `recount` rebuilds both from the links and manifests.

use std::collections::BTreeMap;

use ::redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{RedbMeta, HIGH, MANIFESTS, MANIFEST_BYTES, REPO_BLOBS};
use super::{BLOBS, TAGS};
use crate::meta::quota::{
    protecting, ImmutableRule, ImmutableTag, ProjectQuota, QuotaExceeded, QuotaSetting, Recount,
};
use crate::meta::{now, MetaError, Result};
use crate::oci::{Digest, RepoName};

pub(crate) const PROJECT_CONTENT: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("project_content");
pub(crate) const PROJECT_USAGE: TableDefinition<&str, u64> = TableDefinition::new("project_usage");
/// Project → limit in bytes (`UNLIMITED`: none); the key `DEFAULT` is the registry default.
pub(crate) const QUOTA_LIMITS: TableDefinition<&str, u64> = TableDefinition::new("quota_limits");
/// (project, pattern) → created at.
pub(crate) const IMMUTABLE_TAGS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("immutable_tags");

const DEFAULT: &str = "";
const UNLIMITED: u64 = u64::MAX;

/// The project a repository belongs to: its first path component.
pub(super) fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// One more holder of `digest` in `project`; its size counts when it is the first.
pub(super) fn hold(tx: &WriteTransaction, project: &str, digest: &str, size: u64) -> Result<()> {
    let mut content = tx.open_table(PROJECT_CONTENT)?;
    let current = content.get((project, digest))?.map(|v| v.value());
    match current {
        Some((s, n)) => {
            content.insert((project, digest), (s, n + 1))?;
        }
        None => {
            content.insert((project, digest), (size, 1))?;
            add_usage(tx, project, size as i128)?;
        }
    }
    Ok(())
}

/// One holder of `digest` in `project` fewer; its size stops counting with the last.
pub(super) fn release(tx: &WriteTransaction, project: &str, digest: &str) -> Result<()> {
    let mut content = tx.open_table(PROJECT_CONTENT)?;
    let current = content.get((project, digest))?.map(|v| v.value());
    match current {
        Some((s, n)) if n > 1 => {
            content.insert((project, digest), (s, n - 1))?;
        }
        Some((s, _)) => {
            content.remove((project, digest))?;
            add_usage(tx, project, -(s as i128))?;
        }
        None => {}
    }
    Ok(())
}

fn add_usage(tx: &WriteTransaction, project: &str, delta: i128) -> Result<()> {
    let mut usage = tx.open_table(PROJECT_USAGE)?;
    let now = usage.get(project)?.map(|v| v.value()).unwrap_or(0) as i128;
    let next = (now + delta).max(0) as u64;
    if next == 0 {
        usage.remove(project)?;
    } else {
        usage.insert(project, next)?;
    }
    Ok(())
}

/// Refuses adding `digests` (with their sizes) to `project` when the
/// digests it does not hold yet would take it over its limit.
pub(super) fn check(tx: &WriteTransaction, project: &str, digests: &[(&str, u64)]) -> Result<()> {
    let limits = tx.open_table(QUOTA_LIMITS)?;
    let own = limits.get(project)?.map(|v| v.value());
    let limit = match own {
        Some(UNLIMITED) => return Ok(()),
        Some(n) => n,
        None => match limits.get(DEFAULT)?.map(|v| v.value()) {
            Some(n) => n,
            None => return Ok(()),
        },
    };
    let content = tx.open_table(PROJECT_CONTENT)?;
    let mut adding = 0u64;
    let mut seen = std::collections::HashSet::new();
    for (d, size) in digests {
        if seen.insert(*d) && content.get((project, *d))?.is_none() {
            adding += size;
        }
    }
    if adding == 0 {
        return Ok(());
    }
    let usage = tx
        .open_table(PROJECT_USAGE)?
        .get(project)?
        .map(|v| v.value())
        .unwrap_or(0);
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

/// The immutable-tag patterns of `project`.
pub(super) fn rules_in(tx: &WriteTransaction, project: &str) -> Result<Vec<String>> {
    let t = tx.open_table(IMMUTABLE_TAGS)?;
    let mut out = Vec::new();
    for row in t.range((project, "")..(project, HIGH))? {
        out.push(row?.0.value().1.to_string());
    }
    Ok(out)
}

/// Refuses changing `tag` of `repo` when a rule of its project protects it.
pub(super) fn check_immutable(
    tx: &WriteTransaction,
    repo: &RepoName,
    tag: &str,
    doing: &'static str,
) -> Result<()> {
    let rules = rules_in(tx, repo.project())?;
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

/// What `project` holds, counted from its links and manifests: digest → size.
fn held(tx: &WriteTransaction, project: &str) -> Result<BTreeMap<String, (u64, u64)>> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let blobs = tx.open_table(BLOBS)?;
    let bytes = tx.open_table(MANIFEST_BYTES)?;
    let prefix = format!("{project}/");
    let mine = |r: &str| r == project || r.starts_with(&prefix);
    // A project's repositories sort together from `project` up to `project/` + HIGH.
    let end = format!("{project}/{HIGH}");
    for row in tx
        .open_table(REPO_BLOBS)?
        .range((project, "")..(end.as_str(), ""))?
    {
        let (k, _) = row?;
        let (r, d) = k.value();
        if !mine(r) {
            continue;
        }
        let size = blobs.get(d)?.map(|v| v.value().0).unwrap_or(0);
        out.entry(d.to_string()).or_insert((size, 0)).1 += 1;
    }
    for row in tx
        .open_table(MANIFESTS)?
        .range((project, "")..(end.as_str(), ""))?
    {
        let (k, _) = row?;
        let (r, d) = k.value();
        if !mine(r) {
            continue;
        }
        let size = bytes.get(d)?.map(|v| v.value().len() as u64).unwrap_or(0);
        out.entry(d.to_string()).or_insert((size, 0)).1 += 1;
    }
    Ok(out)
}

/// Rebuilds `project`'s rows and counter from its links and manifests.
pub(super) fn recount(tx: &WriteTransaction, project: &str) -> Result<Recount> {
    let counted = tx
        .open_table(PROJECT_USAGE)?
        .get(project)?
        .map(|v| v.value())
        .unwrap_or(0);
    let held = held(tx, project)?;
    {
        let mut content = tx.open_table(PROJECT_CONTENT)?;
        let old: Vec<String> = content
            .range((project, "")..(project, HIGH))?
            .filter_map(|r| r.ok().map(|(k, _)| k.value().1.to_string()))
            .collect();
        for d in old {
            content.remove((project, d.as_str()))?;
        }
        for (d, v) in &held {
            content.insert((project, d.as_str()), *v)?;
        }
    }
    let recounted: u64 = held.values().map(|(s, _)| s).sum();
    let mut usage = tx.open_table(PROJECT_USAGE)?;
    if recounted == 0 {
        usage.remove(project)?;
    } else {
        usage.insert(project, recounted)?;
    }
    Ok(Recount { counted, recounted })
}

/// Recounts every project that holds anything (a database from before usage was counted).
pub(super) fn recount_all(tx: &WriteTransaction) -> Result<()> {
    let mut projects = std::collections::BTreeSet::new();
    for row in tx.open_table(REPO_BLOBS)?.iter()? {
        projects.insert(project_of(row?.0.value().0).to_string());
    }
    for row in tx.open_table(MANIFESTS)?.iter()? {
        projects.insert(project_of(row?.0.value().0).to_string());
    }
    for p in projects {
        recount(tx, &p)?;
    }
    Ok(())
}

impl RedbMeta {
    pub(super) fn quota_now(&self, project: &str) -> Result<ProjectQuota> {
        let tx = self.db().begin_read()?;
        let limits = tx.open_table(QUOTA_LIMITS)?;
        let own = limits.get(project)?.map(|v| match v.value() {
            UNLIMITED => QuotaSetting::Unlimited,
            n => QuotaSetting::Bytes(n),
        });
        let default = limits.get(DEFAULT)?.map(|v| v.value());
        let usage = tx
            .open_table(PROJECT_USAGE)?
            .get(project)?
            .map(|v| v.value())
            .unwrap_or(0);
        Ok(ProjectQuota {
            usage,
            own,
            default,
        })
    }

    pub(super) fn project_holds_now(&self, project: &str, digest: &Digest) -> Result<bool> {
        let tx = self.db().begin_read()?;
        let d = digest.to_string();
        Ok(tx
            .open_table(PROJECT_CONTENT)?
            .get((project, d.as_str()))?
            .is_some())
    }

    pub(super) fn set_quota_now(
        &self,
        project: Option<&str>,
        setting: Option<QuotaSetting>,
    ) -> Result<()> {
        let tx = self.db().begin_write()?;
        {
            let mut limits = tx.open_table(QUOTA_LIMITS)?;
            let key = project.unwrap_or(DEFAULT);
            match setting {
                None => {
                    limits.remove(key)?;
                }
                Some(QuotaSetting::Bytes(n)) => {
                    limits.insert(key, n.min(UNLIMITED - 1))?;
                }
                Some(QuotaSetting::Unlimited) if project.is_none() => {
                    limits.remove(key)?;
                }
                Some(QuotaSetting::Unlimited) => {
                    limits.insert(key, UNLIMITED)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn recount_usage_now(&self, project: &str) -> Result<Recount> {
        let tx = self.db().begin_write()?;
        let r = recount(&tx, project)?;
        tx.commit()?;
        Ok(r)
    }

    pub(super) fn immutable_rules_now(&self, project: &str) -> Result<Vec<ImmutableRule>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(IMMUTABLE_TAGS)?;
        let mut out = Vec::new();
        for row in t.range((project, "")..(project, HIGH))? {
            let (k, v) = row?;
            out.push(ImmutableRule {
                pattern: k.value().1.to_string(),
                created: v.value(),
            });
        }
        Ok(out)
    }

    pub(super) fn immutable_rule_add_now(&self, project: &str, pattern: &str) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let new = {
            let mut t = tx.open_table(IMMUTABLE_TAGS)?;
            let new = t.get((project, pattern))?.is_none();
            if new {
                t.insert((project, pattern), now())?;
            }
            new
        };
        tx.commit()?;
        Ok(new)
    }

    pub(super) fn immutable_rule_remove_now(&self, project: &str, pattern: &str) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let removed = tx
            .open_table(IMMUTABLE_TAGS)?
            .remove((project, pattern))?
            .is_some();
        tx.commit()?;
        Ok(removed)
    }

    pub(super) fn forget_project_now(&self, project: &str) -> Result<()> {
        let tx = self.db().begin_write()?;
        tx.open_table(QUOTA_LIMITS)?.remove(project)?;
        tx.open_table(super::retention::RETENTION)?
            .remove(project)?;
        {
            let mut t = tx.open_table(IMMUTABLE_TAGS)?;
            let doomed: Vec<String> = t
                .range((project, "")..(project, HIGH))?
                .filter_map(|r| r.ok().map(|(k, _)| k.value().1.to_string()))
                .collect();
            for p in doomed {
                t.remove((project, p.as_str()))?;
            }
        }
        recount(&tx, project)?;
        tx.commit()?;
        Ok(())
    }
}

/// Tags of `repo` that point to `digest`.
pub(super) fn tags_of(tx: &WriteTransaction, repo: &RepoName, digest: &str) -> Result<Vec<String>> {
    let r = repo.as_str();
    let mut out = Vec::new();
    for row in tx.open_table(TAGS)?.range((r, "")..(r, HIGH))? {
        let (k, v) = row?;
        if v.value() == digest {
            out.push(k.value().1.to_string());
        }
    }
    Ok(out)
}
