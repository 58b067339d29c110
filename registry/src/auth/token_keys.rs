//! The set of keys that sign and verify bearer tokens, kept in the
//! metadata backend (`TokenKeyStore`: the embedded file, or PostgreSQL
//! where every replica reads the same set), and its rotation with overlap.
//!
//! Each stored key signs from its `signs_from` on, until a newer key
//! takes over; it keeps verifying until the last token it signed expires
//! (`token_ttl` after its successor took over). A rotation adds a key
//! that signs only from `publish` later on: long enough for every replica
//! to re-read the set (`TokenKeys::follow`) and verify it before any signs
//! with it. Keys no token can need any more are dropped by the next
//! rotation.
//!
//! Owns: the pure decision which keys sign and verify at a moment
//! (`key_set`), what an administrator is shown of them (`TokenKeyView`,
//! never the secret), and keeping the in-memory `TokenKey` fresh. Must not
//! touch: HTTP, or how a backend stores the keys.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::store::AccountError;
use super::token::TokenKey;

/// A key as stored: its secret, when it was made and when it signs from
/// (seconds since the epoch, by the store's clock).
#[derive(Clone, PartialEq)]
pub struct StoredKey {
    pub id: u64,
    pub secret: Vec<u8>,
    /// `None` for keys stored before the time was recorded.
    pub created: Option<f64>,
    pub signs_from: f64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("created", &self.created)
            .field("signs_from", &self.signs_from)
            .finish_non_exhaustive()
    }
}

/// Where the token keys are kept. Both operations are atomic.
#[async_trait]
pub trait TokenKeyStore: Send + Sync + 'static {
    /// Every stored key by `signs_from` (then id), the first one created
    /// (signing at once) if there is none; and the store's clock now.
    async fn keys(&self) -> Result<(Vec<StoredKey>, f64), AccountError>;
    /// Adds a new random key that signs from `publish` after now, and
    /// drops the keys whose successor has signed for longer than
    /// `token_ttl` (none of their tokens is alive). The new key.
    async fn rotate(
        &self,
        publish: Duration,
        token_ttl: Duration,
    ) -> Result<StoredKey, AccountError>;
}

/// A new random 32-byte secret.
pub fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// Of `keys` (by `signs_from`), the index of the one signing at `now`.
fn signing_index(keys: &[StoredKey], now: f64) -> Option<usize> {
    keys.iter().rposition(|k| k.signs_from <= now)
}

/// When the key at `i` stops verifying: its successor's start plus a
/// token's life (`None`: it has no successor).
fn retires_at(keys: &[StoredKey], i: usize, ttl: Duration) -> Option<f64> {
    keys.get(i + 1).map(|n| n.signs_from + ttl.as_secs_f64())
}

/// Whether the key at `i` verifies at `now`: it signs, it is published
/// and about to sign, or tokens it signed may still be alive.
fn verifies(keys: &[StoredKey], i: usize, now: f64, ttl: Duration) -> bool {
    keys[i].signs_from > now || retires_at(keys, i, ttl).is_none_or(|r| r > now)
}

/// Of `keys` (by `signs_from`), the one signing at `now` and the others
/// that verify.
pub fn key_set(keys: &[StoredKey], now: f64, ttl: Duration) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let signing = signing_index(keys, now)?;
    let others = (0..keys.len())
        .filter(|&i| i != signing && verifies(keys, i, now, ttl))
        .map(|i| keys[i].secret.clone())
        .collect();
    Some((keys[signing].secret.clone(), others))
}

/// A key as an administrator sees it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TokenKeyView {
    pub id: u64,
    /// "signing", "published" (verifies; signs from `signs_from`) or
    /// "retiring" (verifies the tokens it signed until `retires_at`).
    pub state: String,
    /// When it was made (seconds since the epoch); absent for keys made
    /// before this was recorded.
    pub created: Option<u64>,
    /// When it signs (or signed) from.
    pub signs_from: u64,
    /// When it stops verifying; absent while no newer key replaces it.
    pub retires_at: Option<u64>,
}

/// The keys that verify at `now`, as views, by `signs_from`.
pub fn views(keys: &[StoredKey], now: f64, ttl: Duration) -> Vec<TokenKeyView> {
    let signing = signing_index(keys, now);
    let secs = |t: f64| t.max(0.0).round() as u64;
    (0..keys.len())
        .filter(|&i| verifies(keys, i, now, ttl))
        .map(|i| {
            let k = &keys[i];
            let state = match signing {
                Some(s) if s == i => "signing",
                Some(s) if i < s => "retiring",
                _ => "published",
            };
            TokenKeyView {
                id: k.id,
                state: state.into(),
                created: k.created.map(secs),
                // The first key signs "from the beginning": show when it was made.
                signs_from: secs(k.signs_from.max(k.created.unwrap_or(0.0))),
                retires_at: retires_at(keys, i, ttl).map(secs),
            }
        })
        .collect()
}

/// The token keys of a running registry: the store, and the in-memory set
/// that signs and verifies, kept fresh.
pub struct TokenKeys {
    store: Arc<dyn TokenKeyStore>,
    key: TokenKey,
    token_ttl: Duration,
    publish: Duration,
}

/// What `GET /api/v1/system/token-keys` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenKeyList {
    /// The key this replica signs with now.
    pub signing_here: Option<u64>,
    pub keys: Vec<TokenKeyView>,
}

impl TokenKeys {
    /// Loads the set from `store` (creating the first key if there is
    /// none). Tokens live `token_ttl`; a rotation's new key signs from
    /// `publish` later (zero for one process; longer than every replica
    /// takes to re-read the set otherwise).
    pub async fn open(
        store: Arc<dyn TokenKeyStore>,
        token_ttl: Duration,
        publish: Duration,
    ) -> Result<Self, AccountError> {
        let (keys, now) = store.keys().await?;
        let (signing, others) = key_set(&keys, now, token_ttl)
            .ok_or_else(|| AccountError::Db("no token key signs yet".into()))?;
        Ok(Self {
            store,
            key: TokenKey::with_others(signing, others),
            token_ttl,
            publish,
        })
    }

    /// The in-memory set: clones sign and verify with what `refresh` loads.
    pub fn key(&self) -> TokenKey {
        self.key.clone()
    }

    /// Re-reads the set into the in-memory key.
    pub async fn refresh(&self) -> Result<Vec<StoredKey>, AccountError> {
        let (keys, now) = self.store.keys().await?;
        if let Some((signing, others)) = key_set(&keys, now, self.token_ttl) {
            self.key.replace(signing, others);
        }
        Ok(keys)
    }

    /// Re-reads the set every `every` (shorter than `publish`), until the
    /// task is dropped.
    pub fn follow(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(keys) = this.upgrade() else { return };
                if let Err(e) = keys.refresh().await {
                    tracing::warn!(error = %e, "cannot re-read the token keys");
                }
            }
        })
    }

    /// Publishes a new key (signing `publish` from now); the set as it is then.
    pub async fn rotate(&self) -> Result<(TokenKeyView, TokenKeyList), AccountError> {
        let new = self.store.rotate(self.publish, self.token_ttl).await?;
        tracing::info!(
            key = new.id,
            publish_secs = self.publish.as_secs(),
            "published a new token signing key"
        );
        let list = self.list().await?;
        let view = list
            .keys
            .iter()
            .find(|k| k.id == new.id)
            .cloned()
            .ok_or_else(|| AccountError::Db("the new token key is not in the set".into()))?;
        Ok((view, list))
    }

    /// The keys that verify now, and the one this replica signs with.
    pub async fn list(&self) -> Result<TokenKeyList, AccountError> {
        let (keys, now) = self.store.keys().await?;
        if let Some((signing, others)) = key_set(&keys, now, self.token_ttl) {
            self.key.replace(signing, others);
        }
        let signing_here = keys
            .iter()
            .find(|k| self.key.signs_with(&k.secret))
            .map(|k| k.id);
        Ok(TokenKeyList {
            signing_here,
            keys: views(&keys, now, self.token_ttl),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(b: u8, signs_from: f64) -> StoredKey {
        StoredKey {
            id: u64::from(b),
            secret: vec![b],
            created: Some(signs_from),
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

    #[test]
    fn views_name_each_keys_part_and_never_a_secret() {
        let ttl = Duration::from_secs(300);
        let keys = [k(1, 0.0), k(2, 1000.0), k(3, 2000.0)];
        let at = |now| {
            views(&keys, now, ttl)
                .into_iter()
                .map(|v| (v.id, v.state, v.retires_at))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(1100.0),
            vec![
                (1, "retiring".to_string(), Some(1300)),
                (2, "signing".to_string(), Some(2300)),
                (3, "published".to_string(), None)
            ]
        );
        assert_eq!(
            at(2400.0),
            vec![(3, "signing".to_string(), None)],
            "retired keys are not shown"
        );
        let text = serde_json::to_string(&views(&keys, 1100.0, ttl)).expect("json");
        assert!(!text.contains("secret"), "{text}");
    }
}
