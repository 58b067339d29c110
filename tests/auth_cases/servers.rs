//! Where the auth cases run: one `berth serve` on its embedded defaults, or
//! two replicas on one PostgreSQL database (the kit's shared server, a
//! fresh database per test) and one shared data directory for blobs.
//!
//! `Servers` dereferences to replica A, so a case reads as it would against
//! one registry; `b()` is the other replica (A itself when embedded), which
//! cases use for the second half of a step: log in on A, use the token on B;
//! change a password on A, try the old one on B. A change made on one
//! replica reaches the other through the database's announcements, so a
//! case that looks for it on B waits for it (`settle`) with a generous
//! bound; on one server it must hold at once.
#![allow(dead_code)]

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_testkit::berth::{self, Registry};
use berth_testkit::berth_bin;
use berth_testkit::postgres::{self, Postgres};
use berth_testkit::wait_until;

/// How long a change made on one replica may take to reach the other.
const SETTLE: Duration = Duration::from_secs(30);

pub struct Servers {
    a: Registry,
    b: Option<Registry>,
    /// Markers `caught_up` made so far.
    markers: AtomicU32,
    _data: Option<tempfile::TempDir>,
}

impl Deref for Servers {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.a
    }
}

impl Servers {
    /// One `berth serve` with `env` on top of the kit's defaults.
    pub fn embedded(env: &[(&str, &str)]) -> Servers {
        Servers {
            a: berth::registry_with(berth_bin!(), &[], env),
            b: None,
            markers: AtomicU32::new(0),
            _data: None,
        }
    }

    /// Two replicas with `env`, on a fresh database of the shared
    /// PostgreSQL server. None (the test skips) where PostgreSQL is not
    /// installed; under CI that is a failure.
    pub fn replicated(env: &[(&str, &str)]) -> Option<Servers> {
        if !postgres::available() {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL (initdb, postgres) is needed under CI"
            );
            eprintln!("skipped: no PostgreSQL (initdb, postgres) on this machine");
            return None;
        }
        let url = Postgres::shared().database();
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let key = "a5".repeat(32);
        let mut all = vec![
            ("BERTH_META_BACKEND", "postgres"),
            ("BERTH_META_URL", url.as_str()),
            ("BERTH_CONTROLLER_SECRET_KEY", key.as_str()),
        ];
        all.extend_from_slice(env);
        let a = berth::registry_in(berth_bin!(), &data, &[], &all);
        let b = berth::registry_in(berth_bin!(), &data, &[], &all);
        Some(Servers {
            a,
            b: Some(b),
            markers: AtomicU32::new(0),
            _data: Some(tmp),
        })
    }

    /// Replica A.
    pub fn a(&self) -> &Registry {
        &self.a
    }

    /// Replica B; A itself on one server.
    pub fn b(&self) -> &Registry {
        self.b.as_ref().unwrap_or(&self.a)
    }

    pub fn replicated_setup(&self) -> bool {
        self.b.is_some()
    }

    /// Every server: A, then B when there is one.
    pub fn all(&self) -> Vec<&Registry> {
        std::iter::once(&self.a).chain(self.b.as_ref()).collect()
    }

    /// A counter or gauge summed over every server.
    pub fn metric(&self, name: &str) -> f64 {
        self.all().iter().map(|r| r.metric(name)).sum()
    }

    /// Waits until `check` holds on the replica a change has yet to reach;
    /// on one server it must hold at once.
    #[track_caller]
    pub fn settle(&self, what: &str, check: impl FnMut() -> bool) {
        let mut check = check;
        if self.b.is_none() {
            assert!(check(), "{what}");
            return;
        }
        wait_until(what, SETTLE, check);
    }

    /// Returns once B has every account, project, member and robot change
    /// A made before the call: a marker project created on A shows on B
    /// (a replica reloads the accounts as one snapshot). Nothing on one server.
    pub fn caught_up(&self) {
        let Some(b) = &self.b else {
            return;
        };
        let n = self.markers.fetch_add(1, Ordering::SeqCst);
        let name = format!("settle-{n}");
        self.a.admin().create_project(&name, false);
        let admin = b.admin();
        let path = format!("/api/v1/projects/{name}");
        wait_until("B to catch up with A", SETTLE, || {
            admin.call("GET", &path, None).0 == 200
        });
    }
}
