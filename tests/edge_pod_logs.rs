//! Container logs served by `berth edge` from the files the kubelet writes:
//! CRI-format lines, rotated and compressed files, tail, since, previous,
//! timestamps, and a follow that carries on across a rotation; names checked,
//! and only the controller's token opens the route.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_testkit::berth;
use berth_testkit::berth_bin;
use berth_testkit::free_port;
use berth_testkit::logs::{append, cri, Lines};
use reqwest::blocking::Client;

const TOKEN: &str = "ctl-token-Jx92";

fn write_gz(path: &Path, text: &str) {
    let f = std::fs::File::create(path).expect("create");
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    gz.write_all(text.as_bytes()).expect("gz");
    gz.finish().expect("finish");
}

/// A pod `web-7d9f` in namespace `shop` with container `web`: instance 0 (done)
/// and instance 1 with one compressed and one plain rotated file and the live one.
fn pod_logs(root: &Path) -> PathBuf {
    let dir = root.join("shop_web-7d9f_0b6e2c1a-uid/web");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("0.log"),
        cri("00.0", "stdout", "F", "old instance"),
    )
    .expect("w");
    write_gz(
        &dir.join("1.log.20260102-030401.gz"),
        &(cri("01.0", "stdout", "F", "one") + &cri("02.0", "stderr", "P", "tw")),
    );
    std::fs::write(
        dir.join("1.log.20260102-030403"),
        cri("02.5", "stderr", "F", "o") + &cri("03.0", "stdout", "F", "three"),
    )
    .expect("w");
    std::fs::write(dir.join("1.log"), cri("04.0", "stdout", "F", "four")).expect("w");
    // Another namespace's pod, and a system pod, on the same node.
    let other = root.join("kube-system_etcd-node_1234/etcd");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(
        other.join("0.log"),
        cri("00.0", "stdout", "F", "etcd secret"),
    )
    .expect("w");
    dir
}

struct Edge {
    _process: berth_testkit::ServerProcess,
    url: String,
    http: Client,
}

impl Edge {
    fn start(pods: &Path, cache: &Path, token: &str) -> Edge {
        let dead = format!("http://127.0.0.1:{}", free_port());
        let process = berth::edge(
            berth_bin!(),
            &dead,
            cache,
            None,
            &[
                ("BERTH_EDGE_POD_LOGS_DIR", pods.to_str().expect("path")),
                ("BERTH_EDGE_CONTROLLER_TOKEN", token),
            ],
        );
        Edge {
            url: process.base_url(),
            _process: process,
            http: Client::new(),
        }
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut rb = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let res = rb.send().expect("edge reachable");
        (res.status().as_u16(), res.text().unwrap_or_default())
    }

    fn logs(&self, query: &str) -> (u16, String) {
        self.get(
            &format!("/api/v1/logs/shop/web-7d9f/web{query}"),
            Some(TOKEN),
        )
    }
}

#[test]
fn logs_read_rotated_compressed_and_live_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pods = tmp.path().join("pods");
    pod_logs(&pods);
    let edge = Edge::start(&pods, &tmp.path().join("cache"), TOKEN);

    let (s, body) = edge.logs("");
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body, "one\ntwo\nthree\nfour\n",
        "partial lines joined, files in order"
    );
    let (s, body) = edge.logs("?tail=2");
    assert_eq!((s, body.as_str()), (200, "three\nfour\n"));
    let (s, body) = edge.logs("?tail=0");
    assert_eq!((s, body.as_str()), (200, ""));
    let (s, body) = edge.logs("?since=2026-01-02T03:04:02.5Z");
    assert_eq!((s, body.as_str()), (200, "three\nfour\n"), "since a time");
    let (s, body) = edge.logs("?previous=true");
    assert_eq!((s, body.as_str()), (200, "old instance\n"));
    let (s, body) = edge.logs("?timestamps=true&tail=1");
    assert_eq!((s, body.as_str()), (200, "2026-01-02T03:04:04.0Z four\n"));
    let (s, body) = edge.logs("?since=yesterday");
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("since"), "{body}");
    let (s, body) = edge.logs("?lines=3");
    assert_eq!(s, 400, "unknown parameter: {body}");
}

#[test]
fn only_the_controller_token_opens_logs_and_names_stay_names() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pods = tmp.path().join("pods");
    pod_logs(&pods);
    let edge = Edge::start(&pods, &tmp.path().join("cache"), TOKEN);
    // Loopback is a trusted network for pulls; it does not open logs.
    let (s, body) = edge.get("/api/v1/logs/shop/web-7d9f/web", None);
    assert_eq!(s, 401, "{body}");
    let (s, _) = edge.get("/api/v1/logs/shop/web-7d9f/web", Some("wrong"));
    assert_eq!(s, 401);
    for path in [
        "/api/v1/logs/kube-system/etcd-node/etcd",
        "/api/v1/logs/shop/..%2F..%2Fetc/web",
        "/api/v1/logs/shop/web-7d9f/..",
        "/api/v1/logs/..%2Fkube-system_etcd-node_1234/etcd/etcd",
        "/api/v1/logs/Shop/web-7d9f/web",
    ] {
        let (s, body) = edge.get(path, Some(TOKEN));
        assert!(s == 400 || s == 404, "{path} answered {s}: {body}");
        assert!(!body.contains("etcd secret"), "{path}: {body}");
    }
    let (s, body) = edge.get("/api/v1/logs/shop/nope/web", Some(TOKEN));
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("no pod nope"), "{body}");

    // Without a token configured, logs are off and say how to turn them on.
    let off = Edge::start(&pods, &tmp.path().join("cache2"), "");
    let (s, body) = off.get("/api/v1/logs/shop/web-7d9f/web", Some(""));
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("edge.controller_token"), "{body}");
}

#[test]
fn follow_streams_across_a_rotation() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pods = tmp.path().join("pods");
    let dir = pod_logs(&pods);
    let edge = Edge::start(&pods, &tmp.path().join("cache"), TOKEN);
    let res = edge
        .http
        .get(format!(
            "{}/api/v1/logs/shop/web-7d9f/web?follow=true&tail=1",
            edge.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .expect("follow");
    assert_eq!(res.status().as_u16(), 200);
    let lines = Lines::of(res);
    lines.expect("four");

    let live = dir.join("1.log");
    append(&live, &cri("05.0", "stdout", "F", "five"));
    lines.expect("five");
    // A line written in two parts, the second a while later.
    append(&live, &cri("06.0", "stdout", "P", "si"));
    std::thread::sleep(Duration::from_millis(300));
    append(&live, &cri("06.1", "stdout", "F", "x"));
    lines.expect("six");

    // The kubelet rotates: the live file, with a last line the follow may not have
    // read yet, is renamed and a new one is opened.
    append(&live, &cri("07.0", "stdout", "F", "seven"));
    std::fs::rename(&live, dir.join("1.log.20260102-030407")).expect("rotate");
    append(&live, &cri("08.0", "stdout", "F", "eight"));
    lines.expect("seven");
    lines.expect("eight");

    // The container restarts: instance 2 writes a new file.
    append(&dir.join("2.log"), &cri("09.0", "stdout", "F", "nine"));
    lines.expect("nine");
}
