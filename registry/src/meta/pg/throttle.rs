//! The login throttle shared by replicas (`PgThrottle`): each call reads
//! one (account, address) pair's and its account's entries, runs the
//! throttle's pure rules on them with the database's clock as now
//! (`throttle::on_entries`), and writes them back, in one transaction
//! under an advisory lock on the account, so replicas count one account's
//! failures together (an attacker gains nothing by spreading guesses over
//! replicas) and no replica's clock matters.
//!
//! When the database cannot be reached, this replica's own table
//! (`LocalThrottle`) answers meanwhile: logins go on, still throttled.

use std::net::IpAddr;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};

use super::accounts::pg;
use super::Pool;
use crate::auth::store::AccountError;
use crate::auth::throttle::{
    on_entries, AccountEntry, Entries, LocalThrottle, LoginThrottle, PairEntry, Source, Throttle,
    ThrottleConfig, Wait,
};

/// Failed logins counted in the database.
pub struct PgThrottle {
    pool: Pool,
    cfg: ThrottleConfig,
    fallback: LocalThrottle,
}

type Res<T> = Result<T, AccountError>;

fn source_text(s: Source) -> String {
    s.map(|ip| ip.to_string()).unwrap_or_default()
}

fn source_of(s: &str) -> Source {
    s.parse().ok()
}

impl PgThrottle {
    pub fn new(pool: Pool, cfg: ThrottleConfig) -> Self {
        Self {
            pool,
            cfg,
            fallback: LocalThrottle::new(cfg),
        }
    }

    /// Runs `f` on the entries of (`name`, `source`) as stored, and stores
    /// what it leaves. Most calls change nothing (a login with no failures
    /// on record, a check of a waiting pair): those read without a lock and
    /// write nothing; a call that changes the entries runs again under the
    /// account's lock.
    async fn on<R: Send>(
        &self,
        name: &str,
        source: Source,
        f: impl Fn(&mut Throttle, std::time::Instant) -> R + Send + Sync,
    ) -> Res<R> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| AccountError::Db(format!("connecting to PostgreSQL: {e}")))?;
        let src = source_text(source);
        let clock = now(&conn).await?;
        let before = read(&conn, name, &src).await?;
        let (out, after) = on_entries(self.cfg, name, source, before.clone(), clock, &f);
        if after == before {
            return Ok(out);
        }
        let tx = conn.transaction().await.map_err(pg("throttle"))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('berth throttle ' || $1, 0))",
            &[&name],
        )
        .await
        .map_err(pg("locking the throttle"))?;
        let clock = now(&tx).await?;
        let before = read(&tx, name, &src).await?;
        let (out, after) = on_entries(self.cfg, name, source, before.clone(), clock, &f);
        if after != before {
            write(&tx, name, &src, &after).await?;
            prune(&tx, &self.cfg, clock).await?;
        }
        tx.commit().await.map_err(pg("committing the throttle"))?;
        Ok(out)
    }
}

/// The database's clock, in seconds.
async fn now(c: &impl GenericClient) -> Res<f64> {
    let row = c
        .query_one("SELECT extract(epoch from clock_timestamp())::float8", &[])
        .await
        .map_err(pg("reading the clock"))?;
    Ok(row.get(0))
}

async fn read(tx: &impl GenericClient, name: &str, src: &str) -> Res<Entries> {
    let pair = tx
        .query_opt(
            "SELECT failures, last_failure, wait_until FROM auth_throttle_pairs
             WHERE account = $1 AND source = $2",
            &[&name, &src],
        )
        .await
        .map_err(pg("reading the throttle"))?
        .map(|r| PairEntry {
            failures: r.get::<_, i32>(0).max(0) as u32,
            last_failure: r.get(1),
            wait_until: r.get(2),
        });
    let account = tx
        .query_opt(
            "SELECT failures, next_slot, known_good, last_active FROM auth_throttle_accounts
             WHERE account = $1",
            &[&name],
        )
        .await
        .map_err(pg("reading the throttle"))?
        .map(|r| AccountEntry {
            failures: r.get(0),
            next_slot: r.get(1),
            known_good: r
                .get::<_, Vec<String>>(2)
                .iter()
                .map(|s| source_of(s))
                .collect(),
            last_active: r.get(3),
        });
    Ok(Entries { pair, account })
}

async fn write(tx: &Transaction<'_>, name: &str, src: &str, e: &Entries) -> Res<()> {
    let failed = pg("writing the throttle");
    if let Some(p) = &e.pair {
        let failures = p.failures.min(i32::MAX as u32) as i32;
        tx.execute(
            "INSERT INTO auth_throttle_pairs (account, source, failures, last_failure, wait_until)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account, source) DO UPDATE SET failures = EXCLUDED.failures,
                 last_failure = EXCLUDED.last_failure, wait_until = EXCLUDED.wait_until",
            &[&name, &src, &failures, &p.last_failure, &p.wait_until],
        )
        .await
        .map_err(&failed)?;
    } else {
        tx.execute(
            "DELETE FROM auth_throttle_pairs WHERE account = $1 AND source = $2",
            &[&name, &src],
        )
        .await
        .map_err(&failed)?;
    }
    if let Some(a) = &e.account {
        let good: Vec<String> = a.known_good.iter().map(|s| source_text(*s)).collect();
        tx.execute(
            "INSERT INTO auth_throttle_accounts
                 (account, failures, next_slot, known_good, last_active)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account) DO UPDATE SET failures = EXCLUDED.failures,
                 next_slot = EXCLUDED.next_slot, known_good = EXCLUDED.known_good,
                 last_active = EXCLUDED.last_active",
            &[&name, &a.failures, &a.next_slot, &good, &a.last_active],
        )
        .await
        .map_err(&failed)?;
    } else {
        tx.execute(
            "DELETE FROM auth_throttle_accounts WHERE account = $1",
            &[&name],
        )
        .await
        .map_err(&failed)?;
    }
    Ok(())
}

/// Forgets entries past their window (what the table in memory drops
/// when it fills up), a few at a time.
async fn prune(tx: &Transaction<'_>, cfg: &ThrottleConfig, clock: f64) -> Res<()> {
    let before = clock - cfg.window.as_secs_f64();
    tx.execute(
        "DELETE FROM auth_throttle_pairs WHERE ctid IN (SELECT ctid FROM auth_throttle_pairs
             WHERE last_failure < $1 AND wait_until <= $2 LIMIT 100)",
        &[&before, &clock],
    )
    .await
    .map_err(pg("pruning the throttle"))?;
    tx.execute(
        "DELETE FROM auth_throttle_accounts WHERE ctid IN (SELECT ctid FROM auth_throttle_accounts
             WHERE last_active < $1 AND next_slot <= $2 LIMIT 100)",
        &[&before, &clock],
    )
    .await
    .map_err(pg("pruning the throttle"))?;
    Ok(())
}

fn unreachable_db(e: &AccountError) {
    tracing::warn!(error = %e, "login throttle: the database is unreachable; counting in this replica meanwhile");
}

#[async_trait]
impl LoginThrottle for PgThrottle {
    async fn check(&self, name: &str, source: Option<IpAddr>) -> Result<(), Wait> {
        match self
            .on(name, source, |t, now| t.check(name, source, now))
            .await
        {
            Ok(res) => res,
            Err(e) => {
                unreachable_db(&e);
                self.fallback.check(name, source).await
            }
        }
    }

    async fn fail(&self, name: &str, source: Option<IpAddr>) {
        if let Err(e) = self
            .on(name, source, |t, now| t.fail(name, source, now))
            .await
        {
            unreachable_db(&e);
            self.fallback.fail(name, source).await;
        }
    }

    async fn succeed(&self, name: &str, source: Option<IpAddr>) {
        if let Err(e) = self
            .on(name, source, |t, now| t.succeed(name, source, now))
            .await
        {
            unreachable_db(&e);
            self.fallback.succeed(name, source).await;
        }
    }
}
