//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1, put between a client under
//! test (an edge cache, the controller) and the server it talks to.
//!
//! Owns the faults a link can have: blob bodies corrupted, cut or stalled at a
//! chosen offset, upload bodies (a push's `PATCH`/`PUT`) cut or silently
//! stalled part-way, answers throttled or held back, requests never answered,
//! a server that is down either refusing new connections or making them wait
//! until it is back. It records every request it forwarded, with how many
//! body bytes the client sent (so far, for a client that died mid-body).
//!
//! Every connection carries one request: the proxy rewrites `Connection` to
//! `close` both ways, so an answer's end is the end of its connection and the
//! proxy needs no framing of its own. Requests carry no body or a
//! `Content-Length` one (registry clients and the controller send no others).
//! All settings can change while requests are in flight; each takes effect at
//! the next point where it is consulted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    /// Close both connections once the upload bodies the proxy forwarded
    /// (over all requests since it started, see [`FaultProxy::upload_bytes`])
    /// reach `at` bytes, as a broken link does. Upload faults strike once:
    /// the fault clears when it does.
    UploadCutAt {
        at: u64,
    },
    /// Stop forwarding upload bodies at `at` bytes (counted as for
    /// `UploadCutAt`) and hold both connections open, sending nothing, as a
    /// link that died without a word, until the next `set_fault`; then both
    /// connections close.
    UploadStallAt {
        at: u64,
    },
    /// At `at` upload bytes (counted as for `UploadCutAt`) close the client's
    /// connection but hold the server's open, sending nothing, until the
    /// next `set_fault`: a link only one end heard break (a middlebox that
    /// dropped the connection and reset one side).
    UploadHalfCutAt {
        at: u64,
    },
}

/// One request the proxy forwarded.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    /// 0 when no answer came (the client or the link died first).
    pub status: u16,
    /// Body bytes the proxy received from the client.
    pub body: u64,
}

/// How long a new connection waits for a server that is down (restarting)
/// while [`FaultProxy::set_hold_while_down`] is on.
pub const HOLD_WHILE_DOWN: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Settings {
    fault: Option<Fault>,
    /// Answer bodies are sent at this many bytes per second (None: full speed).
    rate: Option<u64>,
    /// The start of every answer is held back this long.
    delay: Duration,
    /// Blob GET answers lose their Content-Length (the body ends at close).
    strip_length: bool,
    /// Requests are read and never answered (a hung server) while set.
    hang: bool,
    /// A server that is down makes new connections wait (up to
    /// [`HOLD_WHILE_DOWN`]) instead of having them closed at once.
    hold_while_down: bool,
    seen: Vec<Seen>,
    /// Upload body bytes forwarded since the proxy started.
    upload_bytes: u64,
    /// A stalled or half-cut upload's connections are held while set.
    holding: bool,
}

type Shared = Arc<Mutex<Settings>>;

fn lock(settings: &Mutex<Settings>) -> MutexGuard<'_, Settings> {
    settings.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy; it stops accepting when dropped.
pub struct FaultProxy {
    port: u16,
    settings: Shared,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`host:port`) with no faults: connections to a
    /// server that is down are closed at once, answers go at full speed.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let settings = Shared::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped, upstream) = (settings.clone(), stop.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (shared, upstream) = (shared.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = forward_one(conn, &upstream, &shared);
                });
            }
        });
        FaultProxy {
            port,
            settings,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the fault (and lets go of connections an upload fault holds).
    pub fn set_fault(&self, fault: Fault) {
        let mut s = self.settings();
        s.fault = (fault != Fault::None).then_some(fault);
        s.holding = false;
    }

    /// Throttles answer bodies to `bytes_per_sec` per connection (None: full speed).
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        self.settings().rate = bytes_per_sec;
    }

    /// Holds the start of every answer back for `delay` (zero: none): the
    /// server has done the work, the client has not heard of it yet.
    pub fn set_delay(&self, delay: Duration) {
        self.settings().delay = delay;
    }

    /// Whether new connections wait (up to [`HOLD_WHILE_DOWN`]) for a server
    /// that is down, as behind a load balancer, or are closed at once, as if
    /// the server refused them (the default).
    pub fn set_hold_while_down(&self, hold: bool) {
        self.settings().hold_while_down = hold;
    }

    /// Sends blob bodies without Content-Length, delimited by the connection's end.
    pub fn set_strip_length(&self, strip: bool) {
        self.settings().strip_length = strip;
    }

    /// Reads requests but answers none of them (until switched off again).
    pub fn set_hang(&self, hang: bool) {
        self.settings().hang = hang;
    }

    /// Every request forwarded so far, in the order their answers began.
    pub fn seen(&self) -> Vec<Seen> {
        self.settings().seen.clone()
    }

    /// Blob GETs the proxy forwarded for `digest`.
    pub fn blob_gets(&self, digest: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET" && s.path.ends_with(&format!("/blobs/{digest}")))
            .collect()
    }

    /// Upload body bytes (`PATCH`/`PUT`/`POST` to `/blobs/uploads/`) the
    /// proxy forwarded since it started: what the upload faults count.
    pub fn upload_bytes(&self) -> u64 {
        self.settings().upload_bytes
    }

    /// Body bytes the client sent in requests whose path contains `part`
    /// (cut and unanswered requests included).
    pub fn body_bytes(&self, part: &str) -> u64 {
        self.seen()
            .iter()
            .filter(|s| s.path.contains(part))
            .map(|s| s.body)
            .sum()
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.settings)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
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

/// Connects to the server; while `hold` is on and it is down, keeps trying
/// for up to [`HOLD_WHILE_DOWN`].
fn connect(upstream: &str, hold: bool) -> std::io::Result<TcpStream> {
    let deadline = Instant::now()
        + if hold {
            HOLD_WHILE_DOWN
        } else {
            Duration::ZERO
        };
    loop {
        match TcpStream::connect(upstream) {
            Ok(s) => return Ok(s),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e),
        }
    }
}

/// A request head as the client sent it; the body follows on the stream.
struct Request {
    head: Vec<String>,
    method: String,
    path: String,
    /// Its `Content-Length` (0 without one).
    len: u64,
}

fn read_request(client: &mut impl BufRead) -> std::io::Result<Request> {
    let head = read_head(client)?;
    let mut parts = head.first().map(|l| l.split(' ')).into_iter().flatten();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let len: u64 = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Request {
        head,
        method,
        path,
        len,
    })
}

impl Request {
    fn is_upload(&self) -> bool {
        matches!(self.method.as_str(), "PATCH" | "PUT" | "POST")
            && self.path.contains("/blobs/uploads/")
    }

    fn seen(&self, status: u16, body: u64) -> Seen {
        Seen {
            method: self.method.clone(),
            path: self.path.clone(),
            range: header(&self.head, "range").map(str::to_owned),
            status,
            body,
        }
    }
}

/// What an upload fault lets through of `n` more body bytes: how many, and
/// whether the link then breaks (cut) or goes silent (stall).
fn upload_fault(shared: &Mutex<Settings>, n: u64) -> (u64, Option<Fault>) {
    let mut s = lock(shared);
    let sent = s.upload_bytes;
    let hit = match s.fault.clone() {
        Some(
            f @ (Fault::UploadCutAt { at }
            | Fault::UploadStallAt { at }
            | Fault::UploadHalfCutAt { at }),
        ) if sent + n >= at => Some((at.saturating_sub(sent), f)),
        _ => None,
    };
    let (pass, broke) = match hit {
        Some((pass, f)) => (pass.min(n), Some(f)),
        None => (n, None),
    };
    s.upload_bytes += pass;
    if broke.is_some() {
        s.fault = None;
        s.holding = true;
    }
    (pass, broke)
}

/// Streams the request body from the client to the server as it arrives;
/// Ok(None) when it all went, Ok(Some(bytes)) when the client or an upload
/// fault ended it after `bytes` (both connections are then closed).
fn forward_body(
    req: &Request,
    client: &mut impl Read,
    client_w: &TcpStream,
    up_w: &mut TcpStream,
    shared: &Mutex<Settings>,
) -> std::io::Result<Option<u64>> {
    let mut got: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let close = |up_w: &TcpStream| {
        let _ = up_w.shutdown(Shutdown::Both);
        let _ = client_w.shutdown(Shutdown::Both);
    };
    while got < req.len {
        let want = (req.len - got).min(buf.len() as u64) as usize;
        let n = match client.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                // The client died mid-body: so does the server's request.
                close(up_w);
                return Ok(Some(got));
            }
            Ok(n) => n,
        };
        let (pass, broke) = if req.is_upload() {
            upload_fault(shared, n as u64)
        } else {
            (n as u64, None)
        };
        up_w.write_all(&buf[..pass as usize])?;
        got += n as u64;
        match broke {
            None => {}
            Some(held @ (Fault::UploadStallAt { .. } | Fault::UploadHalfCutAt { .. })) => {
                up_w.flush()?;
                if matches!(held, Fault::UploadHalfCutAt { .. }) {
                    let _ = client_w.shutdown(Shutdown::Both);
                }
                while lock(shared).holding {
                    std::thread::sleep(Duration::from_millis(20));
                }
                close(up_w);
                return Ok(Some(got));
            }
            Some(_) => {
                close(up_w);
                return Ok(Some(got));
            }
        }
    }
    Ok(None)
}

/// Forwards one request and its answer, with whatever faults are set.
fn forward_one(client: TcpStream, upstream: &str, shared: &Mutex<Settings>) -> std::io::Result<()> {
    let mut client_r = BufReader::new(client.try_clone()?);
    let mut client_w = client;
    let req = read_request(&mut client_r)?;
    while lock(shared).hang {
        std::thread::sleep(Duration::from_millis(20));
    }
    let hold = lock(shared).hold_while_down;
    let Ok(up) = connect(upstream, hold) else {
        // Down: the client's connection ends without an answer.
        let _ = client_w.shutdown(Shutdown::Both);
        return Ok(());
    };
    let mut up_w = up.try_clone()?;
    up_w.write_all(rewrite_head(&req.head).as_bytes())?;
    if let Some(got) = forward_body(&req, &mut client_r, &client_w, &mut up_w, shared)? {
        lock(shared).seen.push(req.seen(0, got));
        return Ok(());
    }
    let mut up_r = BufReader::new(up);
    let res = read_head(&mut up_r)?;
    let status: u16 = res
        .first()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (fault, rate, delay, strip_length) = {
        let mut s = lock(shared);
        s.seen.push(req.seen(status, req.len));
        (s.fault.clone(), s.rate, s.delay, s.strip_length)
    };
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let is_blob = req.method == "GET"
        && req.path.contains("/blobs/sha256:")
        && (status == 200 || status == 206);
    let res_head: Vec<String> = res
        .iter()
        .filter(|l| {
            !(strip_length && is_blob && l.to_ascii_lowercase().starts_with("content-length:"))
        })
        .cloned()
        .collect();
    client_w.write_all(rewrite_head(&res_head).as_bytes())?;
    if req.method == "HEAD" || status == 204 || status == 304 {
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
    let targets = |d: &str| is_blob && req.path.split('?').next().is_some_and(|p| p.ends_with(d));
    let body = Body {
        start,
        fault: fault.filter(|f| !fault_digest(f).is_empty() && targets(fault_digest(f))),
        rate,
    };
    body.copy(&mut up_r, &mut client_w, shared)
}

fn fault_digest(fault: &Fault) -> &str {
    match fault {
        Fault::None => "",
        Fault::Corrupt { digest, .. }
        | Fault::CutAt { digest, .. }
        | Fault::CutEach { digest, .. }
        | Fault::StallAt { digest, .. } => digest,
        Fault::UploadCutAt { .. } | Fault::UploadStallAt { .. } | Fault::UploadHalfCutAt { .. } => {
            ""
        }
    }
}

/// How one answer body goes through: from which blob offset, with which
/// fault (only when it targets this blob), at what rate.
struct Body {
    start: u64,
    fault: Option<Fault>,
    rate: Option<u64>,
}

impl Body {
    fn copy(
        &self,
        from: &mut impl Read,
        to: &mut TcpStream,
        shared: &Mutex<Settings>,
    ) -> std::io::Result<()> {
        let start = self.start;
        let mut sent: u64 = 0;
        let began = Instant::now();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let chunk = &mut buf[..n];
            let mut cut_after: Option<usize> = None;
            let pos = start + sent;
            let here = |at: u64| (pos..pos + n as u64).contains(&at);
            match &self.fault {
                Some(Fault::Corrupt { at, .. }) if here(*at) => {
                    chunk[(*at - pos) as usize] ^= 0xff;
                }
                Some(Fault::CutAt { at, .. }) if start < *at && here(*at) => {
                    cut_after = Some((*at - pos) as usize);
                }
                Some(Fault::StallAt { at, .. }) if start < *at && here(*at) => {
                    let k = (*at - pos) as usize;
                    to.write_all(&chunk[..k])?;
                    to.flush()?;
                    while lock(shared).fault == self.fault {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    to.write_all(&chunk[k..])?;
                    sent += n as u64;
                    continue;
                }
                Some(Fault::CutEach { after, .. }) if *after < sent + n as u64 => {
                    cut_after = Some((*after - sent) as usize);
                }
                _ => {}
            }
            if let Some(k) = cut_after {
                to.write_all(&chunk[..k])?;
                to.flush()?;
                let _ = to.shutdown(Shutdown::Both);
                return Ok(());
            }
            to.write_all(chunk)?;
            sent += n as u64;
            if let Some(rate) = self.rate {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(began.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        to.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering every request with `body` (Content-Length set).
    fn server(body: &'static [u8]) -> (u16, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let t = std::thread::spawn(move || {
            for conn in l.incoming().take(2) {
                let mut conn = conn.expect("accept");
                let _ = read_head(&mut BufReader::new(conn.try_clone().expect("clone")));
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                conn.write_all(head.as_bytes()).expect("head");
                conn.write_all(body).expect("body");
            }
        });
        (port, t)
    }

    fn get(port: u16, path: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    #[test]
    fn forwards_records_and_cuts_a_blob_after_n_bytes() {
        let (port, server) = server(b"0123456789");
        let proxy = FaultProxy::start(&format!("127.0.0.1:{port}"));
        let path = "/v2/a/blobs/sha256:ab";
        let whole = get(proxy.port(), path);
        assert!(whole.ends_with(b"\r\n\r\n0123456789"), "{whole:?}");
        proxy.set_fault(Fault::CutEach {
            digest: "sha256:ab".into(),
            after: 4,
        });
        let cut = get(proxy.port(), path);
        assert!(cut.ends_with(b"\r\n\r\n0123"), "{cut:?}");
        assert_eq!(proxy.blob_gets("sha256:ab").len(), 2);
        server.join().expect("server");
    }

    #[test]
    fn a_server_that_is_down_closes_the_connection_unanswered() {
        let port = crate::free_port();
        let proxy = FaultProxy::start(&format!("127.0.0.1:{port}"));
        assert!(get(proxy.port(), "/v2/").is_empty());
        assert!(proxy.seen().is_empty());
    }
}
