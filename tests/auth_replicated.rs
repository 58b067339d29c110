//! The auth suites of `auth_login.rs`, `auth_matrix.rs` and
//! `auth_throttle.rs` (the cases in `auth_cases/`), run against two `berth
//! serve` replicas on one PostgreSQL database with a shared data directory
//! for blobs: what works on the embedded default works on the replicated
//! setup. Each case makes its accounts on replica A and tries them on B —
//! a login on A and its token on B, guesses on A holding the address back on
//! B, a password changed or an account deleted on A refused on B. The
//! PostgreSQL server is one per test binary; each test has its own database.

#[path = "auth_cases/servers.rs"]
mod servers;

/// Two replicas on PostgreSQL (`Servers::replicated`).
mod setup {
    pub fn start(env: &[(&str, &str)]) -> Option<crate::servers::Servers> {
        crate::servers::Servers::replicated(env)
    }
}

#[path = "auth_cases/login.rs"]
mod login;

#[path = "auth_cases/matrix.rs"]
mod matrix;

#[path = "auth_cases/throttle.rs"]
mod throttle;
