//! The failed-login throttle (`auth_cases/throttle.rs`) on one `berth serve`
//! with its embedded defaults; `auth_replicated.rs` runs the same cases on
//! two replicas.

#[path = "auth_cases/servers.rs"]
mod servers;

/// One `berth serve` on its embedded defaults.
mod setup {
    pub fn start(env: &[(&str, &str)]) -> Option<crate::servers::Servers> {
        Some(crate::servers::Servers::embedded(env))
    }
}

#[path = "auth_cases/throttle.rs"]
mod cases;
