//! Test support for berth's end-to-end tests and benchmarks.
//!
//! - [`fixtures`]: offline OCI image layouts with real layers and correct digests.
//! - [`proc`]: spawn a server binary, wait for `/v2/`, kill/terminate/restart, logs on failure.
//! - [`tools`]: the real clients (skopeo, podman, containerd's ctr, oras-py), each isolated
//!   from the machine's configuration.
//! - [`distribution`]: the reference registry (Debian's `docker-registry`) as a process.
//! - [`http`]: raw registry requests whose status, OCI error code and challenge tests assert.
//! - [`net`]: raw TCP clients for connection-level tests (partial requests, silent sockets,
//!   other loopback source addresses).
//!
//! Everything panics with a full message on failure: this crate is for tests.

pub mod berth;
pub mod distribution;
pub mod fixtures;
pub mod http;
pub mod net;
pub mod proc;
pub mod tools;

pub use distribution::{DistributionBuilder, DistributionProcess};
pub use fixtures::{
    digest_of, sha256_hex, Artifact, ArtifactBuilder, Descriptor, Flavor, Image, ImageBuilder,
    Index, IndexBuilder, Layer, OciLayout, Platform,
};
pub use proc::{free_port, BerthProcess, ServerProcess};
pub use tools::{require_tools, tool_available, Containerd, Creds, Podman, Skopeo};
