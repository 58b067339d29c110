//! The OCI distribution spec v1.1.1 over HTTP against the built `berth`
//! binary: every endpoint (end-1 .. end-13) plus upload cancel and the
//! catalog, with exact statuses, headers and error codes, and the bad input
//! each one must refuse without falling over or leaving anything behind.
//!
//! Each test starts its own registry (own port, own data dir), so they run in
//! parallel. Pushes use the admin account over Basic auth.

mod common;

/// One `berth serve` on its embedded defaults.
mod setup {
    pub fn start() -> Option<crate::common::Reg> {
        Some(crate::common::Reg::start())
    }
}

#[path = "protocol/cases.rs"]
mod cases;
