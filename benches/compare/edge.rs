//! Workload 6: edge fan-out. N = 1, 8, 32 clients pull one image (3 x 16 MiB
//! layers) at once, cold, through one cache: `berth edge` in front of the
//! berth registry, and distribution in `proxy:` mode in front of the
//! distribution registry. A counting proxy at each origin's door counts the
//! bytes the origin sent and the blob GETs it answered. Then the same N pull
//! again, warm. Separately, with a fresh cache: time to first byte of a cold
//! layer (after the manifest was fetched, as a client does); and the site
//! tier (`site_tier.rs`), node caches behind a regional cache.
//!
//! A client pull is what containerd does: GET the manifest by tag, then the
//! config and every layer at once, each on its own connection. The first
//! client checks every digest; all check sizes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_testkit::berth as kit_berth;
use berth_testkit::distribution::DistributionProcess;
use berth_testkit::proc::ServerProcess;
use sha2::Digest as _;

use crate::http::{Conn, Error, Req};
use crate::manifests::ACCEPT;
use crate::proxy::{CountingProxy, OriginTraffic};
use crate::report::{Better, Row, Target};
use crate::setup::{berth_bin, random_image, Kind, PUBLIC};
use crate::site_tier::{Pull, SiteTier};
use crate::{procstat, push_value, Bench, MIB};

/// A pull-through cache under test.
pub(crate) enum Cache {
    Berth {
        server: ServerProcess,
        _dir: tempfile::TempDir,
    },
    Distribution(DistributionProcess),
}

impl Cache {
    pub(crate) fn start(kind: Kind, upstream: &str, berth_env: &[(String, String)]) -> Cache {
        match kind {
            Kind::Berth => {
                // A diagnostic: the caches' directories on another disk
                // (a tmpfs) shows what their writes and fsyncs cost.
                let mut builder = tempfile::Builder::new();
                builder.prefix("berth-bench-edge-");
                let dir = match std::env::var_os("BERTH_BENCH_EDGE_DIR") {
                    Some(d) if !d.is_empty() => builder.tempdir_in(d),
                    _ => builder.tempdir(),
                }
                .expect("edge cache dir");
                let env: Vec<(&str, &str)> = berth_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let server = kit_berth::edge(berth_bin(), upstream, dir.path(), None, &env);
                Cache::Berth { server, _dir: dir }
            }
            Kind::Distribution => Cache::Distribution(DistributionProcess::start_proxy(upstream)),
        }
    }
    fn server(&self) -> &ServerProcess {
        match self {
            Cache::Berth { server, .. } => server,
            Cache::Distribution(d) => d.server(),
        }
    }
    pub(crate) fn addr(&self) -> SocketAddr {
        self.server().host().parse().expect("cache address")
    }
    pub(crate) fn pid(&self) -> u32 {
        self.server().pid().expect("cache is running")
    }
}

#[derive(Clone, Debug)]
struct BlobRef {
    digest: String,
    size: u64,
}

async fn manifest(conn: &mut Conn, repo: &str, tag: &str) -> Result<Vec<BlobRef>, Error> {
    let reply = conn
        .call(&Req::get(format!("/v2/{repo}/manifests/{tag}")).header("accept", ACCEPT))
        .await?;
    if reply.status != 200 {
        return Err(format!(
            "manifest {repo}:{tag}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )
        .into());
    }
    let m: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let blob = |d: &serde_json::Value| -> Result<BlobRef, Error> {
        Ok(BlobRef {
            digest: d["digest"]
                .as_str()
                .ok_or("descriptor without digest")?
                .to_owned(),
            size: d["size"].as_u64().ok_or("descriptor without size")?,
        })
    };
    let mut blobs = vec![blob(&m["config"])?];
    for l in m["layers"].as_array().ok_or("manifest without layers")? {
        blobs.push(blob(l)?);
    }
    Ok(blobs)
}

async fn fetch_blob(
    addr: SocketAddr,
    repo: &str,
    blob: &BlobRef,
    verify: bool,
) -> Result<(), Error> {
    let mut conn = Conn::new(addr);
    let reply = conn
        .send(
            &Req::get(format!("/v2/{repo}/blobs/{}", blob.digest)),
            verify,
            None,
        )
        .await?;
    if reply.status != 200 || reply.len != blob.size {
        return Err(format!(
            "blob {}: status {}, {} of {} bytes",
            blob.digest, reply.status, reply.len, blob.size
        )
        .into());
    }
    if verify {
        let got = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&reply.body)));
        if got != blob.digest {
            return Err(format!("blob {}: content hashes to {got}", blob.digest).into());
        }
    }
    Ok(())
}

/// One client's pull: manifest, then config and layers in parallel.
/// Returns when the manifest had arrived, from the start of the pull.
pub(crate) async fn pull(
    addr: SocketAddr,
    repo: String,
    tag: String,
    verify: bool,
) -> Result<Duration, Error> {
    let start = Instant::now();
    let mut conn = Conn::new(addr);
    let blobs = manifest(&mut conn, &repo, &tag).await?;
    let manifest_at = start.elapsed();
    let mut set = tokio::task::JoinSet::new();
    for blob in blobs {
        let repo = repo.clone();
        set.spawn(async move { fetch_blob(addr, &repo, &blob, verify).await });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(manifest_at)
}

/// N concurrent pulls; returns the wall time.
pub(crate) async fn fan_out(
    addr: SocketAddr,
    repo: &str,
    tag: &str,
    n: usize,
) -> Result<Duration, Error> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(pull(addr, repo.to_owned(), tag.to_owned(), i == 0));
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(start.elapsed())
}

/// Fresh cache: manifest, then one cold layer; returns (TTFB, total) of the layer.
async fn cold_layer(
    addr: SocketAddr,
    repo: &str,
    tag: &str,
) -> Result<(Duration, Duration), Error> {
    let mut conn = Conn::new(addr);
    let blobs = manifest(&mut conn, repo, tag).await?;
    let layer = blobs.get(1).ok_or("image without layers")?;
    let reply = conn
        .send(
            &Req::get(format!("/v2/{repo}/blobs/{}", layer.digest)),
            false,
            None,
        )
        .await?;
    if reply.status != 200 || reply.len != layer.size {
        return Err(format!("cold layer: {} ({} bytes)", reply.status, reply.len).into());
    }
    Ok((reply.ttfb, reply.elapsed))
}

/// Origin bytes as a multiple of the image, and the most GETs any layer got.
pub(crate) fn summarize(
    traffic: &OriginTraffic,
    image_bytes: u64,
    layers: &[String],
) -> (f64, u64) {
    let gets = traffic.blob_gets();
    let max = layers
        .iter()
        .map(|l| gets.get(l).copied().unwrap_or(0))
        .max()
        .unwrap_or(0);
    (traffic.down_bytes as f64 / image_bytes as f64, max)
}

pub fn run(b: &mut Bench) {
    let layers = b.cfg.edge_layers.clone();
    let dir = b.scratch("edge-image");
    let (layout, image) = random_image(&dir, &layers, "v1");
    let repo = format!("{PUBLIC}/fanout");
    for t in b.regs.both() {
        t.push(&b.skopeo, &layout, &repo, "v1");
    }
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
    for &n in &b.cfg.edge_fanout {
        let w = format!("6. edge fan-out, {n} cold pull(s) of {shape}");
        rows.push(Row::new(&w, "wall time", "s", Better::Lower));
        rows.push(
            Row::new(&w, "origin sent (x image size)", "", Better::Lower)
                .target(Target::Check("each layer once"))
                .note("counted at the origin's door; berth edge ← berth, distribution proxy ← distribution"),
        );
        rows.push(Row::new(
            &w,
            "origin GETs of the busiest layer",
            "",
            Better::Lower,
        ));
        let w = format!("6. edge fan-out, {n} warm pull(s)");
        rows.push(Row::new(&w, "wall time", "s", Better::Lower));
        rows.push(Row::new(
            &w,
            "origin sent (x image size)",
            "",
            Better::Lower,
        ));
    }
    let ttfb_row = rows.len();
    rows.push(Row::new(
        &format!(
            "6. cold layer ({} MiB) through a fresh cache",
            layers[0] / MIB
        ),
        "time to first byte",
        "ms",
        Better::Lower,
    ));
    rows.push(Row::new(
        &format!(
            "6. cold layer ({} MiB) through a fresh cache",
            layers[0] / MIB
        ),
        "time to last byte",
        "ms",
        Better::Lower,
    ));
    let mut idle = Row::new(
        "7. memory",
        "idle RSS after start (edge: berth edge vs distribution proxy)",
        "MB",
        Better::Lower,
    )
    .target(Target::BerthBelow(12.0, "12 MB"));
    let mut idle_anon = Row::new(
        "7. memory",
        "idle anonymous RSS after start (edge; RssAnon)",
        "MB",
        Better::Lower,
    )
    .target(Target::BerthBelow(4.0, "4 MB"));
    let largest = b.cfg.edge_fanout.iter().copied().max().unwrap_or(1);
    let mut peak = Row::new(
        "7. memory",
        &format!("peak RSS during 6 (edge vs proxy, {largest} cold + warm pulls)"),
        "MB",
        Better::Lower,
    )
    .target(Target::RatioAtMost(0.35));
    let mut site = SiteTier::new(b.cfg.site_nodes, &shape);
    let mut berth_once = vec![true; b.cfg.edge_fanout.len()];
    let mut dist_once = true;

    for run in 0..b.cfg.runs {
        b.progress(&format!("6. edge fan-out, run {}", run + 1));
        for kind in b.order(run) {
            let origin = b.regs.target(kind);
            let proxy = b.rt.block_on(CountingProxy::start(origin.addr));
            let mut single_tier = None;
            for (j, &n) in b.cfg.edge_fanout.iter().enumerate() {
                let cache = Cache::start(kind, &proxy.url(), &b.cfg.berth_env);
                std::thread::sleep(Duration::from_millis(500));
                let idle_mb = procstat::rss(cache.pid()).unwrap_or(0) as f64 / 1e6;
                let anon_mb = procstat::rss_anon(cache.pid()).unwrap_or(0) as f64 / 1e6;
                idle.push(kind, idle_mb);
                idle_anon.push(kind, anon_mb);
                proxy.take();
                let cpu = || {
                    let own = procstat::cpu_time(None);
                    (procstat::cpu_time(Some(cache.pid())), own)
                };
                let cpu_before = cpu();
                let cold = b
                    .rt
                    .block_on(fan_out(cache.addr(), &repo, "v1", n))
                    .unwrap_or_else(|e| panic!("{} cold pulls through {}: {e}", n, kind.name()));
                let cpu_after = cpu();
                // distribution's proxy finishes storing a blob after the client has it.
                std::thread::sleep(Duration::from_millis(300));
                let cold_traffic = proxy.take();
                let (cold_x, cold_max) = summarize(&cold_traffic, image_bytes, &layer_digests);
                let once = layer_digests
                    .iter()
                    .all(|l| cold_traffic.blob_gets().get(l).copied() == Some(1));
                if !once {
                    match kind {
                        Kind::Berth => berth_once[j] = false,
                        Kind::Distribution => dist_once = false,
                    }
                }
                let warm = b
                    .rt
                    .block_on(fan_out(cache.addr(), &repo, "v1", n))
                    .unwrap_or_else(|e| panic!("{} warm pulls through {}: {e}", n, kind.name()));
                let warm_traffic = proxy.take();
                let (warm_x, _) = summarize(&warm_traffic, image_bytes, &layer_digests);
                b.progress(&format!(
                    "   {} N={n}: cold {:.2} s (CPU: cache {:.2} s, bench {:.2} s), origin sent {cold_x:.2}x image ({} blob GETs max per layer, {} connections; {}); warm {:.2} s, origin sent {warm_x:.3}x",
                    kind.name(),
                    cold.as_secs_f64(),
                    (cpu_after.0.saturating_sub(cpu_before.0)).as_secs_f64(),
                    (cpu_after.1.saturating_sub(cpu_before.1)).as_secs_f64(),
                    cold_max,
                    cold_traffic.connections,
                    cold_traffic.summary(),
                    warm.as_secs_f64()
                ));
                if n == site.nodes {
                    single_tier = Some(cold);
                }
                let base = j * 5;
                push_value(&mut rows, base, kind, cold.as_secs_f64());
                push_value(&mut rows, base + 1, kind, cold_x);
                push_value(&mut rows, base + 2, kind, cold_max as f64);
                push_value(&mut rows, base + 3, kind, warm.as_secs_f64());
                push_value(&mut rows, base + 4, kind, warm_x);
                if n == largest {
                    let mb = procstat::peak_rss(cache.pid()).unwrap_or(0) as f64 / 1e6;
                    peak.push(kind, mb);
                }
            }
            // Time to first byte of a cold layer, fresh cache.
            let cache = Cache::start(kind, &proxy.url(), &b.cfg.berth_env);
            let (ttfb, total) =
                b.rt.block_on(cold_layer(cache.addr(), &repo, "v1"))
                    .unwrap_or_else(|e| panic!("cold layer through {}: {e}", kind.name()));
            b.progress(&format!(
                "   {} cold layer: first byte {:.1} ms, last byte {:.1} ms",
                kind.name(),
                ttfb.as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3
            ));
            push_value(&mut rows, ttfb_row, kind, ttfb.as_secs_f64() * 1e3);
            push_value(&mut rows, ttfb_row + 1, kind, total.as_secs_f64() * 1e3);
            drop(cache);
            site.measure(
                b,
                Pull {
                    kind,
                    origin: &proxy,
                    origin_pid: origin.pid,
                    repo: &repo,
                    image_bytes,
                    layers: &layer_digests,
                    single_tier,
                },
            );
        }
    }
    for (j, once) in berth_once.into_iter().enumerate() {
        // The check is berth's; distribution's outcome is in its figures.
        rows[j * 5 + 1].check = Some(once);
    }
    if !dist_once {
        b.notes.push(
            "distribution's proxy fetched some layer more than once from its origin (see 'origin GETs of the busiest layer')".into(),
        );
    }
    b.rows.extend(rows);
    b.rows.extend(site.finish());
    b.rows.push(idle);
    b.rows.push(idle_anon);
    b.rows.push(peak);
}
