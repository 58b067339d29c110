//! The HTTP client of a node's edge cache (prefetch, job progress, unpin).
//!
//! Owns: the wire format of the edge-cache prefetch API —
//!
//! ```text
//! POST {edge_url}/api/v1/prefetch      {"images":["proj/app@sha256:..."],"pin":true,
//!                                        "report":{"url":...,"token":...}}  -> 202 {"id":...,"report":true}
//!                                       (report: the edge posts the finished job to url; see
//!                                        `reconcile::reports`; an edge without it omits "report")
//! GET  {edge_url}/api/v1/prefetch/{id} -> 200 {"id","state","bytes_done","bytes_total","error","images":[...]}
//!                                         404 when the edge does not know the job
//! GET  {edge_url}/api/v1/prefetch      -> 200 [{"id","state","pin","created","images":[...]}, ...]
//! POST {edge_url}/api/v1/unpin         {"images":[...]} -> 200
//! GET  {edge_url}/api/v1/status        -> 200 {"capacity_bytes","used_bytes","hits","misses","hit_rate",
//!                                         "pinned_images","upstream":{"reachable",...},"prefetch_jobs"}
//! GET  {edge_url}/api/v1/logs/{namespace}                   -> 200 [{"pod","containers","modified"}, ...]
//! GET  {edge_url}/api/v1/logs/{namespace}/{pod}/{container}?tail=&since=&follow=&previous=&timestamps=
//!                                                          -> 200 text, streamed while following
//! ```
//!
//! with basic auth when the node has edge credentials; the logs routes with the
//! node's controller token as a bearer token instead. Errors say which node and
//! URL, and whether the edge was unreachable or refused.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};

use crate::model::Node;
use crate::ports::{
    EdgeClient, EdgeError, JobStatus, LogPod, LogRequest, LogStream, ReportTarget, Submitted,
};

#[cfg(test)]
mod tests;
mod wire;

pub use wire::reported_job;
use wire::{matching, JobBody, JobCreated, ListedJob, PrefetchRequest, ReportBody, UnpinRequest};

/// Talks to edge caches over HTTP(S) with rustls. The HTTP client (and its
/// TLS roots) is built on first use: a registry that never publishes to an
/// edge never pays for it.
#[derive(Clone)]
pub struct HttpEdgeClient {
    timeout: Duration,
    http: Arc<OnceLock<reqwest::Client>>,
    /// For log streams: a connect timeout only, since a follow may run for hours.
    streaming: Arc<OnceLock<reqwest::Client>>,
}

impl HttpEdgeClient {
    /// `timeout` bounds each request (connect and answer).
    pub fn new(timeout: Duration) -> Result<Self, EdgeError> {
        Ok(HttpEdgeClient {
            timeout,
            http: Arc::default(),
            streaming: Arc::default(),
        })
    }

    fn http(&self, node: &Node) -> Result<&reqwest::Client, EdgeError> {
        self.client(node, &self.http, Some(self.timeout))
    }

    /// For log streams: a connect timeout only, since a follow may run for hours.
    fn streaming(&self, node: &Node) -> Result<&reqwest::Client, EdgeError> {
        self.client(node, &self.streaming, None)
    }

    /// The client in `slot`, built on first use; `timeout` bounds whole requests.
    fn client<'a>(
        &self,
        node: &Node,
        slot: &'a OnceLock<reqwest::Client>,
        timeout: Option<Duration>,
    ) -> Result<&'a reqwest::Client, EdgeError> {
        if let Some(c) = slot.get() {
            return Ok(c);
        }
        // A publish talks to a node in a burst (list, submit) and then not
        // until the job ends: an idle connection is closed soon, so that a
        // fleet of 10,000 nodes is not 10,000 open sockets.
        let mut b = reqwest::Client::builder()
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(5))
            .user_agent(concat!("berth-controller/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        let client = b.build().map_err(|e| EdgeError::Protocol {
            node: node.name.clone(),
            message: format!("cannot build the HTTP client for edges (TLS set-up failed): {e}"),
        })?;
        Ok(slot.get_or_init(|| client))
    }

    fn url(node: &Node, segments: &[&str]) -> Result<Url, EdgeError> {
        let mut url = Url::parse(&node.edge_url).map_err(|e| EdgeError::Protocol {
            node: node.name.clone(),
            message: format!("edge URL {:?} is not valid: {e}", node.edge_url),
        })?;
        url.path_segments_mut()
            .map_err(|()| EdgeError::Protocol {
                node: node.name.clone(),
                message: format!("edge URL {:?} cannot have a path", node.edge_url),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// A request to the node's logs routes, with its controller token.
    fn logs_request(
        &self,
        node: &Node,
        url: Url,
        streaming: bool,
    ) -> Result<reqwest::RequestBuilder, EdgeError> {
        let token = node
            .edge_controller_token
            .as_ref()
            .ok_or_else(|| EdgeError::Rejected {
                node: node.name.clone(),
                status: 409,
                message: format!(
                    "the controller has no token for node {}'s container logs: set edge_controller_token on the node (the value of edge.controller_token on its edge)",
                    node.name
                ),
            })?;
        let client = if streaming {
            self.streaming(node)?
        } else {
            self.http(node)?
        };
        Ok(client.get(url).bearer_auth(&token.0))
    }

    fn request(
        &self,
        node: &Node,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, EdgeError> {
        let rb = self.http(node)?.request(method, url);
        Ok(match &node.edge_credentials {
            Some(c) => rb.basic_auth(&c.user, Some(&c.password)),
            None => rb,
        })
    }

    async fn send(
        &self,
        node: &Node,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, EdgeError> {
        rb.send().await.map_err(|e| EdgeError::Unreachable {
            node: node.name.clone(),
            url: node.edge_url.clone(),
            message: describe_reqwest(&e),
        })
    }

    /// `POST /api/v1/prefetch`, with the report target when there is one.
    async fn submit(
        &self,
        node: &Node,
        images: &[String],
        pin: bool,
        report: Option<&ReportTarget>,
    ) -> Result<Submitted, EdgeError> {
        let url = Self::url(node, &["api", "v1", "prefetch"])?;
        let mut rb = self.request(node, reqwest::Method::POST, url)?;
        if report.is_some() {
            // The last request to this node until its job ends (the edge
            // reports the end): its connection closes with the answer
            // instead of idling in the pool, one per node of a fleet.
            rb = rb.header(reqwest::header::CONNECTION, "close");
        }
        let rb = rb.json(&PrefetchRequest {
            images,
            pin,
            report: report.map(|r| ReportBody {
                url: &r.url,
                token: &r.token,
            }),
        });
        let resp = self.send(node, rb).await?;
        if !resp.status().is_success() {
            return Err(Self::rejected(node, resp).await);
        }
        let body: JobCreated = resp.json().await.map_err(|e| EdgeError::Protocol {
            node: node.name.clone(),
            message: format!("prefetch answer has no job id: {e}"),
        })?;
        tracing::debug!(node = %node.name, job = %body.id, images = images.len(), report = body.report, "prefetch submitted");
        Ok(Submitted {
            id: body.id,
            report: body.report && report.is_some(),
        })
    }

    async fn rejected(node: &Node, resp: reqwest::Response) -> EdgeError {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        EdgeError::Rejected {
            node: node.name.clone(),
            status,
            message: error_message(&text),
        }
    }
}

/// The innermost cause of a reqwest error, which is what a person can act on
/// ("connection refused", "timed out").
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(l) = last {
        msg = format!("{msg} ({l})");
    }
    msg
}

/// Pulls a message out of `{"error": ...}`, OCI `{"errors":[{"message"}]}`, or plain text.
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(m) = v["error"].as_str() {
            return m.to_string();
        }
        if let Some(m) = v["errors"][0]["message"].as_str() {
            return m.to_string();
        }
    }
    let t = body.trim();
    if t.is_empty() {
        "no details".into()
    } else {
        t.chars().take(300).collect()
    }
}

#[async_trait]
impl EdgeClient for HttpEdgeClient {
    async fn prefetch(
        &self,
        node: &Node,
        images: Vec<String>,
        pin: bool,
    ) -> Result<String, EdgeError> {
        Ok(self.submit(node, &images, pin, None).await?.id)
    }

    async fn prefetch_reporting(
        &self,
        node: &Node,
        images: Vec<String>,
        pin: bool,
        report: &ReportTarget,
    ) -> Result<Submitted, EdgeError> {
        self.submit(node, &images, pin, Some(report)).await
    }

    async fn job(&self, node: &Node, id: &str) -> Result<JobStatus, EdgeError> {
        let url = Self::url(node, &["api", "v1", "prefetch", id])?;
        let resp = self
            .send(node, self.request(node, reqwest::Method::GET, url)?)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(JobStatus::Unknown);
        }
        if !resp.status().is_success() {
            return Err(Self::rejected(node, resp).await);
        }
        let body: JobBody = resp.json().await.map_err(|e| EdgeError::Protocol {
            node: node.name.clone(),
            message: format!("prefetch job {id} answer cannot be read: {e}"),
        })?;
        Ok(body.into())
    }

    async fn matching_jobs(
        &self,
        node: &Node,
        images: &[String],
    ) -> Result<Vec<String>, EdgeError> {
        let url = Self::url(node, &["api", "v1", "prefetch"])?;
        let resp = self
            .send(node, self.request(node, reqwest::Method::GET, url)?)
            .await?;
        // An edge without the list has nothing to offer; asking again is the way.
        if matches!(
            resp.status(),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
        ) {
            return Ok(Vec::new());
        }
        if !resp.status().is_success() {
            return Err(Self::rejected(node, resp).await);
        }
        let jobs: Vec<ListedJob> = resp.json().await.map_err(|e| EdgeError::Protocol {
            node: node.name.clone(),
            message: format!("prefetch job list cannot be read: {e}"),
        })?;
        Ok(matching(jobs, images))
    }

    async fn unpin(&self, node: &Node, images: Vec<String>) -> Result<(), EdgeError> {
        let url = Self::url(node, &["api", "v1", "unpin"])?;
        let rb = self
            .request(node, reqwest::Method::POST, url)?
            .json(&UnpinRequest { images: &images });
        let resp = self.send(node, rb).await?;
        if !resp.status().is_success() {
            return Err(Self::rejected(node, resp).await);
        }
        Ok(())
    }

    async fn cache_status(&self, node: &Node) -> Result<crate::ports::EdgeCacheStatus, EdgeError> {
        let url = Self::url(node, &["api", "v1", "status"])?;
        let resp = self
            .send(node, self.request(node, reqwest::Method::GET, url)?)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::rejected(node, resp).await);
        }
        resp.json().await.map_err(|e| EdgeError::Protocol {
            node: node.name.clone(),
            message: format!("status: {e}"),
        })
    }

    async fn log_pods(&self, node: &Node, namespace: &str) -> Result<Vec<LogPod>, EdgeError> {
        let url = Self::url(node, &["api", "v1", "logs", namespace])?;
        let resp = self
            .send(node, self.logs_request(node, url, false)?)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::rejected(node, resp).await);
        }
        resp.json().await.map_err(|e| EdgeError::Protocol {
            node: node.name.clone(),
            message: format!("pod list: {e}"),
        })
    }

    async fn logs(&self, node: &Node, r: &LogRequest) -> Result<LogStream, EdgeError> {
        use futures::StreamExt;
        let mut url = Self::url(
            node,
            &["api", "v1", "logs", &r.namespace, &r.pod, &r.container],
        )?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = r.tail {
                q.append_pair("tail", &t.to_string());
            }
            if let Some(s) = &r.since {
                q.append_pair("since", s);
            }
            for (k, on) in [
                ("follow", r.follow),
                ("previous", r.previous),
                ("timestamps", r.timestamps),
            ] {
                if on {
                    q.append_pair(k, "true");
                }
            }
        }
        let resp = self
            .send(node, self.logs_request(node, url, r.follow)?)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::rejected(node, resp).await);
        }
        Ok(resp
            .bytes_stream()
            .map(|c| c.map_err(std::io::Error::other))
            .boxed())
    }
}
