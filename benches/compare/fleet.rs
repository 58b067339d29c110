//! A simulated fleet of edge caches for workload 10 (publish to N nodes).
//!
//! Owns: the shard processes that serve the edge API of many nodes, each node
//! on its own loopback address (`127.1.y.z`) and port, and their counters. A
//! real `berth edge` cannot run a thousand times on one machine; what the
//! controller talks to is the same wire format (`controller/src/edge.rs`):
//!
//! - `POST /api/v1/prefetch` starts a job that is done `delay` after it starts;
//!   with `"report": {"url", "token"}` the node posts the finished job there
//!   (bearer token, from its own address) as `berth edge` does;
//! - `GET /api/v1/prefetch/{id}`, `GET /api/v1/prefetch`, `POST /api/v1/unpin`.
//!
//! A shard is this bench executable run again with `BERTH_BENCH_FLEET_SHARD=
//! first,count,delay_ms`: one process holds at most [`SHARD`] nodes, so its
//! listeners and the connections the controller keeps open stay within the
//! open-file limit. It prints `index addr` per node, then `ready`; each
//! `stats` line on its stdin is answered with one JSON line of counters; it
//! ends when its stdin closes.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Nodes per shard process.
pub const SHARD: usize = 4000;

const SHARD_ENV: &str = "BERTH_BENCH_FLEET_SHARD";

/// The loopback address of node `i` (0-based).
fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        1 + (i / 62_500) as u8,
        ((i / 250) % 250) as u8,
        (i % 250 + 1) as u8,
    )
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Counters of one shard, summed by the parent.
#[derive(Serialize, Deserialize, Default, Clone)]
pub struct ShardStats {
    /// Requests each node answered, in node order.
    pub requests: Vec<u64>,
    /// Connections each node accepted.
    pub connections: Vec<u64>,
    pub jobs: u64,
    pub reports_sent: u64,
    pub report_failures: u64,
    /// Unix ms when the last job of the shard was done (0: none).
    pub last_done_ms: u64,
}

struct Job {
    id: String,
    images: Vec<String>,
    started: Instant,
    created: u64,
}

struct Node {
    requests: AtomicU64,
    connections: AtomicU64,
    jobs: Mutex<Vec<Job>>,
    ip: Ipv4Addr,
    shard: Arc<Shard>,
}

struct Shard {
    delay: Duration,
    jobs: AtomicU64,
    reports_sent: AtomicU64,
    report_failures: AtomicU64,
    last_done_ms: AtomicU64,
}

#[derive(Deserialize)]
struct Report {
    url: String,
    token: String,
}

#[derive(Deserialize)]
struct PrefetchBody {
    images: Vec<String>,
    #[serde(default)]
    pin: bool,
    #[serde(default)]
    report: Option<Report>,
}

fn job_json(j: &Job, delay: Duration) -> Value {
    let done = j.started.elapsed() >= delay;
    let bytes_total = 1_000_000u64;
    let bytes_done = if done {
        bytes_total
    } else {
        (bytes_total as f64 * j.started.elapsed().as_secs_f64() / delay.as_secs_f64()) as u64
    };
    let state = if done { "done" } else { "running" };
    json!({
        "id": j.id, "state": state, "pin": true, "created": j.created, "updated": j.created,
        "bytes_done": bytes_done, "bytes_total": bytes_total, "error": null,
        "images": j.images.iter().map(|i| json!({"image": i, "state": state,
            "bytes_done": bytes_done, "bytes_total": bytes_total, "layers": []})).collect::<Vec<_>>(),
    })
}

async fn submit(
    State(n): State<Arc<Node>>,
    Json(body): Json<PrefetchBody>,
) -> (StatusCode, Json<Value>) {
    n.requests.fetch_add(1, Ordering::Relaxed);
    let _ = body.pin;
    let shard = n.shard.clone();
    let seq = shard.jobs.fetch_add(1, Ordering::Relaxed);
    let job = Job {
        id: format!("job-{}-{seq}", n.ip),
        images: body.images,
        started: Instant::now(),
        created: unix_ms() / 1000,
    };
    let mut answer = job_json(&job, shard.delay);
    let done_at = unix_ms() + shard.delay.as_millis() as u64;
    shard.last_done_ms.fetch_max(done_at, Ordering::Relaxed);
    if let Some(r) = body.report {
        answer["report"] = json!(true);
        let (node, id) = (n.clone(), job.id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(shard.delay).await;
            let body = {
                let jobs = node.jobs.lock().expect("jobs");
                jobs.iter()
                    .find(|j| j.id == id)
                    .map(|j| job_json(j, shard.delay))
            };
            let Some(body) = body else { return };
            match send_report(node.ip, &r, &body).await {
                Ok(()) => shard.reports_sent.fetch_add(1, Ordering::Relaxed),
                Err(_) => shard.report_failures.fetch_add(1, Ordering::Relaxed),
            };
        });
    }
    n.jobs.lock().expect("jobs").push(job);
    (StatusCode::ACCEPTED, Json(answer))
}

/// `POST url` with the job, from the node's own address, as one HTTP/1.1
/// request on its own connection (what an edge does once per job).
async fn send_report(ip: Ipv4Addr, r: &Report, body: &Value) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url::Url::parse(&r.url).map_err(|e| e.to_string())?;
    let host = url.host_str().ok_or("no host")?;
    let port = url.port_or_known_default().ok_or("no port")?;
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .map_err(|e| e.to_string())?;
    let mut s = sock.connect(addr).await.map_err(|e| e.to_string())?;
    let payload = body.to_string();
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        url.path(),
        r.token,
        payload.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&head[9..12]).to_string();
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(format!("report answered {status}"))
    }
}

async fn job(
    State(n): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    n.requests.fetch_add(1, Ordering::Relaxed);
    let jobs = n.jobs.lock().expect("jobs");
    jobs.iter()
        .find(|j| j.id == id)
        .map(|j| Json(job_json(j, n.shard.delay)))
        .ok_or(StatusCode::NOT_FOUND)
}

async fn list(State(n): State<Arc<Node>>) -> Json<Value> {
    n.requests.fetch_add(1, Ordering::Relaxed);
    let jobs = n.jobs.lock().expect("jobs");
    Json(Value::Array(
        jobs.iter().map(|j| job_json(j, n.shard.delay)).collect(),
    ))
}

async fn unpin(State(n): State<Arc<Node>>) -> Json<Value> {
    n.requests.fetch_add(1, Ordering::Relaxed);
    Json(json!({}))
}

/// Runs a shard when this process was started as one; returns false otherwise.
pub fn shard_main() -> bool {
    let Ok(spec) = std::env::var(SHARD_ENV) else {
        return false;
    };
    let nums: Vec<u64> = spec.split(',').filter_map(|s| s.parse().ok()).collect();
    let [first, count, delay_ms] = nums[..] else {
        panic!("{SHARD_ENV}=first,count,delay_ms, not {spec:?}");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(serve_shard(
        first as usize,
        count as usize,
        Duration::from_millis(delay_ms),
    ));
    true
}

async fn serve_shard(first: usize, count: usize, delay: Duration) {
    let shard = Arc::new(Shard {
        delay,
        jobs: AtomicU64::new(0),
        reports_sent: AtomicU64::new(0),
        report_failures: AtomicU64::new(0),
        last_done_ms: AtomicU64::new(0),
    });
    let mut nodes = Vec::with_capacity(count);
    let mut out = std::io::stdout().lock();
    for i in first..first + count {
        let ip = node_ip(i);
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind a node");
        let addr = listener.local_addr().expect("addr");
        let node = Arc::new(Node {
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            jobs: Mutex::new(Vec::new()),
            ip,
            shard: shard.clone(),
        });
        let router = Router::new()
            .route("/api/v1/prefetch", post(submit).get(list))
            .route("/api/v1/prefetch/{id}", get(job))
            .route("/api/v1/unpin", post(unpin))
            .with_state(node.clone());
        let counted = node.clone();
        let listener = listener.tap_io(move |_| {
            counted.connections.fetch_add(1, Ordering::Relaxed);
        });
        tokio::spawn(async move { axum::serve(listener, router).await });
        writeln!(out, "{i} {addr}").expect("stdout");
        nodes.push(node);
    }
    writeln!(out, "ready").expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        if line.trim() != "stats" {
            continue;
        }
        let stats = ShardStats {
            requests: nodes
                .iter()
                .map(|n| n.requests.load(Ordering::Relaxed))
                .collect(),
            connections: nodes
                .iter()
                .map(|n| n.connections.load(Ordering::Relaxed))
                .collect(),
            jobs: shard.jobs.load(Ordering::Relaxed),
            reports_sent: shard.reports_sent.load(Ordering::Relaxed),
            report_failures: shard.report_failures.load(Ordering::Relaxed),
            last_done_ms: shard.last_done_ms.load(Ordering::Relaxed),
        };
        println!("{}", serde_json::to_string(&stats).expect("stats"));
    }
}

/// The shard processes of one fleet, as the parent sees them.
pub struct Fleet {
    shards: Vec<(Child, ChildStdin, BufReader<ChildStdout>)>,
    /// `http://addr` of each node, in node order.
    pub urls: Vec<String>,
}

impl Fleet {
    /// Starts shards for `n` nodes whose jobs take `delay`.
    pub fn start(n: usize, delay: Duration) -> Fleet {
        let exe = std::env::current_exe().expect("this executable");
        let mut shards = Vec::new();
        let mut urls = Vec::with_capacity(n);
        for first in (0..n).step_by(SHARD) {
            let count = SHARD.min(n - first);
            let mut child = Command::new(&exe)
                .env(SHARD_ENV, format!("{first},{count},{}", delay.as_millis()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting a fleet shard");
            let stdin = child.stdin.take().expect("stdin");
            let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
            let mut line = String::new();
            loop {
                line.clear();
                let read = stdout.read_line(&mut line).expect("shard output");
                assert!(read > 0, "fleet shard ended before it was ready");
                let l = line.trim();
                if l == "ready" {
                    break;
                }
                let (_, addr) = l.split_once(' ').expect("index addr");
                urls.push(format!("http://{addr}"));
            }
            shards.push((child, stdin, stdout));
        }
        Fleet { shards, urls }
    }

    /// Every shard's counters, nodes in order.
    pub fn stats(&mut self) -> ShardStats {
        let mut all = ShardStats::default();
        for (_, stdin, stdout) in &mut self.shards {
            writeln!(stdin, "stats").expect("asking a shard");
            stdin.flush().expect("asking a shard");
            let mut line = String::new();
            stdout.read_line(&mut line).expect("shard stats");
            let s: ShardStats = serde_json::from_str(&line).expect("shard stats JSON");
            all.requests.extend(s.requests);
            all.connections.extend(s.connections);
            all.jobs += s.jobs;
            all.reports_sent += s.reports_sent;
            all.report_failures += s.report_failures;
            all.last_done_ms = all.last_done_ms.max(s.last_done_ms);
        }
        all
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (mut child, stdin, _) in self.shards.drain(..) {
            drop(stdin);
            let _ = child.wait();
        }
    }
}
