//! Workload 2: manifest GETs by digest and by tag from 64 keep-alive
//! connections, with the Accept header containerd sends: requests/s and p99
//! latency. Anonymous on a public repository for both servers; then berth
//! with a bearer token on a private repository (distribution has no auth in
//! this setup, so that row compares against its anonymous figure).
//!
//! Also resets each server's peak RSS at the start of every run and reads it
//! at the end (workload 7).

use std::sync::Arc;

use crate::http::Req;
use crate::load::{self, LoadSpec};
use crate::report::{Better, Row, Target};
use crate::setup::{random_image, Kind, PRIVATE, PUBLIC};
use crate::{procstat, push_value, Bench};

/// What containerd's resolver sends.
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

pub fn run(b: &mut Bench) {
    let dir = b.scratch("manifest-image");
    let (layout, image) = random_image(&dir, &[4096], "v1");
    let public = format!("{PUBLIC}/mfget");
    let private = format!("{PRIVATE}/mfget");
    for t in b.regs.both() {
        t.push(&b.skopeo, &layout, &public, "v1");
        if t.kind == Kind::Berth {
            t.push(&b.skopeo, &layout, &private, "v1");
        }
    }
    let digest = image.digest().to_owned();
    let conns = b.cfg.manifest_conns;
    let refs = [("by digest", digest.as_str()), ("by tag", "v1")];

    // Rows: for each reference kind: anonymous rps, p99; token rps, p99.
    let mut rows = Vec::new();
    for (what, _) in refs {
        rows.push(
            Row::new(
                &format!("2. manifest GET {what}, anonymous, {conns} conns"),
                "requests/s",
                "",
                Better::Higher,
            )
            .target(Target::RatioAtLeast(20.0)),
        );
        rows.push(Row::new(
            &format!("2. manifest GET {what}, anonymous, {conns} conns"),
            "p99 latency",
            "ms",
            Better::Lower,
        ));
        rows.push(
            Row::new(
                &format!("2. manifest GET {what}, bearer token (private), {conns} conns"),
                "requests/s",
                "",
                Better::Higher,
            )
            .target(Target::RatioAtLeast(20.0))
            .note("distribution: its anonymous figure (no auth configured)"),
        );
        rows.push(
            Row::new(
                &format!("2. manifest GET {what}, bearer token (private), {conns} conns"),
                "p99 latency",
                "ms",
                Better::Lower,
            )
            .note("distribution: its anonymous figure"),
        );
    }
    let mut peak = Row::new(
        "7. memory",
        "peak RSS during 2 (manifest GETs)",
        "MB",
        Better::Lower,
    )
    .target(Target::RatioAtMost(0.35));

    for run in 0..b.cfg.runs {
        b.progress(&format!("2. manifest GETs, run {}", run + 1));
        for kind in b.order(run) {
            let t = b.regs.target(kind);
            procstat::reset_peak(t.pid);
            let token = t.auth_header(&private, "pull");
            for (i, (what, reference)) in refs.iter().enumerate() {
                let spec = LoadSpec {
                    addrs: vec![t.addr],
                    connections: conns,
                    warmup: b.cfg.warmup,
                    duration: b.cfg.duration,
                    expect: 200,
                    server_pids: vec![t.pid],
                };
                let anon = Req::get(format!("/v2/{public}/manifests/{reference}"))
                    .header("accept", ACCEPT);
                let r =
                    b.rt.block_on(load::run(&spec, Arc::new(move |_, _| anon.clone())));
                b.progress(&format!(
                    "   {} {what} anonymous: {:.0} req/s, p99 {:.2} ms, client {:.2} cores, server {:.2} cores",
                    kind.name(),
                    r.rps(),
                    r.p99.as_secs_f64() * 1e3,
                    r.client_cores(),
                    r.server_cores()
                ));
                push_value(&mut rows, i * 4, kind, r.rps());
                push_value(&mut rows, i * 4 + 1, kind, r.p99.as_secs_f64() * 1e3);
                b.record_load(&format!("2. manifest {what}, anonymous"), kind, r.clone());
                match &token {
                    Some(token) => {
                        let authed = Req::get(format!("/v2/{private}/manifests/{reference}"))
                            .header("accept", ACCEPT)
                            .header("authorization", token);
                        let r =
                            b.rt.block_on(load::run(&spec, Arc::new(move |_, _| authed.clone())));
                        b.progress(&format!(
                            "   {} {what} token: {:.0} req/s, p99 {:.2} ms",
                            kind.name(),
                            r.rps(),
                            r.p99.as_secs_f64() * 1e3
                        ));
                        push_value(&mut rows, i * 4 + 2, kind, r.rps());
                        push_value(&mut rows, i * 4 + 3, kind, r.p99.as_secs_f64() * 1e3);
                        b.record_load(&format!("2. manifest {what}, token"), kind, r);
                    }
                    None => {
                        push_value(&mut rows, i * 4 + 2, kind, r.rps());
                        push_value(&mut rows, i * 4 + 3, kind, r.p99.as_secs_f64() * 1e3);
                    }
                }
            }
            let mb = procstat::peak_rss(t.pid).unwrap_or(0) as f64 / 1e6;
            peak.push(kind, mb);
        }
    }
    b.rows.extend(rows);
    b.rows.push(peak);
}
