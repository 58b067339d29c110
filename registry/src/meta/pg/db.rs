//! What every `PgMeta` module shares: `PgMeta` itself, its transactions
//! and the conversions between the database's values and the domain's.
//!
//! Writes: `MetaStore` promises that writes are serialised (one writer at a
//! time) and that a `StoreStep` runs under the write lock, across every
//! replica. Each write transaction starts by taking one transaction-scoped
//! advisory lock (`WRITE_LOCK`, global: the same for every write of every
//! replica), held until it commits or rolls back; under PostgreSQL's READ
//! COMMITTED each statement after it sees every write committed before it.
//! One global key is what the contract says; finer keys (per repository)
//! would not do, since GC's blob sweep and `forget_blob` span
//! repositories. Reads take no lock: each is one statement, or a
//! REPEATABLE READ read-only transaction where it needs several (GC's
//! snapshot).
//!
//! Time: the link, record and push times a write records (and every other
//! time it stamps) are read from the database's clock (`db_now`), after the
//! write lock, and `MetaStore::clock` answers with the same clock; GC takes
//! its `seen_at` and its grace window's cutoff from there. So the window is
//! measured on one clock whichever replica uploaded and whichever collects,
//! and a replica whose own clock is off cannot collect another's fresh
//! upload. (GC's sweep of store objects that have no record still compares
//! the objects' modification times with this machine's clock; what makes
//! that safe is the re-check for a record under the write lock.)

use std::sync::Arc;

use deadpool_postgres::{GenericClient, Object, Transaction};
use tokio::sync::oneshot;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{IsolationLevel, Row};

use super::changes::{announce, Announcement, Change};
use super::{client, db_error, describe, Pool};
use crate::meta::read_cache::{CacheLimits, ReadCache};
use crate::meta::{MetaError, Result};
use crate::oci::Digest;

/// The advisory lock every metadata write holds ("berthmw" in ASCII).
pub(super) const WRITE_LOCK: i64 = 0x62_6572_7468_6d77;

/// The registry's metadata (`MetaStore`, `CacheBook`) in a PostgreSQL
/// database; clones share the pool and the read cache. Several replicas
/// may use one database.
#[derive(Clone)]
pub struct PgMeta {
    pool: Pool,
    /// This replica's cache of hot reads (`read_cache.rs`), if it keeps one.
    pub(super) cache: Option<Arc<CacheHandle>>,
}

/// The read cache, and what stops its change feed when the last clone of
/// the `PgMeta` goes.
pub(super) struct CacheHandle {
    pub(super) cache: Arc<ReadCache>,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for PgMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgMeta")
    }
}

impl PgMeta {
    /// The store over `pool`; the schema must have been migrated
    /// (`migrate(&pool, &[MIGRATIONS])`).
    pub fn new(pool: Pool) -> PgMeta {
        PgMeta { pool, cache: None }
    }

    /// The store over `pool` with a cache of hot reads within `limits`,
    /// kept true by listening to the database at `url` (the pool's). Needs
    /// a Tokio runtime (the listener is a task).
    pub fn with_cache(pool: Pool, url: &str, limits: CacheLimits) -> Result<PgMeta> {
        let cache = Arc::new(ReadCache::new(limits));
        let (stop, stopped) = oneshot::channel();
        super::change_feed::follow(url, &cache, stopped)?;
        Ok(PgMeta {
            pool,
            cache: Some(Arc::new(CacheHandle { cache, _stop: stop })),
        })
    }

    /// The read cache, if this store keeps one.
    pub(super) fn read_cache(&self) -> Option<&ReadCache> {
        self.cache.as_deref().map(|h| h.cache.as_ref())
    }

    /// Whether the read cache serves (None: there is none).
    pub fn cache_serving(&self) -> Option<bool> {
        self.read_cache().map(ReadCache::serving)
    }

    /// Commits a write that removed or moved what `changes` name: announces
    /// them to every replica in the same transaction, drops them from this
    /// replica's cache, and returns once this replica's own listener has
    /// heard them (see `read_cache.rs`).
    pub(super) async fn commit_changed(
        &self,
        tx: Transaction<'_>,
        what: &str,
        changes: Vec<Change>,
    ) -> Result<()> {
        if changes.is_empty() {
            return commit(tx, what).await;
        }
        let Some(cache) = self.read_cache() else {
            let a = Announcement {
                origin: "-".into(),
                changes,
            };
            announce(&tx, &a).await?;
            return commit(tx, what).await;
        };
        let (a, echo) = cache.announcement(changes);
        let committed = match announce(&tx, &a).await {
            Ok(()) => commit(tx, what).await,
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            if let Some(echo) = echo {
                cache.abandon(echo);
            }
            return Err(e);
        }
        cache.forget(&a.changes);
        if let Some(echo) = echo {
            cache.wait_echo(echo).await;
        }
        Ok(())
    }

    pub(super) async fn conn(&self) -> Result<Object> {
        client(&self.pool).await
    }
}

/// Maps a driver error to a `MetaError` naming what was being done.
pub(super) trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, tokio_postgres::Error> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| db_error(what, describe(&e)))
    }
}

/// Queries through each connection's cache of prepared statements (one
/// round trip per query instead of two), for connections and transactions
/// alike. Named apart from the driver's methods so that a call site says
/// which it uses. Every query names its columns, so a later migration that
/// adds columns leaves a cached statement valid.
#[async_trait::async_trait]
pub(super) trait Cached: GenericClient {
    async fn cq(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<Row>> {
        let st = self.prepare_cached(sql).await?;
        self.query(&st, params).await
    }
    async fn cq_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Option<Row>> {
        let st = self.prepare_cached(sql).await?;
        self.query_opt(&st, params).await
    }
    async fn cq_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Row> {
        let st = self.prepare_cached(sql).await?;
        self.query_one(&st, params).await
    }
    async fn cexec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<u64> {
        let st = self.prepare_cached(sql).await?;
        self.execute(&st, params).await
    }
}

impl<C: GenericClient> Cached for C {}

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// A write transaction holding the write lock.
pub(super) async fn begin_write<'a>(conn: &'a mut Object, what: &str) -> Result<Transaction<'a>> {
    let tx = conn.transaction().await.ctx(what)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await
        .ctx(what)?;
    Ok(tx)
}

/// A read-only transaction on one snapshot.
pub(super) async fn begin_read<'a>(conn: &'a mut Object, what: &str) -> Result<Transaction<'a>> {
    conn.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .ctx(what)
}

pub(super) async fn commit(tx: Transaction<'_>, what: &str) -> Result<()> {
    tx.commit().await.ctx(what)
}

/// Column `i` of `row`, or a `Corrupt` error naming `what`.
pub(super) fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize, what: &str) -> Result<T> {
    row.try_get(i)
        .map_err(|e| MetaError::Corrupt(format!("{what}: {e}")))
}

/// A `bigint` column that holds a `u64` (sizes, times, counts).
pub(super) fn col_u64(row: &Row, i: usize, what: &str) -> Result<u64> {
    let v: i64 = col(row, i, what)?;
    u64::try_from(v).map_err(|_| MetaError::Corrupt(format!("{what} is negative ({v})")))
}

/// A nullable `bigint` column that holds a `u64`.
pub(super) fn col_u64_opt(row: &Row, i: usize, what: &str) -> Result<Option<u64>> {
    let v: Option<i64> = col(row, i, what)?;
    v.map(|v| u64::try_from(v).map_err(|_| MetaError::Corrupt(format!("{what} is negative ({v})"))))
        .transpose()
}

/// A `u64` as a `bigint`; beyond `i64::MAX` (no size or date gets there;
/// callers pass `u64::MAX` as "no bound") it is clamped.
pub(super) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A digest read from the database.
pub(super) fn digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| MetaError::Corrupt(format!("{s:?} in the database is not a digest: {e}")))
}

/// A JSON column (read as `::text`) as `T`.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| MetaError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<String> {
    serde_json::to_string(v).map_err(|e| MetaError::Corrupt(format!("{what}: {e}")))
}

/// The database's clock, Unix seconds: every replica reads the same one.
/// In a write transaction, read after the write lock, so each writer's
/// time is no earlier than that of the writer before it (unless the
/// database server's own clock steps back).
pub(super) async fn db_now(client: &impl deadpool_postgres::GenericClient) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT floor(extract(epoch FROM clock_timestamp()))::bigint",
            &[],
        )
        .await
        .ctx("reading the database's clock")?;
    col_u64(&row, 0, "the database's clock")
}

impl PgMeta {
    /// The database's clock, read under the write lock (and nothing
    /// written): no write that read the clock earlier is still in flight.
    pub(super) async fn fenced_clock_q(&self) -> Result<u64> {
        let what = "reading the database's clock";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let t = db_now(&tx).await?;
        tx.rollback().await.ctx(what)?;
        Ok(t)
    }
}

/// Runs a `StoreStep` under the write lock; `what` names it in its error.
pub(super) async fn run_step(step: crate::meta::StoreStep, what: &str) -> Result<()> {
    step.await
        .map_err(|e| MetaError::Store(format!("{what}: {e}")))
}

/// The project a repository belongs to: its first path component.
pub(super) fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}
