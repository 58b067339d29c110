//! The audit log's vocabulary and what keeps refused calls in it bounded.
//!
//! Owns: [`Outcome`], the one set of outcomes the registry and the controller
//! record (`ok`, `refused` — the caller may not, or asked for something
//! invalid —, `failed` — berth could not do it), each with an optional detail;
//! [`RefusalBudget`], which limits how many refused calls are recorded one by
//! one; and [`record_refusals`], the layer that records the refused calls
//! (401/403) of the admin and controller APIs and the refused writes on `/v2`.
//!
//! Bounded: per client address at most [`PER_ADDRESS`] refused calls a minute
//! are recorded one by one, and at most [`GLOBAL`] from all addresses together;
//! the rest of that minute is counted and written as one `refused.suppressed`
//! event per address (with the count) when the next refused call arrives after
//! the minute. At most [`MAX_ADDRESSES`] addresses are tracked per minute;
//! beyond them, addresses share one count. So a flood of 401s adds at most
//! `GLOBAL` + `MAX_ADDRESSES` events a minute, however many requests it sends.
//!
//! Must not touch: the audit table (through `Accounts::audit`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What came of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Done; the detail, if any, is a note (what else happened).
    Ok(&'a str),
    /// Refused: not allowed, or an invalid request; the detail says why.
    Refused(&'a str),
    /// Allowed, but berth could not do it.
    Failed(&'a str),
}

impl<'a> Outcome<'a> {
    /// Done, nothing to add.
    pub const OK: Outcome<'static> = Outcome::Ok("");

    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "failed",
        }
    }

    pub fn detail(&self) -> Option<&'a str> {
        match self {
            Outcome::Ok(d) | Outcome::Refused(d) | Outcome::Failed(d) => {
                Some(*d).filter(|d| !d.is_empty())
            }
        }
    }

    /// Reads the text form `ok`, `ok; <note>`, `refused: <why>` or `failed: <why>`
    /// (what the controller's audit port sends). Anything else is a failure in words.
    pub fn parse(text: &'a str) -> Self {
        let text = text.trim();
        let end = text
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(text.len());
        let (word, detail) = text.split_at(end);
        let detail = detail.trim_start_matches([':', ';']).trim();
        match word {
            "ok" => Outcome::Ok(detail),
            "refused" | "denied" => Outcome::Refused(detail),
            "failed" => Outcome::Failed(detail),
            _ => Outcome::Failed(text),
        }
    }
}

/// Refused calls recorded one by one per address and minute.
pub const PER_ADDRESS: u32 = 20;
/// Refused calls recorded one by one per minute, all addresses together.
pub const GLOBAL: u32 = 600;
/// Addresses counted separately per minute.
pub const MAX_ADDRESSES: usize = 1_000;
const WINDOW: Duration = Duration::from_secs(60);

/// Whether to record one refused call, and the counts of the last window to write.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admission {
    pub record: bool,
    /// (address, refused calls not recorded one by one) of the window that ended.
    pub suppressed: Vec<(Option<IpAddr>, u64)>,
}

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    recorded: u32,
    /// address (None: every address past MAX_ADDRESSES) → (recorded, suppressed).
    per: HashMap<Option<IpAddr>, (u32, u64)>,
}

/// Limits refused calls recorded one by one (see the module doc).
#[derive(Default)]
pub struct RefusalBudget {
    window: Mutex<Window>,
}

impl RefusalBudget {
    pub fn admit(&self, peer: Option<IpAddr>, now: Instant) -> Admission {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Admission::default();
        if w.started.is_none_or(|s| now.duration_since(s) >= WINDOW) {
            out.suppressed = w
                .per
                .drain()
                .filter(|(_, (_, n))| *n > 0)
                .map(|(a, (_, n))| (a, n))
                .collect();
            out.suppressed.sort();
            *w = Window {
                started: Some(now),
                ..Window::default()
            };
        }
        let key = if w.per.contains_key(&peer) || w.per.len() < MAX_ADDRESSES {
            peer
        } else {
            None
        };
        let global_left = w.recorded < GLOBAL;
        let entry = w.per.entry(key).or_default();
        if entry.0 < PER_ADDRESS && global_left {
            entry.0 += 1;
            w.recorded += 1;
            out.record = true;
        } else {
            entry.1 += 1;
        }
        out
    }
}

/// A response extension: the handler has recorded this refusal itself.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// Records refused calls (401/403) that pass through it, once each, as action
/// `request` with target `METHOD path`, under the refusal budget. Not recorded
/// here: a wrong password (the login check records it as `login`), reads on
/// `/v2` (pulls are not audited), and a `/v2` write without credentials (the
/// challenge that starts every client's token flow).
pub async fn record_refusals(
    axum::extract::State(access): axum::extract::State<
        std::sync::Arc<super::access::RegistryAccess>,
    >,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(pending) = RefusalCheck::capture(&req) else {
        return next.run(req).await;
    };
    let res = next.run(req).await;
    pending.finish(&access, res).await
}

/// Whether `path` is the distribution API's (`/v2` and below), where reads
/// and refusals without credentials are the protocol's own and never audited.
pub fn under_v2(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// What a refusal's record needs of its request, kept while the request
/// runs (`record_refusals`, and the common layer for `/v2`).
pub struct RefusalCheck {
    method: axum::http::Method,
    uri: axum::http::Uri,
    peer: Option<IpAddr>,
    authorization: Option<axum::http::HeaderValue>,
}

impl RefusalCheck {
    /// None for a request whose refusal is never recorded: a read on `/v2`.
    /// The rest is kept without allocating: most requests are not refused.
    pub fn capture(req: &axum::extract::Request) -> Option<RefusalCheck> {
        use axum::http::{header, Method};
        let path = req.uri().path();
        let v2 = under_v2(path);
        if v2 && (req.method() == Method::GET || req.method() == Method::HEAD) {
            return None;
        }
        Some(RefusalCheck {
            method: req.method().clone(),
            uri: req.uri().clone(),
            peer: super::client::client_addr(req.extensions()),
            authorization: req.headers().get(header::AUTHORIZATION).cloned(),
        })
    }

    /// Records `res` if it refuses the request and no handler recorded it.
    pub async fn finish(
        self,
        access: &super::access::RegistryAccess,
        res: axum::response::Response,
    ) -> axum::response::Response {
        use axum::http::{header, Method, StatusCode};
        let status = res.status();
        if !(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
            || res.extensions().get::<Audited>().is_some()
        {
            return res;
        }
        let RefusalCheck {
            method,
            uri,
            peer,
            authorization,
        } = self;
        let path = uri.path();
        let scheme = authorization
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(' ').next().unwrap_or("").to_ascii_lowercase());
        let v2 = under_v2(path);
        if v2 && (method == Method::GET || method == Method::HEAD || scheme.is_none()) {
            return res;
        }
        if status == StatusCode::UNAUTHORIZED && scheme.as_deref() == Some("basic") {
            return res;
        }
        let actor = if status == StatusCode::FORBIDDEN {
            let mut headers = axum::http::HeaderMap::new();
            if let Some(a) = authorization {
                headers.insert(header::AUTHORIZATION, a);
            }
            let info = super::RequestInfo {
                headers: &headers,
                peer,
            };
            match access.identify(&info).await {
                Ok(s) => s.display().to_string(),
                Err(_) => "anonymous".to_string(),
            }
        } else if scheme.is_some() {
            "bearer token".to_string()
        } else {
            "anonymous".to_string()
        };
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default();
        let message = error_message(&bytes).unwrap_or_else(|| status.to_string());
        access.audit(
            &actor,
            peer,
            "request",
            project_of(path).as_deref(),
            &format!("{method} {path}"),
            Outcome::Refused(&message),
        );
        axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
    }
}

/// The message of an admin (`error`) or OCI (`errors[0].message`) error body.
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("error")
        .or_else(|| v.pointer("/errors/0/message"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
}

/// The project a path is about: `/api/v1/projects/<p>/...` or `/v2/<p>/...`.
fn project_of(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/api/v1/projects/")
        .or_else(|| path.strip_prefix("/v2/"))?;
    let p = rest.split('/').next()?;
    (!p.is_empty() && !p.starts_with('_') && p != "token").then(|| p.to_string())
}

/// Events written before the one vocabulary read back in it.
pub fn normalize(e: &mut super::accounts::AuditEvent) {
    let (word, detail) = match e.outcome.as_str() {
        "ok" | "refused" | "failed" => return,
        "success" => ("ok", None),
        "failure" => (
            "refused",
            Some("wrong password or no such account".to_string()),
        ),
        other => {
            let o = Outcome::parse(other);
            match o {
                Outcome::Failed(d) if d == other => ("refused", Some(other.to_string())),
                _ => (o.word(), o.detail().map(str::to_string)),
            }
        }
    };
    e.outcome = word.to_string();
    if e.detail.is_none() {
        e.detail = detail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_as_one_vocabulary() {
        assert_eq!(Outcome::parse("ok"), Outcome::OK);
        assert_eq!(Outcome::parse("ok; pins kept"), Outcome::Ok("pins kept"));
        assert_eq!(
            Outcome::parse("refused: no such app"),
            Outcome::Refused("no such app")
        );
        assert_eq!(
            Outcome::parse("failed: disk full"),
            Outcome::Failed("disk full")
        );
        assert_eq!(Outcome::parse("refused").detail(), None);
        assert_eq!(Outcome::parse("weird").word(), "failed");
    }

    #[test]
    fn projects_are_read_from_admin_and_v2_paths() {
        assert_eq!(
            project_of("/api/v1/projects/pub/apps").as_deref(),
            Some("pub")
        );
        assert_eq!(
            project_of("/v2/pub/hello/blobs/uploads/").as_deref(),
            Some("pub")
        );
        assert_eq!(project_of("/v2/token"), None);
        assert_eq!(project_of("/api/v1/users/bob"), None);
    }

    #[test]
    fn a_flood_from_one_address_is_recorded_up_to_the_budget_then_counted() {
        let b = RefusalBudget::default();
        let t0 = Instant::now();
        let a: Option<IpAddr> = "192.0.2.1".parse().ok();
        let other: Option<IpAddr> = "192.0.2.2".parse().ok();
        let recorded = (0..1000).filter(|_| b.admit(a, t0).record).count();
        assert_eq!(recorded, PER_ADDRESS as usize);
        // Another address still has its own budget.
        assert!(b.admit(other, t0).record);
        // The next minute starts afresh and reports what the last one held back.
        let next = b.admit(a, t0 + WINDOW);
        assert!(next.record);
        assert_eq!(next.suppressed, vec![(a, 1000 - PER_ADDRESS as u64)]);
    }

    #[test]
    fn many_addresses_share_the_global_budget_and_one_count() {
        let b = RefusalBudget::default();
        let t0 = Instant::now();
        let mut recorded = 0;
        for i in 0..5_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            for _ in 0..3 {
                recorded += usize::from(b.admit(Some(ip), t0).record);
            }
        }
        assert_eq!(recorded, GLOBAL as usize);
        let next = b.admit(None, t0 + WINDOW);
        assert!(next.suppressed.len() <= MAX_ADDRESSES + 1);
        let total: u64 = next.suppressed.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 15_000 - GLOBAL as u64);
    }
}
