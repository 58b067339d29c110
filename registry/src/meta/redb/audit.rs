//! The audit log in the embedded file: `audit`, sequence number → JSON
//! `AuditEvent`, appended in write transactions, read newest first.

use ::redb::{Database, ReadableTable, WriteTransaction};

use super::accounts::{db, to_json, Res, AUDIT};
use crate::auth::store::{AuditEvent, AuditQuery};

/// Appends `e` under the next sequence number, which becomes its id.
pub(super) fn append(tx: &WriteTransaction, mut e: AuditEvent) -> Res<u64> {
    let mut t = tx.open_table(AUDIT).map_err(db)?;
    let next = t
        .last()
        .map_err(db)?
        .map(|(k, _)| k.value() + 1)
        .unwrap_or(1);
    e.id = next;
    t.insert(next, to_json(&e)?.as_slice()).map_err(db)?;
    Ok(next)
}

/// Events the query admits, newest first; records that do not decode are
/// skipped (written by a newer berth, say).
pub(super) fn query(database: &Database, q: &AuditQuery) -> Res<Vec<AuditEvent>> {
    let limit = q.limit();
    let tx = database.begin_read().map_err(db)?;
    let t = tx.open_table(AUDIT).map_err(db)?;
    let mut out = Vec::new();
    for r in t.iter().map_err(db)?.rev() {
        if out.len() >= limit {
            break;
        }
        let (_, v) = r.map_err(db)?;
        let Ok(mut e) = serde_json::from_slice::<AuditEvent>(v.value()) else {
            continue;
        };
        // Events written before the one outcome vocabulary.
        crate::auth::audit::normalize(&mut e);
        if q.admits(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Events with an id above `after`, oldest first, at most `limit`; records
/// that do not decode are skipped, as `query` skips them.
pub(super) fn page(database: &Database, after: u64, limit: usize) -> Res<Vec<AuditEvent>> {
    let tx = database.begin_read().map_err(db)?;
    let t = tx.open_table(AUDIT).map_err(db)?;
    let mut out = Vec::new();
    for r in t.range(after.saturating_add(1)..).map_err(db)? {
        if out.len() >= limit {
            break;
        }
        let (_, v) = r.map_err(db)?;
        let Ok(mut e) = serde_json::from_slice::<AuditEvent>(v.value()) else {
            continue;
        };
        crate::auth::audit::normalize(&mut e);
        out.push(e);
    }
    Ok(out)
}
