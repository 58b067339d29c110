//! The audit log on PostgreSQL: `acct_audit`, one row per event, its id
//! from the table's sequence (increasing), the filtered fields in columns
//! so a query reads only what it answers, newest first.

use super::accounts::{pg, PgAccounts, Res};
use crate::auth::store::{AccountError, AuditEvent, AuditQuery};

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Appends `e` (its vocabulary normalised, so filters find it), giving it
/// the next id.
pub(super) async fn append(store: &PgAccounts, e: &AuditEvent) -> Res<u64> {
    let mut e = e.clone();
    crate::auth::audit::normalize(&mut e);
    e.id = 0;
    let record = serde_json::to_string(&e).map_err(|e| AccountError::Db(e.to_string()))?;
    let conn = store.conn().await?;
    let row = conn
        .query_one(
            "INSERT INTO acct_audit (time, actor, action, project, outcome, record)
             VALUES ($1, $2, $3, $4, $5, $6::text::jsonb) RETURNING id",
            &[
                &secs(e.time),
                &e.actor,
                &e.action,
                &e.project,
                &e.outcome,
                &record,
            ],
        )
        .await
        .map_err(pg("appending to the audit log"))?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Events the query admits, newest first, at most its limit; records that
/// do not decode are skipped (written by a newer berth, say).
pub(super) async fn query(store: &PgAccounts, q: &AuditQuery) -> Res<Vec<AuditEvent>> {
    let conn = store.conn().await?;
    let limit = q.limit() as i64;
    let rows = conn
        .query(
            "SELECT id, record::text FROM acct_audit
             WHERE ($1::text IS NULL OR actor = $1)
               AND ($2::text IS NULL OR project = $2)
               AND ($3::text IS NULL OR action = $3)
               AND ($4::bigint IS NULL OR time >= $4)
               AND ($5::bigint IS NULL OR time <= $5)
               AND ($6::text IS NULL OR outcome = $6)
             ORDER BY id DESC LIMIT $7",
            &[
                &q.actor,
                &q.project,
                &q.action,
                &q.since.map(secs),
                &q.until.map(secs),
                &q.outcome,
                &limit,
            ],
        )
        .await
        .map_err(pg("reading the audit log"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(mut e) = serde_json::from_str::<AuditEvent>(r.get::<_, &str>(1)) else {
            continue;
        };
        e.id = r.get::<_, i64>(0) as u64;
        out.push(e);
    }
    Ok(out)
}

/// Events with an id above `after`, oldest first, at most `limit`.
pub(super) async fn page(store: &PgAccounts, after: u64, limit: usize) -> Res<Vec<AuditEvent>> {
    let conn = store.conn().await?;
    let rows = conn
        .query(
            "SELECT id, record::text FROM acct_audit WHERE id > $1 ORDER BY id LIMIT $2",
            &[&secs(after), &(limit.min(i64::MAX as usize) as i64)],
        )
        .await
        .map_err(pg("reading the audit log"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(mut e) = serde_json::from_str::<AuditEvent>(r.get::<_, &str>(1)) else {
            continue;
        };
        e.id = r.get::<_, i64>(0) as u64;
        out.push(e);
    }
    Ok(out)
}
