//! Workload 11: the replicated setup of issue 19. Two `berth serve` replicas
//! on one PostgreSQL database (`meta.backend = "postgres"`) and one bucket
//! of a three-node Garage cluster (`storage.backend = "s3"`, each replica
//! through its own Garage node), behind the kit's round-robin TCP balancer;
//! against two distribution 2.8 instances with the `s3` storage driver on
//! a bucket of their own on the same cluster (one `http.secret`, so an
//! upload can move between them), behind a balancer of their own.
//!
//! - skopeo push and pull of 4 x 64 MiB through the balancer: wall time,
//!   and the CPU time of both server processes summed (Garage's too, for
//!   the record: what each registry makes the storage do).
//! - the same pull from both registries redirecting blob GETs to presigned
//!   URLs of the bucket (berth's `storage.redirect`, distribution's S3
//!   default): two more replicas of each on the same database and bucket,
//!   behind balancers of their own, stopped once measured.
//! - manifest GETs from 64 keep-alive connections, half to each replica:
//!   the load generator connects to the replicas itself, since the kit's
//!   balancer copies every byte through two threads of this process on
//!   the same cores, and would be measured instead of the registries.
//! - the controller's takeover time after kill -9 of the leading replica,
//!   when the merged branches lead the controller through PostgreSQL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_testkit::balancer::Balancer;
use berth_testkit::berth::{self as kit_berth, Registry};
use berth_testkit::distribution::DistributionProcess;
use berth_testkit::postgres::{self, Postgres};
use berth_testkit::wait::wait_until;
use berth_testkit::GarageCluster;

use crate::http::Req;
use crate::load::{self, servers_cpu, LoadSpec};
use crate::manifests::ACCEPT;
use crate::report::{Better, Row, Target as Goal};
use crate::setup::{berth_bin, random_image, Kind, Target, PUBLIC};
use crate::{procstat, push_value, Bench, MIB};

const BOUND: Duration = Duration::from_secs(60);
const DIST_BUCKET: &str = "distribution";

/// One registry's side of the setup: its replicas and their balancer.
struct Side {
    kind: Kind,
    balancer: Balancer,
    replicas: Vec<SocketAddr>,
    pids: Vec<u32>,
}

impl Side {
    fn new(kind: Kind, replicas: Vec<SocketAddr>, pids: Vec<u32>) -> Side {
        let ports: Vec<u16> = replicas.iter().map(SocketAddr::port).collect();
        Side {
            kind,
            balancer: Balancer::start(&ports),
            replicas,
            pids,
        }
    }

    /// What skopeo talks to: the balancer.
    fn door(&self) -> Target {
        Target {
            kind: self.kind,
            addr: self.balancer.host().parse().expect("balancer address"),
            pid: self.pids[0],
        }
    }
}

/// The redirecting replicas of both registries and their sides.
struct Redirecting {
    berth: Side,
    distribution: Side,
    // Declared after the sides: the servers go before their balancers' users.
    _replicas: Vec<Registry>,
    _dists: Vec<DistributionProcess>,
}

/// Everything workload 11 runs on; dropped (killed) at its end.
struct Setup {
    berth: Side,
    distribution: Side,
    /// Both registries again, redirecting blob GETs to the bucket; None
    /// once the pulls are measured.
    redirecting: Option<Redirecting>,
    garage_pids: Vec<u32>,
    pg_pid: u32,
    pg_url: String,
    // Declared after the sides: the servers go before what they stand on.
    replicas: Vec<Registry>,
    _dists: Vec<DistributionProcess>,
    _garage: GarageCluster,
    pg: Postgres,
}

impl Setup {
    fn start(b: &Bench) -> Option<Setup> {
        if !postgres::available() {
            b.progress("11. skipped: no PostgreSQL (initdb, postgres) on this machine");
            return None;
        }
        let garage = GarageCluster::start()?;
        let pg = Postgres::start();
        let url = pg.database();
        let key = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        let replica = |node: usize, redirect: bool| {
            let mut env: Vec<(String, String)> = garage.berth_env(node);
            env.extend(
                [
                    ("BERTH_META_BACKEND", "postgres"),
                    ("BERTH_META_URL", url.as_str()),
                    ("BERTH_CONTROLLER_SECRET_KEY", key.as_str()),
                    (
                        "BERTH_STORAGE_REDIRECT",
                        if redirect { "true" } else { "false" },
                    ),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            env.extend(b.cfg.berth_env.iter().cloned());
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            kit_berth::registry_with(berth_bin(), &[], &env)
        };
        let replicas: Vec<Registry> = (0..2).map(|i| replica(i, false)).collect();
        replicas[0].admin().create_project(PUBLIC, true);
        let other = replicas[1].admin();
        wait_until("the project on the second replica", BOUND, || {
            other
                .call("GET", &format!("/api/v1/projects/{PUBLIC}"), None)
                .0
                == 200
        });

        garage.create_bucket(DIST_BUCKET);
        let secret = format!("{:032x}", rand::random::<u128>());
        let dist = |node: usize, redirect: bool| {
            let builder = DistributionProcess::builder()
                .s3(&garage.distribution_s3(node, DIST_BUCKET))
                .http_secret(&secret);
            match redirect {
                true => builder.s3_redirect().start(),
                false => builder.start(),
            }
        };
        let dists: Vec<DistributionProcess> = (0..2).map(|i| dist(i, false)).collect();
        // Started last, so that a replica of the first two leads the controller.
        let redirecting_replicas: Vec<Registry> = (0..2).map(|i| replica(i, true)).collect();
        let redirecting_dists: Vec<DistributionProcess> = (0..2).map(|i| dist(i, true)).collect();

        let redirecting = Redirecting {
            berth: berth_side(&redirecting_replicas),
            distribution: distribution_side(&redirecting_dists),
            _replicas: redirecting_replicas,
            _dists: redirecting_dists,
        };
        Some(Setup {
            berth: berth_side(&replicas),
            distribution: distribution_side(&dists),
            redirecting: Some(redirecting),
            garage_pids: garage.pids(),
            pg_pid: pg.pid().expect("PostgreSQL running"),
            pg_url: url,
            replicas,
            _dists: dists,
            _garage: garage,
            pg,
        })
    }

    fn side(&self, kind: Kind) -> &Side {
        match kind {
            Kind::Berth => &self.berth,
            Kind::Distribution => &self.distribution,
        }
    }

    fn redirecting_side(&self, kind: Kind) -> Option<&Side> {
        let r = self.redirecting.as_ref()?;
        Some(match kind {
            Kind::Berth => &r.berth,
            Kind::Distribution => &r.distribution,
        })
    }
}

fn replica_addr(host: String) -> SocketAddr {
    host.parse().expect("replica address")
}

fn berth_side(replicas: &[Registry]) -> Side {
    Side::new(
        Kind::Berth,
        replicas.iter().map(|r| replica_addr(r.host())).collect(),
        replicas
            .iter()
            .map(|r| r.server.pid().expect("replica running"))
            .collect(),
    )
}

fn distribution_side(dists: &[DistributionProcess]) -> Side {
    Side::new(
        Kind::Distribution,
        dists.iter().map(|d| replica_addr(d.host())).collect(),
        dists
            .iter()
            .map(|d| d.server().pid().expect("distribution running"))
            .collect(),
    )
}

/// Time on CPU of a side's server processes, summed (to the nanosecond:
/// a redirected pull costs a few milliseconds, under one 10 ms tick).
fn side_cpu(side: &Side) -> Duration {
    side.pids.iter().map(|&p| procstat::on_cpu(p)).sum()
}

pub fn run(b: &mut Bench) {
    b.progress("11. replicated: starting PostgreSQL, Garage (3 nodes), 2 berth, 2 distribution");
    let Some(mut setup) = Setup::start(b) else {
        return;
    };
    push_pull(b, &setup);
    // Their idle work must not count in what follows.
    setup.redirecting = None;
    manifest_gets(b, &setup);
    // Last: it kills a replica.
    takeover(b, &mut setup);
}

/// skopeo push and pull through the balancers; CPU of both replicas summed.
fn push_pull(b: &mut Bench, setup: &Setup) {
    let layers = b.cfg.push_layers.clone();
    let shape = format!(
        "{} x {} MiB",
        layers.len(),
        layers.first().copied().unwrap_or(0) / MIB
    );
    let push = "11. replicated push (skopeo → balancer → 2 replicas on S3)";
    let pull = "11. replicated pull (skopeo ← balancer ← 2 replicas on S3)";
    let redirected =
        "11. replicated pull, redirected (skopeo ← 307 to presigned URLs ← 2 replicas on S3)";
    let mut rows = vec![
        Row::new(push, &format!("time, {shape}"), "s", Better::Lower)
            .note("mostly skopeo's and Garage's time"),
        Row::new(pull, &format!("time, {shape}"), "s", Better::Lower),
        Row::new(push, "server CPU time, both replicas", "s", Better::Lower)
            .target(Goal::RatioAtMost(0.6))
            .note("scheduler ns counters"),
        Row::new(pull, "server CPU time, both replicas", "s", Better::Lower)
            .target(Goal::RatioAtMost(0.6))
            .note("scheduler ns counters; both stream the bytes"),
        Row::new(push, "Garage CPU time, 3 nodes", "s", Better::Lower)
            .note("what the registry's S3 requests cost the storage"),
        Row::new(pull, "Garage CPU time, 3 nodes", "s", Better::Lower),
        Row::new(push, "PostgreSQL CPU time", "s", Better::Lower)
            .note("berth only: distribution keeps its metadata in the bucket"),
        Row::new(pull, "PostgreSQL CPU time", "s", Better::Lower)
            .note("berth only: distribution keeps its metadata in the bucket"),
        Row::new(redirected, &format!("time, {shape}"), "s", Better::Lower),
        Row::new(
            redirected,
            "server CPU time, both replicas",
            "s",
            Better::Lower,
        )
        .target(Goal::RatioAtMost(0.6))
        .note("scheduler ns counters; the layers' bytes go from Garage to skopeo"),
        Row::new(redirected, "Garage CPU time, 3 nodes", "s", Better::Lower),
    ];
    let repo = format!("{PUBLIC}/replicated");
    for run in 0..b.cfg.runs {
        b.progress(&format!(
            "11. replicated push/pull {shape}, run {}",
            run + 1
        ));
        let dir = b.scratch("replicated-layout");
        let tag = format!("run{run}");
        let (layout, _image) = random_image(&dir, &layers, &tag);
        for kind in b.order(run) {
            let side = setup.side(kind);
            let door = side.door();
            let cpu = || {
                (
                    side_cpu(side),
                    servers_cpu(&setup.garage_pids),
                    procstat::cpu_time_with_children(setup.pg_pid),
                )
            };
            let c0 = cpu();
            let push_s = door.push(&b.skopeo, &layout, &repo, &tag);
            let c1 = cpu();
            let dest = b.scratch("replicated-pull");
            let pull_s = door.pull(&b.skopeo, &repo, &tag, &dest);
            let c2 = cpu();
            let _ = std::fs::remove_dir_all(&dest);
            let secs = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64();
            push_value(&mut rows, 0, kind, push_s);
            push_value(&mut rows, 1, kind, pull_s);
            push_value(&mut rows, 2, kind, secs(c0.0, c1.0));
            push_value(&mut rows, 3, kind, secs(c1.0, c2.0));
            push_value(&mut rows, 4, kind, secs(c0.1, c1.1));
            push_value(&mut rows, 5, kind, secs(c1.1, c2.1));
            if kind == Kind::Berth {
                push_value(&mut rows, 6, kind, secs(c0.2, c1.2));
                push_value(&mut rows, 7, kind, secs(c1.2, c2.2));
            }
            b.progress(&format!(
                "   {}: push {push_s:.2} s ({:.3} s CPU), pull {pull_s:.2} s ({:.3} s CPU)",
                kind.name(),
                secs(c0.0, c1.0),
                secs(c1.0, c2.0),
            ));
            if let Some(side) = setup.redirecting_side(kind) {
                let cpu = || (side_cpu(side), servers_cpu(&setup.garage_pids));
                let c0 = cpu();
                let dest = b.scratch("replicated-pull-redirected");
                let pull_s = side.door().pull(&b.skopeo, &repo, &tag, &dest);
                let c1 = cpu();
                let _ = std::fs::remove_dir_all(&dest);
                push_value(&mut rows, 8, kind, pull_s);
                push_value(&mut rows, 9, kind, secs(c0.0, c1.0));
                push_value(&mut rows, 10, kind, secs(c0.1, c1.1));
                b.progress(&format!(
                    "   {}: redirected pull {pull_s:.2} s ({:.4} s CPU)",
                    kind.name(),
                    secs(c0.0, c1.0),
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    b.rows.extend(rows);
}

/// Manifest GETs by digest and by tag, 64 connections over both replicas.
fn manifest_gets(b: &mut Bench, setup: &Setup) {
    let dir = b.scratch("replicated-manifest");
    let (layout, image) = random_image(&dir, &[4096], "v1");
    let repo = format!("{PUBLIC}/replicated-mf");
    for kind in [Kind::Berth, Kind::Distribution] {
        let side = setup.side(kind);
        side.door().push(&b.skopeo, &layout, &repo, "v1");
        // Every replica answers it, anonymously, before the clock starts.
        for addr in &side.replicas {
            let url = format!("http://{addr}/v2/{repo}/manifests/v1");
            wait_until("the manifest on every replica", BOUND, || {
                reqwest::blocking::Client::new()
                    .get(&url)
                    .header("accept", ACCEPT)
                    .send()
                    .is_ok_and(|r| r.status() == 200)
            });
        }
    }
    let digest = image.digest().to_owned();
    let conns = b.cfg.manifest_conns;
    let refs = [("by digest", digest.as_str()), ("by tag", "v1")];
    let mut rows = Vec::new();
    for (what, _) in refs {
        let name = format!("11. replicated manifest GET {what}, {conns} conns over 2 replicas");
        rows.push(
            Row::new(&name, "requests/s", "", Better::Higher).target(Goal::RatioAtLeast(10.0)),
        );
        rows.push(Row::new(&name, "p99 latency", "ms", Better::Lower));
        rows.push(
            Row::new(&name, "PostgreSQL CPU (cores)", "", Better::Lower)
                .note("berth only; over the warm-up and the measured window"),
        );
    }
    for run in 0..b.cfg.runs {
        b.progress(&format!("11. replicated manifest GETs, run {}", run + 1));
        for kind in b.order(run) {
            let side = setup.side(kind);
            for (i, (what, reference)) in refs.iter().enumerate() {
                let spec = LoadSpec {
                    addrs: side.replicas.clone(),
                    connections: conns,
                    warmup: b.cfg.warmup,
                    duration: b.cfg.duration,
                    expect: 200,
                    server_pids: side.pids.clone(),
                };
                let req =
                    Req::get(format!("/v2/{repo}/manifests/{reference}")).header("accept", ACCEPT);
                let pg0 = procstat::cpu_time_with_children(setup.pg_pid);
                let r =
                    b.rt.block_on(load::run(&spec, Arc::new(move |_, _| req.clone())));
                let pg = procstat::cpu_time_with_children(setup.pg_pid).saturating_sub(pg0);
                let pg_cores = pg.as_secs_f64() / (spec.warmup + spec.duration).as_secs_f64();
                b.progress(&format!(
                    "   {} {what}: {:.0} req/s, p99 {:.2} ms, client {:.2} cores, servers {:.2} cores",
                    kind.name(),
                    r.rps(),
                    r.p99.as_secs_f64() * 1e3,
                    r.client_cores(),
                    r.server_cores()
                ));
                push_value(&mut rows, i * 3, kind, r.rps());
                push_value(&mut rows, i * 3 + 1, kind, r.p99.as_secs_f64() * 1e3);
                if kind == Kind::Berth {
                    push_value(&mut rows, i * 3 + 2, kind, pg_cores);
                }
                b.record_load(&format!("11. replicated manifest {what}"), kind, r);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    b.rows.extend(rows);
}

/// What the lease row says: the current term, if someone holds it.
fn current_term(setup: &Setup) -> Option<u64> {
    setup
        .pg
        .psql(
            &setup.pg_url,
            "SELECT epoch FROM ctl_leases WHERE name = 'reconciler' AND expires_at > now()",
        )
        .parse()
        .ok()
}

/// kill -9 of the replica leading the controller's reconcilers, and the
/// time until the other one has taken the lease over (a new term: its
/// first act is a scan of every publication). Once, berth only.
fn takeover(b: &mut Bench, setup: &mut Setup) {
    const LEADING: &str = "leading the controller's reconcilers";
    let has_leases = setup.pg.psql(
        &setup.pg_url,
        "SELECT to_regclass('ctl_leases') IS NOT NULL",
    ) == "t";
    let led = has_leases
        && (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(200));
            current_term(setup).is_some()
        });
    if !led {
        let note = "11. controller takeover: not measured, no replica takes a controller lease \
                    (ctl_leases) on this build: leader election is not wired into berth serve";
        b.progress(note);
        b.notes.push(note.into());
        return;
    }
    let leader = wait_until("the leading replica to say so", BOUND, || {
        setup
            .replicas
            .iter()
            .position(|r| r.server.log().contains(LEADING))
    });
    let term = current_term(setup).unwrap_or(0);
    b.progress(&format!(
        "11. controller takeover: kill -9 of replica {leader} (term {term})"
    ));
    let start = std::time::Instant::now();
    setup.replicas[leader].server.kill9();
    let new_term = wait_until("the other replica to take the lease", BOUND, || {
        current_term(setup).filter(|&t| t > term)
    });
    let took = start.elapsed().as_secs_f64();
    let follower = &setup.replicas[1 - leader];
    wait_until("the other replica to lead", BOUND, || {
        follower.server.log().contains(LEADING)
    });
    b.progress(&format!("   term {new_term} after {took:.2} s"));
    let mut row = Row::new(
        "11. replicated controller takeover after kill -9 of the leader",
        "time until the other replica leads",
        "s",
        Better::Lower,
    )
    .note("berth only; bounded by controller.leader_lease (the dead leader's lease must expire)");
    row.push(Kind::Berth, took);
    b.rows.push(row);
}
