//! The workload controller end to end: `berth serve` (registry and controller,
//! directory deployer), real `berth edge` caches as nodes, each pulling from
//! the registry's private project with a robot account, and images pushed
//! with skopeo.
//!
//! What these prove, beyond the controller crate's own tests with a fake edge:
//! manifests reach a node only after its edge cache holds every blob of every
//! image; a tag pushed again during a publish changes nothing; a node whose
//! edge is down fails in words and catches up later while the others run; a
//! controller killed mid-publish finishes without a second prefetch job or a
//! second write; unpublish removes files and pins; refusals say why;
//! `berth app publish` follows progress until the nodes run (and fails when
//! one fails); registry roles decide who may publish and which projects'
//! images an app may use, and the audit log says who did what.
//!
//! Two ignored tests reproduce bugs outside the controller for their owners
//! (the edge cache giving up a prefetch during a short registry outage; GC
//! collecting a manifest a publication still deploys): run with `--ignored`.
//!
//! Run with `--nocapture` to see the three-node publish timeline.

mod controller_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use berth_testkit::fixtures::{Image, ImageBuilder};
use berth_testkit::proxy::FaultProxy;
use berth_testkit::tools::docker_ref;
use berth_testkit::wait_until;
use controller_support::*;
use serde_json::{json, Value};

#[path = "controller_e2e/access.rs"]
mod access;
#[path = "controller_e2e/outages.rs"]
mod outages;
#[path = "controller_e2e/three_edges.rs"]
mod three_edges;

const LONG: Duration = Duration::from_secs(60);

fn deployment_file(app: &str, node: &str) -> String {
    format!("{PROJECT}-{app}-deployment-{app}-{node}.yaml")
}

/// `acme/<repo>@<digest>`, as the controller pins and the pod spec names it.
fn by_digest(repo: &str, digest: &str) -> String {
    format!("{PROJECT}/{repo}@{digest}")
}

/// Every container image of a rendered Deployment.
fn container_images(obj: &Value) -> Vec<String> {
    obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["image"].as_str().expect("image").to_string())
        .collect()
}

/// Whether `edge` has a running prefetch job for `image` that has moved bytes
/// (`Err`: every job it has, for the timeout message).
fn transferring(edge: &EdgeNode, image: &str) -> Result<(), String> {
    let moving = edge
        .jobs_for(image)
        .iter()
        .any(|j| j["state"] == "running" && j["bytes_done"].as_u64() > Some(0));
    if moving {
        Ok(())
    } else {
        Err(format!("{:#?}", edge.jobs()))
    }
}

/// Checks a node's publication history: resolving, prefetching, deploying,
/// running appear in that order with non-decreasing times.
fn assert_history_in_order(p: &Value) {
    let states = history_states(p);
    let pos = |s: &str| {
        states
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("no {s} in history {states:?}"))
    };
    let (r, f, d, run) = (
        pos("resolving"),
        pos("prefetching"),
        pos("deploying"),
        pos("running"),
    );
    assert!(
        r < f && f < d && d < run,
        "history out of order: {states:?}"
    );
    let last_prefetching = states
        .iter()
        .rposition(|x| x == "prefetching")
        .expect("prefetching");
    assert!(
        last_prefetching < d,
        "deploying before prefetching ended: {states:?}"
    );
    let times: Vec<u64> = p["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["at"].as_u64().expect("at"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "history times go back: {:#}",
        p["history"]
    );
    let at = |s| first_at(p, s).expect("state in history");
    assert!(at("resolving") <= at("prefetching"));
    assert!(at("prefetching") <= at("deploying"));
    assert!(at("deploying") <= at("running"));
}
