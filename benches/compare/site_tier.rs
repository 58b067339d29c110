//! Workload 6, the site tier: node caches whose upstream is a regional cache
//! in front of the origin (`berth edge` ← `berth edge` ← berth; distribution
//! proxy ← distribution proxy ← distribution). N nodes (32) pull one image
//! at once, cold, one client each. Counting proxies at the origin's door
//! and at the regional cache's count what each sent. The wall time is set
//! against the single-tier row of the same N in the same run (N clients
//! pulling through one cache): the target is within 1.5x.
//!
//! Where the time goes is printed beside it: when the last manifest and the
//! first whole pull arrived, and the CPU time (user and system) and minor
//! page faults of the nodes, the regional cache, the origin and this process
//! (clients and counting proxies) during the pulls. Two diagnostics:
//! `BERTH_BENCH_EDGE_DIR` puts berth's edge caches' directories there (a
//! tmpfs, to see what their disk costs), and `BERTH_BENCH_SITE_DIRECT=1`
//! points both servers' nodes straight at their regional cache, without the
//! counting proxy's hop, and so without its count.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::edge::{pull, summarize, Cache};
use crate::http::Error;
use crate::procstat;
use crate::proxy::CountingProxy;
use crate::report::{Better, Row, Target};
use crate::setup::Kind;
use crate::Bench;

/// One pull per address, all at once; returns the wall time, and when the
/// last manifest and the first whole pull had arrived.
async fn pull_each(
    addrs: &[SocketAddr],
    repo: &str,
    tag: &str,
) -> Result<(Duration, Duration, Duration), Error> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, &addr) in addrs.iter().enumerate() {
        set.spawn(pull(addr, repo.to_owned(), tag.to_owned(), i == 0));
    }
    let (mut manifests, mut first) = (Duration::ZERO, None);
    while let Some(r) = set.join_next().await {
        manifests = manifests.max(r??);
        first.get_or_insert_with(|| start.elapsed());
    }
    Ok((start.elapsed(), manifests, first.unwrap_or_default()))
}

/// User and system CPU time of each part of the site tier: the node caches
/// (summed), the regional cache, the origin and this process (the clients
/// and the counting proxies), read from `/proc/<pid>/stat`.
#[derive(Clone, Copy, Default)]
struct Cpu {
    parts: [(Duration, Duration); 4],
    /// Minor page faults of the nodes (summed) and of the regional cache.
    faults: (u64, u64),
}

impl Cpu {
    const NAMES: [&'static str; 4] = ["nodes", "regional", "origin", "bench"];

    fn read(nodes: &[u32], regional: u32, origin: u32) -> Cpu {
        let mut n = (Duration::ZERO, Duration::ZERO);
        for &pid in nodes {
            let (u, s) = procstat::cpu_user_system(pid);
            n = (n.0 + u, n.1 + s);
        }
        let own = std::process::id();
        let node_faults = nodes.iter().map(|&p| procstat::minor_faults(p)).sum();
        Cpu {
            faults: (node_faults, procstat::minor_faults(regional)),
            parts: [
                n,
                procstat::cpu_user_system(regional),
                procstat::cpu_user_system(origin),
                procstat::cpu_user_system(own),
            ],
        }
    }

    /// What each part spent since `before`, and in all, as one line:
    /// `nodes 1.20 s (user 0.60, sys 0.60), ...; all 2.1 s`.
    fn since(&self, before: &Cpu) -> String {
        let mut all = Duration::ZERO;
        let mut out = Vec::new();
        for (i, name) in Cpu::NAMES.iter().enumerate() {
            let u = self.parts[i].0.saturating_sub(before.parts[i].0);
            let s = self.parts[i].1.saturating_sub(before.parts[i].1);
            all += u + s;
            out.push(format!(
                "{name} {:.2} s (user {:.2}, sys {:.2})",
                (u + s).as_secs_f64(),
                u.as_secs_f64(),
                s.as_secs_f64()
            ));
        }
        format!(
            "{}; all {:.2} s; minor page faults: nodes {}, regional {}",
            out.join(", "),
            all.as_secs_f64(),
            self.faults.0.saturating_sub(before.faults.0),
            self.faults.1.saturating_sub(before.faults.1)
        )
    }
}

/// The rows of the site tier, filled run by run.
pub struct SiteTier {
    pub nodes: usize,
    rows: Vec<Row>,
    origin_once: bool,
    regional_once: bool,
    /// False once a run went without the regional cache's count.
    regional_counted: bool,
}

/// What one server's site-tier pull needs from workload 6.
pub struct Pull<'a> {
    pub kind: Kind,
    /// The counting proxy at the origin's door.
    pub origin: &'a CountingProxy,
    /// The origin's process, for its CPU time.
    pub origin_pid: u32,
    pub repo: &'a str,
    pub image_bytes: u64,
    pub layers: &'a [String],
    /// The same run's single-tier wall time for as many clients.
    pub single_tier: Option<Duration>,
}

impl SiteTier {
    pub fn new(nodes: usize, shape: &str) -> SiteTier {
        let w = format!(
            "6. site tier: {nodes} node caches behind 1 regional cache, cold pulls of {shape}"
        );
        let rows = vec![
            Row::new(&w, "wall time", "s", Better::Lower),
            Row::new(
                &w,
                "wall time / single tier's (same N, same run)",
                "x",
                Better::Lower,
            )
            .target(Target::BerthBelow(1.5, "1.5x")),
            Row::new(&w, "origin sent (x image size)", "", Better::Lower)
                .target(Target::Check("each layer once"))
                .note("counted at the origin's door"),
            Row::new(
                &w,
                "regional cache sent, per node (x image size)",
                "",
                Better::Lower,
            )
            .target(Target::Check("each layer once per node"))
            .note("counted at the regional cache's door"),
        ];
        SiteTier {
            nodes,
            rows,
            origin_once: true,
            regional_once: true,
            regional_counted: true,
        }
    }

    /// One server's cold site-tier pull: a regional cache and `nodes` node
    /// caches, started fresh and stopped after.
    pub fn measure(&mut self, b: &Bench, p: Pull<'_>) {
        let name = p.kind.name();
        let regional = Cache::start(p.kind, &p.origin.url(), &b.cfg.berth_env);
        let at_regional = b.rt.block_on(CountingProxy::start(regional.addr()));
        // A diagnostic: the nodes straight at the regional cache, without
        // the counting proxy's hop (which the single tier has not), and
        // so without the regional cache's count.
        let direct = std::env::var_os("BERTH_BENCH_SITE_DIRECT").is_some_and(|v| !v.is_empty());
        let upstream = match direct {
            true => format!("http://{}", regional.addr()),
            false => at_regional.url(),
        };
        let nodes: Vec<Cache> = (0..self.nodes)
            .map(|_| Cache::start(p.kind, &upstream, &b.cfg.berth_env))
            .collect();
        let addrs: Vec<SocketAddr> = nodes.iter().map(Cache::addr).collect();
        std::thread::sleep(Duration::from_millis(500));
        p.origin.take();
        at_regional.take();
        let pids: Vec<u32> = nodes.iter().map(Cache::pid).collect();
        let cpu = || Cpu::read(&pids, regional.pid(), p.origin_pid);
        let before = cpu();
        let (wall, manifests, first) =
            b.rt.block_on(pull_each(&addrs, p.repo, "v1"))
                .unwrap_or_else(|e| panic!("site-tier pulls through {name}: {e}"));
        let at_end = cpu();
        // distribution's proxies finish storing a blob after the client has it.
        std::thread::sleep(Duration::from_millis(300));
        b.progress(&format!(
            "   {name} site tier: every manifest in {:.2} s, the first whole pull in {:.2} s; CPU during the pulls: {}; in the 300 ms after: {}",
            manifests.as_secs_f64(),
            first.as_secs_f64(),
            at_end.since(&before),
            cpu().since(&at_end)
        ));
        let (from_origin, from_regional) = (p.origin.take(), at_regional.take());
        let (origin_x, origin_max) = summarize(&from_origin, p.image_bytes, p.layers);
        let (regional_x, regional_max) = summarize(&from_regional, p.image_bytes, p.layers);
        let per_node = regional_x / self.nodes as f64;
        let gets = |t: &crate::proxy::OriginTraffic, n: u64| {
            let g = t.blob_gets();
            p.layers.iter().all(|l| g.get(l).copied() == Some(n))
        };
        if p.kind == Kind::Berth {
            self.origin_once &= gets(&from_origin, 1);
            self.regional_once &= gets(&from_regional, self.nodes as u64);
            self.regional_counted &= !direct;
        }
        let ratio = p.single_tier.map(|s| wall.as_secs_f64() / s.as_secs_f64());
        let regional_sent = match direct {
            true => {
                "regional's sending not counted (BERTH_BENCH_SITE_DIRECT: nodes straight at it)"
                    .to_owned()
            }
            false => {
                format!("regional sent {per_node:.2}x per node (busiest layer {regional_max} GETs)")
            }
        };
        b.progress(&format!(
            "   {name} site tier, {} nodes: {:.2} s ({} single tier), origin sent {origin_x:.2}x image (busiest layer {origin_max} GETs), {regional_sent}",
            self.nodes,
            wall.as_secs_f64(),
            ratio.map_or("?".into(), |r| format!("{r:.2}x")),
        ));
        self.rows[0].push(p.kind, wall.as_secs_f64());
        if let Some(r) = ratio {
            self.rows[1].push(p.kind, r);
        }
        self.rows[2].push(p.kind, origin_x);
        if !direct {
            self.rows[3].push(p.kind, per_node);
        }
        drop(nodes);
        drop(regional);
    }

    pub fn finish(mut self) -> Vec<Row> {
        self.rows[2].check = Some(self.origin_once);
        self.rows[3].check = self.regional_counted.then_some(self.regional_once);
        self.rows
    }
}
