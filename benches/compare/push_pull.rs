//! Workload 1: push an image of 4 x 64 MiB random layers with skopeo from an
//! OCI layout, and pull it back into a fresh OCI layout. Every run builds a
//! new image (fresh content, so no server has any of it), pushed to both
//! servers in alternating order.

use crate::report::{Better, Row, Target};
use crate::setup::{random_image, PUBLIC};
use crate::{procstat, push_value, Bench, MIB};

pub fn run(b: &mut Bench) {
    let layers = b.cfg.push_layers.clone();
    let shape = format!(
        "{} x {} MiB",
        layers.len(),
        layers.first().copied().unwrap_or(0) / MIB
    );
    let mut rows = vec![
        Row::new(
            "1. push (skopeo, OCI layout → registry)",
            &format!("time, {shape}"),
            "s",
            Better::Lower,
        )
        .target(Target::RatioAtMost(0.75)),
        Row::new(
            "1. pull (skopeo, registry → OCI layout)",
            &format!("time, {shape}"),
            "s",
            Better::Lower,
        )
        .target(Target::RatioAtMost(0.9)),
        Row::new(
            "1. push (skopeo, OCI layout → registry)",
            "server CPU time",
            "s",
            Better::Lower,
        )
        .note("the server's share; skopeo itself needs about as much again"),
        Row::new(
            "1. pull (skopeo, registry → OCI layout)",
            "server CPU time",
            "s",
            Better::Lower,
        ),
    ];
    let repo = format!("{PUBLIC}/pushpull");
    for run in 0..b.cfg.runs {
        b.progress(&format!("1. push/pull {shape}, run {}", run + 1));
        let dir = b.scratch("push-layout");
        let tag = format!("run{run}");
        let (layout, _image) = random_image(&dir, &layers, &tag);
        for kind in b.order(run) {
            let t = b.regs.target(kind);
            let cpu0 = procstat::cpu_time(Some(t.pid));
            let push = t.push(&b.skopeo, &layout, &repo, &tag);
            let cpu1 = procstat::cpu_time(Some(t.pid));
            let dest = b.scratch("pull-dest");
            let pull = t.pull(&b.skopeo, &repo, &tag, &dest);
            let cpu2 = procstat::cpu_time(Some(t.pid));
            push_value(&mut rows, 2, kind, (cpu1 - cpu0).as_secs_f64());
            push_value(&mut rows, 3, kind, (cpu2 - cpu1).as_secs_f64());
            let _ = std::fs::remove_dir_all(&dest);
            push_value(&mut rows, 0, kind, push);
            push_value(&mut rows, 1, kind, pull);
            b.progress(&format!(
                "   {}: push {push:.2} s, pull {pull:.2} s",
                kind.name()
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    b.rows.extend(rows);
}
