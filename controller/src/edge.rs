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

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::model::Node;
use crate::ports::{
    EdgeClient, EdgeError, ImageProgress, JobState, JobStatus, LogPod, LogRequest, LogStream,
    ReportTarget, Submitted,
};

impl From<JobBody> for JobStatus {
    fn from(body: JobBody) -> Self {
        JobStatus::Known {
            state: body.state,
            bytes_done: body.bytes_done,
            bytes_total: body.bytes_total,
            error: body.error,
            images: body.images,
        }
    }
}

/// A job as an edge reports its end (the body of `GET /api/v1/prefetch/{id}`):
/// its id and status.
pub fn reported_job(body: &[u8]) -> Result<(String, JobStatus), String> {
    let job: JobBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if job.id.is_empty() {
        return Err("the job has no id".into());
    }
    Ok((job.id.clone(), job.into()))
}

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

#[derive(Serialize)]
struct PrefetchRequest<'a> {
    images: &'a [String],
    pin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<ReportBody<'a>>,
}

#[derive(Serialize)]
struct ReportBody<'a> {
    url: &'a str,
    token: &'a str,
}

#[derive(Serialize)]
struct UnpinRequest<'a> {
    images: &'a [String],
}

#[derive(Deserialize)]
struct JobCreated {
    id: String,
    /// The edge will report the job's end (older edges never say so).
    #[serde(default)]
    report: bool,
}

#[derive(Deserialize)]
struct JobBody {
    #[serde(default)]
    id: String,
    state: JobState,
    #[serde(default)]
    bytes_done: u64,
    #[serde(default)]
    bytes_total: u64,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    images: Vec<ImageProgress>,
}

/// A job as the edge lists it.
#[derive(Deserialize)]
struct ListedJob {
    id: String,
    state: JobState,
    #[serde(default)]
    pin: bool,
    #[serde(default)]
    created: u64,
    #[serde(default)]
    images: Vec<ImageProgress>,
}

/// Ids of the listed jobs that pin exactly `images` and have not failed, oldest first.
fn matching(mut jobs: Vec<ListedJob>, images: &[String]) -> Vec<String> {
    let wanted: BTreeSet<&str> = images.iter().map(String::as_str).collect();
    jobs.retain(|j| {
        j.pin
            && j.state != JobState::Failed
            && j.images
                .iter()
                .map(|i| i.image.as_str())
                .collect::<BTreeSet<_>>()
                == wanted
    });
    jobs.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    jobs.into_iter().map(|j| j.id).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(url: &str) -> Node {
        Node {
            name: "n1".into(),
            cluster: "c".into(),
            k8s_node_name: "n1".into(),
            labels: Default::default(),
            edge_url: url.into(),
            edge_credentials: None,
            edge_controller_token: None,
            created_at: 0,
        }
    }

    #[test]
    fn urls_keep_base_path_and_escape_ids() {
        let u = HttpEdgeClient::url(&node("http://h:1/edge/"), &["api", "v1", "prefetch", "a/b"])
            .expect("url");
        assert_eq!(u.as_str(), "http://h:1/edge/api/v1/prefetch/a%2Fb");
        let u = HttpEdgeClient::url(&node("http://h:1"), &["api", "v1", "unpin"]).expect("url");
        assert_eq!(u.as_str(), "http://h:1/api/v1/unpin");
    }

    #[test]
    fn error_messages() {
        assert_eq!(error_message(r#"{"error":"disk full"}"#), "disk full");
        assert_eq!(
            error_message(r#"{"errors":[{"code":"DENIED","message":"no"}]}"#),
            "no"
        );
        assert_eq!(error_message(""), "no details");
    }

    #[test]
    fn matching_jobs_pin_exactly_the_images_and_have_not_failed() {
        let list = serde_json::json!([
            {"id": "new", "state": "running", "pin": true, "created": 30,
             "images": [{"image": "p/b@sha256:2"}, {"image": "p/a@sha256:1"}]},
            {"id": "old", "state": "done", "pin": true, "created": 10,
             "images": [{"image": "p/a@sha256:1"}, {"image": "p/b@sha256:2"}]},
            {"id": "failed", "state": "failed", "pin": true, "created": 20,
             "images": [{"image": "p/a@sha256:1"}, {"image": "p/b@sha256:2"}]},
            {"id": "unpinned", "state": "done", "pin": false, "created": 20,
             "images": [{"image": "p/a@sha256:1"}, {"image": "p/b@sha256:2"}]},
            {"id": "fewer", "state": "done", "pin": true, "created": 20,
             "images": [{"image": "p/a@sha256:1"}]},
            {"id": "more", "state": "done", "pin": true, "created": 20,
             "images": [{"image": "p/a@sha256:1"}, {"image": "p/b@sha256:2"},
                        {"image": "p/c@sha256:3"}]}
        ]);
        let jobs: Vec<ListedJob> = serde_json::from_value(list).expect("jobs");
        let images = vec!["p/a@sha256:1".to_string(), "p/b@sha256:2".to_string()];
        assert_eq!(matching(jobs, &images), vec!["old", "new"]);
    }

    #[tokio::test]
    async fn unreachable_edge_says_so() {
        // Bind then drop a listener to get a port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let c = HttpEdgeClient::new(Duration::from_secs(2)).expect("client");
        let err = c
            .prefetch(&node(&format!("http://127.0.0.1:{port}")), vec![], true)
            .await
            .expect_err("must be refused");
        assert!(matches!(err, EdgeError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("unreachable"), "{err}");
    }

    /// A bare HTTP/1.1 edge on a loopback port: answers every request with
    /// `answer`, keeps connections open unless asked to close; counts the
    /// connections it accepted and the requests that asked to close.
    async fn counting_edge(answer: &'static str) -> (String, Arc<std::sync::Mutex<(u32, u32)>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let seen = Arc::new(std::sync::Mutex::new((0u32, 0u32)));
        let counts = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                counts.lock().expect("counts").0 += 1;
                let counts = counts.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + len);
                        let close = head.contains("connection: close");
                        if close {
                            counts.lock().expect("counts").1 += 1;
                        }
                        let reply = format!(
                            "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
                            answer.len(),
                            if close { "connection: close\r\n" } else { "" }
                        );
                        if s.write_all(reply.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn a_reporting_submit_leaves_no_connection_open() {
        // A fleet's nodes each get a submit and then nothing until their
        // job's report: a connection kept in the pool after it is one
        // socket and its buffers per node of the fleet, held for nothing.
        let (url, seen) = counting_edge(r#"{"id":"j1","report":true}"#).await;
        let n = node(&url);
        let c = HttpEdgeClient::new(Duration::from_secs(5)).expect("client");
        let images = vec!["p/a@sha256:1".to_string()];
        let target = ReportTarget {
            url: "http://controller/report".into(),
            token: "t".into(),
        };
        c.prefetch(&n, images.clone(), true).await.expect("submit");
        c.prefetch(&n, images.clone(), true).await.expect("submit");
        assert_eq!(
            *seen.lock().expect("counts"),
            (1, 0),
            "kept alive without a report"
        );
        let s = c
            .prefetch_reporting(&n, images.clone(), true, &target)
            .await
            .expect("submit");
        assert!(s.report);
        assert_eq!(*seen.lock().expect("counts"), (1, 1), "asked to close");
        c.prefetch(&n, images, true).await.expect("submit");
        assert_eq!(
            seen.lock().expect("counts").0,
            2,
            "the reporting submit's connection was not reused"
        );
    }
}
