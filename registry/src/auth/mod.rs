//! Who is asking, and may they. The `/v2` router asks one question per
//! request through `Access`: may this request do `action` on `repo`?
//!
//! `OpenAccess` allows everything (a registry without accounts, and the edge
//! cache's loopback listener); the account-backed implementation lives in
//! `access` over `accounts` (kept in an `store::AccountStore`) and is what
//! `berth serve` uses.

use std::net::IpAddr;

use async_trait::async_trait;
use http::HeaderMap;

use crate::oci::RepoName;

pub mod access;
pub mod accounts;
pub mod audit;
pub mod client;
pub mod endpoint;
pub mod policy;
pub mod sessions;
pub mod store;
pub mod throttle;
pub mod token;
pub mod token_keys;
#[cfg(test)]
pub(crate) mod token_keys_conformance;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// What a bearer token grants: per repository, the actions.
pub type TokenGrants = std::sync::Arc<[(String, Vec<Action>)]>;

/// The caller, as established from the request's credentials.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// Account or robot name; None for anonymous.
    pub name: Option<String>,
    /// The account's instance id: a name deleted and created again is another account.
    pub account_id: Option<String>,
    /// A system administrator, as the account says now (never as a token says).
    pub admin: bool,
    pub robot: bool,
    /// From a bearer token: what it grants, per repository.
    pub token_grants: Option<TokenGrants>,
}

impl Subject {
    pub fn display(&self) -> &str {
        self.name.as_deref().unwrap_or("anonymous")
    }
}

/// What the router knows about a request when it asks.
#[derive(Debug, Clone)]
pub struct RequestInfo<'a> {
    pub headers: &'a HeaderMap,
    pub peer: Option<IpAddr>,
}

/// Why a request is refused; rendered by the router.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// No or bad credentials: 401 with a `WWW-Authenticate` challenge.
    #[error("{message}")]
    Unauthorized {
        message: String,
        challenge: Option<String>,
    },
    /// Authenticated but not allowed: 403 DENIED.
    #[error("{0}")]
    Denied(String),
    /// The repository's existence must not leak: 404 NAME_UNKNOWN.
    #[error("{0}")]
    Hidden(String),
    /// Too many failed logins: 429 with Retry-After seconds.
    #[error("{message}")]
    TooMany { message: String, retry_after: u64 },
}

#[async_trait]
pub trait Access: Send + Sync + 'static {
    /// Establishes the subject and checks `scope` (None: only "who are you", as for `/v2/`).
    async fn check(
        &self,
        req: &RequestInfo<'_>,
        scope: Option<(&RepoName, Action)>,
    ) -> Result<Subject, Refusal>;
    /// Establishes the subject only (anonymous without credentials), for listings.
    async fn identify(&self, req: &RequestInfo<'_>) -> Result<Subject, Refusal> {
        self.check(req, None).await
    }
    /// Whether `subject` may see `repo` at all (catalog, mount sources).
    fn may_pull(&self, subject: &Subject, repo: &str) -> bool;
    /// Records a successful mutating action in the audit log.
    fn record(
        &self,
        _subject: &Subject,
        _peer: Option<IpAddr>,
        _action: &str,
        _repo: &RepoName,
        _target: &str,
    ) {
    }
}

/// Everything allowed, for everyone.
pub struct OpenAccess;

#[async_trait]
impl Access for OpenAccess {
    async fn check(
        &self,
        _req: &RequestInfo<'_>,
        _scope: Option<(&RepoName, Action)>,
    ) -> Result<Subject, Refusal> {
        Ok(Subject::default())
    }
    fn may_pull(&self, _subject: &Subject, _repo: &str) -> bool {
        true
    }
}
