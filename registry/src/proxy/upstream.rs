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
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::oci::{media, Descriptor, Digest, RepoName};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

#[path = "upstream_push.rs"]
mod push;
pub use push::Mounted;

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

    fn mark(&self, at: usize, up: bool) {
        if let Some(e) = self.endpoints.get(at) {
            e.mark(up);
        }
    }

    /// A token is for the endpoint that gave it (replicas need not share keys).
    fn cached_token(&self, at: usize, scope: &str) -> Option<String> {
        let t = self.tokens.lock().ok()?;
        t.get(&format!("{at} {scope}"))
            .filter(|(_, exp)| Instant::now() < *exp)
            .map(|(t, _)| t.clone())
    }

    async fn fetch_token(
        &self,
        at: usize,
        challenge: &str,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").ok_or_else(|| {
            UpstreamError::Protocol(format!("challenge without realm: {challenge}"))
        })?;
        if let Some(setting) = self.guarded {
            let url = reqwest::Url::parse(realm).map_err(|e| {
                UpstreamError::Protocol(format!("challenge with a bad realm {realm:?}: {e}"))
            })?;
            super::target::check_url_for(&url, setting)
                .map_err(|why| UpstreamError::Protocol(format!("token realm refused: {why}")))?;
        }
        let mut req = self.client.get(realm.as_str());
        let mut q: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(s) = params.get("service") {
            q.push(("service", s.as_str()));
        }
        req = req.query(&q);
        if let Some((u, p)) = &self.creds {
            req = req.basic_auth(u, Some(p));
        }
        let res = self.answer(at, req.send()).await?;
        if !res.status().is_success() {
            return Err(UpstreamError::Refused(res.status().as_u16()));
        }
        #[derive(serde::Deserialize)]
        struct Tok {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: Tok = res
            .json()
            .await
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let token = t
            .token
            .or(t.access_token)
            .ok_or_else(|| UpstreamError::Protocol("token response without a token".into()))?;
        // Renew a little early; at least 60 s is the spec's default lifetime.
        let ttl = t.expires_in.unwrap_or(60).max(10);
        let exp = Instant::now() + Duration::from_secs(ttl.saturating_sub(5));
        if let Ok(mut c) = self.tokens.lock() {
            c.insert(format!("{at} {scope}"), (token.clone(), exp));
        }
        Ok(token)
    }

    /// Sends a request for `repo` to the first endpoint that is not down,
    /// and on to the next while one is unreachable (connection error,
    /// timeout, 5xx or 429); following the token flow once on a 401.
    async fn send(
        &self,
        method: Method,
        path: &str,
        repo: &RepoName,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut last = UpstreamError::Unreachable("upstream was unreachable moments ago".into());
        for (at, e) in self.endpoints.iter().enumerate() {
            if e.is_down() {
                continue;
            }
            let url = format!("{}{}", e.base, path);
            let sent = self
                .send_to(Request {
                    at,
                    method: method.clone(),
                    url: &url,
                    repo,
                    headers: headers.clone(),
                    body: None,
                    actions: "pull",
                })
                .await;
            match sent {
                Err(err @ UpstreamError::Unreachable(_)) => {
                    if self.endpoints.len() > 1 {
                        tracing::warn!(upstream = %e.base, error = %err, "upstream unreachable; trying the next");
                        // A 5xx does not mark it down by itself: skip it a while.
                        e.mark(false);
                    }
                    last = err;
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// Sends `r`, following the token flow once on a 401 (a body is sent
    /// again then).
    async fn send_to(&self, r: Request<'_>) -> Result<reqwest::Response, UpstreamError> {
        if self.endpoints.get(r.at).is_none_or(|e| e.is_down()) {
            return Err(UpstreamError::Unreachable(
                "upstream was unreachable moments ago".into(),
            ));
        }
        let scope = format!("repository:{}:{}", self.remote(r.repo), r.actions);
        // A body may take longer to send than an answer to come.
        let wait = match &r.body {
            Some(b) => self.answer_timeout * 4 + Duration::from_secs(b.len() as u64 >> 16),
            None => self.answer_timeout,
        };
        let build = |auth: Option<String>| {
            let mut b = self
                .client
                .request(r.method.clone(), r.url)
                .headers(r.headers.clone());
            if let Some(a) = auth.and_then(|a| HeaderValue::from_str(&a).ok()) {
                b = b.header(AUTHORIZATION, a);
            }
            if let Some(body) = &r.body {
                b = b.body(body.clone());
            }
            b
        };
        let auth = match self.cached_token(r.at, &scope) {
            Some(t) => Some(format!("Bearer {t}")),
            None if self.basic.load(Ordering::Relaxed) => self.basic_auth(),
            None => None,
        };
        let res = self.answer_within(r.at, wait, build(auth).send()).await?;
        if res.status() != StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        let challenge = res
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let auth = if challenge.to_ascii_lowercase().starts_with("bearer") {
            format!(
                "Bearer {}",
                self.fetch_token(r.at, &challenge, &scope).await?
            )
        } else if let Some(basic) = self.basic_auth() {
            self.basic.store(true, Ordering::Relaxed);
            basic
        } else {
            return Err(UpstreamError::Refused(401));
        };
        let res = self
            .answer_within(r.at, wait, build(Some(auth)).send())
            .await?;
        match res.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(UpstreamError::Refused(res.status().as_u16()))
            }
            _ => Ok(res),
        }
    }

    fn basic_auth(&self) -> Option<String> {
        use base64::Engine;
        let (u, p) = self.creds.as_ref()?;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ))
    }

    /// Waits for upstream's answer (status and headers) at most `answer_timeout`;
    /// a hung upstream counts as down, like one that refuses connections.
    async fn answer(
        &self,
        at: usize,
        request: impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.answer_within(at, self.answer_timeout, request).await
    }

    async fn answer_within(
        &self,
        at: usize,
        wait: Duration,
        request: impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    ) -> Result<reqwest::Response, UpstreamError> {
        match tokio::time::timeout(wait, request).await {
            Ok(r) => self.checked(at, r),
            Err(_) => {
                self.mark(at, false);
                Err(UpstreamError::Unreachable(format!(
                    "upstream did not answer within {wait:?}"
                )))
            }
        }
    }

    fn checked(
        &self,
        at: usize,
        r: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, UpstreamError> {
        match r {
            Ok(res)
                if res.status().is_server_error()
                    || res.status() == StatusCode::TOO_MANY_REQUESTS =>
            {
                Err(UpstreamError::Unreachable(format!(
                    "upstream answered {}",
                    res.status()
                )))
            }
            Ok(res) => {
                self.mark(at, true);
                Ok(res)
            }
            Err(e) => {
                if e.is_connect() || e.is_timeout() {
                    self.mark(at, false);
                }
                Err(UpstreamError::Unreachable(e.to_string()))
            }
        }
    }

    /// Sends a request and answers None on 404; any other non-success status is
    /// a protocol error naming the request.
    async fn found(
        &self,
        method: Method,
        path: &str,
        repo: &RepoName,
        headers: HeaderMap,
    ) -> Result<Option<reqwest::Response>, UpstreamError> {
        let res = self.send(method.clone(), path, repo, headers).await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !res.status().is_success() {
            return Err(UpstreamError::Protocol(format!(
                "{method} {path} answered {}",
                res.status()
            )));
        }
        Ok(Some(res))
    }

    /// HEAD of a manifest: its digest, or None when upstream does not have it.
    pub async fn head_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<Option<Digest>, UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let Some(res) = self
            .found(
                Method::HEAD,
                &format!("/v2/{}/manifests/{reference}", self.remote(repo)),
                repo,
                h,
            )
            .await?
        else {
            return Ok(None);
        };
        match res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) => d
                .parse()
                .map(Some)
                .map_err(|e: crate::oci::DigestError| UpstreamError::Protocol(e.to_string())),
            // No digest header: fall back to GET, as containerd does.
            None => Ok(self.get_manifest(repo, reference).await?.map(|m| m.digest)),
        }
    }

    /// GET of a manifest, verified against the digest asked for (or the one upstream claims).
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<Option<FetchedManifest>, UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        // A cache filling is not a pull: a berth upstream does not count it
        // (the cache counts, and an edge reports, the pulls it serves).
        h.insert(crate::pulls::FILL_HEADER, HeaderValue::from_static("1"));
        let Some(res) = self
            .found(
                Method::GET,
                &format!("/v2/{}/manifests/{reference}", self.remote(repo)),
                repo,
                h,
            )
            .await?
        else {
            return Ok(None);
        };
        let media_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media::essence)
            .unwrap_or_default();
        let claimed = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| d.parse::<Digest>().ok());
        let bytes = res
            .bytes()
            .await
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        let expected = reference.parse::<Digest>().ok().or(claimed);
        let digest = match expected {
            Some(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if actual != d {
                    return Err(UpstreamError::Protocol(format!(
                        "upstream sent a manifest with digest {actual} for {d}"
                    )));
                }
                d
            }
            None => Digest::sha256_of(&bytes),
        };
        Ok(Some(FetchedManifest {
            digest,
            media_type,
            bytes,
        }))
    }

    pub async fn head_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let Some(res) = self
            .found(
                Method::HEAD,
                &format!("/v2/{}/blobs/{digest}", self.remote(repo)),
                repo,
                HeaderMap::new(),
            )
            .await?
        else {
            return Ok(None);
        };
        // Not `res.content_length()`: for a HEAD that is the (empty) body's
        // size, 0, which made a cold blob look empty (Range GETs got 416).
        Ok(res
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok()))
    }

    /// GET of a blob from byte `from` on. None when upstream does not have it.
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: u64,
    ) -> Result<Option<BlobBody>, UpstreamError> {
        let mut h = HeaderMap::new();
        if from > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={from}-")) {
                h.insert(RANGE, v);
            }
        }
        self.counters.blob_gets.fetch_add(1, Ordering::Relaxed);
        let Some(res) = self
            .found(
                Method::GET,
                &format!("/v2/{}/blobs/{digest}", self.remote(repo)),
                repo,
                h,
            )
            .await?
        else {
            return Ok(None);
        };
        let len = res.content_length();
        let (extent, total) = if res.status() == StatusCode::PARTIAL_CONTENT {
            let range = res
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range);
            if let Some((start, _)) = range.filter(|(start, _)| *start != from) {
                return Err(UpstreamError::Protocol(format!(
                    "asked for {digest} from byte {from}, upstream sent it from byte {start}"
                )));
            }
            let total = range.and_then(|(_, t)| t).or(len.map(|l| l + from));
            (Extent::From(from), total)
        } else {
            (Extent::Full, len)
        };
        let counters = self.counters.clone();
        let stream = res
            .bytes_stream()
            .map(move |chunk| match chunk {
                Ok(c) => {
                    counters.bytes.fetch_add(c.len() as u64, Ordering::Relaxed);
                    Ok(c)
                }
                Err(e) => Err(UpstreamError::Unreachable(e.to_string())),
            })
            .boxed();
        Ok(Some(BlobBody {
            extent,
            total,
            stream,
        }))
    }

    /// A repository's tags, or None when upstream does not know it.
    pub async fn tags(&self, repo: &RepoName) -> Result<Option<Vec<String>>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let list: Option<TagList> = self
            .get_json(repo, &format!("/v2/{}/tags/list", self.remote(repo)))
            .await?;
        Ok(list.map(|l| l.tags.unwrap_or_default()))
    }

    /// The manifests referring to `subject` in `repo` (none when upstream
    /// answers 404: a registry without the referrers API).
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let index: Option<Index> = self
            .get_json(
                repo,
                &format!("/v2/{}/referrers/{subject}", self.remote(repo)),
            )
            .await?;
        Ok(index.map(|i| i.manifests).unwrap_or_default())
    }

    /// A JSON document. None on 404.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        repo: &RepoName,
        path: &str,
    ) -> Result<Option<T>, UpstreamError> {
        let Some(res) = self
            .found(Method::GET, path, repo, HeaderMap::new())
            .await?
        else {
            return Ok(None);
        };
        res.json()
            .await
            .map(Some)
            .map_err(|e| UpstreamError::Protocol(e.to_string()))
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL); TOTAL is None for `*`.
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// `Bearer realm="...",service="...",scope="..."` → map.
pub fn parse_challenge(h: &str) -> HashMap<String, String> {
    let rest = h.split_once(' ').map(|(_, r)| r).unwrap_or("");
    let mut out = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_string();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                val.push(c);
            }
            // skip to the comma
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    chars.next();
                    break;
                }
                chars.next();
            }
        } else {
            val = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.insert(key.to_ascii_lowercase(), val.trim().to_string());
    }
    out
}

#[cfg(test)]
#[path = "upstream_redirect_tests.rs"]
mod redirect_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_target_names_the_setting_of_its_caller() {
        for (setting, url) in [
            ("replication.allow_private_remotes", "http://127.0.0.1:5000"),
            ("proxy.allow_private_upstreams", "http://localhost:5000"),
        ] {
            let err = Upstream::for_project(ProjectUpstream {
                project: "",
                url,
                creds: None,
                connect_timeout: Duration::from_secs(1),
                allow_private: false,
                private_setting: setting,
            })
            .err()
            .expect("a private target is refused");
            assert!(err.contains(setting), "{err}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(content_range("items 1-2/3"), None);
    }

    #[test]
    fn challenges() {
        let m = parse_challenge(
            r#"Bearer realm="http://h:5000/v2/token",service="berth",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            m.get("realm").map(String::as_str),
            Some("http://h:5000/v2/token")
        );
        assert_eq!(m.get("service").map(String::as_str), Some("berth"));
        assert_eq!(
            m.get("scope").map(String::as_str),
            Some("repository:a/b:pull,push")
        );
    }
}
