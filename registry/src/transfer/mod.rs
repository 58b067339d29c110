//! Copies a registry's metadata from one backend to another through the
//! metadata interfaces alone (`MetaStore`, `CacheBook`, `AccountStore`),
//! so that any backend copies to any other: redb to PostgreSQL
//! (`berth migrate`), either to a fresh redb file and back (`berth backup`,
//! `berth restore`). `count.rs` recounts both sides per kind after a copy;
//! `blobs.rs` copies and checks the blobs' bytes.
//!
//! Owns: the order a copy writes in (accounts and projects first, then each
//! repository's links and manifests, then the rules that could refuse those
//! writes: quotas, immutable tags), and the rule that a copy lands only in
//! an empty target. Must not touch: a backend's tables (it sees none), the
//! controller's records (the composition root copies those beside this).
//!
//! Not copied, by design: uploads in progress (the source is stopped; a
//! client restarts an interrupted upload), the login throttle's counters
//! (they expire within minutes), the token signing keys (tokens live
//! minutes; clients ask for new ones), webhook events not yet delivered and
//! the delivery logs (stop the registry once its queues drained). Times the target records as it writes (when a
//! blob was linked, a manifest pushed) are the copy's: GC's grace window
//! and age-based retention rules count from the copy, so both keep more,
//! never less.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::auth::store::{AccountError, AccountStore, IfRole};
use crate::meta::{CacheBook, MetaError, MetaStore, References, TagClockOwner};
use crate::oci::{RepoName, Tag};

mod blobs;
mod count;

pub use self::blobs::{check_blobs, copy_blobs, BlobCopy};
pub use self::count::{count, ensure_empty, linked_blobs, Counts};

/// What a copy reads from or writes to: one backend's stores.
#[derive(Clone)]
pub struct Stores {
    pub meta: Arc<dyn MetaStore>,
    pub cache: Arc<dyn CacheBook>,
    pub accounts: Arc<dyn AccountStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("accounts: {0}")]
    Accounts(#[from] AccountError),
    #[error("blob {digest}: {message}")]
    Blob { digest: String, message: String },
    /// The target holds data already; nothing was written.
    #[error("{0}")]
    NotEmpty(String),
    #[error("{0}")]
    Corrupt(String),
}

pub type Result<T, E = TransferError> = std::result::Result<T, E>;

/// Told what a long copy is doing (the command line prints it on stderr).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// How many entries one read of a paged listing asks for.
const PAGE: usize = 1000;

/// Every repository, in name order.
pub async fn repositories(meta: &dyn MetaStore) -> Result<Vec<String>> {
    let mut out = Vec::new();
    loop {
        let last = out.last().cloned();
        let (page, more) = meta.catalog(last.as_deref(), PAGE, &|_| true).await?;
        let empty = page.is_empty();
        out.extend(page);
        if !more || empty {
            return Ok(out);
        }
    }
}

/// Copies every record of `from` into `to`, which must be empty
/// (`ensure_empty` first; the caller checks, so that it can check the
/// controller's records too before anything is written).
pub async fn copy(from: &Stores, to: &Stores, progress: Progress<'_>) -> Result<()> {
    copy_accounts(from, to, progress).await?;
    let repos = repositories(from.meta.as_ref()).await?;
    let mut projects: BTreeSet<String> = from
        .accounts
        .load()
        .await?
        .projects
        .into_iter()
        .map(|p| p.name)
        .collect();
    for (i, name) in repos.iter().enumerate() {
        progress(&format!("repository {}/{}: {name}", i + 1, repos.len()));
        let repo = parse_repo(name)?;
        projects.insert(repo.project().to_string());
        copy_repository(from.meta.as_ref(), to.meta.as_ref(), &repo).await?;
    }
    progress("quotas, immutable-tag and retention rules");
    copy_rules(from.meta.as_ref(), to.meta.as_ref(), &projects).await?;
    progress("GC history, webhooks, replication policies and executions");
    copy_history(from.meta.as_ref(), to.meta.as_ref()).await?;
    progress("audit log");
    copy_audit(from.accounts.as_ref(), to.accounts.as_ref()).await?;
    progress("pull-through cache records");
    copy_cache(from.cache.as_ref(), to.cache.as_ref()).await?;
    Ok(())
}

fn parse_repo(name: &str) -> Result<RepoName> {
    name.parse()
        .map_err(|e| TransferError::Corrupt(format!("repository name {name}: {e}")))
}

/// Accounts, projects, memberships and robots, as stored (password and
/// secret hashes included, so every credential keeps working).
async fn copy_accounts(from: &Stores, to: &Stores, progress: Progress<'_>) -> Result<()> {
    let records = from.accounts.load().await?;
    progress(&format!(
        "{} accounts, {} projects, {} robots",
        records.users.len(),
        records.projects.len(),
        records.robots.len()
    ));
    for user in &records.users {
        to.accounts.create_user(user).await?;
    }
    for project in &records.projects {
        to.accounts.create_project(project).await?;
    }
    for (project, user, role) in &records.members {
        to.accounts
            .set_member(project, user, *role, IfRole::Any)
            .await?;
    }
    for robot in &records.robots {
        to.accounts.create_robot(robot).await?;
    }
    Ok(())
}

/// One repository: its blob links, its manifests with their tags (which
/// also makes its referrers), and its pull counts.
async fn copy_repository(from: &dyn MetaStore, to: &dyn MetaStore, repo: &RepoName) -> Result<()> {
    let view = from.gc_view(repo).await?;
    for digest in view.links.keys() {
        let Some(size) = from.blob_size(digest).await? else {
            // A link without a record cannot be served; GC drops it.
            tracing::warn!(%repo, %digest, "a link to a blob without a record is not copied");
            continue;
        };
        to.record_and_link(repo, digest, size).await?;
    }
    let mut tags: BTreeMap<String, Vec<Tag>> = BTreeMap::new();
    for (tag, digest) in from.tags_with_digests(repo).await? {
        let tag = tag
            .parse()
            .map_err(|e| TransferError::Corrupt(format!("tag {repo}:{tag}: {e}")))?;
        tags.entry(digest).or_default().push(tag);
    }
    for (digest, (_, summary)) in &view.manifests {
        let Some(stored) = from.get_manifest(repo, digest).await? else {
            continue;
        };
        let summary = match summary {
            Some(s) => s.clone(),
            None => from.manifest_summary(digest).await?.ok_or_else(|| {
                TransferError::Corrupt(format!("manifest {repo}@{digest} has no summary"))
            })?,
        };
        let tagged = tags.remove(digest.to_string().as_str()).unwrap_or_default();
        // A copy, not a push: what it references arrives in this same copy.
        let _ = to
            .put_manifest(
                repo,
                digest,
                stored.bytes,
                &summary,
                &tagged,
                References::OnDemand,
            )
            .await?;
    }
    if let Some((digest, _)) = tags.into_iter().next() {
        return Err(TransferError::Corrupt(format!(
            "a tag of {repo} points to {digest}, which the repository does not hold"
        )));
    }
    let pulls = from.pulls(repo).await?;
    if !pulls.is_empty() {
        to.pulls_record(&pulls).await?;
    }
    Ok(())
}

/// The registry's default limit, each project's own limit and immutable-tag
/// rules, and every retention policy; after the content, which they could
/// otherwise refuse.
async fn copy_rules(
    from: &dyn MetaStore,
    to: &dyn MetaStore,
    projects: &BTreeSet<String>,
) -> Result<()> {
    let mut default_done = false;
    for project in projects {
        let quota = from.quota(project).await?;
        if !default_done {
            if let Some(bytes) = quota.default {
                to.set_quota(None, Some(crate::meta::quota::QuotaSetting::Bytes(bytes)))
                    .await?;
            }
            default_done = true;
        }
        if quota.own.is_some() {
            to.set_quota(Some(project), quota.own).await?;
        }
        for rule in from.immutable_rules(project).await? {
            to.immutable_rule_add(project, &rule.pattern).await?;
        }
    }
    for (project, policy) in from.retention_policies().await? {
        to.retention_policy_set(&project, Some(&policy)).await?;
    }
    Ok(())
}

/// GC's history, webhook endpoints, replication policies and their
/// executions (renumbered by the target in the same order).
async fn copy_history(from: &dyn MetaStore, to: &dyn MetaStore) -> Result<()> {
    let mut runs = from.gc_runs(usize::MAX).await?;
    runs.reverse();
    let keep = runs.len().max(1);
    for run in &runs {
        to.gc_run_record(run, keep).await?;
    }
    for webhook in from.webhooks(None).await? {
        to.webhook_put(&webhook).await?;
    }
    for policy in from.replications().await? {
        to.replication_put(&policy).await?;
        let mut executions = from.executions(Some(&policy.name), usize::MAX).await?;
        executions.reverse();
        for mut execution in executions {
            execution.id = to.execution_create(&execution).await?;
            to.execution_put(&execution).await?;
        }
    }
    Ok(())
}

/// The audit log, oldest first (the target numbers the events again, in
/// the same order).
async fn copy_audit(from: &dyn AccountStore, to: &dyn AccountStore) -> Result<()> {
    let mut after = 0;
    loop {
        let page = from.audit_page(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.id;
        for event in &page {
            to.append_audit(event).await?;
        }
    }
}

/// When upstream last confirmed each cached tag (the edge's clock and the
/// proxy-cache projects'), blobs' last reads, pins and prefetch jobs.
async fn copy_cache(from: &dyn CacheBook, to: &dyn CacheBook) -> Result<()> {
    for owner in [TagClockOwner::Edge, TagClockOwner::Proxy] {
        for (repo, tag, at_ms) in from.tag_clocks(owner).await? {
            to.set_tag_fetched(owner, &repo, &tag, at_ms).await?;
        }
    }
    let times = from.access_times().await?;
    if !times.is_empty() {
        to.put_access_times(&times).await?;
    }
    let mut pins: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (image, digest) in from.pins().await? {
        pins.entry(image).or_default().push(digest);
    }
    for (image, digests) in &pins {
        to.pin(image, digests).await?;
    }
    for job in from.jobs().await? {
        let id = serde_json::from_slice::<serde_json::Value>(&job)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_string)))
            .ok_or_else(|| TransferError::Corrupt("a prefetch job without an id".into()))?;
        to.put_job(&id, &job).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
