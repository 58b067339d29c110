//! Workload 8: replication of an image of 4 x 64 MiB random layers from
//! berth to distribution (a push policy, run once per figure), through the
//! counting proxy at distribution's door: the time from the start of the
//! execution to its end, and the bytes berth sent on the wire divided by
//! the image's size; once on an intact link and once with the link cut
//! twice in the middle of blobs. berth only: distribution has no
//! replication of its own.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::proxy::CountingProxy;
use crate::report::{Better, Row, Target};
use crate::setup::{random_image, Kind, PUBLIC};
use crate::{Bench, MIB};

pub fn run(b: &mut Bench) {
    let layers = b.cfg.push_layers.clone();
    let total: u64 = layers.iter().sum();
    let shape = format!(
        "{} x {} MiB",
        layers.len(),
        layers.first().copied().unwrap_or(0) / MIB
    );
    let name = "8. replication, berth → distribution (push policy)";
    let mut rows = vec![
        Row::new(
            name,
            &format!("time, {shape}, intact link"),
            "s",
            Better::Lower,
        ),
        Row::new(
            name,
            "bytes on the wire / image, intact link",
            "x",
            Better::Lower,
        )
        .target(Target::Check("≤ 1.05")),
        Row::new(
            name,
            &format!("time, {shape}, two cuts mid-blob"),
            "s",
            Better::Lower,
        ),
        Row::new(
            name,
            "bytes on the wire / image, two cuts mid-blob",
            "x",
            Better::Lower,
        )
        .target(Target::Check("≤ 1.05"))
        .note("a cut PATCH makes distribution 2.8 cancel the upload, so that blob starts over"),
    ];
    let origin = b.regs.target(Kind::Distribution).addr;
    let proxy = b.rt.block_on(CountingProxy::start(origin));
    let admin = b.regs.berth.admin();
    let mut ok = [true, true];
    for run in 0..b.cfg.runs {
        for (case, cuts) in [(0usize, false), (1, true)] {
            b.progress(&format!(
                "8. replication {shape}, run {}, cuts: {cuts}",
                run + 1
            ));
            let dir = b.scratch("repl-layout");
            let repo = format!("{PUBLIC}/repl{run}{case}");
            let (layout, _) = random_image(&dir, &layers, "v1");
            b.regs
                .target(Kind::Berth)
                .push(&b.skopeo, &layout, &repo, "v1");
            let policy = format!("bench{run}{case}");
            let (s, v) = admin.call(
                "POST",
                "/api/v1/replications",
                Some(json!({"name": policy, "direction": "push",
                    "remote": {"url": proxy.url()}, "filters": {"repositories": repo}})),
            );
            assert_eq!(s, 201, "creating the policy: {v}");
            let before = proxy.up_bytes();
            if cuts {
                proxy.cut_at(&[before + total * 3 / 10, before + total * 7 / 10]);
            }
            let start = Instant::now();
            let (s, v) = admin.call(
                "POST",
                &format!("/api/v1/replications/{policy}/executions"),
                None,
            );
            assert_eq!(s, 202, "starting the execution: {v}");
            let id = v["id"].as_u64().unwrap_or(1);
            let end = loop {
                std::thread::sleep(Duration::from_millis(100));
                let (_, v) = admin.call(
                    "GET",
                    &format!("/api/v1/replications/{policy}/executions/{id}"),
                    None,
                );
                if v["status"] != "running" {
                    break v;
                }
            };
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(end["status"], "succeeded", "the execution: {end:#}");
            let ratio = (proxy.up_bytes() - before) as f64 / total as f64;
            ok[case] &= ratio <= 1.05;
            rows[case * 2].push(Kind::Berth, secs);
            rows[case * 2 + 1].push(Kind::Berth, ratio);
            b.progress(&format!(
                "   {secs:.2} s, {ratio:.3}x the image on the wire"
            ));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    rows[1].check = Some(ok[0]);
    rows[3].check = Some(ok[1]);
    b.rows.extend(rows);
}
