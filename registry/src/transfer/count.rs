//! The recount that checks a copy: how many records of each kind one
//! backend holds, read through the interfaces the copy used, so that the
//! source's and the target's counts line up kind by kind. And the check
//! that a target is empty before a copy writes into it.

use std::collections::{BTreeMap, BTreeSet};

use super::{repositories, Result, Stores, TransferError, PAGE};
use crate::meta::{BlobRecord, MetaStore, TagClockOwner};

/// Records per kind, by kind.
pub type Counts = BTreeMap<String, u64>;

/// Counts every kind a copy carries.
pub async fn count(stores: &Stores) -> Result<Counts> {
    let meta = stores.meta.as_ref();
    let mut c = Counts::new();
    let mut add = |kind: &str, n: usize| *c.entry(kind.to_string()).or_insert(0) += n as u64;
    let records = stores.accounts.load().await?;
    add("accounts", records.users.len());
    add("projects", records.projects.len());
    add("project members", records.members.len());
    add("robots", records.robots.len());
    let repos = repositories(meta).await?;
    add("repositories", repos.len());
    let mut linked = BTreeSet::new();
    let mut projects: BTreeSet<String> = records.projects.iter().map(|p| p.name.clone()).collect();
    for name in &repos {
        let repo = super::parse_repo(name)?;
        projects.insert(repo.project().to_string());
        let view = meta.gc_view(&repo).await?;
        add("blob links", view.links.len());
        add("manifests", view.manifests.len());
        linked.extend(view.links.into_keys());
        add("pull counts", meta.pulls(&repo).await?.len());
    }
    add("tags", meta.all_tags().await?.len());
    // Records no repository links are GC's to drop, and not copied.
    let blobs = meta
        .blob_records()
        .await?
        .into_iter()
        .filter(|b| linked.contains(&b.digest))
        .count();
    add("blobs (linked)", blobs);
    for project in &projects {
        let quota = meta.quota(project).await?;
        add("project quotas", usize::from(quota.own.is_some()));
        add(
            "immutable-tag rules",
            meta.immutable_rules(project).await?.len(),
        );
    }
    add("retention policies", meta.retention_policies().await?.len());
    add("GC runs", meta.gc_runs(usize::MAX).await?.len());
    add("webhooks", meta.webhooks(None).await?.len());
    let policies = meta.replications().await?;
    add("replication policies", policies.len());
    for p in &policies {
        add(
            "replication executions",
            meta.executions(Some(&p.name), usize::MAX).await?.len(),
        );
    }
    let mut after = 0;
    let mut events = 0;
    loop {
        let page = stores.accounts.audit_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        events += page.len();
    }
    add("audit events", events);
    for (kind, owner) in [
        ("edge tag clocks", TagClockOwner::Edge),
        ("proxy tag clocks", TagClockOwner::Proxy),
    ] {
        add(kind, stores.cache.tag_clocks(owner).await?.len());
    }
    add(
        "cache access times",
        stores.cache.access_times().await?.len(),
    );
    add("cache pins", stores.cache.pins().await?.len());
    add("prefetch jobs", stores.cache.jobs().await?.len());
    Ok(c)
}

/// Refuses (`NotEmpty`, naming what is there) a target that holds any
/// account, project, robot, repository, blob record, rule, webhook,
/// replication policy, GC run or audit event.
pub async fn ensure_empty(target: &Stores, name: &str) -> Result<()> {
    let meta = target.meta.as_ref();
    let records = target.accounts.load().await?;
    let mut found = Vec::new();
    let mut note = |what: &str, n: usize| {
        if n > 0 {
            found.push(format!("{n} {what}"));
        }
    };
    note("accounts", records.users.len());
    note("projects", records.projects.len());
    note("robots", records.robots.len());
    note(
        "repositories",
        meta.catalog(None, 1, &|_| true).await?.0.len(),
    );
    note("blob records", meta.blob_records_page(None, 1).await?.len());
    note("retention policies", meta.retention_policies().await?.len());
    note("webhooks", meta.webhooks(None).await?.len());
    note("replication policies", meta.replications().await?.len());
    note("GC runs", meta.gc_runs(1).await?.len());
    note(
        "audit events",
        target.accounts.audit_page(0, 1).await?.len(),
    );
    if found.is_empty() {
        return Ok(());
    }
    Err(TransferError::NotEmpty(format!(
        "{name} is not empty (it holds {}); berth copies only into an empty target, \
         so that nothing there is mixed with or overwritten by the copy",
        found.join(", ")
    )))
}

/// The blob records some repository links: the blobs a copy of the
/// metadata needs (the others are GC's to drop).
pub async fn linked_blobs(meta: &dyn MetaStore) -> Result<Vec<BlobRecord>> {
    let mut linked = BTreeSet::new();
    for name in repositories(meta).await? {
        let view = meta.gc_view(&super::parse_repo(&name)?).await?;
        linked.extend(view.links.into_keys());
    }
    Ok(meta
        .blob_records()
        .await?
        .into_iter()
        .filter(|b| linked.contains(&b.digest))
        .collect())
}
