//! The edge cache end to end: the built `berth` binary as registry and edge
//! over 127.0.0.1, pulled through with skopeo and plain HTTP.

mod edge_support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use berth_testkit::berth_bin;
use berth_testkit::fixtures::{digest_of, ImageBuilder};
use berth_testkit::metrics::Metrics;
use berth_testkit::proc::exit_within;
use berth_testkit::proxy::{Fault, FaultProxy};
use berth_testkit::tools::{require_tools, Skopeo};
use berth_testkit::wait_until;
use edge_support::*;

#[path = "edge_cache/capacity.rs"]
mod capacity;
#[path = "edge_cache/clients.rs"]
mod clients;
#[path = "edge_cache/prefetch.rs"]
mod prefetch;
#[path = "edge_cache/single_flight.rs"]
mod single_flight;
#[path = "edge_cache/upstream_faults.rs"]
mod upstream_faults;
