//! The controller's records on PostgreSQL (`meta.backend = "postgres"`):
//! `PgControllerStore`, shared by every `berth serve` replica.
//!
//! Owns: the `ctl_` tables of the controller's schema (`schema.rs`,
//! component "controller" of `berth_schema`) and the transactions on them.
//! Must not touch: other components' tables, HTTP, or the registry crate
//! (the composition root runs `MIGRATIONS` through the registry's
//! `meta::pg::migrate` and hands this store a pool).
//!
//! Writes are serialised, as the embedded store's are (redb has one writer):
//! every write transaction first takes one transaction-scoped advisory lock,
//! `WRITE_LOCK`, so the rules checked inside a call (uniqueness, "still in
//! use", the EIP addresses a publish claims) and the compare-and-swap of
//! publication revisions hold across replicas, not only across tasks. The
//! compare-and-swap writes also read their row `FOR UPDATE`. Reads take no
//! lock: each is one statement, or one repeatable-read snapshot.
//!
//! - `schema`: the SQL steps and each table's key columns;
//! - `mirror`: rule-heavy calls run as the embedded store's own methods over
//!   a copy of the rows, writing back what they changed;
//! - `native`: the reads and the reconciler's compare-and-swap writes in SQL;
//! - `store`: `ControllerStore`, each call routed to one of the two.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::IsolationLevel;

use super::rows;
use super::{RedbControllerStore, Result, StoreError};
use crate::sealed_records::RecordSealer;

mod mirror;
mod native;
mod schema;
mod store;
#[cfg(test)]
mod tests;

pub use self::schema::{Migrations, MIGRATIONS};

/// The advisory lock every controller write holds ("berthctl" in ASCII).
const WRITE_LOCK: i64 = 0x6265_7274_6863_746c;

/// A PostgreSQL error as a `StoreError` naming what was being done.
fn db(what: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        let message = match e.as_db_error() {
            Some(d) => d.message().to_string(),
            None => e.to_string(),
        };
        StoreError::Db(format!("{what}: {message}"))
    }
}

/// The controller's records in a PostgreSQL database.
#[derive(Clone)]
pub struct PgControllerStore {
    pool: Pool,
    /// Seals the credentials that cluster and node records carry.
    sealer: RecordSealer,
}

impl PgControllerStore {
    /// The store over `pool`, whose database has the controller's schema
    /// (`MIGRATIONS`, applied by the caller). As the embedded store's `open`
    /// does: refuses a schema this berth does not know, and with a key in
    /// `sealer` seals credentials an earlier keyless start stored in the clear.
    pub async fn open(pool: Pool, sealer: RecordSealer) -> Result<PgControllerStore> {
        let store = PgControllerStore { pool, sealer };
        store.check_schema().await?;
        store.write("opening", |s| s.prepare()).await?;
        Ok(store)
    }

    async fn check_schema(&self) -> Result<()> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT version FROM berth_schema WHERE component = $1",
                &[&MIGRATIONS.component],
            )
            .await
            .map_err(db("reading the controller's schema version"))?;
        let known = MIGRATIONS.steps.len() as i32;
        match row.map(|r| r.get::<_, i32>(0)) {
            Some(v) if v == known => Ok(()),
            Some(v) if v > known => Err(StoreError::Conflict(format!(
                "the database holds controller schema {v}, newer than this berth understands \
                 ({known}); upgrade berth"
            ))),
            other => Err(StoreError::Db(format!(
                "the database's controller schema is at version {}, not {known}: migrate it \
                 first (berth_controller::store::pg::MIGRATIONS)",
                other.unwrap_or(0)
            ))),
        }
    }

    async fn conn(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Db(format!("connecting to PostgreSQL: {e}")))
    }

    /// Runs the embedded store's write `f` over the rows, under the write
    /// lock, and stores what it changed, all in one transaction.
    async fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&RedbControllerStore) -> Result<T> + Send,
    ) -> Result<T> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db(what))?;
        lock(&tx).await?;
        let before = mirror::load(&tx).await?;
        let copy = rows::database_of(&before)?;
        let out = f(&RedbControllerStore::over(
            copy.clone(),
            self.sealer.clone(),
        ))?;
        let after = rows::rows_of(&copy)?;
        mirror::write_back(&tx, &before, &after).await?;
        tx.commit().await.map_err(db(what))?;
        Ok(out)
    }

    /// Runs the embedded store's read `f` over the rows of one snapshot.
    async fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&RedbControllerStore) -> Result<T> + Send,
    ) -> Result<T> {
        let mut conn = self.conn().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db(what))?;
        let rows = mirror::load(&tx).await?;
        tx.commit().await.map_err(db(what))?;
        let copy = rows::database_of(&rows)?;
        f(&RedbControllerStore::over(copy, self.sealer.clone()))
    }
}

/// Takes the controller's write lock for the rest of `tx`.
async fn lock(tx: &tokio_postgres::Transaction<'_>) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await
        .map_err(db("taking the controller's write lock"))?;
    Ok(())
}
