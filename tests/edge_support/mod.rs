//! Shared pieces of the edge-cache end-to-end tests: an origin registry with a
//! private project and a pull robot, images pushed into it, an edge in front
//! of it, Prometheus scraping, plain HTTP helpers, and a fault-injecting
//! HTTP proxy to put between the edge and its upstream.
//!
//! Each test file compiles its own copy, and not every file uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_testkit::berth::{self, Registry, ADMIN_PASSWORD};
use berth_testkit::fixtures::{digest_of, Image, OciLayout};
use berth_testkit::tools::{docker_ref, CopyOptions, Creds, Skopeo};
use berth_testkit::ServerProcess;

pub const BIN: &str = env!("CARGO_BIN_EXE_berth");
pub const PROJECT: &str = "team";

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A registry with the private project [`PROJECT`] and a pull robot of it.
pub struct Origin {
    pub registry: Registry,
    pub robot: Creds,
    pub skopeo: Skopeo,
    pub tmp: tempfile::TempDir,
}

impl Origin {
    /// An edge in front of this origin, pulling with its robot, cache in `cache_dir`.
    pub fn edge(&self, cache_dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        edge(&self.registry.url(), cache_dir, Some(&self.robot), env)
    }

    pub fn start() -> Origin {
        let registry = berth::registry(BIN);
        let admin = registry.admin();
        admin.create_project(PROJECT, false);
        let (name, secret) = admin.create_robot(PROJECT, "edge", "pull");
        Origin {
            registry,
            robot: Creds::new(&name, &secret),
            skopeo: Skopeo::new(),
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn admin_creds(&self) -> Creds {
        Creds::new("admin", ADMIN_PASSWORD)
    }

    /// A fresh OCI layout in this origin's temp dir.
    pub fn layout(&self, name: &str) -> OciLayout {
        OciLayout::create(self.tmp.path().join(name))
    }

    /// Pushes `layout`'s `tag` (image or index) to `PROJECT/repo:tag`.
    pub fn push(&self, layout: &OciLayout, tag: &str, repo: &str) {
        self.skopeo.copy(
            &layout.reference(tag),
            &docker_ref(&self.registry.host(), &format!("{PROJECT}/{repo}"), tag),
            &CopyOptions::all()
                .preserving_digests()
                .with_dest_creds(&self.admin_creds()),
        );
    }

    pub fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.registry.url())
    }

    /// `berth_http_requests_total{method="GET",route="blob",status="200"}`.
    pub fn blob_gets(&self) -> f64 {
        self.metrics().get(
            "berth_http_requests_total",
            &[("method", "GET"), ("route", "blob"), ("status", "200")],
        )
    }
}

/// An edge in front of `upstream` authenticating with `creds`, cache in `dir`.
pub fn edge(
    upstream: &str,
    cache_dir: &Path,
    creds: Option<&Creds>,
    env: &[(&str, &str)],
) -> ServerProcess {
    let creds = creds.map(|c| (c.username.as_str(), c.password.as_str()));
    let mut env: Vec<(&str, &str)> = env.to_vec();
    if !env.iter().any(|(k, _)| *k == "BERTH_LOG_LEVEL") {
        env.push(("BERTH_LOG_LEVEL", "info"));
    }
    berth::edge(BIN, upstream, cache_dir, creds, &env)
}

/// Where the edge's content store keeps a committed blob.
pub fn cached_blob_path(cache_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    cache_dir.join("blobs/sha256").join(&hex[..2]).join(hex)
}

pub fn is_cached(cache_dir: &Path, digest: &str) -> bool {
    cached_blob_path(cache_dir, digest).is_file()
}

/// One scrape of a Prometheus text endpoint.
pub struct Metrics {
    pub text: String,
}

impl Metrics {
    pub fn scrape(base: &str) -> Metrics {
        let text = http()
            .get(format!("{base}/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("scraping {base}/metrics: {e}"));
        Metrics { text }
    }

    /// The value of `name` with exactly these labels (0 when absent).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
        for line in self.text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                continue;
            }
            let have: BTreeMap<&str, &str> = label_text
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            if have == wanted {
                return value.parse().unwrap_or(0.0);
            }
        }
        0.0
    }

    pub fn edge(&self, name: &str) -> f64 {
        self.get(&format!("berth_edge_{name}"), &[])
    }
}

pub fn edge_metric(edge: &ServerProcess, name: &str) -> f64 {
    Metrics::scrape(&edge.base_url()).edge(name)
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// GET `url`; returns (status, headers, body) or the transport error
/// (a connection cut mid-body is an error, as it is for real clients).
pub fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), String> {
    let mut rb = http().get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let res = rb.send().map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    let h = res.headers().clone();
    let body = res.bytes().map_err(|e| format!("{e:?}"))?;
    Ok((status, h, body.to_vec()))
}

/// GET a blob through `base`; panics unless it is 200 with exactly `digest`.
pub fn get_blob_ok(base: &str, repo: &str, digest: &str) -> Vec<u8> {
    let url = format!("{base}/v2/{PROJECT}/{repo}/blobs/{digest}");
    let (status, _, body) = get(&url, &[]).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    assert_eq!(digest_of(&body), digest, "bytes of {url}");
    body
}

/// Polls `check` for up to `secs` seconds.
pub fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pulls `PROJECT/repo:tag` from `host` into a fresh `oci:` layout with skopeo
/// and checks every blob of `image` arrived intact.
pub fn skopeo_pull_and_verify(skopeo: &Skopeo, host: &str, repo: &str, tag: &str, image: &Image) {
    let dest = tempfile::tempdir().expect("tempdir");
    skopeo.copy(
        &docker_ref(host, &format!("{PROJECT}/{repo}"), tag),
        &format!("oci:{}:{tag}", dest.path().display()),
        &CopyOptions::default().preserving_digests(),
    );
    let got = OciLayout::open(dest.path());
    assert_eq!(
        got.resolve(tag).expect("tag in copy").digest,
        image.digest()
    );
    for (digest, size) in image.blob_digests() {
        let bytes = got.read_blob(&digest);
        assert_eq!((digest_of(&bytes), bytes.len() as u64), (digest, size));
    }
}

// ---------------------------------------------------------------- fault proxy

/// What the proxy does to the body of `GET .../blobs/<digest>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Flip the bits of the byte at blob offset `at`.
    Corrupt {
        digest: String,
        at: u64,
    },
    /// Close the connection when the transfer reaches blob offset `at`; a
    /// resumed request starting at or past `at` goes through.
    CutAt {
        digest: String,
        at: u64,
    },
    /// Close every transfer of the blob after `after` body bytes.
    CutEach {
        digest: String,
        after: u64,
    },
    /// Stop sending at blob offset `at` until the fault is switched off; a
    /// resumed request starting at or past `at` goes through.
    StallAt {
        digest: String,
        at: u64,
    },
}

/// One request the proxy forwarded.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct ProxyState {
    fault: Option<Fault>,
    /// Blob bodies are sent at this many bytes per second (None: full speed).
    rate: Option<u64>,
    /// Blob GET answers lose their Content-Length (the body ends at close).
    strip_length: bool,
    /// Requests are read and never answered (a hung upstream) while set.
    hang: bool,
    seen: Vec<Seen>,
}

/// A plain HTTP/1.1 proxy on 127.0.0.1 in front of `upstream` (host:port),
/// one request per connection, with switchable faults on blob bodies.
pub struct FaultProxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stop2, upstream) = (state.clone(), stop.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, upstream) = (st.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, &upstream, &st);
                });
            }
        });
        FaultProxy { port, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_fault(&self, fault: Fault) {
        self.lock().fault = (fault != Fault::None).then_some(fault);
    }

    /// Throttle blob bodies to `bytes_per_sec` (None: full speed).
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        self.lock().rate = bytes_per_sec;
    }

    /// Send blob bodies without Content-Length, delimited by the connection's end.
    pub fn set_strip_length(&self, strip: bool) {
        self.lock().strip_length = strip;
    }

    /// Read requests but answer none of them (until switched off again).
    pub fn set_hang(&self, hang: bool) {
        self.lock().hang = hang;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Blob GETs the proxy forwarded for `digest`.
    pub fn blob_gets(&self, digest: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET" && s.path.ends_with(&format!("/blobs/{digest}")))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The head lines with `Connection` replaced by `Connection: close`.
fn rewrite_head(lines: &[String]) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let is_conn = i > 0
            && l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"));
        if !is_conn {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn proxy_one(client: TcpStream, upstream: &str, st: &Mutex<ProxyState>) -> std::io::Result<()> {
    let mut client_r = BufReader::new(client.try_clone()?);
    let mut client_w = client;
    let req = read_head(&mut client_r)?;
    let mut parts = req.first().map(|l| l.split(' ')).into_iter().flatten();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let range = header(&req, "range").map(str::to_owned);
    let req_len: u64 = header(&req, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut req_body = vec![0u8; req_len as usize];
    client_r.read_exact(&mut req_body)?;
    while st.lock().unwrap_or_else(|e| e.into_inner()).hang {
        std::thread::sleep(Duration::from_millis(20));
    }

    let up = TcpStream::connect(upstream)?;
    let mut up_w = up.try_clone()?;
    up_w.write_all(rewrite_head(&req).as_bytes())?;
    up_w.write_all(&req_body)?;
    let mut up_r = BufReader::new(up);
    let res = read_head(&mut up_r)?;
    let status: u16 = res
        .first()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (fault, rate, strip_length) = {
        let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
        s.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range,
            status,
        });
        (s.fault.clone(), s.rate, s.strip_length)
    };
    let is_blob =
        method == "GET" && path.contains("/blobs/sha256:") && (status == 200 || status == 206);
    let res_head: Vec<String> = res
        .iter()
        .filter(|l| {
            !(strip_length && is_blob && l.to_ascii_lowercase().starts_with("content-length:"))
        })
        .cloned()
        .collect();
    client_w.write_all(rewrite_head(&res_head).as_bytes())?;
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok(());
    }
    // Blob offset of the first body byte.
    let start: u64 = if status == 206 {
        header(&res, "content-range")
            .and_then(|v| v.trim_start_matches("bytes ").split('-').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    let targets = |d: &str| is_blob && path.split('?').next().is_some_and(|p| p.ends_with(d));
    let mut sent: u64 = 0;
    let started = Instant::now();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = up_r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        let mut cut_after: Option<usize> = None;
        let pos = start + sent;
        let here = |at: u64| (pos..pos + n as u64).contains(&at);
        match &fault {
            Some(Fault::Corrupt { digest, at }) if targets(digest) && here(*at) => {
                chunk[(*at - pos) as usize] ^= 0xff;
            }
            Some(Fault::CutAt { digest, at }) if targets(digest) && start < *at && here(*at) => {
                cut_after = Some((*at - pos) as usize);
            }
            Some(Fault::StallAt { digest, at }) if targets(digest) && start < *at && here(*at) => {
                let k = (*at - pos) as usize;
                client_w.write_all(&chunk[..k])?;
                client_w.flush()?;
                while st.lock().unwrap_or_else(|e| e.into_inner()).fault == fault {
                    std::thread::sleep(Duration::from_millis(20));
                }
                client_w.write_all(&chunk[k..])?;
                sent += n as u64;
                continue;
            }
            Some(Fault::CutEach { digest, after })
                if targets(digest) && *after < sent + n as u64 =>
            {
                cut_after = Some((*after - sent) as usize);
            }
            _ => {}
        }
        if let Some(k) = cut_after {
            client_w.write_all(&chunk[..k])?;
            client_w.flush()?;
            let _ = client_w.shutdown(Shutdown::Both);
            return Ok(());
        }
        client_w.write_all(chunk)?;
        sent += n as u64;
        if let (Some(rate), true) = (rate, is_blob) {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    client_w.flush()?;
    Ok(())
}

// ---------------------------------------------------------------- prefetch API

/// POST /api/v1/prefetch; returns the job id.
pub fn prefetch(base: &str, images: &[&str], pin: bool) -> String {
    let res = http()
        .post(format!("{base}/api/v1/prefetch"))
        .json(&serde_json::json!({ "images": images, "pin": pin }))
        .send()
        .expect("POST /api/v1/prefetch");
    let status = res.status().as_u16();
    let v: serde_json::Value = res.json().expect("prefetch answer is JSON");
    assert_eq!(status, 202, "prefetch answered {status}: {v}");
    v["id"].as_str().expect("job id").to_owned()
}

pub fn prefetch_job(base: &str, id: &str) -> serde_json::Value {
    let res = http()
        .get(format!("{base}/api/v1/prefetch/{id}"))
        .send()
        .expect("GET /api/v1/prefetch/{id}");
    assert_eq!(res.status().as_u16(), 200);
    res.json().expect("job JSON")
}

/// Polls the job until it is done (panics if it fails), checking that
/// `bytes_done` never decreases; returns the final job and every distinct
/// `bytes_done` seen, in order.
pub fn wait_job_done(base: &str, id: &str, secs: u64) -> (serde_json::Value, Vec<u64>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let job = prefetch_job(base, id);
        let done = job["bytes_done"].as_u64().expect("bytes_done");
        if let Some(&last) = seen.last() {
            assert!(done >= last, "bytes_done went from {last} to {done}: {job}");
        }
        if seen.last() != Some(&done) {
            seen.push(done);
        }
        match job["state"].as_str() {
            Some("done") => return (job, seen),
            Some("failed") => panic!("prefetch job failed: {job}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "job not done in {secs} s: {job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
