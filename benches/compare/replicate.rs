//! Workload 8: replication of an image of 4 x 64 MiB random layers from
//! berth by a push policy, run once per figure, through a counting proxy at
//! the destination's door: the time from the start of the execution to its
//! end, and the bytes berth sent on the wire divided by the image's size;
//! to distribution on an intact link and with the link cut twice in the
//! middle of blobs, and to a second berth with the same two cuts. berth
//! only: distribution has no replication of its own.

use std::time::{Duration, Instant};

use berth_testkit::berth::{self as kit_berth, Admin, ADMIN_PASSWORD};
use serde_json::json;

use crate::proxy::CountingProxy;
use crate::report::{Better, Row, Target};
use crate::setup::{berth_bin, random_image, Kind, PUBLIC};
use crate::{Bench, MIB};

/// Where one replication goes, and whether the link is cut on the way.
struct Case<'a> {
    proxy: &'a CountingProxy,
    /// The destination's account, if it needs one.
    creds: Option<(&'a str, &'a str)>,
    cuts: bool,
}

pub fn run(b: &mut Bench) {
    let layers = b.cfg.push_layers.clone();
    let shape = format!(
        "{} x {} MiB",
        layers.len(),
        layers.first().copied().unwrap_or(0) / MIB
    );
    let to_dist = "8. replication, berth → distribution (push policy)";
    let to_berth = "8. replication, berth → a second berth (push policy)";
    let mut rows = vec![
        Row::new(
            to_dist,
            &format!("time, {shape}, intact link"),
            "s",
            Better::Lower,
        ),
        Row::new(
            to_dist,
            "bytes on the wire / image, intact link",
            "x",
            Better::Lower,
        )
        .target(Target::Check("≤ 1.05")),
        Row::new(
            to_dist,
            &format!("time, {shape}, two cuts mid-blob"),
            "s",
            Better::Lower,
        ),
        Row::new(
            to_dist,
            "bytes on the wire / image, two cuts mid-blob",
            "x",
            Better::Lower,
        )
        .target(Target::Check("≤ 1.05"))
        .note("distribution checks the offset signed into each upload location: a cut PATCH leaves the upload unusable (2.8 cancels it), so that blob starts over"),
        Row::new(
            to_berth,
            &format!("time, {shape}, two cuts mid-blob"),
            "s",
            Better::Lower,
        ),
        Row::new(
            to_berth,
            "bytes on the wire / image, two cuts mid-blob",
            "x",
            Better::Lower,
        )
        .target(Target::Check("≤ 1.05"))
        .note("the upload resumes at the offset the destination reports"),
    ];
    let dist_proxy =
        b.rt.block_on(CountingProxy::start(b.regs.target(Kind::Distribution).addr));
    let second = kit_berth::registry_with(berth_bin(), &[], &[]);
    second.admin().create_project(PUBLIC, true);
    let second_addr = second.host().parse().expect("second berth address");
    let berth_proxy = b.rt.block_on(CountingProxy::start(second_addr));
    let admin = b.regs.berth.admin();
    let mut ok = [true; 3];
    for run in 0..b.cfg.runs {
        let cases = [
            Case {
                proxy: &dist_proxy,
                creds: None,
                cuts: false,
            },
            Case {
                proxy: &dist_proxy,
                creds: None,
                cuts: true,
            },
            Case {
                proxy: &berth_proxy,
                creds: Some(("admin", ADMIN_PASSWORD)),
                cuts: true,
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            b.progress(&format!(
                "8. replication {shape}, run {}, case {}",
                run + 1,
                i + 1
            ));
            let dir = b.scratch("repl-layout");
            let repo = format!("{PUBLIC}/repl{run}{i}");
            let (layout, _) = random_image(&dir, &layers, "v1");
            b.regs
                .target(Kind::Berth)
                .push(&b.skopeo, &layout, &repo, "v1");
            let (secs, ratio) = replicate(
                &admin,
                case,
                &format!("bench{run}{i}"),
                &repo,
                layers.iter().sum(),
            );
            ok[i] &= ratio <= 1.05;
            rows[i * 2].push(Kind::Berth, secs);
            rows[i * 2 + 1].push(Kind::Berth, ratio);
            b.progress(&format!(
                "   {secs:.2} s, {ratio:.3}x the image on the wire"
            ));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    for (i, okay) in ok.iter().enumerate() {
        rows[i * 2 + 1].check = Some(*okay);
    }
    b.rows.extend(rows);
}

/// Creates a policy copying `repo` through `case.proxy`, runs it to its end.
fn replicate(admin: &Admin, case: &Case<'_>, policy: &str, repo: &str, total: u64) -> (f64, f64) {
    let mut remote = json!({"url": case.proxy.url()});
    if let Some((u, p)) = case.creds {
        remote["username"] = u.into();
        remote["password"] = p.into();
    }
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(
            json!({"name": policy, "direction": "push", "remote": remote,
            "filters": {"repositories": repo}}),
        ),
    );
    assert_eq!(s, 201, "creating the policy: {v}");
    let before = case.proxy.up_bytes();
    if case.cuts {
        case.proxy
            .cut_at(&[before + total * 3 / 10, before + total * 7 / 10]);
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
    (secs, (case.proxy.up_bytes() - before) as f64 / total as f64)
}
