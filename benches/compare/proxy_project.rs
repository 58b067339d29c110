//! Workload 9: proxy-project fan-out. N = 8 and 32 clients pull one image
//! (the edge workload's, 3 x 16 MiB layers) at once, cold, through a
//! pull-through cache in front of the same upstream (the distribution
//! registry, behind a counting proxy): a proxy-cache project of `berth
//! serve` against distribution in `proxy:` mode. The figures are the wall
//! time and the bytes the upstream sent, as a multiple of the image (target:
//! 1x for any N). Each N gets a fresh cache.

use std::net::SocketAddr;
use std::time::Duration;

use berth_testkit::berth as kit_berth;
use berth_testkit::distribution::DistributionProcess;

use crate::edge::{fan_out, summarize};
use crate::proxy::CountingProxy;
use crate::report::{Better, Row, Target};
use crate::setup::{berth_bin, random_image, Kind, PUBLIC};
use crate::{push_value, Bench, MIB};

/// The fan-outs measured.
const FANOUT: [usize; 2] = [8, 32];

/// A pull-through cache of `upstream`, and the name the image has in it.
enum Cache {
    Berth(kit_berth::Registry),
    Distribution(DistributionProcess),
}

impl Cache {
    fn start(kind: Kind, upstream: &str, berth_env: &[(String, String)]) -> Cache {
        match kind {
            Kind::Berth => {
                let mut env: Vec<(&str, &str)> = berth_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                env.push(("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true"));
                let r = kit_berth::registry_with(berth_bin(), &[], &env);
                let (status, body) = r.admin().call(
                    "POST",
                    "/api/v1/projects",
                    Some(serde_json::json!({"name": "hub", "public": true,
                        "proxy": {"url": upstream}})),
                );
                assert_eq!(status, 201, "creating the proxy project: {body}");
                Cache::Berth(r)
            }
            Kind::Distribution => Cache::Distribution(DistributionProcess::start_proxy(upstream)),
        }
    }
    fn addr(&self) -> SocketAddr {
        match self {
            Cache::Berth(r) => r.host().parse().expect("berth address"),
            Cache::Distribution(d) => d.host().parse().expect("proxy address"),
        }
    }
    fn repo(&self, upstream_repo: &str) -> String {
        match self {
            Cache::Berth(_) => format!("hub/{upstream_repo}"),
            Cache::Distribution(_) => upstream_repo.to_owned(),
        }
    }
}

pub fn run(b: &mut Bench) {
    let layers = b.cfg.edge_layers.clone();
    let dir = b.scratch("proxy-project-image");
    let (layout, image) = random_image(&dir, &layers, "v1");
    let repo = format!("{PUBLIC}/proxyfan");
    let origin = b.regs.target(Kind::Distribution);
    origin.push(&b.skopeo, &layout, &repo, "v1");
    let _ = std::fs::remove_dir_all(&dir);
    let image_bytes: u64 =
        image.blob_digests().iter().map(|(_, s)| s).sum::<u64>() + image.manifest.size();
    let layer_digests: Vec<String> = image.layers.iter().map(|l| l.digest().to_owned()).collect();
    let shape = format!(
        "{} x {} MiB",
        layers.len(),
        layers.first().copied().unwrap_or(0) / MIB
    );

    let mut rows: Vec<Row> = Vec::new();
    for n in FANOUT {
        let w = format!("9. proxy project fan-out, {n} cold pulls of {shape}");
        rows.push(Row::new(&w, "wall time", "s", Better::Lower));
        rows.push(
            Row::new(&w, "upstream sent (x image size)", "", Better::Lower)
                .target(Target::Check("1x the image"))
                .note("one distribution registry upstream, counted at its door; berth proxy project vs distribution proxy mode"),
        );
    }
    let mut berth_once = [true; FANOUT.len()];
    let proxy = b.rt.block_on(CountingProxy::start(origin.addr));
    for run in 0..b.cfg.runs {
        b.progress(&format!("9. proxy project fan-out, run {}", run + 1));
        for kind in b.order(run) {
            for (j, n) in FANOUT.into_iter().enumerate() {
                let cache = Cache::start(kind, &proxy.url(), &b.cfg.berth_env);
                let repo = cache.repo(&repo);
                proxy.take();
                let wall =
                    b.rt.block_on(fan_out(cache.addr(), &repo, "v1", n))
                        .unwrap_or_else(|e| panic!("{n} cold pulls through {}: {e}", kind.name()));
                // distribution's proxy finishes storing a blob after the client has it.
                std::thread::sleep(Duration::from_millis(300));
                let traffic = proxy.take();
                let (x, max) = summarize(&traffic, image_bytes, &layer_digests);
                if kind == Kind::Berth && max != 1 {
                    berth_once[j] = false;
                }
                b.progress(&format!(
                    "   {} N={n}: {:.2} s, upstream sent {x:.2}x image ({max} GETs of the busiest layer; {})",
                    kind.name(),
                    wall.as_secs_f64(),
                    traffic.summary()
                ));
                push_value(&mut rows, j * 2, kind, wall.as_secs_f64());
                push_value(&mut rows, j * 2 + 1, kind, x);
            }
        }
    }
    for (j, once) in berth_once.into_iter().enumerate() {
        rows[j * 2 + 1].check = Some(once);
    }
    b.rows.extend(rows);
}
