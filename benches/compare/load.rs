//! Closed-loop load: `connections` tasks, each on its own keep-alive
//! connection, send the next request as soon as the last answer is read,
//! for a warm-up and then a measured window. Only requests started inside
//! the window count; body bytes count up to the end of the window (a blob
//! download in flight at the end is cut there), so MB/s is exact.
//!
//! Besides throughput and latency, a run records the CPU time the load
//! generator (this process) and the server spent in the window, so the
//! report can say whether the client saturated a core.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::{Conn, Req};
use crate::procstat;

/// Builds the next request of a connection; gets a per-connection random
/// stream (for random offsets) and the request's sequence number.
pub type MakeReq = Arc<dyn Fn(&mut crate::Rng, u64) -> Req + Send + Sync>;

pub struct LoadSpec {
    /// Connection `i` goes to `addrs[i % addrs.len()]` (several replicas
    /// share the connections evenly).
    pub addrs: Vec<SocketAddr>,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The status every answer must have (others count as errors).
    pub expect: u16,
    /// Server processes, for their CPU time (summed).
    pub server_pids: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub bytes: u64,
    pub window: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// CPU time of this process (the load generator) in the window.
    pub client_cpu: Duration,
    /// CPU time of the server (all its processes) in the window.
    pub server_cpu: Duration,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.window.as_secs_f64()
    }
    /// Client CPU seconds per wall second (1.0 = one core busy).
    pub fn client_cores(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.window.as_secs_f64()
    }
    pub fn server_cores(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.window.as_secs_f64()
    }
    /// Server CPU microseconds per request.
    pub fn server_us_per_req(&self) -> f64 {
        if self.requests == 0 {
            return f64::NAN;
        }
        self.server_cpu.as_secs_f64() * 1e6 / self.requests as f64
    }
}

#[derive(Default)]
struct TaskResult {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    bytes: u64,
    latencies_us: Vec<u32>,
}

/// CPU time of these processes, summed.
pub fn servers_cpu(pids: &[u32]) -> Duration {
    pids.iter().map(|&p| procstat::cpu_time(Some(p))).sum()
}

pub async fn run(spec: &LoadSpec, make: MakeReq) -> LoadResult {
    assert!(!spec.addrs.is_empty(), "a load needs a server address");
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut tasks = Vec::with_capacity(spec.connections);
    for i in 0..spec.connections {
        let make = make.clone();
        let addr = spec.addrs[i % spec.addrs.len()];
        let expect = spec.expect;
        tasks.push(tokio::spawn(async move {
            let mut rng = crate::Rng::new(0x5eed_0000 + i as u64);
            let mut conn = Conn::new(addr);
            let mut out = TaskResult::default();
            let mut seq = i as u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let req = make(&mut rng, seq);
                seq += 1;
                let counted = sent >= measure_from;
                match conn.send(&req, false, Some(end)).await {
                    Ok(reply) => {
                        if !counted {
                            continue;
                        }
                        if reply.status.as_u16() != expect {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| {
                                format!("{} {}: {}", req.method, req.target, reply.status)
                            });
                            continue;
                        }
                        out.bytes += reply.len;
                        if !reply.cut {
                            out.requests += 1;
                            out.latencies_us
                                .push(reply.elapsed.as_micros().min(u32::MAX as u128) as u32);
                        }
                    }
                    Err(e) => {
                        if counted && Instant::now() < end {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| {
                                format!("{} {}: {e}", req.method, req.target)
                            });
                        }
                        // Do not spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            out
        }));
    }

    tokio::time::sleep_until(measure_from.into()).await;
    let cpu0 = procstat::cpu_time(None);
    let srv0 = servers_cpu(&spec.server_pids);
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = procstat::cpu_time(None);
    let srv1 = servers_cpu(&spec.server_pids);

    let mut total = TaskResult::default();
    for t in tasks {
        let r = t.await.expect("load task panicked");
        total.requests += r.requests;
        total.errors += r.errors;
        total.bytes += r.bytes;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        total.latencies_us.extend(r.latencies_us);
    }
    total.latencies_us.sort_unstable();
    let pct = |p: f64| -> Duration {
        if total.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let i = ((total.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_micros(total.latencies_us[i] as u64)
    };
    LoadResult {
        requests: total.requests,
        errors: total.errors,
        first_error: total.first_error,
        bytes: total.bytes,
        window: spec.duration,
        p50: pct(0.50),
        p99: pct(0.99),
        client_cpu: cpu1.saturating_sub(cpu0),
        server_cpu: srv1.saturating_sub(srv0),
    }
}
