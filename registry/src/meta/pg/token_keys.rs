//! Token signing keys shared by replicas: `auth_token_keys`, each key with
//! the time (the database's clock) from which it signs. The first is
//! created once, under an advisory lock, by whichever replica starts
//! first; every replica reads the same set and keeps it fresh
//! (`auth::token_keys::TokenKeys::follow`), so a token one replica issues
//! verifies on all.
//!
//! Rotation with overlap (`rotate`): a new key is published to sign only
//! from `publish` later on (longer than replicas take to re-read the set),
//! so every replica verifies it before any signs with it; the key it
//! replaces keeps verifying until the last token it signed expires
//! (`token_ttl` after the new key took over), and is dropped by a later
//! rotation. Which keys sign and verify is decided in `auth::token_keys`.

use std::time::Duration;

use async_trait::async_trait;

use super::accounts::pg;
use super::Pool;
use crate::auth::store::AccountError;
use crate::auth::token_keys::{new_secret, StoredKey, TokenKeyStore};

/// The advisory lock creating the first key holds ("tkey" in ASCII).
const FIRST_KEY_LOCK: i64 = 0x746b_6579;

type Res<T> = Result<T, AccountError>;
type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// The token keys kept in the database.
#[derive(Clone)]
pub struct PgTokenKeys {
    pool: Pool,
}

impl PgTokenKeys {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn conn(&self) -> Res<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| AccountError::Db(format!("connecting to PostgreSQL: {e}")))
    }
}

#[async_trait]
impl TokenKeyStore for PgTokenKeys {
    async fn keys(&self) -> Res<(Vec<StoredKey>, f64)> {
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
        Ok((keys, now))
    }

    async fn rotate(&self, publish: Duration, token_ttl: Duration) -> Res<StoredKey> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg("token keys"))?;
        let now = clock(&tx).await?;
        let new = insert(&tx, now + publish.as_secs_f64()).await?;
        // A key is needed until its successor signs plus a token's life.
        tx.execute(
            "DELETE FROM auth_token_keys k WHERE EXISTS (
                 SELECT 1 FROM auth_token_keys n
                 WHERE n.signs_from > k.signs_from AND n.signs_from + $1 <= $2)",
            &[&token_ttl.as_secs_f64(), &now],
        )
        .await
        .map_err(pg("dropping old token keys"))?;
        tx.commit().await.map_err(pg("rotating the token key"))?;
        Ok(new)
    }
}

async fn clock(tx: &Tx<'_>) -> Res<f64> {
    let row = tx
        .query_one("SELECT extract(epoch from clock_timestamp())::float8", &[])
        .await
        .map_err(pg("reading the clock"))?;
    Ok(row.get(0))
}

fn key(r: &tokio_postgres::Row) -> StoredKey {
    StoredKey {
        id: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
        secret: r.get(1),
        created: r.get(2),
        signs_from: r.get(3),
    }
}

async fn stored(tx: &Tx<'_>) -> Res<Vec<StoredKey>> {
    let rows = tx
        .query(
            "SELECT id, secret, created, signs_from FROM auth_token_keys ORDER BY signs_from, id",
            &[],
        )
        .await
        .map_err(pg("reading the token keys"))?;
    Ok(rows.iter().map(key).collect())
}

async fn insert(tx: &Tx<'_>, signs_from: f64) -> Res<StoredKey> {
    let row = tx
        .query_one(
            "INSERT INTO auth_token_keys (secret, signs_from, created)
             VALUES ($1, $2, extract(epoch from clock_timestamp())::float8)
             RETURNING id, secret, created, signs_from",
            &[&new_secret(), &signs_from],
        )
        .await
        .map_err(pg("storing a token key"))?;
    Ok(key(&row))
}
