//! The OCI distribution spec suite of `registry_protocol.rs` (the cases in
//! `protocol/cases.rs`), run against two `berth serve` replicas on one
//! PostgreSQL database and one three-node Garage bucket behind a
//! round-robin balancer: what works on the embedded default works on the
//! replicated setup. Skipped (failed under CI) without Garage.

mod common;

/// Two replicas behind a balancer (`Reg::start_replicated`).
mod setup {
    pub fn start() -> Option<crate::common::Reg> {
        crate::common::Reg::start_replicated()
    }
}

#[path = "protocol/cases.rs"]
mod cases;
