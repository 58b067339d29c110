//! The request path to upstream: the first endpoint that is not down and on to the next, answers bounded in time, the circuit breaker's marks, and the token flow (Bearer tokens cached per scope, or Basic).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::{Request, Upstream, UpstreamError};
use crate::oci::RepoName;

impl Upstream {
    pub(super) fn mark(&self, at: usize, up: bool) {
        if let Some(e) = self.endpoints.get(at) {
            e.mark(up);
        }
    }

    /// A token is for the endpoint that gave it (replicas need not share keys).
    pub(super) fn cached_token(&self, at: usize, scope: &str) -> Option<String> {
        let t = self.tokens.lock().ok()?;
        t.get(&format!("{at} {scope}"))
            .filter(|(_, exp)| Instant::now() < *exp)
            .map(|(t, _)| t.clone())
    }

    pub(super) async fn fetch_token(
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
            crate::proxy::target::check_url_for(&url, setting)
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
    pub(super) async fn send(
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
    pub(super) async fn send_to(&self, r: Request<'_>) -> Result<reqwest::Response, UpstreamError> {
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

    pub(super) fn basic_auth(&self) -> Option<String> {
        use base64::Engine;
        let (u, p) = self.creds.as_ref()?;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ))
    }

    /// Waits for upstream's answer (status and headers) at most `answer_timeout`;
    /// a hung upstream counts as down, like one that refuses connections.
    pub(super) async fn answer(
        &self,
        at: usize,
        request: impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.answer_within(at, self.answer_timeout, request).await
    }

    pub(super) async fn answer_within(
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

    pub(super) fn checked(
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
    pub(super) async fn found(
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
