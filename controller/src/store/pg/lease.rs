//! Leader election of the controller's reconcilers through PostgreSQL, and
//! the fence that keeps an ex-leader's writes out.
//!
//! One row of `ctl_leases` ("reconciler") says who leads, in which term
//! (`epoch`) and until when, by the database's clock (`now()`), so replicas'
//! clocks never matter. The leader renews the lease every third of its
//! length; another replica takes it over once it has expired, bumping the
//! epoch. A leader that renews after its own lease lapsed gets a new epoch
//! too: what it started in the old term is fenced off like anyone's.
//!
//! Fencing: a store fenced with an epoch (`ControllerStore::fenced`, the
//! reconcilers' store) checks, inside every write transaction, after the
//! write lock, that the lease is still at its epoch and unexpired, reading
//! the row `FOR SHARE`: a takeover (an `UPDATE` of that row) waits for such
//! a write to commit, and any write after the takeover sees the new epoch
//! and is refused. So a leader paused past its lease cannot apply stale
//! state when it wakes.
//!
//! Owns: `ctl_leases`. Must not touch: the records (the store does).

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;

use super::{db, Result};
use crate::ports::{Leadership, Term};
use crate::store::StoreError;

/// The lease the reconcilers run under.
const RECONCILER: &str = "reconciler";

/// Refuses the write in `tx` unless the reconcilers' lease is still at
/// `epoch` and unexpired.
pub(super) async fn check_fence(tx: &tokio_postgres::Transaction<'_>, epoch: i64) -> Result<()> {
    let row = tx
        .query_opt(
            "SELECT epoch FROM ctl_leases WHERE name = $1 AND expires_at > now() FOR SHARE",
            &[&RECONCILER],
        )
        .await
        .map_err(db("reading the reconcilers' lease"))?;
    match row.map(|r| r.get::<_, i64>(0)) {
        Some(current) if current == epoch => Ok(()),
        current => Err(StoreError::Fenced(format!(
            "this replica's leadership term {epoch} is over (the lease is {}): the write of \
             its reconciler is refused",
            match current {
                Some(e) => format!("at term {e}"),
                None => "expired".to_string(),
            }
        ))),
    }
}

/// Leadership of the reconcilers among replicas sharing one database.
pub struct PgLeadership {
    pool: Pool,
    /// This replica, unique per process start.
    holder: String,
    lease: Duration,
}

impl PgLeadership {
    /// A candidate over `pool` (its database migrated with `MIGRATIONS`)
    /// holding the lease for `lease` at a time, renewed every third of it.
    pub fn new(pool: Pool, lease: Duration) -> PgLeadership {
        PgLeadership {
            pool,
            holder: format!("{:032x}", rand::random::<u128>()),
            lease,
        }
    }
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn lead(&self) -> std::result::Result<Option<Term>, String> {
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| format!("connecting to PostgreSQL: {e}"))?;
        let seconds = self.lease.as_secs_f64();
        // Ours and unexpired: renewed in the same term. Expired (ours or
        // not): a new term. Someone else's and unexpired: no row.
        let row = conn
            .query_opt(
                "INSERT INTO ctl_leases AS l (name, holder, epoch, expires_at) \
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
                 ON CONFLICT (name) DO UPDATE SET \
                   holder = EXCLUDED.holder, \
                   epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now() \
                           THEN l.epoch ELSE l.epoch + 1 END, \
                   expires_at = EXCLUDED.expires_at \
                 WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now() \
                 RETURNING epoch",
                &[&RECONCILER, &self.holder, &seconds],
            )
            .await
            .map_err(|e| db("taking the reconcilers' lease")(e).to_string())?;
        Ok(row.map(|r| Term {
            epoch: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
        }))
    }

    async fn resign(&self) {
        let Ok(conn) = self.pool.get().await else {
            return;
        };
        let resigned = conn
            .execute(
                "UPDATE ctl_leases SET expires_at = now() WHERE name = $1 AND holder = $2",
                &[&RECONCILER, &self.holder],
            )
            .await;
        if let Err(e) = resigned {
            tracing::warn!(error = %e, "could not give up the reconcilers' lease");
        }
    }

    fn renew_every(&self) -> Duration {
        self.lease / 3
    }
}
