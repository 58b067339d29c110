//! The throttle as a service: `LoginThrottle`, which `RegistryAccess` asks.
//! `LocalThrottle` keeps the table in this process (the embedded default);
//! a shared store (PostgreSQL's `PgThrottle`) keeps one pair's and its
//! account's entries between calls, on the database's clock, and runs the
//! same pure rules on them (`on_entries`), so replicas count one attacker's
//! guesses together and a stranger still cannot lock an owner out.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Account, Pair, Source, Throttle, ThrottleConfig, Wait};

/// Who may try a secret, and when (see the module `throttle`).
#[async_trait]
pub trait LoginThrottle: Send + Sync + 'static {
    /// May `name` be tried from `source` now?
    async fn check(&self, name: &str, source: Option<IpAddr>) -> Result<(), Wait>;
    /// Counts a wrong secret.
    async fn fail(&self, name: &str, source: Option<IpAddr>);
    /// The secret was right: the pair's failures are forgotten.
    async fn succeed(&self, name: &str, source: Option<IpAddr>);
}

/// The throttle's table in this process.
pub struct LocalThrottle(Mutex<Throttle>);

impl LocalThrottle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self(Mutex::new(Throttle::new(cfg)))
    }
    fn with<R>(&self, f: impl FnOnce(&mut Throttle) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl LoginThrottle for LocalThrottle {
    async fn check(&self, name: &str, source: Option<IpAddr>) -> Result<(), Wait> {
        self.with(|t| t.check(name, source, Instant::now()))
    }
    async fn fail(&self, name: &str, source: Option<IpAddr>) {
        self.with(|t| t.fail(name, source, Instant::now()))
    }
    async fn succeed(&self, name: &str, source: Option<IpAddr>) {
        self.with(|t| t.succeed(name, source, Instant::now()))
    }
}

/// A pair's entry, times in seconds on the shared clock.
#[derive(Debug, Clone, PartialEq)]
pub struct PairEntry {
    pub failures: u32,
    pub last_failure: f64,
    pub wait_until: f64,
}

/// An account's entry, times in seconds on the shared clock.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEntry {
    /// The most recent failures, oldest first.
    pub failures: Vec<f64>,
    pub next_slot: f64,
    pub known_good: Vec<Option<IpAddr>>,
    pub last_active: f64,
}

/// What a shared store keeps for one (account, address) pair and its account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entries {
    pub pair: Option<PairEntry>,
    pub account: Option<AccountEntry>,
}

/// Runs `f` on a throttle holding only `entries` for (`name`, `source`),
/// `clock` (seconds on the shared clock) being now; the entries after.
pub fn on_entries<R>(
    cfg: ThrottleConfig,
    name: &str,
    source: Source,
    entries: Entries,
    clock: f64,
    f: impl FnOnce(&mut Throttle, Instant) -> R,
) -> (R, Entries) {
    let now = Instant::now();
    let at = |t: f64| {
        if t >= clock {
            now + Duration::from_secs_f64(t - clock)
        } else {
            // Older than this process's clock reaches: long past.
            now.checked_sub(Duration::from_secs_f64(clock - t))
                .unwrap_or(now)
        }
    };
    let secs = |i: Instant| match i.checked_duration_since(now) {
        Some(ahead) => clock + ahead.as_secs_f64(),
        None => clock - now.duration_since(i).as_secs_f64(),
    };
    let mut t = Throttle::new(cfg);
    let key = (name.to_string(), source);
    if let Some(p) = entries.pair {
        let pair = Pair {
            failures: p.failures,
            last_failure: at(p.last_failure),
            wait_until: at(p.wait_until),
        };
        t.pairs.insert(key.clone(), pair);
    }
    if let Some(a) = entries.account {
        let account = Account {
            failures: a.failures.into_iter().map(at).collect(),
            next_slot: at(a.next_slot),
            known_good: a.known_good.into(),
            last_active: at(a.last_active),
        };
        t.accounts.insert(name.to_string(), account);
    }
    let out = f(&mut t, now);
    let after = Entries {
        pair: t.pairs.get(&key).map(|p| PairEntry {
            failures: p.failures,
            last_failure: secs(p.last_failure),
            wait_until: secs(p.wait_until),
        }),
        account: t.accounts.get(name).map(|a| AccountEntry {
            failures: a.failures.iter().copied().map(secs).collect(),
            next_slot: secs(a.next_slot),
            known_good: a.known_good.iter().copied().collect(),
            last_active: secs(a.last_active),
        }),
    };
    (out, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Source = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    /// Entries carried between calls (as a database would) throttle as the
    /// table in memory does.
    #[test]
    fn entries_round_trip_through_the_shared_clock() {
        let cfg = ThrottleConfig::default();
        let mut e = Entries::default();
        let clock = 1_000_000.0;
        for _ in 0..3 {
            e = on_entries(cfg, "pat", A, e, clock, |t, now| t.fail("pat", A, now)).1;
        }
        let p = e.pair.clone().expect("pair");
        assert_eq!(p.failures, 3);
        assert!((p.wait_until - (clock + 4.0)).abs() < 0.01, "{p:?}");
        let (res, _) = on_entries(cfg, "pat", A, e.clone(), clock + 1.0, |t, now| {
            t.check("pat", A, now)
        });
        assert!(matches!(res, Err(Wait::Pair(_))), "{res:?}");
        let (res, e) = on_entries(cfg, "pat", A, e, clock + 5.0, |t, now| {
            t.check("pat", A, now)
        });
        assert_eq!(res, Ok(()));
        let (_, e) = on_entries(cfg, "pat", A, e, clock + 5.0, |t, now| {
            t.succeed("pat", A, now)
        });
        assert!(e.pair.is_none());
        assert_eq!(e.account.expect("account").known_good, vec![A]);
    }
}
