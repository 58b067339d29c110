//! A fake edge cache that speaks the prefetch contract over HTTP: prefetch
//! jobs (held half done while the gate is closed, or failed on request), job
//! status, unpin, and credentials it may require; everything it was asked is
//! recorded for the tests to check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Job {
    pub images: Vec<String>,
    pub pin: bool,
    pub bytes_total: u64,
    pub state: &'static str,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct EdgeState {
    pub jobs: BTreeMap<String, Job>,
    pub next_id: u64,
    /// (images, pin) of every prefetch request.
    pub prefetches: Vec<(Vec<String>, bool)>,
    pub unpins: Vec<Vec<String>>,
    pub pinned: BTreeSet<String>,
    /// Authorization headers seen.
    pub auth: Vec<Option<String>>,
    /// While closed, jobs stay half done.
    pub gate_open: bool,
    /// The next job fails with this error.
    pub fail_next: Option<String>,
    /// Images of jobs this edge reported done.
    pub done_images: BTreeSet<String>,
    /// Credentials the edge requires, if any.
    pub require: Option<(String, String)>,
}

pub type Edge = Arc<Mutex<EdgeState>>;

/// `Some(rejection)` when the edge wants credentials it did not get.
fn check_auth(s: &mut EdgeState, headers: &HeaderMap) -> Option<Response> {
    let got = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.auth.push(got.clone());
    if let Some((u, p)) = &s.require {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        );
        if got.as_deref() != Some(want.as_str()) {
            return Some(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "bad credentials"})),
                )
                    .into_response(),
            );
        }
    }
    None
}

fn job_body(id: &str, j: &Job, done: u64) -> Value {
    json!({
        "id": id, "state": j.state, "bytes_done": done, "bytes_total": j.bytes_total,
        "error": j.error,
        "images": j.images.iter().map(|i| json!({
            "image": i, "digest": i.split('@').nth(1), "state": j.state,
            "bytes_done": done / j.images.len().max(1) as u64,
            "bytes_total": j.bytes_total / j.images.len().max(1) as u64,
            "error": j.error, "layers": []
        })).collect::<Vec<_>>()
    })
}

async fn edge_prefetch(
    State(edge): State<Edge>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut s = edge.lock().expect("edge lock");
    if let Some(r) = check_auth(&mut s, &headers) {
        return r;
    }
    let images: Vec<String> = body["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pin = body["pin"].as_bool().unwrap_or(false);
    s.prefetches.push((images.clone(), pin));
    if pin {
        s.pinned.extend(images.iter().cloned());
    }
    s.next_id += 1;
    let id = format!("job-{}", s.next_id);
    let (state, error) = match s.fail_next.take() {
        Some(e) => ("failed", Some(e)),
        None => ("running", None),
    };
    let job = Job {
        bytes_total: 1000 * images.len() as u64,
        images,
        pin,
        state,
        error,
    };
    let body = job_body(&id, &job, 0);
    s.jobs.insert(id, job);
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

async fn edge_job(
    State(edge): State<Edge>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut s = edge.lock().expect("edge lock");
    if let Some(r) = check_auth(&mut s, &headers) {
        return r;
    }
    let gate = s.gate_open;
    let Some(job) = s.jobs.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such job"}))).into_response();
    };
    if job.state == "running" && gate {
        job.state = "done";
    }
    let done = match job.state {
        "done" => job.bytes_total,
        "failed" => 0,
        _ => job.bytes_total / 2,
    };
    let body = job_body(&id, job, done);
    if job.state == "done" {
        let images = job.images.clone();
        s.done_images.extend(images);
    }
    Json(body).into_response()
}

async fn edge_unpin(
    State(edge): State<Edge>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut s = edge.lock().expect("edge lock");
    if let Some(r) = check_auth(&mut s, &headers) {
        return r;
    }
    let images: Vec<String> = body["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for i in &images {
        s.pinned.remove(i);
    }
    s.unpins.push(images);
    Json(json!({"unpinned": s.unpins.last().map(|v| v.len()).unwrap_or(0)})).into_response()
}

/// Serves a fake edge on `listener`.
pub fn serve_edge(edge: Edge, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/api/v1/prefetch", post(edge_prefetch))
        .route("/api/v1/prefetch/{id}", get(edge_job))
        .route("/api/v1/unpin", post(edge_unpin))
        .with_state(edge);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// A running fake edge and its URL.
pub async fn start_edge() -> (Edge, String, tokio::task::JoinHandle<()>) {
    let edge: Edge = Arc::new(Mutex::new(EdgeState::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = serve_edge(edge.clone(), listener);
    (edge, url, task)
}
