//! Workload 3: GET of a 64 MiB layer, anonymous on a public repository:
//! MB/s with one client and with 16 concurrent clients (each downloading the
//! whole blob over and over), and 1 MiB Range GETs at random offsets from 16
//! clients (requests/s). Also the peak RSS during this workload (7).

use std::sync::Arc;

use crate::http::Req;
use crate::load::{self, LoadSpec};
use crate::report::{Better, Row, Target};
use crate::setup::{random_image, PUBLIC};
use crate::{procstat, push_value, Bench, MIB};

pub fn run(b: &mut Bench) {
    let dir = b.scratch("blob-image");
    let (layout, image) = random_image(&dir, &[b.cfg.blob_size], "v1");
    let repo = format!("{PUBLIC}/blob");
    for t in b.regs.both() {
        t.push(&b.skopeo, &layout, &repo, "v1");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let layer = image.layers[0].clone();
    let size = layer.size();
    let mib = b.cfg.blob_size / MIB;
    let conns = b.cfg.blob_conns;
    let range = b.cfg.range_size;
    let mut rows = vec![
        Row::new(
            &format!("3. blob GET {mib} MiB, 1 client"),
            "throughput",
            "MB/s",
            Better::Higher,
        )
        .target(Target::RatioAtLeast(1.5)),
        Row::new(
            &format!("3. blob GET {mib} MiB, {conns} clients"),
            "throughput",
            "MB/s",
            Better::Higher,
        )
        .target(Target::RatioAtLeast(1.5)),
        Row::new(
            &format!(
                "3. Range GET {} MiB at random offsets, {conns} clients",
                range / MIB
            ),
            "requests/s",
            "",
            Better::Higher,
        ),
        Row::new(
            &format!(
                "3. Range GET {} MiB at random offsets, {conns} clients",
                range / MIB
            ),
            "p99 latency",
            "ms",
            Better::Lower,
        ),
    ];
    let mut peak = Row::new(
        "7. memory",
        "peak RSS during 3 (blob GETs)",
        "MB",
        Better::Lower,
    )
    .target(Target::RatioAtMost(0.35));

    let path = format!("/v2/{repo}/blobs/{}", layer.digest());
    for run in 0..b.cfg.runs {
        b.progress(&format!("3. blob GETs, run {}", run + 1));
        for kind in b.order(run) {
            let t = b.regs.target(kind);
            procstat::reset_peak(t.pid);
            let (warmup, duration) = (b.cfg.warmup, b.cfg.duration);
            let spec = |connections: usize, expect: u16| LoadSpec {
                addrs: vec![t.addr],
                connections,
                warmup,
                duration,
                expect,
                server_pids: vec![t.pid],
            };
            for (i, c) in [1usize, conns].into_iter().enumerate() {
                let req = Req::get(path.clone());
                let r =
                    b.rt.block_on(load::run(&spec(c, 200), Arc::new(move |_, _| req.clone())));
                b.progress(&format!(
                    "   {} {c} client(s): {:.0} MB/s, client {:.2} cores, server {:.2} cores",
                    kind.name(),
                    r.mb_per_s(),
                    r.client_cores(),
                    r.server_cores()
                ));
                push_value(&mut rows, i, kind, r.mb_per_s());
                b.record_load(&format!("3. blob GET, {c} client(s)"), kind, r);
            }
            let p = path.clone();
            let make = Arc::new(move |rng: &mut crate::Rng, _| {
                let start = rng.below(size - range + 1);
                Req::get(p.clone()).header("range", &format!("bytes={start}-{}", start + range - 1))
            });
            let r = b.rt.block_on(load::run(&spec(conns, 206), make));
            b.progress(&format!(
                "   {} range: {:.0} req/s, p99 {:.2} ms",
                kind.name(),
                r.rps(),
                r.p99.as_secs_f64() * 1e3
            ));
            push_value(&mut rows, 2, kind, r.rps());
            push_value(&mut rows, 3, kind, r.p99.as_secs_f64() * 1e3);
            b.record_load("3. Range GET", kind, r);
            let mb = procstat::peak_rss(t.pid).unwrap_or(0) as f64 / 1e6;
            peak.push(kind, mb);
        }
    }
    b.rows.extend(rows);
    b.rows.push(peak);
}
