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
//! `webhooks.rs` and `replication.rs`; this file opens the file,
//! `schema.rs` versions it and `meta_store.rs` maps the `MetaStore` calls
//! onto the operations.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::redb::{Database, TableDefinition};

use super::read_cache::{CacheLimits, ReadCache};
use super::{MetaError, Result, StoreStep};
use crate::oci::{Digest, ManifestSummary};

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
mod meta_store;
mod pulls;
mod records;
mod replication;
mod retention;
mod schema;
#[cfg(test)]
mod tests;
pub mod token_keys;
mod usage;
mod webhooks;
mod writer;

pub use self::accounts::RedbAccounts;
pub use self::schema::SCHEMA_VERSION;

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
    /// Manifests, tags and blob links read since the last write
    /// (`meta/read_cache.rs`), if kept: every write drops them all. Shared
    /// by every clone, as the writes are.
    reads: Arc<std::sync::OnceLock<ReadCache>>,
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
            reads: Arc::default(),
        };
        meta.create_tables()?;
        Ok(meta)
    }

    /// Keeps up to `budget` bytes of manifests, tags and blob links read
    /// since the last write in memory (0: none), so that repeated pulls
    /// skip the database's table lookups. For every clone; the first
    /// budget set stays.
    pub fn with_read_cache(self, budget: u64) -> Self {
        if budget > 0 {
            self.reads.get_or_init(|| {
                // This process is the file's only writer, and each write
                // drops everything: no entry can go stale, so no time bound.
                let cache = ReadCache::new(CacheLimits {
                    budget,
                    ttl: Duration::MAX,
                });
                cache.resume();
                cache
            });
        }
        self
    }

    fn reads(&self) -> Option<&ReadCache> {
        self.reads.get()
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
        if let Some(c) = self.reads() {
            c.forget_all();
        }
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

    /// Runs a write on the writer thread (redb's writer blocks; `writer.rs`).
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbMeta) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_then(f, true).await
    }

    /// `write`, for writes to tables the read cache holds nothing of (pull
    /// counts, a cache's bookkeeping): what was read stays.
    async fn write_elsewhere<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbMeta) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_then(f, false).await
    }

    async fn write_then<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbMeta) -> Result<T> + Send + 'static,
        forget_reads: bool,
    ) -> Result<T> {
        let meta = self.clone();
        let _turn = self.writers.lock().await;
        self.writer
            .run(move || {
                // Committed (or not, or unwinding from a panic): what was
                // read before may be gone or moved. Emptied before the
                // caller hears of the write, so it reads what it wrote.
                let _forget = ForgetReads(meta.reads().filter(|_| forget_reads));
                f(&meta)
            })
            .await
    }
}

/// Empties the read cache when dropped: after a write's function returns,
/// and also when it panics.
struct ForgetReads<'a>(Option<&'a ReadCache>);

impl Drop for ForgetReads<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.forget_all();
        }
    }
}

/// Runs a `StoreStep` to completion from the blocking pool, inside a write
/// transaction; `what` names the step in its error.
fn run_step(handle: &tokio::runtime::Handle, step: StoreStep, what: &str) -> Result<()> {
    handle
        .block_on(step)
        .map_err(|e| MetaError::Store(format!("{what}: {e}")))
}
