//! A counting TCP proxy put in front of an origin registry: it counts the
//! bytes the origin sends, and reads the request lines the caches send (pulls
//! carry no request bodies, so every line of the client-to-origin stream is a
//! request line or a header) to count blob GETs per digest.
//!
//! Counting at the origin's door is fair to both caches: berth has
//! `/metrics`, distribution has nothing comparable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Counters {
    down_bytes: AtomicU64,
    /// Bytes from the client to the origin (pushes).
    up_bytes: AtomicU64,
    /// Up-byte counts at which the connection carrying them is cut, once each.
    cuts: Mutex<Vec<u64>>,
    cut: tokio::sync::Notify,
    connections: AtomicU64,
    requests: Mutex<Vec<String>>,
}

/// What the origin sent since the last reset.
#[derive(Clone, Debug, Default)]
pub struct OriginTraffic {
    /// Bytes from origin to the cache (headers and bodies).
    pub down_bytes: u64,
    pub connections: u64,
    /// `GET`/`HEAD` request lines, as sent.
    pub requests: Vec<String>,
}

impl OriginTraffic {
    /// Requests by kind, e.g. `manifest GET 32, blob GET 4, other 1`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for r in &self.requests {
            let mut parts = r.split_whitespace();
            let method = parts.next().unwrap_or("?");
            let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
            let kind = if path.contains("/manifests/") {
                "manifest"
            } else if path.contains("/blobs/") {
                "blob"
            } else if path.starts_with("/v2/token") {
                "token"
            } else if path == "/v2/" || path == "/v2" {
                "/v2/"
            } else {
                "other"
            };
            *counts.entry(format!("{kind} {method}")).or_insert(0) += 1;
        }
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Number of `GET .../blobs/<digest>` requests per digest.
    pub fn blob_gets(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in &self.requests {
            let mut parts = r.split_whitespace();
            if parts.next() != Some("GET") {
                continue;
            }
            let Some(target) = parts.next() else { continue };
            let path = target.split('?').next().unwrap_or(target);
            if let Some(i) = path.rfind("/blobs/sha256:") {
                *out.entry(path[i + "/blobs/".len()..].to_owned())
                    .or_insert(0) += 1;
            }
        }
        out
    }
}

pub struct CountingProxy {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    pub async fn start(origin: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the counting proxy");
        let addr = listener.local_addr().expect("proxy address");
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(origin).await else {
                        return;
                    };
                    c.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    pipe(client, upstream, c).await;
                });
            }
        });
        CountingProxy {
            addr,
            counters,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes the client sent the origin so far (never reset).
    pub fn up_bytes(&self) -> u64 {
        self.counters.up_bytes.load(Ordering::Relaxed)
    }

    /// Cuts the connection that carries the up-byte count past each of `at`.
    pub fn cut_at(&self, at: &[u64]) {
        *self.counters.cuts.lock().unwrap_or_else(|e| e.into_inner()) = at.to_vec();
    }

    /// Counters since the last reset, and resets them.
    pub fn take(&self) -> OriginTraffic {
        let requests = std::mem::take(
            &mut *self
                .counters
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        OriginTraffic {
            down_bytes: self.counters.down_bytes.swap(0, Ordering::Relaxed),
            connections: self.counters.connections.swap(0, Ordering::Relaxed),
            requests,
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, upstream: TcpStream, c: Arc<Counters>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let c_up = c.clone();
    let c_cut = c.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut line = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let total = c_up.up_bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            let cut = {
                let mut cuts = c_up.cuts.lock().unwrap_or_else(|e| e.into_inner());
                let before = cuts.len();
                cuts.retain(|&at| at > total);
                cuts.len() != before
            };
            if cut {
                c_up.cut.notify_waiters();
                break;
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    if line.starts_with(b"GET ") || line.starts_with(b"HEAD ") {
                        let text = String::from_utf8_lossy(&line).trim().to_owned();
                        c_up.requests
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(text);
                    }
                    line.clear();
                } else if line.len() < 4096 {
                    line.push(b);
                }
            }
            if uw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = uw.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match ur.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            c.down_bytes.fetch_add(n as u64, Ordering::Relaxed);
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    // A cut drops both directions at once, as a broken link does.
    let cut = c_cut.cut.notified();
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut => {}
    }
}
