//! Console sessions: an opaque random id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` under TLS), kept in memory with an idle timeout and an
//! absolute lifetime, each with its own CSRF token. Signing out everywhere
//! drops every session of the account. A restart signs everyone out.
//!
//! Owns the cookie format and the session table; knows nothing of pages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use berth_registry::auth::Subject;
use rand::RngCore;

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
    pub(super) created: Instant,
    pub(super) last_seen: Instant,
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

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Sessions one account may hold at once (browsers, devices).
const MAX_PER_ACCOUNT: usize = 32;

pub struct Sessions {
    idle: Duration,
    lifetime: Duration,
    tls: bool,
    table: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(idle: Duration, lifetime: Duration, tls: bool) -> Self {
        Self {
            idle,
            lifetime,
            tls,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `subject`.
    pub fn start(&self, subject: Subject) -> Session {
        let now = Instant::now();
        let s = Session {
            id: random_token(),
            csrf: random_token(),
            subject,
            created: now,
            last_seen: now,
        };
        let mut t = self.table();
        let (idle, lifetime) = (self.idle, self.lifetime);
        t.retain(|_, s| now - s.last_seen < idle && now - s.created < lifetime);
        // One account's sessions are bounded: past the bound, its least recently used one ends.
        let name = s.subject.name.clone();
        let mine: Vec<(Instant, String)> = t
            .values()
            .filter(|x| x.subject.name == name)
            .map(|x| (x.last_seen, x.id.clone()))
            .collect();
        if mine.len() >= MAX_PER_ACCOUNT {
            if let Some((_, oldest)) = mine.into_iter().min() {
                t.remove(&oldest);
            }
        }
        t.insert(s.id.clone(), s.clone());
        s
    }

    /// The live session with this id, its idle clock restarted; an expired one is dropped.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut t = self.table();
        let s = t.get_mut(id)?;
        if now - s.last_seen >= self.idle || now - s.created >= self.lifetime {
            t.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// Whether the session with this id is live, without restarting its
    /// idle clock (a page left open streaming updates keeps no session alive).
    pub fn alive(&self, id: &str) -> bool {
        let now = Instant::now();
        self.table()
            .get(id)
            .is_some_and(|s| now - s.last_seen < self.idle && now - s.created < self.lifetime)
    }

    pub fn end(&self, id: &str) {
        self.table().remove(id);
    }

    /// Ends every session of the account `name`; returns how many there were.
    pub fn end_all(&self, name: &str) -> usize {
        let mut t = self.table();
        let before = t.len();
        t.retain(|_, s| s.subject.name.as_deref() != Some(name));
        before - t.len()
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
        self.set_cookie(self.cookie_name(), Some(&session.id), Some(self.lifetime))
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

    fn subject(name: &str) -> Subject {
        Subject {
            name: Some(name.into()),
            ..Subject::default()
        }
    }

    #[test]
    fn sessions_expire_when_idle_and_end_everywhere() {
        let s = Sessions::new(Duration::from_millis(50), Duration::from_secs(60), false);
        let a = s.start(subject("ann"));
        let b = s.start(subject("ann"));
        let c = s.start(subject("bob"));
        assert!(s.touch(&a.id).is_some());
        assert_eq!(s.end_all("ann"), 2);
        assert!(s.touch(&b.id).is_none());
        assert!(s.touch(&c.id).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.touch(&c.id).is_none(), "idle past the timeout");
    }

    #[test]
    fn an_account_holds_a_bounded_number_of_sessions() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60), false);
        let first = s.start(subject("ann"));
        let rest: Vec<Session> = (1..MAX_PER_ACCOUNT)
            .map(|_| s.start(subject("ann")))
            .collect();
        assert!(s.touch(&first.id).is_some(), "at the bound, all live");
        let newest = s.start(subject("ann"));
        assert!(
            s.touch(&rest[0].id).is_none(),
            "the least recently used one ended"
        );
        assert!(s.touch(&first.id).is_some() && s.touch(&newest.id).is_some());
    }

    #[test]
    fn cookies_are_strict_and_secure_under_tls() {
        let plain = Sessions::new(Duration::from_secs(60), Duration::from_secs(60), false);
        let c = plain.session_cookie(&plain.start(subject("ann")));
        assert!(c.starts_with("berth_session="), "{c}");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        let tls = Sessions::new(Duration::from_secs(60), Duration::from_secs(60), true);
        let c = tls.session_cookie(&tls.start(subject("ann")));
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
