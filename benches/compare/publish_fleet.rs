//! Workload 10: publish one app to a fleet of N nodes (N = 100, 1,000,
//! 10,000; `--fleet 100,1000` picks), berth only (distribution has no
//! controller). The real `berth serve` (controller, directory deployer)
//! against a simulated fleet (`fleet`): every node its own loopback address
//! and port, prefetch jobs done 0.5 s after they start. A fresh registry per N.
//!
//! Figures: the time from the publish request (by selector) until every node
//! runs, and until then after the last prefetch job was done; the controller's
//! CPU seconds (and per node) and peak RSS over that time; the requests each
//! node's edge answered and the connections it accepted.
//!
//! "Every node runs" is seen without asking the controller while it works
//! (a list of 10,000 publications would cost it CPU and memory): the bench
//! watches the directory deployer's files, takes the newest one's mtime
//! (running is stored right after the write), then confirms with one list
//! that every publication is running.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_testkit::berth as kit_berth;
use futures::StreamExt;
use serde_json::json;

use crate::fleet::Fleet;
use crate::procstat;
use crate::report::{Better, Row, Target};
use crate::setup::{berth_bin, random_image, Kind, PUBLIC};
use crate::{push_value, Bench};

/// How long a node's prefetch job runs.
pub const JOB_DELAY: Duration = Duration::from_millis(500);

const APP: &str = "fleetapp";

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One N's figures.
struct Outcome {
    all_running: f64,
    after_last_prefetch: f64,
    cpu: f64,
    peak_rss_mb: f64,
    requests: f64,
    connections: f64,
    reports: u64,
}

pub fn run(b: &mut Bench) {
    let sizes = b.cfg.fleet.clone();
    let mut rows: Vec<Row> = Vec::new();
    // The controller's system time is mostly the deployer's file creation.
    let files_on = procstat::file_system(&std::env::temp_dir())
        .unwrap_or_else(|| "a file system the kernel does not name".into());
    for n in &sizes {
        let w = format!("10. publish to {n} nodes (jobs done 0.5 s after start)");
        let (time_target, rss_target) = match n {
            1000 => (
                Some(Target::BerthBelow(1.0, "1 s")),
                Some(Target::BerthBelow(40.0, "40 MB")),
            ),
            10000 => (
                Some(Target::BerthBelow(10.0, "10 s")),
                Some(Target::BerthBelow(150.0, "150 MB")),
            ),
            _ => (None, None),
        };
        rows.push(Row::new(&w, "request to all running", "s", Better::Lower));
        let mut after = Row::new(
            &w,
            "all running after the last prefetch was done",
            "s",
            Better::Lower,
        );
        if let Some(t) = time_target {
            after = after.target(t);
        }
        rows.push(after);
        rows.push(Row::new(&w, "controller CPU", "s", Better::Lower));
        let mut per_node = Row::new(&w, "controller CPU per node", "ms", Better::Lower)
            .note(&format!("the directory deployer's files on {files_on}"));
        if *n >= 1000 {
            per_node = per_node.target(Target::BerthBelow(1.0, "1 ms"));
        }
        rows.push(per_node);
        let mut rss = Row::new(&w, "controller peak RSS", "MB", Better::Lower);
        if let Some(t) = rss_target {
            rss = rss.target(t);
        }
        rows.push(rss);
        rows.push(Row::new(&w, "edge requests per node", "", Better::Lower));
        rows.push(Row::new(&w, "edge connections per node", "", Better::Lower));
    }
    for run in 0..b.cfg.runs {
        for (j, &n) in sizes.iter().enumerate() {
            b.progress(&format!("10. publish to {n} nodes, run {}", run + 1));
            let o = publish_once(b, n);
            b.progress(&format!(
                "   {n} nodes: all running {:.2} s after the request, {:.2} s after the last prefetch; CPU {:.2} s ({:.2} ms/node); peak RSS {:.1} MB; {:.2} requests, {:.2} connections per node; {} reports",
                o.all_running, o.after_last_prefetch, o.cpu, o.cpu * 1000.0 / n as f64,
                o.peak_rss_mb, o.requests, o.connections, o.reports
            ));
            let base = j * 7;
            for (k, v) in [
                o.all_running,
                o.after_last_prefetch,
                o.cpu,
                o.cpu * 1000.0 / n as f64,
                o.peak_rss_mb,
                o.requests,
                o.connections,
            ]
            .into_iter()
            .enumerate()
            {
                push_value(&mut rows, base + k, Kind::Berth, v);
            }
        }
    }
    b.rows.extend(rows);
}

/// A fresh registry and fleet of `n` nodes; one publish, measured.
fn publish_once(b: &mut Bench, n: usize) -> Outcome {
    let mut env: Vec<(&str, &str)> = b
        .cfg
        .berth_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("BERTH_CONTROLLER_DRIFT_CHECK_INTERVAL", "0s"));
    let reg = kit_berth::registry_with(berth_bin(), &[], &env);
    let admin = reg.admin();
    admin.create_project(PUBLIC, true);
    let dir = b.scratch("fleet-image");
    let (layout, _) = random_image(&dir, &[4096], "v1");
    let target = crate::setup::Target {
        kind: Kind::Berth,
        addr: reg.host().parse().expect("address"),
        pid: reg.server.pid().expect("pid"),
    };
    target.push(&b.skopeo, &layout, &format!("{PUBLIC}/{APP}"), "v1");
    let (s, v) = admin.call(
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "fleet", "kubeconfig": kit_berth::kubeconfig("bench")})),
    );
    assert_eq!(s, 201, "cluster: {v}");
    let mut fleet = Fleet::start(n, JOB_DELAY);
    register_nodes(b, &reg.url(), &fleet.urls);
    let (s, v) = admin.call(
        "POST",
        &format!("/api/v1/projects/{PUBLIC}/apps"),
        Some(
            json!({"name": APP, "spec": {"kind": "Deployment", "replicas": 1,
            "containers": [{"name": "web", "image": format!("{PUBLIC}/{APP}:v1")}]}}),
        ),
    );
    assert_eq!(s, 201, "app: {v}");

    std::thread::sleep(Duration::from_millis(500));
    let pid = target.pid;
    let rss0 = procstat::rss(pid).unwrap_or(0) as f64 / 1e6;
    procstat::reset_peak(pid);
    let cpu0 = procstat::cpu_time(Some(pid));
    let (user0, sys0) = procstat::cpu_user_system(pid);
    let started = SystemTime::now();
    let t0 = Instant::now();
    let (s, v) = admin.call(
        "POST",
        &format!("/api/v1/projects/{PUBLIC}/apps/{APP}/publish"),
        Some(json!({"selector": {"fleet": "bench"}})),
    );
    assert_eq!(s, 202, "publish: {v}");
    let last_file = wait_for_files(&reg.data_dir, n, t0);
    let cpu = (procstat::cpu_time(Some(pid)) - cpu0).as_secs_f64();
    let peak = procstat::peak_rss(pid).unwrap_or(0) as f64 / 1e6;
    let (user1, sys1) = procstat::cpu_user_system(pid);
    b.progress(&format!(
        "   controller CPU: user {:.2} s, system {:.2} s; RSS {rss0:.1} MB at the request, {} threads at the end",
        user1.saturating_sub(user0).as_secs_f64(),
        sys1.saturating_sub(sys0).as_secs_f64(),
        procstat::threads(pid).unwrap_or(0),
    ));
    confirm_running(&admin, n);
    let stats = fleet.stats();
    assert_eq!(stats.jobs as usize, n, "one prefetch job per node");
    let all_running = unix_ms(last_file).saturating_sub(unix_ms(started)) as f64 / 1000.0;
    let after_last = unix_ms(last_file) as f64 / 1000.0 - stats.last_done_ms as f64 / 1000.0;
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    Outcome {
        all_running,
        after_last_prefetch: after_last,
        cpu,
        peak_rss_mb: peak,
        requests: mean(&stats.requests) + stats.reports_sent as f64 / n as f64,
        connections: mean(&stats.connections) + stats.reports_sent as f64 / n as f64,
        reports: stats.reports_sent,
    }
}

/// `POST /api/v1/nodes` for every node, 16 at once.
fn register_nodes(b: &Bench, base: &str, urls: &[String]) {
    let http = reqwest::Client::new();
    b.rt.block_on(async {
        let results: Vec<(u16, String)> = futures::stream::iter(urls.iter().enumerate())
            .map(|(i, url)| {
                let http = http.clone();
                async move {
                    let res = http
                        .post(format!("{base}/api/v1/nodes"))
                        .basic_auth("admin", Some(kit_berth::ADMIN_PASSWORD))
                        .json(&json!({"name": format!("n{i}"), "cluster": "fleet",
                            "edge_url": url, "labels": {"fleet": "bench"}}))
                        .send()
                        .await
                        .expect("registering a node");
                    let status = res.status().as_u16();
                    (status, res.text().await.unwrap_or_default())
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        if let Some((s, body)) = results.iter().find(|(s, _)| *s != 201) {
            panic!("registering a node answered {s}: {body}");
        }
    });
}

/// Waits until every node's Deployment file is written; the newest mtime.
fn wait_for_files(data: &std::path::Path, n: usize, t0: Instant) -> SystemTime {
    let limit = Duration::from_secs(120) + Duration::from_millis(20 * n as u64);
    let dir = data.join("manifests");
    let mut seen = vec![None::<SystemTime>; n];
    let mut left = n;
    while left > 0 {
        assert!(
            t0.elapsed() < limit,
            "{left} of {n} nodes have no manifests after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        for (i, slot) in seen.iter_mut().enumerate().filter(|(_, s)| s.is_none()) {
            let f = dir
                .join(format!("n{i}"))
                .join(format!("{PUBLIC}-{APP}-deployment-{APP}-n{i}.yaml"));
            if let Ok(m) = std::fs::metadata(&f).and_then(|m| m.modified()) {
                *slot = Some(m);
                left -= 1;
            }
        }
    }
    seen.into_iter().flatten().max().expect("files")
}

/// Every publication of the app is running (waits a little for the last
/// state writes after the files).
fn confirm_running(admin: &kit_berth::Admin, n: usize) {
    let path = format!("/api/v1/projects/{PUBLIC}/apps/{APP}/publications");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = admin.call("GET", &path, None);
        assert_eq!(s, 200, "{v}");
        let pubs = v["publications"].as_array().cloned().unwrap_or_default();
        let running = pubs.iter().filter(|p| p["state"] == "running").count();
        if running == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{running} of {n} publications running; one that is not: {:#}",
            pubs.iter()
                .find(|p| p["state"] != "running")
                .cloned()
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
