//! Connection limits end to end: unauthenticated clients cannot exhaust the
//! registry's or the edge's connections. Caps per client address and in total,
//! header and idle timeouts, a bounded token request body, a minimum request
//! body rate, and rate-limited logging of all of it; long responses are not cut.
//!
//! All traffic comes from loopback; a second client machine is played by
//! binding the client socket to 127.0.0.2.

mod common;
mod edge_support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use berth_testkit::fixtures::digest_of;
use berth_testkit::metrics::Metrics;
use berth_testkit::net::{
    connect_from, get_request, request_from, send_partial, wait_closed, Ending,
};
use berth_testkit::{berth, berth_bin, wait_until};
use common::{basic_admin, Reg};

const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Generous: every wait here ends much sooner unless something is broken.
const BOUND: Duration = Duration::from_secs(60);
const PARTIAL_HEAD: &[u8] = b"GET /v2/ HTTP/1.1\r\nHost: berth\r\nUser-Agent: slow";

/// Scrapes `/metrics` from 127.0.0.2, which no test floods.
fn metrics(port: u16) -> Metrics {
    let e = request_from(OTHER_CLIENT, port, &get_request("/metrics"), BOUND);
    let text = e.text();
    assert!(text.starts_with("HTTP/1.1 200"), "metrics: {text}");
    Metrics { text }
}

fn log_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_flood_of_partial_requests_from_one_address_does_not_lock_out_others() {
    // The set-up: 128 file descriptors, 200 sockets that send part of
    // a request line and stop. The header timeout is long so they stay.
    let reg = berth::registry_with_open_files(
        berth_bin!(),
        128,
        &[("BERTH_SERVER_HEADER_TIMEOUT", "10m")],
    );
    let port = reg.server.port();
    let before = reg.server.log().lines().count();
    let flood: Vec<TcpStream> = (0..200).map(|_| send_partial(port, PARTIAL_HEAD)).collect();

    // 128 descriptors hold (128 - 32) / 2 = 48 connections, 24 per address.
    wait_until(
        "the flood to be refused past the per-address cap",
        BOUND,
        || metrics(port).get("berth_connections_refused_total", &[("reason", "per_ip")]) >= 176.0,
    );
    let m = metrics(port);
    assert!(
        m.get("berth_connections_open", &[]) <= 48.0,
        "connections held: {}",
        m.text
    );

    // Another client is served at once.
    let other = request_from(OTHER_CLIENT, port, &get_request("/healthz"), BOUND);
    assert!(
        other.text().starts_with("HTTP/1.1 200") && other.text().ends_with("ok"),
        "127.0.0.2 while 127.0.0.1 floods: {other:?}"
    );
    let v2 = request_from(OTHER_CLIENT, port, &get_request("/v2/"), BOUND);
    assert!(v2.text().starts_with("HTTP/1.1 "), "/v2/: {v2:?}");

    // The flooding address is told why, and the connection closed.
    let mut refused = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let answer = wait_closed(&mut refused, BOUND);
    assert!(answer.closed, "refused connection left open: {answer:?}");
    assert!(
        answer.text().starts_with("HTTP/1.1 429") && answer.text().contains("TOOMANYREQUESTS"),
        "{}",
        answer.text()
    );

    // A few lines, not one per connection.
    let log = reg.server.log();
    let grown = log.lines().count() - before;
    assert!(
        grown < 20,
        "200 refused connections wrote {grown} log lines:\n{}",
        reg.server.log_tail(40)
    );
    assert!(
        log_lines(&log, "refused connections over the per-address cap") >= 1,
        "the refusals are logged at all:\n{}",
        reg.server.log_tail(40)
    );

    // Once the flood goes away, its address is served again.
    drop(flood);
    wait_until("127.0.0.1 to be served again", BOUND, || {
        berth_testkit::proc::http_status(port, "/healthz", Duration::from_secs(5)) == Some(200)
    });
}

#[test]
fn silent_partial_and_idle_connections_are_closed() {
    let reg = Reg::start_with(&[
        ("BERTH_SERVER_HEADER_TIMEOUT", "2s"),
        ("BERTH_SERVER_IDLE_TIMEOUT", "3s"),
    ]);
    let port = reg.port();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut partial = send_partial(port, PARTIAL_HEAD);
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: berth\r\n\r\n")
        .expect("request");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    idle.set_read_timeout(Some(BOUND)).expect("timeout");
    while !answer.ends_with(b"ok") {
        let n = idle
            .read(&mut buf)
            .expect("answer on a keep-alive connection");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }

    for (name, s) in [
        ("silent", &mut silent),
        ("partial head", &mut partial),
        ("idle keep-alive", &mut idle),
    ] {
        let end = wait_closed(s, BOUND);
        assert!(end.closed, "{name} connection still open: {end:?}");
        assert!(end.received.is_empty(), "{name}: {}", end.text());
    }
    let m = metrics(port);
    assert!(
        m.get(
            "berth_connections_closed_total",
            &[("reason", "header_timeout")]
        ) >= 2.0
    );
    assert!(
        m.get(
            "berth_connections_closed_total",
            &[("reason", "idle_timeout")]
        ) >= 1.0
    );
}

#[test]
fn a_slow_download_outlives_the_timeouts() {
    let reg = Reg::start_with(&[
        ("BERTH_SERVER_HEADER_TIMEOUT", "1s"),
        ("BERTH_SERVER_IDLE_TIMEOUT", "1s"),
    ]);
    let blob = common::bytes(7, 24 << 20);
    let digest = reg.push_blob("pub/big", &blob);
    let mut res = reg.get(&format!("/v2/pub/big/blobs/{digest}"));
    assert_eq!(res.status(), 200);
    // About 3 MB/s: many seconds of streaming, many times either timeout.
    let mut got = Vec::with_capacity(blob.len());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = res.read(&mut buf).expect("the download is not cut");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(got.len(), blob.len());
    assert_eq!(digest_of(&got), digest);
}

#[test]
fn token_requests_with_huge_or_stalled_bodies_are_answered() {
    let reg = Reg::start_with(&[
        ("BERTH_SERVER_MIN_BODY_RATE", "100"),
        ("BERTH_SERVER_BODY_RATE_WINDOW", "2s"),
    ]);
    let port = reg.port();
    let huge = b"POST /v2/token HTTP/1.1\r\nHost: berth\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000000\r\n\r\ngrant_type=password";
    let mut s = send_partial(port, huge);
    let end = wait_closed(&mut s, BOUND);
    assert!(end.text().starts_with("HTTP/1.1 413"), "{end:?}");
    assert!(end.closed, "{end:?}");

    let stalled = b"POST /v2/token HTTP/1.1\r\nHost: berth\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=password&user";
    let mut s = send_partial(port, stalled);
    let end = wait_closed(&mut s, BOUND);
    assert!(end.text().starts_with("HTTP/1.1 400"), "{end:?}");
    assert!(end.text().contains("min_body_rate"), "{}", end.text());
}

/// Starts an upload in `repo` and returns the path of its Location.
fn upload_path(reg: &Reg, repo: &str) -> String {
    let location = reg.start_upload(repo);
    match location.find("/v2/") {
        Some(i) => location[i..].to_string(),
        None => panic!("odd Location {location}"),
    }
}

/// Opens a PATCH of `len` bytes to `path` and returns the socket, head sent.
fn open_patch(port: u16, path: &str, len: usize) -> TcpStream {
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: berth\r\nAuthorization: Basic {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        basic_admin()
    );
    send_partial(port, head.as_bytes())
}

fn location_of(answer: &Ending) -> String {
    let text = answer.text();
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .unwrap_or_else(|| panic!("no Location in {text}"));
    line["location:".len()..].trim().to_string()
}

#[test]
fn a_slow_upload_completes_and_a_stalled_one_is_cut() {
    let reg = Reg::start_with(&[
        ("BERTH_SERVER_MIN_BODY_RATE", "100"),
        ("BERTH_SERVER_BODY_RATE_WINDOW", "3s"),
    ]);
    let port = reg.port();
    let blob = common::bytes(11, 20 * 1024);

    // 512 bytes every 200 ms (25 times the minimum) for longer than the window.
    let mut slow = open_patch(port, &upload_path(&reg, "pub/slow"), blob.len());
    for chunk in blob.chunks(512) {
        slow.write_all(chunk).expect("trickle");
        std::thread::sleep(Duration::from_millis(200));
    }
    let answer = wait_closed(&mut slow, BOUND);
    assert!(answer.text().starts_with("HTTP/1.1 202"), "{answer:?}");
    let res = reg.finish(&location_of(&answer), &digest_of(&blob), b"");
    assert_eq!(res.status(), 201, "{}", common::describe(res));

    // 1 KiB, then nothing.
    let mut stalled = open_patch(port, &upload_path(&reg, "pub/stalled"), blob.len());
    stalled.write_all(&blob[..1024]).expect("first bytes");
    let answer = wait_closed(&mut stalled, BOUND);
    let text = answer.text();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("BLOB_UPLOAD_INVALID") && text.contains("min_body_rate"),
        "{text}"
    );
    assert!(answer.closed);

    assert!(metrics(port).get("berth_request_bodies_cut_total", &[]) >= 1.0);
    assert_eq!(
        log_lines(&reg.reg.server.log(), "cut request bodies arriving slower"),
        1,
        "{}",
        reg.reg.server.log_tail(20)
    );
}

#[test]
fn the_edge_has_the_same_limits() {
    let origin = berth::registry(berth_bin!());
    let cache = tempfile::tempdir().expect("tmp");
    let edge = edge_support::edge(
        &origin.url(),
        cache.path(),
        None,
        &[
            ("BERTH_SERVER_HEADER_TIMEOUT", "10m"),
            ("BERTH_SERVER_IDLE_TIMEOUT", "2s"),
            ("BERTH_SERVER_MAX_CONNECTIONS_PER_IP", "6"),
        ],
    );
    let port = edge.port();
    let flood: Vec<TcpStream> = (0..20).map(|_| send_partial(port, PARTIAL_HEAD)).collect();
    wait_until("the edge to refuse past the per-address cap", BOUND, || {
        metrics(port).get("berth_connections_refused_total", &[("reason", "per_ip")]) >= 14.0
    });
    let mut refused = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let answer = wait_closed(&mut refused, BOUND);
    assert!(answer.text().starts_with("HTTP/1.1 429"), "{answer:?}");
    let other = request_from(OTHER_CLIENT, port, &get_request("/healthz"), BOUND);
    assert!(other.text().starts_with("HTTP/1.1 200"), "{other:?}");
    drop(flood);

    // A keep-alive connection from another address is closed once idle.
    let mut idle = connect_from(OTHER_CLIENT, port);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: berth\r\n\r\n")
        .expect("request");
    let end = wait_closed(&mut idle, BOUND);
    assert!(
        end.closed,
        "idle connection to the edge still open: {end:?}"
    );
    assert!(end.text().starts_with("HTTP/1.1 200"), "{end:?}");
    assert!(
        metrics(port).get(
            "berth_connections_closed_total",
            &[("reason", "idle_timeout")]
        ) >= 1.0
    );
}
