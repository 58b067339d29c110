//! The client for the upstream registry: the Docker token flow with tokens
//! cached per scope until they expire, and a short circuit breaker so that a
//! dead link answers "not here" at once instead of after a connect timeout
//! per request. An upstream that accepts connections but hangs is bounded
//! too: answers must come within a few connect timeouts, and a body that
//! stalls longer breaks off (a blob fill then resumes with a Range request).
//!
//! Answers are typed (a manifest, a blob's body, a tag list, referrers):
//! nothing of HTTP leaves this module but the errors' words.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::oci::{Digest, RepoName};
use bytes::Bytes;
use futures::stream::BoxStream;
use reqwest::header::HeaderMap;
use reqwest::Method;

mod push;
mod reads;
mod send;
pub use push::Mounted;
pub use send::parse_challenge;

/// How long the link is considered down after a connection failure.
pub const DOWN_FOR: Duration = Duration::from_secs(3);

/// How long upstream may take to answer (status and headers), as a multiple
/// of the connect timeout: an upstream that accepts connections and then
/// hangs must not hold clients longer than one that refuses them, or
/// containerd waits instead of trying its next host.
const ANSWER_TIMEOUTS: u32 = 2;
/// How long a body may stall between two reads, as a multiple of the connect
/// timeout; a stalled blob transfer then resumes with a Range request.
const STALL_TIMEOUTS: u32 = 10;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Connection failed, timed out, or upstream answered 5xx/429.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// Upstream refused our credentials for this repository.
    #[error("upstream refused access ({0}); check the upstream credentials")]
    Refused(u16),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

pub struct Upstream {
    /// The first endpoint's URL (the one a proxy project has).
    base: String,
    /// Where to send requests, in order of preference: the edge's
    /// `--upstream` URLs (registry replicas, or a regional edge). A request
    /// goes to the first that is not down; a connection error, timeout or
    /// 5xx/429 sends it on to the next, and once the first is up again
    /// (`DOWN_FOR` after its failure) requests return to it. Pushes
    /// (replication) go to the first.
    endpoints: Vec<Endpoint>,
    /// A proxy project's name: `dockerhub/library/nginx` here is
    /// `library/nginx` upstream. Empty for the edge (same names both sides).
    project: String,
    /// Docker Hub keeps one-part names under `library/`.
    docker_hub: bool,
    /// Addresses in URLs are checked against `target::refused` (names are
    /// checked by the client's resolver).
    guarded: Option<&'static str>,
    client: reqwest::Client,
    creds: Option<(String, String)>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Upstream asked for Basic credentials once: send them from then on
    /// (one request per fetch, not a 401 round trip each time).
    basic: std::sync::atomic::AtomicBool,
    answer_timeout: Duration,
    /// Requests sent upstream, by kind; for metrics and tests.
    pub counters: Arc<UpstreamCounters>,
}

#[derive(Default)]
pub struct UpstreamCounters {
    pub blob_gets: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
}

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// Which part of a blob a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The whole blob (also what upstream sends when it ignores a Range).
    Full,
    /// The blob from this byte on: a Range request honoured.
    From(u64),
}

/// A blob's bytes as upstream sends them.
pub struct BlobBody {
    pub extent: Extent,
    /// The size of the whole blob, when upstream said.
    pub total: Option<u64>,
    /// The bytes; an error when the transfer breaks off or stalls.
    pub stream: BoxStream<'static, Result<Bytes, UpstreamError>>,
}

/// One URL of the upstream, and until when it is considered down.
struct Endpoint {
    base: String,
    down_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn new(base: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "upstream {base:?} must start with http:// or https://"
            ));
        }
        Ok(Self {
            base,
            down_until: Mutex::new(None),
        })
    }

    fn is_down(&self) -> bool {
        self.down_until
            .lock()
            .map(|d| d.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }

    fn mark(&self, up: bool) {
        if let Ok(mut d) = self.down_until.lock() {
            *d = if up {
                None
            } else {
                Some(Instant::now() + DOWN_FOR)
            };
        }
    }
}

/// One request to upstream.
struct Request<'a> {
    /// Which endpoint it goes to.
    at: usize,
    method: Method,
    /// Absolute.
    url: &'a str,
    repo: &'a RepoName,
    headers: HeaderMap,
    body: Option<Bytes>,
    /// The actions its token scope asks for: `pull`, `pull,push`, `pull,push,delete`.
    actions: &'static str,
}

/// How a proxy project reaches its upstream.
pub struct ProjectUpstream<'a> {
    /// The project whose repositories this upstream holds.
    pub project: &'a str,
    pub url: &'a str,
    pub creds: Option<(String, String)>,
    pub connect_timeout: Duration,
    /// Private, loopback and this machine's addresses may be reached.
    pub allow_private: bool,
    /// The setting that allows them, named when a target is refused.
    pub private_setting: &'static str,
}

impl Upstream {
    /// The edge's upstream: any address, names as they are. `bases` is one
    /// URL or several, comma-separated, tried in order (see `endpoints`).
    pub fn new(
        bases: &str,
        creds: Option<(String, String)>,
        connect_timeout: Duration,
        insecure: bool,
    ) -> Result<Self, String> {
        let urls: Vec<&str> = bases
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let first = urls.first().copied().unwrap_or_default();
        let mut up = Self::build(first, creds, connect_timeout, insecure, None)?;
        for url in urls.iter().skip(1) {
            up.endpoints.push(Endpoint::new(url)?);
        }
        Ok(up)
    }

    /// A proxy project's upstream: its names without the project, and unless
    /// allowed, only public addresses (`target.rs`), redirects included.
    pub fn for_project(p: ProjectUpstream<'_>) -> Result<Self, String> {
        let guard = (!p.allow_private).then_some(p.private_setting);
        let mut up = Self::build(p.url, p.creds, p.connect_timeout, false, guard)?;
        let url =
            reqwest::Url::parse(&up.base).map_err(|e| format!("upstream {}: {e}", up.base))?;
        if let Some(setting) = guard {
            super::target::check_url_for(&url, setting)?;
        }
        up.project = p.project.to_string();
        up.docker_hub = matches!(
            url.host_str(),
            Some(
                "registry-1.docker.io"
                    | "docker.io"
                    | "index.docker.io"
                    | "registry.hub.docker.com"
            )
        );
        Ok(up)
    }

    fn build(
        base: &str,
        creds: Option<(String, String)>,
        connect_timeout: Duration,
        insecure: bool,
        guarded: Option<&'static str>,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(setting) = guarded {
            builder = builder
                .dns_resolver(super::target::guarded_resolver(setting))
                .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() >= 10 {
                        return attempt.error("too many redirects");
                    }
                    match super::target::check_url_for(attempt.url(), setting) {
                        Ok(()) => attempt.follow(),
                        Err(why) => attempt.error(format!("redirect refused: {why}")),
                    }
                }));
        }
        let client = builder
            .connect_timeout(connect_timeout)
            .read_timeout((connect_timeout * STALL_TIMEOUTS).max(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(insecure)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let first = Endpoint::new(base)?;
        Ok(Self {
            base: first.base.clone(),
            endpoints: vec![first],
            project: String::new(),
            docker_hub: false,
            guarded,
            client,
            creds,
            tokens: Mutex::new(HashMap::new()),
            basic: Default::default(),
            answer_timeout: (connect_timeout * ANSWER_TIMEOUTS).max(Duration::from_secs(2)),
            counters: Arc::default(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `repo`'s name upstream.
    pub fn remote(&self, repo: &RepoName) -> String {
        let name = repo.as_str();
        let name = match self.project.as_str() {
            "" => name,
            p => name
                .strip_prefix(p)
                .and_then(|n| n.strip_prefix('/'))
                .unwrap_or(name),
        };
        if self.docker_hub && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_string()
        }
    }

    /// Whether upstream answers now: `GET /v2/` on each endpoint in order,
    /// each within `wait` (at most the answer timeout). Any answer but a 5xx
    /// or 429 counts, a 401 included: the registry is there. Answers the
    /// first endpoint that answered, else the last endpoint's failure. The
    /// circuit breaker learns from an answer or a refused connection, not
    /// from `wait` running out: a status page must not cut off an upstream
    /// that is merely slower than the page's bound.
    pub async fn probe(&self, wait: Duration) -> Result<String, UpstreamError> {
        let wait = wait.min(self.answer_timeout);
        let mut last = UpstreamError::Unreachable("no upstream configured".into());
        for (at, e) in self.endpoints.iter().enumerate() {
            let url = format!("{}/v2/", e.base);
            let answer = tokio::time::timeout(wait, self.client.get(&url).send()).await;
            match answer.map(|r| self.checked(at, r)) {
                Ok(Ok(_)) => return Ok(e.base.clone()),
                Ok(Err(err)) => last = err,
                Err(_) => last = UpstreamError::Unreachable(format!("no answer within {wait:?}")),
            }
        }
        Err(last)
    }

    /// The URLs of every endpoint, in order.
    pub fn bases(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.base.as_str()).collect()
    }
}

#[cfg(test)]
mod redirect_tests;

#[cfg(test)]
mod tests;
