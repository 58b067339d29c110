//! Test support for berth's end-to-end tests and benchmarks.
//!
//! - [`fixtures`]: offline OCI image layouts with real layers and correct digests.
//! - [`manifest`]: manifests as bytes over blobs held in memory, for protocol tests.
//! - [`proc`]: spawn a server binary, wait for `/v2/`, kill/terminate/restart, logs on failure.
//! - [`console`]: the console over plain HTTP (the sign-in form, cookies, CSRF tokens).
//! - [`berth_bin!`]: the path of the `berth` binary under test.
//! - [`wait`]: waiting for a state with a bound (the one polling loop, and its async twin).
//! - [`balancer`]: a round-robin TCP balancer in front of several `berth serve` replicas.
//! - [`proxy`]: a fault-injecting HTTP proxy to put between a client under test and its server.
//! - [`receiver`]: a webhook endpoint that records requests and answers when the test says.
//! - [`metrics`]: values from a Prometheus `/metrics` endpoint.
//! - [`logs`]: container log files in the kubelet's CRI format, and followed log lines.
//! - [`tools`]: the real clients (skopeo, podman, containerd's ctr, oras-py), each isolated
//!   from the machine's configuration.
//! - [`distribution`]: the reference registry (Debian's `docker-registry`) as a process.
//! - [`garage`]: a three-node Garage cluster (distributed S3) on 127.0.0.1.
//! - [`http`]: raw registry requests whose status, OCI error code and challenge tests assert.
//! - [`postgres`]: a PostgreSQL server of the test's own on 127.0.0.1 (`initdb` + `postgres`).
//! - [`net`]: raw TCP clients for connection-level tests (partial requests, silent sockets,
//!   other loopback source addresses).
//!
//! Everything panics with a full message on failure: this crate is for tests.

pub mod balancer;
pub mod berth;
pub mod console;
pub mod distribution;
pub mod fixtures;
pub mod garage;
pub mod hooks;
pub mod http;
pub mod logs;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod postgres;
pub mod proc;
pub mod proxy;
pub mod receiver;
pub mod tools;
pub mod wait;

/// The path of the `berth` binary built for the calling test crate.
///
/// It expands to `env!("CARGO_BIN_EXE_berth")` where it is called: Cargo sets
/// that variable when it compiles the `berth` package's integration tests, not
/// when it compiles this library, so the kit cannot name the binary itself.
///
/// ```ignore
/// use berth_testkit::{berth, berth_bin};
/// let registry = berth::registry(berth_bin!());
/// ```
#[macro_export]
macro_rules! berth_bin {
    () => {
        env!("CARGO_BIN_EXE_berth")
    };
}

pub use distribution::{DistributionBuilder, DistributionProcess};
pub use fixtures::{
    digest_of, sha256_hex, sha512_digest_of, Artifact, ArtifactBuilder, Descriptor, Flavor, Image,
    ImageBuilder, Index, IndexBuilder, Layer, OciLayout, Platform,
};
pub use garage::GarageCluster;
pub use proc::{free_port, BerthProcess, ServerProcess};
pub use tools::{require_tools, tool_available, Containerd, Creds, Podman, Skopeo};
pub use wait::wait_until;
