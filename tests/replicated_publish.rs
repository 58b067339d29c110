//! The controller on two `berth serve` replicas (one PostgreSQL database
//! started by the kit, one shared data directory: blobs and the directory
//! deployer's output), with real `berth edge` caches as the nodes:
//!
//! - the leader is killed with SIGKILL in the middle of a publish to three
//!   nodes (one applied, two whose edge caches are still filling, held back
//!   by a proxy before their upstream): the other replica takes over and
//!   the publish completes once, one apply per node, as both replicas say;
//! - the leader is paused (SIGSTOP) in the middle of a reconcile and woken
//!   (SIGCONT) after the other took over: its writes are refused by the
//!   fence and nothing is applied or prefetched twice.
//!
//! The registry's URL (`server.external_url`, what edges pull from and
//! report to) is a balancer that sends everything to B, so that what edges
//! send lands on the follower while A leads. The publishes are asked of B
//! too. The controllers poll edges a minute apart and resync every two
//! minutes: a publication running within `BEFORE_POLL` was woken by the
//! relay to the leader (PostgreSQL NOTIFY), of the request and of the
//! edge's report. Waits have generous bounds; nothing asserts a duration.

mod controller_support;

use std::path::{Path, PathBuf};

use std::time::Duration;

use berth_testkit::balancer::Balancer;
use berth_testkit::berth::{self, Admin, Registry, ADMIN_PASSWORD};
use berth_testkit::fixtures::{ImageBuilder, OciLayout};
use berth_testkit::postgres::Postgres;
use berth_testkit::proxy::FaultProxy;
use berth_testkit::tools::{docker_ref, CopyOptions, Creds, Skopeo};
use berth_testkit::{berth_bin, wait_until};
use controller_support::{tools_present, EdgeNode, PROJECT};
use serde_json::{json, Value};

/// Generous: a loaded CI machine, a lease of 3 s to run out.
const BOUND: Duration = Duration::from_secs(90);

/// Generous for a publish of a small image, and short of the controllers'
/// poll of an edge's job (a minute) and their resync (two minutes).
const BEFORE_POLL: Duration = Duration::from_secs(45);

/// What the leader logs when its term starts.
const LEADING: &str = "leading the controller's reconcilers";

/// Two replicas, A leading, the registry's URL in front of B, with a
/// project, its pull robot, a cluster and an image `acme/web:1`.
struct Replicas {
    a: Registry,
    b: Registry,
    /// The registry's URL: a balancer with B alone behind it.
    front: Balancer,
    robot: (String, String),
    tmp: tempfile::TempDir,
}

fn replica(data: &Path, db: &str, external: &str) -> Registry {
    let key = "4c".repeat(32);
    berth::registry_in(
        berth_bin!(),
        data,
        &[],
        &[
            ("BERTH_META_BACKEND", "postgres"),
            ("BERTH_META_URL", db),
            ("BERTH_CONTROLLER_SECRET_KEY", &key),
            ("BERTH_CONTROLLER_LEADER_LEASE", "3s"),
            ("BERTH_SERVER_EXTERNAL_URL", external),
            // Edges report their jobs' end: polls stay far off.
            ("BERTH_CONTROLLER_POLL_INTERVAL", "60s"),
        ],
    )
}

impl Replicas {
    fn start() -> Replicas {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("data");
        let db = Postgres::shared().database();
        let front = Balancer::start(&[]);
        let a = replica(&data, &db, &front.url());
        wait_until("A to lead", BOUND, || a.server.log().contains(LEADING));
        let b = replica(&data, &db, &front.url());
        front.set_backends(&[b.server.port()]);

        let admin = a.admin();
        admin.create_project(PROJECT, false);
        let robot = admin.create_robot(PROJECT, "edge", "pull");
        let (s, v) = admin.call(
            "POST",
            "/api/v1/clusters",
            Some(json!({"name": "edge", "kubeconfig": berth::kubeconfig("cluster-token")})),
        );
        assert_eq!(s, 201, "{v}");
        let layout = OciLayout::create(tmp.path().join("layout"));
        let image = ImageBuilder::new()
            .layer_random(256 * 1024)
            .tag("web-1")
            .build(&layout);
        Skopeo::new().copy(
            &layout.reference(image.tag.as_deref().expect("tag")),
            &docker_ref(&a.host(), &format!("{PROJECT}/web"), "1"),
            &CopyOptions::default()
                .preserving_digests()
                .with_dest_creds(&Creds::new("admin", ADMIN_PASSWORD)),
        );
        let b_admin = b.admin();
        wait_until("the app's project on B", BOUND, || {
            b_admin
                .call("GET", &format!("/api/v1/projects/{PROJECT}"), None)
                .0
                == 200
        });
        Replicas {
            a,
            b,
            front,
            robot,
            tmp,
        }
    }

    /// A `berth edge` for node `name` pulling from `upstream`, with `env`.
    fn start_edge(&self, name: &str, upstream: &str, env: &[(&str, &str)]) -> EdgeNode {
        let cache_dir = self.tmp.path().join(format!("edge-{name}"));
        let process = berth::edge(
            berth_bin!(),
            upstream,
            &cache_dir,
            Some((&self.robot.0, &self.robot.1)),
            env,
        );
        EdgeNode {
            name: name.to_string(),
            process,
            cache_dir,
        }
    }

    /// Registers (through A) node `name`, its edge reached at `edge_url`.
    fn register(&self, name: &str, edge_url: &str) {
        let (s, v) = self.a.admin().call(
            "POST",
            "/api/v1/nodes",
            Some(json!({"name": name, "cluster": "edge", "edge_url": edge_url, "labels": {}})),
        );
        assert_eq!(s, 201, "registering node {name}: {v}");
    }

    /// Where the directory deployer writes a node's files (shared).
    fn node_dir(&self, node: &str) -> PathBuf {
        self.a.data_dir.join("manifests").join(node)
    }

    /// The workload's applies on `node`, from the deployer's apply log.
    fn applies(&self, node: &str) -> usize {
        let log =
            std::fs::read_to_string(self.node_dir(node).join(".applies.jsonl")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| {
                l["files"].as_array().is_some_and(|f| {
                    f.iter().any(|f| {
                        f.as_str()
                            .is_some_and(|f| f.starts_with("acme-web-deployment-"))
                    })
                })
            })
            .count()
    }
}

fn app_path() -> String {
    format!("/api/v1/projects/{PROJECT}/apps/web")
}

fn create_app(admin: &Admin) {
    let (s, v) = admin.call(
        "POST",
        &format!("/api/v1/projects/{PROJECT}/apps"),
        Some(
            json!({"name": "web", "spec": {"kind": "Deployment", "replicas": 1,
            "containers": [{"name": "web", "image": "acme/web:1"}]}}),
        ),
    );
    assert_eq!(s, 201, "{v}");
}

fn publish(admin: &Admin, nodes: &[&str]) {
    let (s, v) = admin.call(
        "POST",
        &format!("{}/publish", app_path()),
        Some(json!({ "nodes": nodes })),
    );
    assert_eq!(s, 202, "{v}");
}

fn publication(admin: &Admin, node: &str) -> Value {
    let (s, v) = admin.call("GET", &format!("{}/publications", app_path()), None);
    assert_eq!(s, 200, "{v}");
    v["publications"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["node"] == node).cloned())
        .unwrap_or(Value::Null)
}

fn wait_state(admin: &Admin, node: &str, state: &str) -> Value {
    wait_state_within(admin, node, state, BOUND)
}

fn wait_state_within(admin: &Admin, node: &str, state: &str, bound: Duration) -> Value {
    wait_until(&format!("web@{node} to be {state}"), bound, || {
        let p = publication(admin, node);
        if p["state"] == state {
            Ok(p)
        } else {
            Err(format!("{p:#}"))
        }
    })
}

/// How often the history says the workload was applied.
fn applied_in_history(p: &Value) -> usize {
    p["history"].as_array().map_or(0, |h| {
        h.iter()
            .filter(|e| {
                e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("applied version"))
            })
            .count()
    })
}

fn signal(process: &berth_testkit::ServerProcess, sig: &str) {
    let pid = process.pid().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn the_leader_killed_mid_publish_the_other_completes_it_once() {
    if !tools_present() {
        return;
    }
    let mut r = Replicas::start();
    let front = r.front.url();
    // n2's and n3's caches fill only when their proxy lets them: it holds
    // their requests to their first upstream, which they wait for (a long
    // connect timeout; an edge's answer timeout is twice it). The front
    // is their second upstream, so they report there too.
    let (gate2, gate3) = (
        FaultProxy::start(&r.front.host()),
        FaultProxy::start(&r.front.host()),
    );
    gate2.set_hang(true);
    gate3.set_hang(true);
    let patient = [("BERTH_EDGE_CONNECT_TIMEOUT", "60s")];
    let nodes = [
        r.start_edge("n1", &front, &[]),
        r.start_edge("n2", &format!("{},{front}", gate2.url()), &patient),
        r.start_edge("n3", &format!("{},{front}", gate3.url()), &patient),
    ];
    for n in &nodes {
        r.register(&n.name, &n.url());
    }
    let (a_admin, b_admin) = (r.a.admin(), r.b.admin());
    create_app(&b_admin);
    // Asked of B, the follower; A leads, and n1's edge reports to B.
    publish(&b_admin, &["n1", "n2", "n3"]);
    wait_state_within(&b_admin, "n1", "running", BEFORE_POLL);
    for n in ["n2", "n3"] {
        wait_state(&a_admin, n, "prefetching");
        assert_eq!(r.applies(n), 0, "{n} not applied yet");
    }
    assert_eq!(r.applies("n1"), 1);

    // A dies in the middle of the publish; B takes over.
    r.a.server.kill9();
    wait_until("B to lead", BOUND, || r.b.server.log().contains(LEADING));
    gate2.set_hang(false);
    wait_state_within(&b_admin, "n2", "running", BEFORE_POLL);
    gate3.set_hang(false);
    wait_state_within(&b_admin, "n3", "running", BEFORE_POLL);

    // A comes back as a replica among others: both say the same, and
    // nothing was applied twice.
    r.a.server.start_again();
    let a_admin = r.a.admin();
    for n in ["n1", "n2", "n3"] {
        let (on_a, on_b) = (publication(&a_admin, n), publication(&b_admin, n));
        assert_eq!(on_a["state"], "running", "{n} on A: {on_a:#}");
        assert_eq!(on_b["state"], "running", "{n} on B: {on_b:#}");
        assert_eq!(applied_in_history(&on_b), 1, "{n}: {on_b:#}");
        assert_eq!(r.applies(n), 1, "{n} applied once");
    }
}

#[test]
fn a_paused_ex_leader_is_fenced_off_when_it_wakes() {
    if !tools_present() {
        return;
    }
    let mut r = Replicas::start();
    let n1 = r.start_edge("n1", &r.front.url(), &[]);
    // The controllers reach n1's edge through a proxy that holds their
    // requests: A's reconcile is in flight when it is paused.
    let to_edge = FaultProxy::start(&n1.process.host());
    r.register("n1", &to_edge.url());
    to_edge.set_hang(true);
    let (a_admin, b_admin) = (r.a.admin(), r.b.admin());
    create_app(&b_admin);
    publish(&b_admin, &["n1"]);
    // A resolved the images and asks the edge: held by the proxy.
    wait_until("A to resolve the images", BOUND, || {
        let p = publication(&b_admin, "n1");
        p["history"].as_array().is_some_and(|h| {
            h.iter().any(|e| {
                e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("resolved"))
            })
        })
    });
    signal(&r.a.server, "-STOP");
    wait_until("B to lead", BOUND, || r.b.server.log().contains(LEADING));
    to_edge.set_hang(false);
    wait_state(&b_admin, "n1", "running");
    signal(&r.a.server, "-CONT");
    // A wakes and either tries a write the fence refuses, or its lease check
    // finds the term over first and stops its reconcilers before writing
    // (which comes first depends on the machine); either way nothing of A's
    // stale reconcile reaches the node, as the counts below say.
    wait_until("A to be fenced off or to step down", BOUND, || {
        let log = r.a.server.log();
        log.contains("is over") || log.contains("no longer leading the controller's reconcilers")
    });
    // A is a follower again; what B did stands.
    let p = wait_state(&a_admin, "n1", "running");
    assert_eq!(applied_in_history(&p), 1, "{p:#}");
    assert_eq!(r.applies("n1"), 1, "applied once");
    let jobs = n1.jobs();
    assert_eq!(jobs.len(), 1, "one prefetch job: {jobs:#?}");
    r.a.server.kill9();
}
