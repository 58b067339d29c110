//! Workload 6, the site tier: node caches whose upstream is a regional cache
//! in front of the origin (`berth edge` ← `berth edge` ← berth; distribution
//! proxy ← distribution proxy ← distribution). N nodes (32) pull one image
//! at once, cold, one client each. Counting proxies at the origin's door
//! and at the regional cache's count what each sent. The wall time is set
//! against the single-tier row of the same N in the same run (N clients
//! pulling through one cache): the target is within 1.5x.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::edge::{pull, summarize, Cache};
use crate::http::Error;
use crate::proxy::CountingProxy;
use crate::report::{Better, Row, Target};
use crate::setup::Kind;
use crate::Bench;

/// One pull per address, all at once; returns the wall time.
async fn pull_each(addrs: &[SocketAddr], repo: &str, tag: &str) -> Result<Duration, Error> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, &addr) in addrs.iter().enumerate() {
        set.spawn(pull(addr, repo.to_owned(), tag.to_owned(), i == 0));
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(start.elapsed())
}

/// The rows of the site tier, filled run by run.
pub struct SiteTier {
    pub nodes: usize,
    rows: Vec<Row>,
    origin_once: bool,
    regional_once: bool,
}

/// What one server's site-tier pull needs from workload 6.
pub struct Pull<'a> {
    pub kind: Kind,
    /// The counting proxy at the origin's door.
    pub origin: &'a CountingProxy,
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
        }
    }

    /// One server's cold site-tier pull: a regional cache and `nodes` node
    /// caches, started fresh and stopped after.
    pub fn measure(&mut self, b: &Bench, p: Pull<'_>) {
        let name = p.kind.name();
        let regional = Cache::start(p.kind, &p.origin.url(), &b.cfg.berth_env);
        let at_regional = b.rt.block_on(CountingProxy::start(regional.addr()));
        let nodes: Vec<Cache> = (0..self.nodes)
            .map(|_| Cache::start(p.kind, &at_regional.url(), &b.cfg.berth_env))
            .collect();
        let addrs: Vec<SocketAddr> = nodes.iter().map(Cache::addr).collect();
        std::thread::sleep(Duration::from_millis(500));
        p.origin.take();
        at_regional.take();
        let wall =
            b.rt.block_on(pull_each(&addrs, p.repo, "v1"))
                .unwrap_or_else(|e| panic!("site-tier pulls through {name}: {e}"));
        // distribution's proxies finish storing a blob after the client has it.
        std::thread::sleep(Duration::from_millis(300));
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
        }
        let ratio = p.single_tier.map(|s| wall.as_secs_f64() / s.as_secs_f64());
        b.progress(&format!(
            "   {name} site tier, {} nodes: {:.2} s ({} single tier), origin sent {origin_x:.2}x image (busiest layer {origin_max} GETs), regional sent {per_node:.2}x per node (busiest layer {regional_max} GETs)",
            self.nodes,
            wall.as_secs_f64(),
            ratio.map_or("?".into(), |r| format!("{r:.2}x")),
        ));
        self.rows[0].push(p.kind, wall.as_secs_f64());
        if let Some(r) = ratio {
            self.rows[1].push(p.kind, r);
        }
        self.rows[2].push(p.kind, origin_x);
        self.rows[3].push(p.kind, per_node);
        drop(nodes);
        drop(regional);
    }

    pub fn finish(mut self) -> Vec<Row> {
        self.rows[2].check = Some(self.origin_once);
        self.rows[3].check = Some(self.regional_once);
        self.rows
    }
}
