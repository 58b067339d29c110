//! Console sessions: an opaque random id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` under TLS), with an idle timeout and an absolute
//! lifetime, and a CSRF token derived from the id. Signing out everywhere
//! drops every session of the account.
//!
//! The sessions themselves are kept behind `SessionStore` (the registry's
//! `auth::sessions`): in memory on the embedded default (a restart signs
//! everyone out), in PostgreSQL where replicas share the metadata, so a
//! browser signed in through one replica is signed in on all of them. A
//! store holds only a hash of each id.
//!
//! Owns the cookie format and the session rules; knows nothing of pages.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use berth_registry::auth::sessions::{key_of, SessionLimits, SessionStore, StoredSession};
use berth_registry::auth::Subject;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie; the `__Host-` prefix is used under TLS (it needs `Secure`).
pub const COOKIE: &str = "berth_session";
const COOKIE_TLS: &str = "__Host-berth_session";
/// The pre-sign-in CSRF cookie: the sign-in and reset forms echo it back.
pub const PRE_COOKIE: &str = "berth_pre";
/// The chosen language.
pub const LANG_COOKIE: &str = "berth_lang";

/// One signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub csrf: String,
    pub subject: Subject,
}

impl Session {
    pub fn name(&self) -> &str {
        self.subject.display()
    }
}

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The CSRF token of the session `id`: a hash of it, so no store keeps it,
/// and only who holds the (`HttpOnly`) id can know it.
fn csrf_of(id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"berth console csrf\0");
    h.update(id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Sessions one account may hold at once (browsers, devices).
const MAX_PER_ACCOUNT: usize = 32;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, berth_registry::auth::sessions::ms)
}

pub struct Sessions {
    limits: SessionLimits,
    tls: bool,
    store: Arc<dyn SessionStore>,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn SessionStore>,
        idle: Duration,
        lifetime: Duration,
        tls: bool,
    ) -> Self {
        Self {
            limits: SessionLimits {
                idle,
                lifetime,
                per_account: MAX_PER_ACCOUNT,
            },
            tls,
            store,
        }
    }

    /// Starts a session for `subject`; None (and the reason logged) when
    /// the store cannot keep it.
    pub async fn start(&self, subject: Subject) -> Option<Session> {
        let id = random_token();
        let now = now_ms();
        let stored = StoredSession {
            account: subject.name.clone().unwrap_or_default(),
            account_id: subject.account_id.clone().unwrap_or_default(),
            created_ms: now,
            last_seen_ms: now,
        };
        if let Err(e) = self.store.insert(&key_of(&id), &stored, &self.limits).await {
            tracing::error!(error = %e, "console: cannot store a session");
            return None;
        }
        Some(Session {
            csrf: csrf_of(&id),
            id,
            subject,
        })
    }

    /// The live session with this id, its idle clock restarted; an expired
    /// one is dropped. The subject names the account instance only: the
    /// caller takes the account as it is now.
    pub async fn touch(&self, id: &str) -> Option<Session> {
        let s = self.read(id, true).await?;
        Some(Session {
            csrf: csrf_of(id),
            id: id.to_string(),
            subject: Subject {
                name: Some(s.account),
                account_id: Some(s.account_id),
                ..Subject::default()
            },
        })
    }

    /// Whether the session with this id is live, without restarting its
    /// idle clock (a page left open streaming updates keeps no session alive).
    pub async fn alive(&self, id: &str) -> bool {
        self.read(id, false).await.is_some()
    }

    async fn read(&self, id: &str, touch: bool) -> Option<StoredSession> {
        let got = self
            .store
            .get(&key_of(id), now_ms(), &self.limits, touch)
            .await;
        got.unwrap_or_else(|e| {
            tracing::error!(error = %e, "console: cannot read a session; treating it as ended");
            None
        })
    }

    pub async fn end(&self, id: &str) {
        if let Err(e) = self.store.remove(&key_of(id)).await {
            tracing::error!(error = %e, "console: cannot end a session");
        }
    }

    /// Ends every session of the account `name`; returns how many there were.
    pub async fn end_all(&self, name: &str) -> usize {
        self.store.remove_account(name).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "console: cannot end an account's sessions");
            0
        })
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.tls {
            COOKIE_TLS
        } else {
            COOKIE
        }
    }

    /// `Set-Cookie` for a cookie of this console (`value` None: delete it).
    pub fn set_cookie(&self, name: &str, value: Option<&str>, max_age: Option<Duration>) -> String {
        let mut c = format!(
            "{name}={}; Path=/; HttpOnly; SameSite=Strict",
            value.unwrap_or("")
        );
        if self.tls {
            c.push_str("; Secure");
        }
        match (value, max_age) {
            (None, _) => c.push_str("; Max-Age=0"),
            (Some(_), Some(a)) => c.push_str(&format!("; Max-Age={}", a.as_secs())),
            (Some(_), None) => {}
        }
        c
    }

    /// `Set-Cookie` starting `session`.
    pub fn session_cookie(&self, session: &Session) -> String {
        self.set_cookie(
            self.cookie_name(),
            Some(&session.id),
            Some(self.limits.lifetime),
        )
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_registry::auth::sessions::MemorySessions;

    fn subject(name: &str) -> Subject {
        Subject {
            name: Some(name.into()),
            account_id: Some(format!("{name}-id")),
            ..Subject::default()
        }
    }

    fn sessions(idle: Duration, tls: bool) -> Sessions {
        let store = Arc::new(MemorySessions::default());
        Sessions::new(store, idle, Duration::from_secs(60), tls)
    }

    #[tokio::test]
    async fn sessions_expire_when_idle_and_end_everywhere() {
        let s = sessions(Duration::from_millis(50), false);
        let a = s.start(subject("ann")).await.expect("a");
        let b = s.start(subject("ann")).await.expect("b");
        let c = s.start(subject("bob")).await.expect("c");
        let got = s.touch(&a.id).await.expect("a is live");
        assert_eq!(got.csrf, a.csrf, "the CSRF token stays the session's");
        assert_eq!(got.subject.account_id.as_deref(), Some("ann-id"));
        assert_ne!(a.csrf, b.csrf);
        assert_eq!(s.end_all("ann").await, 2);
        assert!(s.touch(&b.id).await.is_none());
        assert!(s.touch(&c.id).await.is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(s.touch(&c.id).await.is_none(), "idle past the timeout");
    }

    #[tokio::test]
    async fn an_account_holds_a_bounded_number_of_sessions() {
        let s = sessions(Duration::from_secs(60), false);
        let first = s.start(subject("ann")).await.expect("first");
        let mut rest = Vec::new();
        for _ in 1..MAX_PER_ACCOUNT {
            tokio::time::sleep(Duration::from_millis(2)).await;
            rest.push(s.start(subject("ann")).await.expect("session"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(s.touch(&first.id).await.is_some(), "at the bound, all live");
        tokio::time::sleep(Duration::from_millis(2)).await;
        let newest = s.start(subject("ann")).await.expect("newest");
        assert!(
            s.touch(&rest[0].id).await.is_none(),
            "the least recently used one ended"
        );
        assert!(s.touch(&first.id).await.is_some() && s.touch(&newest.id).await.is_some());
    }

    #[tokio::test]
    async fn cookies_are_strict_and_secure_under_tls() {
        let plain = sessions(Duration::from_secs(60), false);
        let c = plain.session_cookie(&plain.start(subject("ann")).await.expect("s"));
        assert!(c.starts_with("berth_session="), "{c}");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        let tls = sessions(Duration::from_secs(60), true);
        let c = tls.session_cookie(&tls.start(subject("ann")).await.expect("s"));
        assert!(
            c.starts_with("__Host-berth_session=") && c.contains("; Secure"),
            "{c}"
        );
    }

    #[test]
    fn cookie_header_is_parsed() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; berth_session=xyz"),
        );
        assert_eq!(cookie(&h, "berth_session"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }
}
