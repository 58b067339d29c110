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
//! - `lease`: leader election of the reconcilers (`PgLeadership`) and the
//!   fence every write of a leader's store checks;
//! - `relay`: wake-ups from followers to the leader (`PgRelay`, `NOTIFY`);
//! - `store`: `ControllerStore`, each call routed to one of the two.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::IsolationLevel;

use std::sync::{Arc, Mutex};

use super::rows::{self, Scratch};
use super::{RedbControllerStore, Result, StoreError};
use crate::sealed_records::RecordSealer;

mod lease;
#[cfg(test)]
mod lease_tests;
mod mirror;
mod native;
mod relay;
#[cfg(test)]
mod relay_tests;
mod schema;
mod store;
#[cfg(test)]
mod tests;

pub use self::lease::PgLeadership;
pub use self::relay::{PgRelay, CHANNEL};
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
    /// The leadership term whose reconcilers write through this store
    /// (`ControllerStore::fenced`); `None`: the API's store, not fenced.
    fence: Option<i64>,
    /// In-memory copies kept between calls (making one costs far more than
    /// bringing one up to date).
    scratch: Arc<Mutex<Vec<Scratch>>>,
}

/// How many idle in-memory copies a store keeps.
const SCRATCH_KEPT: usize = 2;

impl PgControllerStore {
    /// The store over `pool`, whose database has the controller's schema
    /// (`MIGRATIONS`, applied by the caller). As the embedded store's `open`
    /// does: refuses a schema this berth does not know, and with a key in
    /// `sealer` seals credentials an earlier keyless start stored in the clear.
    pub async fn open(pool: Pool, sealer: RecordSealer) -> Result<PgControllerStore> {
        let store = PgControllerStore {
            pool,
            sealer,
            fence: None,
            scratch: Arc::default(),
        };
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
        self.lock(&tx).await?;
        let before = mirror::load(&tx).await?;
        let mut scratch = self.scratch()?;
        scratch.hold(before)?;
        let out = f(&RedbControllerStore::over(
            scratch.db.clone(),
            self.sealer.clone(),
        ))?;
        let after = rows::rows_of(&scratch.db)?;
        mirror::write_back(&tx, &scratch.rows, &after).await?;
        scratch.rows = after;
        // Given back even if the commit fails: it holds what it says it
        // holds, and the next call brings it to the database's rows.
        let committed = tx.commit().await.map_err(db(what));
        self.give_back(scratch);
        committed?;
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
        let mut scratch = self.scratch()?;
        scratch.hold(rows)?;
        let out = f(&RedbControllerStore::over(
            scratch.db.clone(),
            self.sealer.clone(),
        ))?;
        // A read changes nothing, but what the copy holds is checked, not assumed.
        scratch.rows = rows::rows_of(&scratch.db)?;
        self.give_back(scratch);
        Ok(out)
    }

    /// An idle in-memory copy, or a new one.
    fn scratch(&self) -> Result<Scratch> {
        let idle = self.scratch.lock().ok().and_then(|mut s| s.pop());
        match idle {
            Some(s) => Ok(s),
            None => Scratch::new(),
        }
    }

    fn give_back(&self, scratch: Scratch) {
        if let Ok(mut idle) = self.scratch.lock() {
            if idle.len() < SCRATCH_KEPT {
                idle.push(scratch);
            }
        }
    }
}

impl PgControllerStore {
    /// Takes the controller's write lock for the rest of `tx`; a fenced
    /// store then checks that its term still holds the lease (read `FOR
    /// SHARE`, so a takeover waits for this write and every later write of
    /// the term sees it).
    async fn lock(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<()> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await
            .map_err(db("taking the controller's write lock"))?;
        match self.fence {
            Some(epoch) => lease::check_fence(tx, epoch).await,
            None => Ok(()),
        }
    }

    /// This store for the reconcilers of term `epoch`.
    pub(super) fn with_fence(&self, epoch: u64) -> PgControllerStore {
        PgControllerStore {
            fence: Some(i64::try_from(epoch).unwrap_or(i64::MAX)),
            ..self.clone()
        }
    }
}
