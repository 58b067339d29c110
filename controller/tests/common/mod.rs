//! Test harness for the controller's tests: the controller's API and
//! reconciler over real sockets (`harness`), a fake edge cache that speaks the
//! prefetch contract over HTTP (`edge`), the registry side of its ports faked
//! (`fakes`), and its PostgreSQL store (`pg`). Waiting and free ports are the
//! test kit's (`berth_testkit::wait`, `berth_testkit::proc`).
#![allow(dead_code)]

mod edge;
mod fakes;
mod harness;
mod pg;

// Each test crate uses its own part of these.
#[allow(unused_imports)]
pub use berth_testkit::{free_port, wait::wait_until_async as wait_until};
#[allow(unused_imports)]
pub use {edge::*, fakes::*, harness::*, pg::*};

use serde_json::{json, Value};

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A digest made up from `seed`: the same seed gives the same digest.
pub fn digest(seed: &str) -> String {
    berth_testkit::digest_of(seed.as_bytes())
}

/// A Deployment app body with the given images (container names c0, c1...).
pub fn app_body(name: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, img)| json!({"name": format!("c{i}"), "image": img}))
        .collect();
    json!({"name": name, "spec": {"kind": "Deployment", "containers": containers, "replicas": 1}})
}
