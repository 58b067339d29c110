//! The embedded `MetaStore`: one redb file, changed only in transactions.
//!
//! Table tree (keys → values):
//!
//! ```text
//! blobs            digest                      → (size, recorded_at)        the CAS index
//! repo_blobs       (repo, digest)              → linked_at                  what a repository may serve
//! blob_links       (digest, repo)              → ()                         repo_blobs reversed (GC's "linked anywhere?")
//! manifest_holders (digest, repo)              → ()                         manifests reversed (GC's "held anywhere?")
//! manifests        (repo, digest)              → (media_type, pushed_at)    manifests in a repository
//! manifest_bytes   digest                      → bytes                      manifest content, shared
//! manifest_refs    digest                      → JSON ManifestSummary       children, blobs, subject
//! tags             (repo, tag)                 → digest
//! referrers        (repo, subject, referrer)   → ()
//! repos            repo                        → created_at
//! webhooks         id                          → JSON Webhook               a project's endpoint
//! webhook_queue    (id, seq)                   → JSON {body, attempts, next_attempt_at}   the outbox
//! webhook_log      (id, seq)                   → JSON Delivery              the delivery log
//! webhook_seq      id                          → next seq
//! project_content  (project, digest)           → (size, holders)            what a project holds
//! project_usage    project                     → bytes                      sum of its sizes
//! quota_limits     project ("" = default)      → bytes (u64::MAX: none)     storage limits
//! immutable_tags   (project, tag pattern)      → created_at                 immutable-tag rules
//! replications     name                        → JSON ReplicationPolicy     a replication policy
//! replication_runs (name, id)                  → JSON Execution             its executions
//! pulls            (repo, digest)              → (count, last_pulled_at)    pulls, written in batches
//! gc_runs          id                          → JSON GcRun                 GC's history, the newest kept
//! retention        project                     → JSON RetentionPolicy       retention rules
//! auth_token_keys  id                          → JSON {secret, created_ms, signs_from_ms}   token keys (`token_keys.rs`)
//! schema           "registry"                  → u64                        format version (SCHEMA_VERSION)
//! ```
//!
//! The format is versioned: `open` refuses a database written by a newer berth,
//! and brings an older one up to `SCHEMA_VERSION`.
//! The same file holds the accounts (`accounts.rs`, `audit.rs`: `RedbMeta`
//! implements `auth::store::AccountStore` through `accounts`) and a
//! pull-through cache's bookkeeping (`cache.rs`: `RedbMeta` implements
//! `CacheBook`). The controller's embedded store keeps its own tables in it
//! and versions them likewise (`ctl_meta`); the composition root hands it
//! the file through `database`.
//!
//! Reads run where they are called (redb reads are short and never wait for
//! the writer); writes run on one thread (`writer.rs`), one at a time. The
//! operations are in `blobs.rs`, `manifests.rs`, `listings.rs`, `pulls.rs`,
//! `gc.rs` (with GC's history), `usage.rs` (quotas, immutable tags), `retention.rs`,
//! `webhooks.rs` and `replication.rs`;
//! this file opens the file and maps the `MetaStore` calls onto them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ::redb::{Database, ReadableTable, TableDefinition};
use async_trait::async_trait;
use bytes::Bytes;

use super::quota::{ImmutableRule, ProjectQuota, QuotaSetting, Recount};
use super::retention::RetentionPolicy;
use super::{
    Attempt, BadReference, BlobRecord, DeleteStep, Delivery, Execution, GcRun, LinkOutcome,
    MetaError, MetaStore, NewDelivery, OutboxEvent, PreviousSecret, PullCount, QueuedEvent,
    References, ReplicationPolicy, RepoGcView, RepoSweep, RepoSwept, Result, SealedSecret, Seen,
    StoreStep, StoredManifest, TagEntry, TagRecord, Visible, Webhook,
};
use crate::oci::{Descriptor, Digest, ManifestSummary, RepoName, Tag};

mod accounts;
mod audit;
mod blobs;
#[cfg(test)]
mod boundary;
mod cache;
mod deleting;
mod gc;
mod listings;
mod manifests;
mod pulls;
mod records;
mod replication;
mod retention;
#[cfg(test)]
mod tests;
pub mod token_keys;
mod usage;
mod webhooks;
mod writer;

pub use self::accounts::RedbAccounts;

pub(crate) const BLOBS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("blobs");
pub(crate) const REPO_BLOBS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("repo_blobs");
pub(crate) const MANIFESTS: TableDefinition<(&str, &str), (&str, u64)> =
    TableDefinition::new("manifests");
pub(crate) const MANIFEST_BYTES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("manifest_bytes");
pub(crate) const MANIFEST_REFS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("manifest_refs");
pub(crate) const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
pub(crate) const REFERRERS: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("referrers");
pub(crate) const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
pub(crate) const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhooks");
pub(crate) const WEBHOOK_QUEUE: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("webhook_queue");
pub(crate) const WEBHOOK_LOG: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("webhook_log");
pub(crate) const WEBHOOK_SEQ: TableDefinition<&str, u64> = TableDefinition::new("webhook_seq");
pub(crate) const REPLICATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("replications");
pub(crate) const REPLICATION_RUNS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("replication_runs");
pub(crate) const BLOB_LINKS: TableDefinition<(&str, &str), ()> = TableDefinition::new("blob_links");
pub(crate) const MANIFEST_HOLDERS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("manifest_holders");
pub(crate) const PULLS: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("pulls");
pub(crate) const GC_RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("gc_runs");
const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("schema");

/// The registry's metadata format. 1: the first release (which wrote no version);
/// 2: credentials sealed at rest, files private (the data itself is unchanged);
/// 3: per-project usage counted (`usage.rs`; recounted from the links on
/// upgrade), and `blob_links` and `manifest_holders`, the reverse of
/// `repo_blobs` and `manifests` (built from them on upgrade; a berth that
/// does not keep them must not write to this file, hence the version).
pub const SCHEMA_VERSION: u64 = 3;

/// Sorts after every character allowed in digests, tags and name components.
pub(crate) const HIGH: &str = "\u{10ffff}";

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self { MetaError::Db(e.to_string()) }
        }
    )*};
}
from_redb!(
    ::redb::Error,
    ::redb::DatabaseError,
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);

fn corrupt<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Corrupt(e.to_string())
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse().map_err(corrupt)
}

fn decode_summary(bytes: &[u8]) -> Option<ManifestSummary> {
    serde_json::from_slice(bytes).ok()
}

#[derive(Clone)]
pub struct RedbMeta {
    /// Shared by every clone, so that `reopen` reaches them all.
    db: Arc<RwLock<Arc<Database>>>,
    path: PathBuf,
    /// Writes wait here, first come first served, before taking redb's
    /// writer (which does not queue fairly): a push waits for the write in
    /// progress, never for a run of GC batches. Blob records queue on the
    /// writer thread directly, to be taken in groups (`records.rs`).
    writers: Arc<tokio::sync::Mutex<()>>,
    /// The digests GC's store sweep is deleting (`deleting.rs`).
    deleting: Arc<deleting::Deleting>,
    /// GC's sweeps so far: every few is durable (`gc.rs`, `unsynced`).
    gc_sweeps: Arc<std::sync::atomic::AtomicU64>,
    /// The thread writes run on (`writer.rs`).
    writer: Arc<writer::Writer>,
}

/// redb's page cache. Reads that miss it are served by the kernel's page
/// cache; a larger one made a collection over a large store hold hundreds
/// of megabytes (`benches/gc_scale`).
const CACHE_BYTES: usize = 64 << 20;

impl std::fmt::Debug for RedbMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbMeta")
    }
}

impl RedbMeta {
    /// Opens (or creates) the file at `path`, private to this user, and
    /// brings its format up to `SCHEMA_VERSION`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            crate::private::private_dir(parent)
                .map_err(|e| MetaError::Db(format!("{}: {e}", parent.display())))?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                ::redb::DatabaseError::DatabaseAlreadyOpen => MetaError::Db(format!(
                "{} is in use by another berth process; stop it first or use another --data-dir",
                path.display()
            )),
                other => MetaError::Db(format!("{}: {other}", path.display())),
            })?;
        crate::private::private_file(path)
            .map_err(|e| MetaError::Db(format!("{}: {e}", path.display())))?;
        let meta = RedbMeta {
            db: Arc::new(RwLock::new(Arc::new(db))),
            path: path.to_path_buf(),
            writers: Arc::default(),
            deleting: Arc::default(),
            gc_sweeps: Arc::default(),
            writer: Arc::default(),
        };
        meta.create_tables()?;
        Ok(meta)
    }

    fn db(&self) -> Arc<Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The underlying database, for modules that keep their own tables in the
    /// same file (the controller, the edge cache). After `reopen`
    /// this is the new one: ask again rather than keep it.
    pub fn database(&self) -> Arc<Database> {
        self.db()
    }

    /// Opens a new, empty database at the path it was opened from in place
    /// of the current one, for every clone: what the edge cache does when
    /// its directory was removed under it (the old file is gone but still
    /// open, and nothing written to it would survive a restart).
    /// Transactions already begun finish on the old file.
    pub fn reopen(&self) -> Result<()> {
        let fresh = RedbMeta::open(&self.path)?;
        let db = fresh.db();
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = db;
        Ok(())
    }

    /// Holds the write lock until the transaction is dropped (tests that
    /// need a writer to wait).
    #[cfg(test)]
    pub(crate) fn hold_write_lock(&self) -> Result<::redb::WriteTransaction> {
        Ok(self.db().begin_write()?)
    }

    /// Writes that have taken their turn so far (a test holding the lock
    /// above learns from it that a request has reached its commit).
    #[cfg(test)]
    pub(crate) fn writes_begun(&self) -> u64 {
        self.writer.begun.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn create_tables(&self) -> Result<()> {
        let tx = self.db().begin_write()?;
        tx.open_table(BLOBS)?;
        tx.open_table(REPO_BLOBS)?;
        tx.open_table(MANIFESTS)?;
        tx.open_table(MANIFEST_BYTES)?;
        tx.open_table(MANIFEST_REFS)?;
        tx.open_table(TAGS)?;
        tx.open_table(REFERRERS)?;
        tx.open_table(REPOS)?;
        tx.open_table(WEBHOOKS)?;
        tx.open_table(WEBHOOK_QUEUE)?;
        tx.open_table(WEBHOOK_LOG)?;
        tx.open_table(WEBHOOK_SEQ)?;
        tx.open_table(usage::PROJECT_CONTENT)?;
        tx.open_table(usage::PROJECT_USAGE)?;
        tx.open_table(usage::QUOTA_LIMITS)?;
        tx.open_table(usage::IMMUTABLE_TAGS)?;
        tx.open_table(REPLICATIONS)?;
        tx.open_table(REPLICATION_RUNS)?;
        tx.open_table(BLOB_LINKS)?;
        tx.open_table(MANIFEST_HOLDERS)?;
        tx.open_table(GC_RUNS)?;
        tx.open_table(PULLS)?;
        tx.open_table(retention::RETENTION)?;
        // A database without a version was written by the first release, or
        // is new: new when it holds no blob and no repository.
        let fresh = {
            use ::redb::ReadableTableMetadata;
            tx.open_table(BLOBS)?.is_empty()? && tx.open_table(REPOS)?.is_empty()?
        };
        let upgrade_from = {
            let mut schema = tx.open_table(SCHEMA)?;
            let found = schema.get("registry")?.map(|v| v.value());
            let found = match found {
                Some(v) => v,
                None if fresh => SCHEMA_VERSION,
                None => 1,
            };
            if found > SCHEMA_VERSION {
                return Err(MetaError::Db(format!(
                    "this data directory was written by a newer berth (metadata format {found}; \
                     this berth reads formats up to {SCHEMA_VERSION}): run the newer berth, or \
                     restore a backup taken before the upgrade"
                )));
            }
            if found < SCHEMA_VERSION {
                tracing::info!(
                    from = found,
                    to = SCHEMA_VERSION,
                    "upgrading the metadata format"
                );
            }
            if found < 3 {
                build_reverse_indexes(&tx)?;
            }
            schema.insert("registry", SCHEMA_VERSION)?;
            found
        };
        if upgrade_from < 3 {
            usage::recount_all(&tx)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs a write on the writer thread (redb's writer blocks; `writer.rs`).
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbMeta) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let meta = self.clone();
        let _turn = self.writers.lock().await;
        self.writer.run(move || f(&meta)).await
    }
}

/// Builds `blob_links` and `manifest_holders` from `repo_blobs` and
/// `manifests` (the upgrade to format 3).
fn build_reverse_indexes(tx: &::redb::WriteTransaction) -> Result<()> {
    let links = tx.open_table(REPO_BLOBS)?;
    let mut index = tx.open_table(BLOB_LINKS)?;
    for row in links.iter()? {
        let (k, _) = row?;
        let (repo, digest) = k.value();
        index.insert((digest, repo), ())?;
    }
    let manifests = tx.open_table(MANIFESTS)?;
    let mut holders = tx.open_table(MANIFEST_HOLDERS)?;
    for row in manifests.iter()? {
        let (k, _) = row?;
        let (repo, digest) = k.value();
        holders.insert((digest, repo), ())?;
    }
    Ok(())
}

/// Runs a `StoreStep` to completion from the blocking pool, inside a write
/// transaction; `what` names the step in its error.
fn run_step(handle: &tokio::runtime::Handle, step: StoreStep, what: &str) -> Result<()> {
    handle
        .block_on(step)
        .map_err(|e| MetaError::Store(format!("{what}: {e}")))
}

#[async_trait]
impl MetaStore for RedbMeta {
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        self.linked_blob_now(repo, digest)
    }
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.blob_size_now(digest)
    }
    async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<LinkOutcome> {
        let (r, d) = (repo.clone(), digest.clone());
        self.write(move |m| m.link_blob_now(&r, &d)).await
    }
    async fn record_and_link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<bool> {
        self.record_in_group(repo, digest, size, None).await
    }
    async fn place_record_and_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        place: StoreStep,
    ) -> Result<bool> {
        self.record_in_group(repo, digest, size, Some(place)).await
    }
    async fn mount(
        &self,
        to: &RepoName,
        digest: &Digest,
        sources: &[String],
    ) -> Result<Option<u64>> {
        let (t, d, s) = (to.clone(), digest.clone(), sources.to_vec());
        self.write(move |m| m.mount_now(&t, &d, &s)).await
    }
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (r, d) = (repo.clone(), digest.clone());
        self.write(move |m| m.unlink_blob_now(&r, &d)).await
    }
    async fn forget_blob(&self, digest: &Digest, delete: StoreStep) -> Result<Option<u64>> {
        let d = digest.clone();
        let handle = tokio::runtime::Handle::current();
        self.write(move |m| m.forget_blob_now(&d, &handle, delete))
            .await
    }
    async fn blob_records(&self) -> Result<Vec<BlobRecord>> {
        self.blob_records_now()
    }
    async fn blob_records_page(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>> {
        self.blob_records_page_now(after, limit)
    }

    async fn put_manifest_queued(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: Bytes,
        summary: &ManifestSummary,
        tags: &[Tag],
        references: References,
        event: Option<&OutboxEvent>,
    ) -> Result<std::result::Result<u64, BadReference>> {
        let (r, d, s, t) = (repo.clone(), digest.clone(), summary.clone(), tags.to_vec());
        let e = event.cloned();
        self.write(move |m| m.put_manifest_now(&r, &d, &bytes, &s, &t, references, e.as_ref()))
            .await
    }
    async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        self.get_manifest_now(repo, digest)
    }
    async fn manifest_summary(&self, digest: &Digest) -> Result<Option<ManifestSummary>> {
        self.manifest_summary_now(digest)
    }
    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        self.resolve_tag_now(repo, tag)
    }
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (r, d) = (repo.clone(), digest.clone());
        self.write(move |m| m.delete_manifest_now(&r, &d)).await
    }
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let (r, t) = (repo.clone(), tag.clone());
        self.write(move |m| m.delete_tag_now(&r, &t)).await
    }
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>> {
        self.referrers_now(repo, subject)
    }
    async fn linked_manifest_type(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        self.linked_manifest_type_now(repo, digest)
    }
    async fn indexes_containing(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>> {
        self.indexes_containing_now(repo, child)
    }

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        self.repo_exists_now(repo)
    }
    async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)> {
        self.tags_now(repo, last, n)
    }
    async fn tags_with_digests(&self, repo: &RepoName) -> Result<Vec<(String, String)>> {
        self.tags_with_digests_now(repo)
    }
    async fn all_tags(&self) -> Result<Vec<TagEntry>> {
        self.all_tags_now()
    }
    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)> {
        self.catalog_now(last, n, visible)
    }
    async fn repos_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        self.repos_with_prefix_now(prefix)
    }
    async fn delete_repo(&self, repo: &RepoName) -> Result<bool> {
        let r = repo.clone();
        self.write(move |m| m.delete_repo_now(&r)).await
    }

    async fn gc_view(&self, repo: &RepoName) -> Result<RepoGcView> {
        self.gc_view_now(repo)
    }
    async fn gc_sweep_manifests(
        &self,
        repo: &RepoName,
        dead: &[Seen],
        seen_at: u64,
    ) -> Result<Vec<Digest>> {
        let (r, d) = (repo.clone(), dead.to_vec());
        self.write(move |m| m.gc_sweep_manifests_now(&r, &d, seen_at))
            .await
    }
    async fn gc_sweep_links(&self, repo: &RepoName, dead: &[Seen], seen_at: u64) -> Result<u64> {
        let (r, d) = (repo.clone(), dead.to_vec());
        self.write(move |m| m.gc_sweep_links_now(&r, &d, seen_at))
            .await
    }
    async fn gc_sweep_repos(&self, sweeps: &[RepoSweep], seen_at: u64) -> Result<Vec<RepoSwept>> {
        let s = sweeps.to_vec();
        self.write(move |m| m.gc_sweep_repos_now(&s, seen_at)).await
    }
    async fn gc_drop_blobs(&self, candidates: &[Digest], cutoff: u64) -> Result<Vec<BlobRecord>> {
        let c = candidates.to_vec();
        self.write(move |m| m.gc_drop_blobs_now(&c, cutoff)).await
    }
    async fn delete_unrecorded(&self, digests: &[Digest], delete: DeleteStep) -> Result<u64> {
        self.delete_unrecorded_claimed(digests, delete).await
    }
    async fn unrecorded(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.unrecorded_now(digests)
    }

    async fn quota(&self, project: &str) -> Result<ProjectQuota> {
        self.quota_now(project)
    }
    async fn project_holds(&self, project: &str, digest: &Digest) -> Result<bool> {
        self.project_holds_now(project, digest)
    }
    async fn set_quota(&self, project: Option<&str>, setting: Option<QuotaSetting>) -> Result<()> {
        let p = project.map(str::to_string);
        self.write(move |m| m.set_quota_now(p.as_deref(), setting))
            .await
    }
    async fn recount_usage(&self, project: &str) -> Result<Recount> {
        let p = project.to_string();
        self.write(move |m| m.recount_usage_now(&p)).await
    }
    async fn immutable_rules(&self, project: &str) -> Result<Vec<ImmutableRule>> {
        self.immutable_rules_now(project)
    }
    async fn immutable_rule_add(&self, project: &str, pattern: &str) -> Result<bool> {
        let (p, t) = (project.to_string(), pattern.to_string());
        self.write(move |m| m.immutable_rule_add_now(&p, &t)).await
    }
    async fn immutable_rule_remove(&self, project: &str, pattern: &str) -> Result<bool> {
        let (p, t) = (project.to_string(), pattern.to_string());
        self.write(move |m| m.immutable_rule_remove_now(&p, &t))
            .await
    }
    async fn forget_project(&self, project: &str) -> Result<()> {
        let p = project.to_string();
        self.write(move |m| m.forget_project_now(&p)).await
    }

    async fn pulls_record(&self, counts: &[PullCount]) -> Result<()> {
        let c = counts.to_vec();
        self.write(move |m| m.pulls_record_now(&c)).await
    }
    async fn pulls(&self, repo: &RepoName) -> Result<Vec<PullCount>> {
        self.pulls_now(repo)
    }
    async fn tag_records(&self, repo: &RepoName) -> Result<Vec<TagRecord>> {
        self.tag_records_now(repo)
    }

    async fn retention_policy(&self, project: &str) -> Result<Option<RetentionPolicy>> {
        self.retention_policy_now(project)
    }
    async fn retention_policies(&self) -> Result<Vec<(String, RetentionPolicy)>> {
        self.retention_policies_now()
    }
    async fn retention_policy_set(
        &self,
        project: &str,
        policy: Option<&RetentionPolicy>,
    ) -> Result<()> {
        let (p, r) = (project.to_string(), policy.cloned());
        self.write(move |m| m.retention_policy_set_now(&p, r.as_ref()))
            .await
    }
    async fn retention_untag(
        &self,
        repo: &RepoName,
        tag: &str,
        digest: &str,
        override_immutable: bool,
    ) -> Result<bool> {
        let (r, t, d) = (repo.clone(), tag.to_string(), digest.to_string());
        self.write(move |m| m.retention_untag_now(&r, &t, &d, override_immutable))
            .await
    }

    async fn gc_run_record(&self, run: &GcRun, keep: usize) -> Result<u64> {
        let r = run.clone();
        self.write(move |m| m.gc_run_record_now(&r, keep)).await
    }
    async fn gc_runs(&self, limit: usize) -> Result<Vec<GcRun>> {
        self.gc_runs_now(limit)
    }

    async fn webhook_put(&self, webhook: &Webhook) -> Result<()> {
        let w = webhook.clone();
        self.write(move |m| m.webhook_put_now(&w)).await
    }
    async fn webhook_get(&self, id: &str) -> Result<Option<Webhook>> {
        self.webhook_get_now(id)
    }
    async fn webhooks(&self, project: Option<&str>) -> Result<Vec<Webhook>> {
        self.webhooks_now(project)
    }
    async fn webhook_delete(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |m| m.webhook_delete_now(&id)).await
    }
    async fn webhook_rotate(
        &self,
        id: &str,
        current: &SealedSecret,
        secret: &SealedSecret,
        previous: Option<&PreviousSecret>,
    ) -> Result<bool> {
        let (id, current, secret, previous) = (
            id.to_string(),
            current.clone(),
            secret.clone(),
            previous.cloned(),
        );
        self.write(move |m| {
            m.webhook_change_now(&id, |w| {
                if w.secret != current {
                    return false;
                }
                w.secret = secret;
                w.previous = previous;
                true
            })
        })
        .await
    }
    async fn webhook_drop_previous(&self, id: &str, until: u64) -> Result<bool> {
        let id = id.to_string();
        self.write(move |m| {
            m.webhook_change_now(&id, |w| {
                if w.previous.as_ref().is_none_or(|p| p.until != until) {
                    return false;
                }
                w.previous = None;
                true
            })
        })
        .await
    }
    async fn outbox_push(&self, events: &[NewDelivery], cap: u64, log_keep: u64) -> Result<u64> {
        let e = events.to_vec();
        self.write(move |m| m.outbox_push_now(&e, cap, log_keep))
            .await
    }
    async fn outbox_heads(&self) -> Result<Vec<QueuedEvent>> {
        self.outbox_heads_now()
    }
    async fn outbox_attempt(&self, webhook: &str, seq: u64, attempt: &Attempt) -> Result<bool> {
        let (w, a) = (webhook.to_string(), attempt.clone());
        self.write(move |m| m.outbox_attempt_now(&w, seq, &a)).await
    }
    async fn webhook_deliveries(&self, webhook: &str, limit: usize) -> Result<Vec<Delivery>> {
        self.webhook_deliveries_now(webhook, limit)
    }

    async fn replication_put(&self, policy: &ReplicationPolicy) -> Result<()> {
        let p = policy.clone();
        self.write(move |m| m.replication_put_now(&p)).await
    }
    async fn replication_get(&self, name: &str) -> Result<Option<ReplicationPolicy>> {
        self.replication_get_now(name)
    }
    async fn replications(&self) -> Result<Vec<ReplicationPolicy>> {
        self.replications_now()
    }
    async fn reseal(
        &self,
        sealer: Arc<dyn crate::sealing::Sealer>,
    ) -> Result<crate::sealing::ResealReport> {
        self.write(move |m| m.reseal_now(sealer.as_ref())).await
    }

    async fn replication_delete(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.write(move |m| m.replication_delete_now(&name)).await
    }
    async fn execution_create(&self, execution: &Execution) -> Result<u64> {
        let e = execution.clone();
        self.write(move |m| m.execution_create_now(&e)).await
    }
    async fn execution_put(&self, execution: &Execution) -> Result<()> {
        let e = execution.clone();
        self.write(move |m| m.execution_put_now(&e)).await
    }
    async fn execution_get(&self, policy: &str, id: u64) -> Result<Option<Execution>> {
        self.execution_get_now(policy, id)
    }
    async fn executions(&self, policy: Option<&str>, limit: usize) -> Result<Vec<Execution>> {
        self.executions_now(policy, limit)
    }
}
