//! Metadata on PostgreSQL (`meta.backend = "postgres"`): what several
//! `berth serve` replicas share.
//!
//! This module owns the connection pool and the schema's migrations; the
//! stores built on it implement the same interfaces as the embedded redb
//! backend (`MetaStore`, `AccountStore`, `CacheBook`, the controller's
//! store) and pass the same conformance suites.
//!
//! Each replica may keep the hot reads (manifests by digest, tags, blob
//! links) in memory (`read_cache.rs`): writes that remove or move them
//! announce it in their transaction (`changes.rs`), and each replica's
//! listener (`change_feed.rs`) drops what they touch; `read_cache.rs` says
//! what is guaranteed.
//!
//! Migrations: each component (the registry's tables, the controller's)
//! brings an ordered list of SQL steps; `berth_schema` records how many of
//! each a database has had. `migrate` applies the missing ones at start, in
//! one transaction under an advisory lock, so replicas starting together
//! migrate once; it refuses a database whose schema is newer than this
//! binary knows (a newer berth ran against it), rather than writing rows an
//! older schema does not describe.

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::MetaError;

mod accounts;
mod accounts_audit;
mod accounts_feed;
#[cfg(test)]
mod accounts_follow_tests;
#[cfg(test)]
mod accounts_tests;
mod blobs;
mod cache;
mod change_feed;
pub(crate) mod changes;
#[cfg(test)]
mod coordination_tests;
mod db;
mod duties;
mod gc;
mod listings;
mod manifests;
mod meta;
#[cfg(test)]
mod meta_tests;
#[cfg(test)]
mod read_cache_pg_tests;
#[cfg(test)]
mod replica_tests;
mod replication;
mod retention;
mod schema;
mod sessions;
#[cfg(test)]
mod tests;
mod throttle;
mod token_keys;
mod usage;
mod webhooks;

pub use self::accounts::{PgAccounts, ACCOUNTS_CHANNEL, ACCOUNT_MIGRATIONS};
pub use self::accounts_feed::account_feed;
pub use self::change_feed::LISTENER_NAME;
pub use self::changes::CHANGES_CHANNEL;
pub use self::db::PgMeta;
pub use self::schema::MIGRATIONS;
pub use self::sessions::PgSessions;
pub use self::throttle::PgThrottle;
pub use self::token_keys::PgTokenKeys;
pub use crate::meta::read_cache::CacheLimits;

pub use self::duties::PgDuties;

/// A pool of connections to one PostgreSQL database.
pub type Pool = deadpool_postgres::Pool;

/// The advisory lock key `migrate` holds ("berth" in ASCII).
const MIGRATE_LOCK: i64 = 0x62_6572_7468;

/// One component's schema: SQL steps applied in order, each once.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub component: &'static str,
    pub steps: &'static [&'static str],
}

/// A database error as a `MetaError` that names what was being done.
pub fn db_error(what: &str, e: impl std::fmt::Display) -> MetaError {
    MetaError::Db(format!("{what}: {e}"))
}

/// The driver's error with what the server said (its `Display` alone is
/// "db error"), or the cause of a connection failure.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            s.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!("; hint: {hint}"));
        }
        return s;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// A pool of at most `max` connections to the database at `url`. Nothing
/// connects yet; the first use does. The URL (and its password) is never
/// part of an error.
pub fn connect(url: &str, max: usize) -> Result<Pool, MetaError> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        MetaError::Db(format!(
            "meta.url is not a PostgreSQL URL (postgres://user:password@host:port/database): {e}"
        ))
    })?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| MetaError::Db(format!("PostgreSQL pool: {e}")))
}

/// A connection from `pool`, or an error that says the database cannot be
/// reached.
pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, MetaError> {
    pool.get().await.map_err(|e| match &e {
        deadpool_postgres::PoolError::Backend(pg) => {
            db_error("connecting to PostgreSQL", describe(pg))
        }
        other => db_error("connecting to PostgreSQL", other),
    })
}

/// Brings the schema of every component in `sets` up to date; fails,
/// changing nothing, when the database is newer than this binary.
pub async fn migrate(pool: &Pool, sets: &[Migrations]) -> Result<(), MetaError> {
    let mut conn = client(pool).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(|e| db_error("starting the migration", describe(&e)))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|e| db_error("locking the schema", describe(&e)))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS berth_schema (
            component text PRIMARY KEY,
            version integer NOT NULL,
            migrated_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(|e| db_error("creating berth_schema", describe(&e)))?;
    for set in sets {
        let row = tx
            .query_opt(
                "SELECT version FROM berth_schema WHERE component = $1",
                &[&set.component],
            )
            .await
            .map_err(|e| db_error("reading the schema version", describe(&e)))?;
        let have = row.map(|r| r.get::<_, i32>(0)).unwrap_or(0);
        let known = set.steps.len() as i32;
        if have > known {
            return Err(MetaError::Db(format!(
                "the database's {} schema is version {have}, newer than this berth knows \
                 ({known}): a newer berth has used it; run that version (or restore a backup \
                 taken before the upgrade)",
                set.component
            )));
        }
        for (i, step) in set.steps.iter().enumerate().skip(have as usize) {
            tx.batch_execute(step).await.map_err(|e| {
                db_error(
                    &format!("migrating {} to version {}", set.component, i + 1),
                    describe(&e),
                )
            })?;
        }
        if have < known {
            tx.execute(
                "INSERT INTO berth_schema (component, version) VALUES ($1, $2)
                 ON CONFLICT (component) DO UPDATE SET version = $2, migrated_at = now()",
                &[&set.component, &known],
            )
            .await
            .map_err(|e| db_error("recording the schema version", describe(&e)))?;
            tracing::info!(
                component = set.component,
                from = have,
                to = known,
                "migrated the PostgreSQL schema"
            );
        }
    }
    tx.commit()
        .await
        .map_err(|e| db_error("committing the migration", describe(&e)))
}

/// The schema versions a database has, by component.
pub async fn versions(pool: &Pool) -> Result<Vec<(String, i32)>, MetaError> {
    let conn = client(pool).await?;
    let rows = conn
        .query(
            "SELECT component, version FROM berth_schema ORDER BY component",
            &[],
        )
        .await
        .map_err(|e| db_error("reading berth_schema", describe(&e)))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
