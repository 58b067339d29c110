//! Container logs of this node's pods, served to the registry's controller:
//! `GET /api/v1/logs/{namespace}` lists the pods with logs (newest first), and
//! `GET /api/v1/logs/{namespace}/{pod}/{container}?tail=&since=&follow=&previous=&timestamps=`
//! reads one container's.
//!
//! The edge is berth's process on the node, so it reads the files the kubelet
//! writes (`edge.pod_logs_dir`, `/var/log/pods` by default) whichever deployer
//! put the pods there. The route answers only a bearer token that the
//! controller alone holds (`edge.controller_token`): neither the pull clients'
//! credentials nor a trusted network open it, and without a token configured it
//! is off. Names are checked as names (never joined as paths) and system
//! namespaces are refused.
//!
//! A follow streams as lines arrive, across rotations (the kubelet renames
//! `N.log` and the runtime opens a new one) and container restarts, until the
//! client goes away; at most `MAX_FOLLOWS` run at once.
//!
//! Owns: the route, its authorization and streaming. Reading files: `cri`.

pub mod cri;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, Semaphore};

use cri::{Assembler, ContainerId, Entry, Follower, LogError, LogFile};

/// Follows streaming at once; each holds a blocking thread while it waits.
const MAX_FOLLOWS: usize = 32;
/// How often a follow looks for new lines.
const POLL: Duration = Duration::from_millis(200);
/// Bytes gathered before a chunk is sent.
const CHUNK: usize = 32 * 1024;
/// The largest `tail` honoured.
const MAX_TAIL: usize = 100_000;

pub struct PodLogs {
    root: PathBuf,
    token: String,
    follows: Arc<Semaphore>,
}

impl PodLogs {
    pub fn new(root: PathBuf, token: String) -> Self {
        PodLogs {
            root,
            token,
            follows: Arc::new(Semaphore::new(MAX_FOLLOWS)),
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), LogsError> {
        if self.token.is_empty() {
            return Err(LogsError(
                StatusCode::NOT_FOUND,
                "container logs are off on this edge: set edge.controller_token (the token the registry's node record carries)".into(),
            ));
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(self.token.as_bytes())) {
            Ok(())
        } else {
            Err(LogsError(
                StatusCode::UNAUTHORIZED,
                "container logs need the controller's bearer token".into(),
            ))
        }
    }
}

pub fn router(p: Arc<PodLogs>) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/logs/{namespace}", axum::routing::get(pods))
        .route(
            "/api/v1/logs/{namespace}/{pod}/{container}",
            axum::routing::get(logs),
        )
        .with_state(p)
}

#[derive(Debug)]
pub struct LogsError(StatusCode, String);

impl IntoResponse for LogsError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<LogError> for LogsError {
    fn from(e: LogError) -> Self {
        let status = match &e {
            LogError::BadName(_) => StatusCode::BAD_REQUEST,
            LogError::NotFound(_) => StatusCode::NOT_FOUND,
            LogError::Io(..) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        LogsError(status, e.to_string())
    }
}

/// The pods of a namespace that have logs on this node, newest first.
async fn pods(
    State(p): State<Arc<PodLogs>>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
) -> Result<Json<Vec<cri::PodDir>>, LogsError> {
    p.authorize(&headers)?;
    let root = p.root.clone();
    let pods = tokio::task::spawn_blocking(move || cri::pods(&root, &namespace))
        .await
        .map_err(|e| LogsError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(pods))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// The last N lines only.
    tail: Option<usize>,
    /// A duration (`10m`) or an RFC 3339 time: lines from then on.
    since: Option<String>,
    #[serde(default)]
    follow: bool,
    /// The container instance before the current one.
    #[serde(default)]
    previous: bool,
    /// Each line starts with the time the runtime recorded.
    #[serde(default)]
    timestamps: bool,
}

fn parse_since(s: &str) -> Result<SystemTime, LogsError> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(SystemTime::now() - d);
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        LogsError(
            StatusCode::BAD_REQUEST,
            format!("since={s:?} is neither a duration (10m, 1h) nor an RFC 3339 time"),
        )
    })
}

async fn logs(
    State(p): State<Arc<PodLogs>>,
    headers: HeaderMap,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, LogsError> {
    p.authorize(&headers)?;
    let Query(q) = query.map_err(|e| {
        LogsError(
            StatusCode::BAD_REQUEST,
            format!("{e}; the parameters are tail, since, follow, previous and timestamps"),
        )
    })?;
    let id = ContainerId::new(&namespace, &pod, &container)?;
    let since = q.since.as_deref().map(parse_since).transpose()?;
    let permit = if q.follow {
        if q.previous {
            return Err(LogsError(
                StatusCode::BAD_REQUEST,
                "follow and previous do not go together: a previous instance writes no more".into(),
            ));
        }
        Some(p.follows.clone().try_acquire_owned().map_err(|_| {
            LogsError(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{MAX_FOLLOWS} log follows are running on this edge; try again later"),
            )
        })?)
    } else {
        None
    };
    let root = p.root.clone();
    let previous = q.previous;
    let (dir, files) = tokio::task::spawn_blocking(move || {
        let dir = id.directory(&root)?;
        let files = cri::instance_files(&dir, previous)?;
        Ok::<_, LogError>((dir, files))
    })
    .await
    .map_err(|e| LogsError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let opts = Output {
        tail: q.tail.map(|t| t.min(MAX_TAIL)),
        since,
        timestamps: q.timestamps,
    };
    let follow = q.follow;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut sink = Sink::new(tx, opts);
        if let Err(e) = stream(&dir, files, follow, &mut sink) {
            tracing::debug!(error = %e, "container log stream ended");
            sink.fail(e);
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

struct Output {
    tail: Option<usize>,
    since: Option<SystemTime>,
    timestamps: bool,
}

/// Where entries go: filtered, formatted, gathered into chunks for the client.
struct Sink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    out: Output,
    buf: Vec<u8>,
    /// While reading what is already written with `tail`: the last entries.
    held: Option<VecDeque<Entry>>,
}

impl Sink {
    fn new(tx: mpsc::Sender<Result<Bytes, std::io::Error>>, out: Output) -> Self {
        let held = out.tail.map(|n| VecDeque::with_capacity(n.min(1024)));
        Sink {
            tx,
            out,
            buf: Vec::new(),
            held,
        }
    }

    fn closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn entry(&mut self, e: Entry) {
        if let (Some(since), Some(t)) = (self.out.since, e.time) {
            if t < since {
                return;
            }
        }
        if let (Some(held), Some(n)) = (self.held.as_mut(), self.out.tail) {
            if n == 0 {
                return;
            }
            if held.len() == n {
                held.pop_front();
            }
            held.push_back(e);
            return;
        }
        self.format(&e);
    }

    fn format(&mut self, e: &Entry) {
        if self.out.timestamps {
            self.buf.extend_from_slice(e.time_text.as_bytes());
            self.buf.push(b' ');
        }
        self.buf.extend_from_slice(&e.content);
        self.buf.push(b'\n');
    }

    /// Ends the catch-up: what `tail` held goes out; later entries stream.
    fn caught_up(&mut self) {
        if let Some(held) = self.held.take() {
            for e in held {
                self.format(&e);
            }
        }
    }

    /// Sends what is gathered; false once the client has gone.
    fn flush(&mut self, force: bool) -> bool {
        if self.buf.is_empty() || (!force && self.buf.len() < CHUNK) {
            return !self.closed();
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).is_ok()
    }

    fn fail(&mut self, e: std::io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Opens the live file; its inode is taken from the open handle, so a rotation
/// between the open and the look is still noticed.
fn open_live(path: &Path) -> std::io::Result<(Follower<std::fs::File>, Option<u64>)> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::open(path)?;
    let ino = f.metadata().ok().map(|m| m.ino());
    Ok((Follower::new(f), ino))
}

/// Writes what the files hold, then (with `follow`) what is written to the live
/// file, across rotations and restarts, until the client goes away.
fn stream(dir: &Path, files: Vec<LogFile>, follow: bool, sink: &mut Sink) -> std::io::Result<()> {
    let mut assembler = Assembler::default();
    let (rotated, live): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| f.rotated.is_some());
    for f in &rotated {
        let mut r = cri::open(f).map_err(std::io::Error::other)?;
        cri::read_entries(&mut r, &mut assembler, |e| sink.entry(e))?;
        if !sink.flush(false) {
            return Ok(());
        }
    }
    let Some(mut current) = live.into_iter().next() else {
        sink.caught_up();
        sink.flush(true);
        return Ok(());
    };
    let (mut follower, mut ino) = open_live(&current.path)?;
    let mut fresh = Vec::new();
    follower.poll(&mut assembler, &mut fresh)?;
    for e in fresh.drain(..) {
        sink.entry(e);
    }
    sink.caught_up();
    if !sink.flush(true) || !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(POLL);
        follower.poll(&mut assembler, &mut fresh)?;
        // Rotated (the path names a new file) or restarted (a newer instance's
        // file): the open handle first reads the old file to its end.
        let next = cri::instance_files(dir, false)
            .ok()
            .and_then(|v| v.into_iter().find(|f| f.rotated.is_none()));
        if let Some(n) = next {
            if n.restart != current.restart || inode(&n.path) != ino {
                follower.poll(&mut assembler, &mut fresh)?;
                current = n;
                (follower, ino) = open_live(&current.path)?;
                follower.poll(&mut assembler, &mut fresh)?;
            }
        }
        for e in fresh.drain(..) {
            sink.entry(e);
        }
        if !sink.flush(true) {
            return Ok(());
        }
    }
}
