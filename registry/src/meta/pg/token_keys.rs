//! Token signing keys shared by replicas: `auth_token_keys`, each key with
//! the time (the database's clock) from which it signs. The first is
//! created once, under an advisory lock, by whichever replica starts
//! first; every replica reads the same set (`PgTokenKeys::load`) and keeps
//! it fresh (`follow`), so a token one replica issues verifies on all.
//!
//! Rotation with overlap (`rotate`): a new key is published to sign only
//! from `publish` later on (longer than replicas take to re-read the set),
//! so every replica verifies it before any signs with it; the key it
//! replaces keeps verifying until the last token it signed expires
//! (`token_ttl` after the new key took over), then is dropped.

use std::time::Duration;

use super::accounts::pg;
use super::Pool;
use crate::auth::store::AccountError;
use crate::auth::token::TokenKey;

/// The advisory lock creating the first key holds ("tkey" in ASCII).
const FIRST_KEY_LOCK: i64 = 0x746b_6579;

type Res<T> = Result<T, AccountError>;

/// The token keys kept in the database.
#[derive(Clone)]
pub struct PgTokenKeys {
    pool: Pool,
    token_ttl: Duration,
}

/// A stored key: its secret and when it signs from (seconds).
struct Stored {
    secret: Vec<u8>,
    signs_from: f64,
}

impl PgTokenKeys {
    /// Keys whose tokens live `token_ttl` (`auth.token_ttl`).
    pub fn new(pool: Pool, token_ttl: Duration) -> Self {
        Self { pool, token_ttl }
    }

    async fn conn(&self) -> Res<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| AccountError::Db(format!("connecting to PostgreSQL: {e}")))
    }

    /// The key set, the first key created if there is none.
    pub async fn load(&self) -> Res<TokenKey> {
        let (signing, others) = self.current().await?;
        Ok(TokenKey::with_others(signing, others))
    }

    /// The signing key and the others that verify, as of the database's now.
    async fn current(&self) -> Res<(Vec<u8>, Vec<Vec<u8>>)> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg("token keys"))?;
        let mut keys = stored(&tx).await?;
        if keys.is_empty() {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FIRST_KEY_LOCK])
                .await
                .map_err(pg("locking the token keys"))?;
            keys = stored(&tx).await?;
            if keys.is_empty() {
                insert(&tx, 0.0).await?;
                keys = stored(&tx).await?;
            }
        }
        let now = clock(&tx).await?;
        tx.commit().await.map_err(pg("token keys"))?;
        key_set(&keys, now, self.token_ttl)
            .ok_or_else(|| AccountError::Db("no token key signs yet".into()))
    }

    /// Publishes a new key that signs from `publish` on; drops keys no
    /// token can need any more.
    pub async fn rotate(&self, publish: Duration) -> Res<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg("token keys"))?;
        let now = clock(&tx).await?;
        insert(&tx, now + publish.as_secs_f64()).await?;
        // A key is needed until its successor signs plus a token's life.
        tx.execute(
            "DELETE FROM auth_token_keys k WHERE EXISTS (
                 SELECT 1 FROM auth_token_keys n
                 WHERE n.signs_from > k.signs_from AND n.signs_from + $1 <= $2)",
            &[&self.token_ttl.as_secs_f64(), &now],
        )
        .await
        .map_err(pg("dropping old token keys"))?;
        tx.commit().await.map_err(pg("rotating the token key"))?;
        tracing::info!(
            publish_secs = publish.as_secs(),
            "published a new token signing key"
        );
        Ok(())
    }

    /// Re-reads the set into `key` every `every` (shorter than a rotation's
    /// `publish`), until the task is dropped.
    pub fn follow(&self, key: TokenKey, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match this.current().await {
                    Ok((signing, others)) => key.replace(signing, others),
                    Err(e) => tracing::warn!(error = %e, "cannot re-read the token keys"),
                }
            }
        })
    }
}

async fn clock(tx: &deadpool_postgres::Transaction<'_>) -> Res<f64> {
    let row = tx
        .query_one("SELECT extract(epoch from clock_timestamp())::float8", &[])
        .await
        .map_err(pg("reading the clock"))?;
    Ok(row.get(0))
}

async fn stored(tx: &deadpool_postgres::Transaction<'_>) -> Res<Vec<Stored>> {
    let rows = tx
        .query(
            "SELECT secret, signs_from FROM auth_token_keys ORDER BY signs_from, id",
            &[],
        )
        .await
        .map_err(pg("reading the token keys"))?;
    Ok(rows
        .iter()
        .map(|r| Stored {
            secret: r.get(0),
            signs_from: r.get(1),
        })
        .collect())
}

async fn insert(tx: &deadpool_postgres::Transaction<'_>, signs_from: f64) -> Res<()> {
    use rand::RngCore;
    let mut secret = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    tx.execute(
        "INSERT INTO auth_token_keys (secret, signs_from) VALUES ($1, $2)",
        &[&secret, &signs_from],
    )
    .await
    .map_err(pg("storing a token key"))?;
    Ok(())
}

/// Of `keys` (by `signs_from`), the one signing at `now` and the others
/// that verify: published ones not signing yet, and earlier ones whose
/// tokens may still be alive.
fn key_set(keys: &[Stored], now: f64, ttl: Duration) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let signing = keys.iter().rposition(|k| k.signs_from <= now)?;
    let ttl = ttl.as_secs_f64();
    let others = keys
        .iter()
        .enumerate()
        .filter(|(i, k)| {
            *i > signing
                || (*i < signing && keys[i + 1].signs_from + ttl > now && k.signs_from <= now)
        })
        .map(|(_, k)| k.secret.clone())
        .collect();
    Some((keys[signing].secret.clone(), others))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(b: u8, signs_from: f64) -> Stored {
        Stored {
            secret: vec![b],
            signs_from,
        }
    }

    #[test]
    fn the_set_at_each_moment_of_a_rotation() {
        let ttl = Duration::from_secs(300);
        let keys = [k(1, 0.0), k(2, 1000.0)];
        // Published, not signing yet: it verifies already.
        assert_eq!(key_set(&keys, 990.0, ttl), Some((vec![1], vec![vec![2]])));
        // Signing; the previous one verifies until its last token expires.
        assert_eq!(key_set(&keys, 1010.0, ttl), Some((vec![2], vec![vec![1]])));
        assert_eq!(key_set(&keys, 1300.0, ttl), Some((vec![2], vec![])));
        assert_eq!(key_set(&[k(1, 10.0)], 5.0, ttl), None);
    }
}
