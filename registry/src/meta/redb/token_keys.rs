//! The token keys of the embedded backend, in the registry's redb file:
//!
//! ```text
//! auth_token_keys   id (u64)   → JSON {secret (base64), created_ms, signs_from_ms}
//! ```
//!
//! The same set and rotation as on PostgreSQL (`auth::token_keys`), by
//! this machine's clock. Earlier releases kept one key in
//! `<data-dir>/token.key`: `open` takes it over as the first key (so the
//! tokens it signed stay valid) and removes the file.

use std::path::Path;
use std::time::Duration;

use ::redb::{ReadableTable, TableDefinition, WriteTransaction};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::RedbMeta;
use crate::auth::store::AccountError;
use crate::auth::token_keys::{new_secret, StoredKey, TokenKeyStore};

const KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("auth_token_keys");

type Res<T> = Result<T, AccountError>;

fn db<E: std::fmt::Display>(e: E) -> AccountError {
    AccountError::Db(format!("token keys: {e}"))
}

/// A key as stored; times in whole milliseconds, so that what `rotate`
/// answers is exactly what a later read finds.
#[derive(Serialize, Deserialize)]
struct Row {
    secret: String,
    #[serde(default)]
    created_ms: Option<u64>,
    signs_from_ms: u64,
}

fn ms(t: f64) -> u64 {
    (t.max(0.0) * 1000.0).round() as u64
}

fn key(id: u64, row: &Row) -> Res<StoredKey> {
    Ok(StoredKey {
        id,
        secret: B64.decode(&row.secret).map_err(db)?,
        created: row.created_ms.map(|t| t as f64 / 1000.0),
        signs_from: row.signs_from_ms as f64 / 1000.0,
    })
}

/// The token keys kept in a `RedbMeta`.
#[derive(Clone, Debug)]
pub struct RedbTokenKeys {
    meta: RedbMeta,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl RedbMeta {
    /// The token keys kept in this file; the key of `legacy` (an earlier
    /// release's `token.key`) becomes the first one if there is none yet.
    pub fn token_keys(&self, legacy: &Path) -> Res<RedbTokenKeys> {
        let tx = self.db().begin_write().map_err(db)?;
        let empty = tx
            .open_table(KEYS)
            .map_err(db)?
            .iter()
            .map_err(db)?
            .next()
            .is_none();
        let mut took_over = false;
        if empty {
            match std::fs::read(legacy) {
                Ok(k) if k.len() >= 32 => {
                    insert(&tx, 1, k, None, 0.0)?;
                    took_over = true;
                }
                _ => {}
            }
        }
        tx.commit().map_err(db)?;
        if took_over {
            tracing::info!(file = %legacy.display(), "took over the token key file; it is no longer needed");
            if let Err(e) = std::fs::remove_file(legacy) {
                tracing::warn!(file = %legacy.display(), error = %e, "cannot remove the old token key file");
            }
        }
        Ok(RedbTokenKeys { meta: self.clone() })
    }
}

fn insert(
    tx: &WriteTransaction,
    id: u64,
    secret: Vec<u8>,
    created: Option<f64>,
    signs_from: f64,
) -> Res<StoredKey> {
    let row = Row {
        secret: B64.encode(&secret),
        created_ms: created.map(ms),
        signs_from_ms: ms(signs_from),
    };
    let bytes = serde_json::to_vec(&row).map_err(db)?;
    tx.open_table(KEYS)
        .map_err(db)?
        .insert(id, bytes.as_slice())
        .map_err(db)?;
    key(id, &row)
}

/// Every stored key of `t`, by `signs_from` then id.
fn stored(t: &impl ReadableTable<u64, &'static [u8]>) -> Res<Vec<StoredKey>> {
    let mut keys = Vec::new();
    for r in t.iter().map_err(db)? {
        let (id, v) = r.map_err(db)?;
        let row: Row = serde_json::from_slice(v.value()).map_err(db)?;
        keys.push(key(id.value(), &row)?);
    }
    keys.sort_by(|a, b| a.signs_from.total_cmp(&b.signs_from).then(a.id.cmp(&b.id)));
    Ok(keys)
}

impl RedbTokenKeys {
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Res<T> + Send + 'static,
    ) -> Res<T> {
        let database = self.meta.db();
        tokio::task::spawn_blocking(move || {
            let tx = database.begin_write().map_err(db)?;
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
        .map_err(|e| AccountError::Db(format!("token key task: {e}")))?
    }
}

#[async_trait]
impl TokenKeyStore for RedbTokenKeys {
    async fn keys(&self) -> Res<(Vec<StoredKey>, f64)> {
        let read = self.meta.db().begin_read().map_err(db)?;
        match read.open_table(KEYS) {
            Ok(t) => {
                let keys = stored(&t)?;
                if !keys.is_empty() {
                    return Ok((keys, now()));
                }
            }
            Err(::redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(db(e)),
        }
        drop(read);
        self.write(|tx| {
            let mut keys = stored(&tx.open_table(KEYS).map_err(db)?)?;
            if keys.is_empty() {
                keys.push(insert(tx, 1, new_secret(), Some(now()), 0.0)?);
            }
            Ok((keys, now()))
        })
        .await
    }

    async fn rotate(&self, publish: Duration, token_ttl: Duration) -> Res<StoredKey> {
        self.write(move |tx| {
            // In the milliseconds the keys are kept in, so that a key
            // signing from now counts as signing now.
            let now = ms(now()) as f64 / 1000.0;
            let mut keys = stored(&tx.open_table(KEYS).map_err(db)?)?;
            let id = keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
            let new = insert(tx, id, new_secret(), Some(now), now + publish.as_secs_f64())?;
            keys.push(new.clone());
            // A key is needed until its successor signs plus a token's life.
            let ttl = token_ttl.as_secs_f64();
            let mut t = tx.open_table(KEYS).map_err(db)?;
            for k in &keys {
                let replaced = keys
                    .iter()
                    .any(|n| n.signs_from > k.signs_from && n.signs_from + ttl <= now);
                if replaced {
                    t.remove(k.id).map_err(db)?;
                }
            }
            Ok(new)
        })
        .await
    }
}
