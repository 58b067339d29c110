//! Console sessions as kept between requests: the port (`SessionStore`),
//! the in-memory store of one `berth serve` on its embedded defaults, and
//! the rules both keep (idle timeout, absolute lifetime, a bound per
//! account). The PostgreSQL store every replica shares is
//! `meta::pg::PgSessions`.
//!
//! A store never sees a session's id: the console keys it by a hash of the
//! id (`key_of`), so what a store holds (or a database dump shows) opens no
//! session. Owns no cookie, no page; the console's `session` module does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::store::AccountError;

/// How long sessions live and how many one account may hold.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Ended when unused this long.
    pub idle: Duration,
    /// Ended this long after sign-in, used or not.
    pub lifetime: Duration,
    /// Past this many, an account's least recently used session ends.
    pub per_account: usize,
}

impl SessionLimits {
    fn live(&self, s: &StoredSession, now_ms: i64) -> bool {
        now_ms - s.last_seen_ms < ms(self.idle) && now_ms - s.created_ms < ms(self.lifetime)
    }
}

/// Milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One signed-in browser, as stored: whose it is (the account instance, so
/// a name deleted and created again is not signed in) and its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub account: String,
    pub account_id: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub last_seen_ms: i64,
}

/// The key a session is stored under: SHA-256 of its id, hex.
pub fn key_of(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where console sessions are kept. Every call is atomic.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session under `key`; past `limits.per_account`, the
    /// account's least recently used sessions end. Expired sessions may be
    /// dropped on the way.
    async fn insert(
        &self,
        key: &str,
        session: &StoredSession,
        limits: &SessionLimits,
    ) -> Result<(), AccountError>;
    /// The live session under `key` (its idle clock restarted at `now_ms`
    /// when `touch`); an expired one is dropped and None.
    async fn get(
        &self,
        key: &str,
        now_ms: i64,
        limits: &SessionLimits,
        touch: bool,
    ) -> Result<Option<StoredSession>, AccountError>;
    /// Ends the session under `key` (nothing if there is none).
    async fn remove(&self, key: &str) -> Result<(), AccountError>;
    /// Ends every session of `account`; how many there were.
    async fn remove_account(&self, account: &str) -> Result<usize, AccountError>;
}

/// Sessions in this process's memory: a restart signs everyone out.
#[derive(Default)]
pub struct MemorySessions {
    table: Mutex<HashMap<String, StoredSession>>,
}

impl MemorySessions {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredSession>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn insert(
        &self,
        key: &str,
        session: &StoredSession,
        limits: &SessionLimits,
    ) -> Result<(), AccountError> {
        let now = session.created_ms;
        let mut t = self.table();
        t.retain(|_, s| limits.live(s, now));
        let mut mine: Vec<(i64, String)> = t
            .iter()
            .filter(|(_, s)| s.account == session.account)
            .map(|(k, s)| (s.last_seen_ms, k.clone()))
            .collect();
        mine.sort();
        let excess = (mine.len() + 1).saturating_sub(limits.per_account.max(1));
        for (_, k) in mine.into_iter().take(excess) {
            t.remove(&k);
        }
        t.insert(key.to_string(), session.clone());
        Ok(())
    }

    async fn get(
        &self,
        key: &str,
        now_ms: i64,
        limits: &SessionLimits,
        touch: bool,
    ) -> Result<Option<StoredSession>, AccountError> {
        let mut t = self.table();
        let Some(s) = t.get_mut(key) else {
            return Ok(None);
        };
        if !limits.live(s, now_ms) {
            t.remove(key);
            return Ok(None);
        }
        if touch {
            s.last_seen_ms = s.last_seen_ms.max(now_ms);
        }
        Ok(Some(s.clone()))
    }

    async fn remove(&self, key: &str) -> Result<(), AccountError> {
        self.table().remove(key);
        Ok(())
    }

    async fn remove_account(&self, account: &str) -> Result<usize, AccountError> {
        let mut t = self.table();
        let before = t.len();
        t.retain(|_, s| s.account != account);
        Ok(before - t.len())
    }
}

/// The suite every `SessionStore` passes.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    fn session(account: &str, at: i64) -> StoredSession {
        StoredSession {
            account: account.into(),
            account_id: format!("{account}-id"),
            created_ms: at,
            last_seen_ms: at,
        }
    }

    pub async fn run(store: &dyn SessionStore) {
        let limits = SessionLimits {
            idle: Duration::from_secs(60),
            lifetime: Duration::from_secs(3600),
            per_account: 3,
        };
        let t0 = 1_000_000;
        store
            .insert("a1", &session("ann", t0), &limits)
            .await
            .expect("session store");
        store
            .insert("a2", &session("ann", t0 + 1), &limits)
            .await
            .expect("session store");
        store
            .insert("b1", &session("bob", t0 + 2), &limits)
            .await
            .expect("session store");
        let got = store
            .get("a1", t0 + 10, &limits, false)
            .await
            .expect("session store");
        assert_eq!(got, Some(session("ann", t0)), "read back as stored");
        // Touched, the idle clock restarts; untouched, it does not.
        let got = store
            .get("a1", t0 + 50_000, &limits, true)
            .await
            .expect("session store");
        assert_eq!(got.map(|s| s.last_seen_ms), Some(t0 + 50_000));
        assert!(store
            .get("a2", t0 + 70_000, &limits, false)
            .await
            .expect("session store")
            .is_none());
        assert!(
            store
                .get("a1", t0 + 70_000, &limits, false)
                .await
                .expect("session store")
                .is_some(),
            "touched at +50 s, live at +70 s"
        );
        assert!(
            store
                .get("a2", t0 + 10, &limits, false)
                .await
                .expect("session store")
                .is_none(),
            "an expired session is dropped"
        );
        // The lifetime holds however recently it was used.
        let late = t0 + 3_600_000;
        assert!(store
            .get("a1", late, &limits, true)
            .await
            .expect("session store")
            .is_none());
        // The bound per account: the least recently used one ends.
        let t1 = late + 10;
        for (i, k) in ["c1", "c2", "c3"].iter().enumerate() {
            store
                .insert(k, &session("cat", t1 + i as i64), &limits)
                .await
                .expect("session store");
        }
        store
            .get("c1", t1 + 5, &limits, true)
            .await
            .expect("session store");
        store
            .insert("c4", &session("cat", t1 + 6), &limits)
            .await
            .expect("session store");
        assert!(store
            .get("c2", t1 + 7, &limits, false)
            .await
            .expect("session store")
            .is_none());
        for k in ["c1", "c3", "c4"] {
            assert!(
                store
                    .get(k, t1 + 7, &limits, false)
                    .await
                    .expect("session store")
                    .is_some(),
                "{k}"
            );
        }
        // Sign-out, and sign-out everywhere.
        store.remove("c1").await.expect("session store");
        assert!(store
            .get("c1", t1 + 8, &limits, false)
            .await
            .expect("session store")
            .is_none());
        assert_eq!(store.remove_account("cat").await.expect("session store"), 2);
        assert!(store
            .get("c4", t1 + 8, &limits, false)
            .await
            .expect("session store")
            .is_none());
        assert!(store
            .get("missing", t1, &limits, true)
            .await
            .expect("session store")
            .is_none());
    }

    #[tokio::test]
    async fn memory_sessions_pass_the_suite() {
        run(&MemorySessions::default()).await;
    }

    #[test]
    fn keys_are_hashes_of_the_id() {
        let k = key_of("some-id");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("some-id"));
        assert_eq!(k, key_of("some-id"));
    }
}
