//! Who may try a password or robot secret, and when: the failed-login throttle.
//!
//! Failures are counted per (account, client address) pair, never per account
//! alone, so nobody can lock an account out for everyone else:
//!
//! - **Per pair, growing delays.** After the n-th wrong secret from an address
//!   for an account, that pair waits `backoff * 2^(n-1)`, at most `backoff_max`,
//!   before its next attempt is looked at. While it waits, attempts are answered
//!   at once with 429 and `Retry-After` (no bcrypt runs, no connection is held).
//!   A success from the pair forgets its failures; so does `window` without one.
//! - **Spread-out guessing.** Once an account has collected `account_threshold`
//!   failures from all addresses within `window`, it is under attack: addresses
//!   that have failed on it (and have not logged in to it since the attack began)
//!   share one attempt per `attacked_interval` between them. An address with no
//!   failures for the account is never held back, so its owner's right password
//!   always succeeds from an address that has not failed; every guess an attacker
//!   makes beyond that shared trickle costs a fresh address.
//!
//! The table is pure: every call takes `now`, so tests drive time. Its size is
//! bounded by `max_entries` per kind (pairs, accounts): past it, expired entries
//! go first, then the least recently active.
//!
//! `AttemptLocks` is the one impure part: it lets one secret check per pair run
//! at a time, so a burst of parallel guesses cannot all pass the throttle before
//! the first of them fails.

mod shared;
pub use self::shared::{
    on_entries, AccountEntry, Entries, LocalThrottle, LoginThrottle, PairEntry,
};

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The throttle's settings (from `[auth]`, see `berth.example.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Delay after the first failure of a pair; doubles with each further one. Zero: no delay.
    pub backoff: Duration,
    /// The longest delay.
    pub backoff_max: Duration,
    /// How long failures are remembered (per pair: since its last one; per account: looking back).
    pub window: Duration,
    /// Failures on one account, from all addresses within `window`, that put it under attack.
    pub account_threshold: u32,
    /// While under attack: one attempt per this interval, shared by the addresses that failed.
    pub attacked_interval: Duration,
    /// Most pairs, and most accounts, remembered.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            window: Duration::from_secs(900),
            account_threshold: 10,
            attacked_interval: Duration::from_secs(10),
            max_entries: 100_000,
        }
    }
}

/// Why an attempt must wait, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// This address failed for this account and waits out its own delay.
    Pair(Instant),
    /// The account is under attack and this address has failed on it: it waits for the shared slot.
    Account(Instant),
}

impl Wait {
    pub fn until(self) -> Instant {
        match self {
            Wait::Pair(t) | Wait::Account(t) => t,
        }
    }
    /// Whole seconds to wait from `now`, rounded up, at least 1 (for `Retry-After`).
    pub fn retry_after(self, now: Instant) -> u64 {
        let d = self.until().saturating_duration_since(now);
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// An address, or none when the request has no peer (in-process callers).
pub type Source = Option<IpAddr>;

struct Pair {
    failures: u32,
    last_failure: Instant,
    wait_until: Instant,
}

/// How many addresses an account under attack remembers as having logged in.
const KNOWN_GOOD: usize = 16;

struct Account {
    /// The most recent failures, at most `account_threshold` of them, oldest first.
    failures: VecDeque<Instant>,
    /// When the next attempt from a failed address may go, while under attack.
    next_slot: Instant,
    /// Addresses that logged in to this account while it had failures on record.
    known_good: VecDeque<Source>,
    last_active: Instant,
}

#[derive(Default)]
pub struct Throttle {
    cfg: ThrottleConfig,
    pairs: HashMap<(String, Source), Pair>,
    accounts: HashMap<String, Account>,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            cfg,
            pairs: HashMap::new(),
            accounts: HashMap::new(),
        }
    }

    /// May `name` be tried from `source` now? Passing an attempt from a failed
    /// address of an account under attack takes the account's shared slot.
    pub fn check(&mut self, name: &str, source: Source, now: Instant) -> Result<(), Wait> {
        let key = (name.to_string(), source);
        let Some(pair) = self.pairs.get(&key) else {
            // No failures from here: always allowed, however the account is attacked.
            return Ok(());
        };
        let cfg = self.cfg;
        if pair_expired(&cfg, pair, now) {
            self.pairs.remove(&key);
            return Ok(());
        }
        if now < pair.wait_until {
            return Err(Wait::Pair(pair.wait_until));
        }
        let Some(acct) = self.accounts.get_mut(name) else {
            return Ok(());
        };
        if !under_attack(&cfg, acct, now) || acct.known_good.contains(&source) {
            return Ok(());
        }
        if now < acct.next_slot {
            return Err(Wait::Account(acct.next_slot));
        }
        acct.next_slot = now + cfg.attacked_interval;
        acct.last_active = now;
        Ok(())
    }

    /// Counts a wrong secret for `name` from `source`.
    pub fn fail(&mut self, name: &str, source: Source, now: Instant) {
        let key = (name.to_string(), source);
        let cfg = self.cfg;
        if self
            .pairs
            .get(&key)
            .is_some_and(|p| pair_expired(&cfg, p, now))
        {
            self.pairs.remove(&key);
        }
        let pair = self.pairs.entry(key).or_insert(Pair {
            failures: 0,
            last_failure: now,
            wait_until: now,
        });
        pair.failures = pair.failures.saturating_add(1);
        pair.last_failure = now;
        pair.wait_until = now + delay(&cfg, pair.failures);

        let acct = self.accounts.entry(name.to_string()).or_insert(Account {
            failures: VecDeque::new(),
            next_slot: now,
            known_good: VecDeque::new(),
            last_active: now,
        });
        acct.failures.push_back(now);
        while acct.failures.len() > cfg.account_threshold.max(1) as usize {
            acct.failures.pop_front();
        }
        acct.last_active = now;
        self.bound(now);
    }

    /// `name` proved its secret from `source`: forget that pair's failures and,
    /// while the account has failures on record, remember the address as its owner's.
    pub fn succeed(&mut self, name: &str, source: Source, now: Instant) {
        self.pairs.remove(&(name.to_string(), source));
        if let Some(a) = self.accounts.get_mut(name) {
            if !a.known_good.contains(&source) {
                if a.known_good.len() >= KNOWN_GOOD {
                    a.known_good.pop_front();
                }
                a.known_good.push_back(source);
            }
            a.last_active = now;
        }
    }

    /// Keeps each table within `max_entries`: expired entries first, then the least recently active.
    fn bound(&mut self, now: Instant) {
        let cfg = self.cfg;
        let max = cfg.max_entries.max(1);
        if self.pairs.len() > max {
            self.pairs.retain(|_, p| !pair_expired(&cfg, p, now));
            evict_oldest(&mut self.pairs, max, |p| p.last_failure);
        }
        if self.accounts.len() > max {
            self.accounts.retain(|_, a| !account_expired(&cfg, a, now));
            evict_oldest(&mut self.accounts, max, |a| a.last_active);
        }
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.pairs.len(), self.accounts.len())
    }
}

/// A pair past its delay whose last failure left the window: forgotten.
fn pair_expired(cfg: &ThrottleConfig, p: &Pair, now: Instant) -> bool {
    now >= p.wait_until && now.saturating_duration_since(p.last_failure) > cfg.window
}

fn account_expired(cfg: &ThrottleConfig, a: &Account, now: Instant) -> bool {
    now >= a.next_slot
        && a.failures
            .back()
            .is_none_or(|t| now.saturating_duration_since(*t) > cfg.window)
}

/// At least `account_threshold` failures within the window. Only the most recent
/// `account_threshold` are kept, so the oldest of them decides.
fn under_attack(cfg: &ThrottleConfig, a: &Account, now: Instant) -> bool {
    a.failures.len() >= cfg.account_threshold.max(1) as usize
        && a.failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) <= cfg.window)
}

/// The delay after the `failures`-th failure of a pair.
fn delay(cfg: &ThrottleConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    cfg.backoff
        .saturating_mul(1u32 << doublings)
        .min(cfg.backoff_max)
}

/// Drops the least recently active entries until at most 90% of `max` remain,
/// so the sort runs once per tenth of the table, not on every insert.
fn evict_oldest<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    last: impl Fn(&V) -> Instant,
) {
    if map.len() <= max {
        return;
    }
    let keep = max - max / 10;
    let mut by_age: Vec<(Instant, K)> = map.iter().map(|(k, v)| (last(v), k.clone())).collect();
    by_age.sort_by_key(|(t, _)| *t);
    let drop = map.len().saturating_sub(keep);
    for (_, k) in by_age.into_iter().take(drop) {
        map.remove(&k);
    }
}

/// One secret check at a time per (account, address): a second attempt from the
/// same pair waits for the first to finish (a bcrypt, milliseconds), then sees
/// its outcome in the throttle and the credential cache.
#[derive(Default)]
pub struct AttemptLocks {
    held: Arc<Mutex<LockTable>>,
}

/// The lock of each pair that has an attempt running or waiting.
type LockTable = HashMap<(String, Source), Arc<tokio::sync::Mutex<()>>>;

/// Held while one pair's secret is checked; released on drop.
pub struct AttemptGuard {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    key: (String, Source),
    held: Arc<Mutex<LockTable>>,
}

impl AttemptLocks {
    pub async fn acquire(&self, name: &str, source: Source) -> AttemptGuard {
        let key = (name.to_string(), source);
        let lock = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        AttemptGuard {
            guard: Some(guard),
            lock,
            key,
            held: self.held.clone(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Only the table and this guard know the lock: nobody waits on it.
        if Arc::strong_count(&self.lock) == 2 {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Source = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const B: Source = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ip(n: u32) -> Source {
        Some(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n)))
    }

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            backoff: secs(1),
            backoff_max: secs(60),
            window: secs(600),
            account_threshold: 5,
            attacked_interval: secs(10),
            max_entries: 1000,
        }
    }

    #[test]
    fn delays_double_per_failure_up_to_the_cap() {
        let mut t = Throttle::new(cfg());
        let t0 = Instant::now();
        let mut now = t0;
        let mut seen = Vec::new();
        for _ in 0..9 {
            assert_eq!(t.check("alice", A, now), Ok(()));
            t.fail("alice", A, now);
            let wait = t.check("alice", A, now).expect_err("must wait");
            assert!(matches!(wait, Wait::Pair(_)), "{wait:?}");
            seen.push(wait.retry_after(now));
            // Just before the end of the delay: still waiting; at its end: allowed.
            let end = wait.until();
            assert!(t.check("alice", A, end - Duration::from_millis(1)).is_err());
            now = end;
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_pair_in_backoff_does_not_hold_back_other_addresses_or_accounts() {
        let mut t = Throttle::new(cfg());
        let now = Instant::now();
        t.fail("alice", A, now);
        assert!(t.check("alice", A, now).is_err());
        assert_eq!(t.check("alice", B, now), Ok(()));
        assert_eq!(t.check("bob", A, now), Ok(()));
    }

    #[test]
    fn success_clears_the_pair_and_quiet_time_forgets_it() {
        let mut t = Throttle::new(cfg());
        let t0 = Instant::now();
        t.fail("alice", A, t0);
        t.fail("alice", A, t0 + secs(1));
        t.succeed("alice", A, t0 + secs(3));
        // Cleared: the next failure starts from the first delay again.
        t.fail("alice", A, t0 + secs(4));
        assert_eq!(
            t.check("alice", A, t0 + secs(4))
                .map_err(|w| w.retry_after(t0 + secs(4))),
            Err(1)
        );
        // Failures older than the window are forgotten, so the delay starts over.
        let later = t0 + secs(4) + secs(601);
        assert_eq!(t.check("alice", A, later), Ok(()));
        t.fail("alice", A, later);
        assert_eq!(
            t.check("alice", A, later).map_err(|w| w.retry_after(later)),
            Err(1)
        );
    }

    #[test]
    fn guessing_spread_over_addresses_shares_one_slow_lane() {
        let mut t = Throttle::new(cfg());
        let t0 = Instant::now();
        // Five addresses fail once each: the account is under attack.
        for n in 0..5 {
            assert_eq!(t.check("admin", ip(n), t0), Ok(()));
            t.fail("admin", ip(n), t0);
        }
        // After their own delays, failed addresses share one attempt per 10 s.
        let now = t0 + secs(2);
        assert_eq!(t.check("admin", ip(0), now), Ok(()));
        for n in 1..5 {
            let w = t.check("admin", ip(n), now).expect_err("slot taken");
            assert_eq!(w, Wait::Account(now + secs(10)));
            assert_eq!(w.retry_after(now), 10);
        }
        assert_eq!(t.check("admin", ip(3), now + secs(10)), Ok(()));
        assert!(t.check("admin", ip(4), now + secs(10)).is_err());
        // An address that never failed is never held back: the owner's password works.
        for n in 100..110 {
            assert_eq!(t.check("admin", ip(n), now), Ok(()));
        }
        // Other accounts are not affected.
        assert_eq!(t.check("bob", ip(1), now), Ok(()));
    }

    #[test]
    fn an_owner_who_logged_in_during_an_attack_keeps_a_lane_after_a_typo() {
        let mut t = Throttle::new(cfg());
        let t0 = Instant::now();
        for n in 0..5 {
            t.fail("admin", ip(n), t0);
        }
        t.succeed("admin", A, t0);
        t.fail("admin", A, t0 + secs(1)); // a typo
        let now = t0 + secs(3);
        // The attackers' addresses used up the shared slot...
        assert_eq!(t.check("admin", ip(0), now), Ok(()));
        assert!(t.check("admin", ip(1), now).is_err());
        // ...but the owner's known address only waits out its own delay.
        assert_eq!(t.check("admin", A, now), Ok(()));
    }

    #[test]
    fn the_attack_ends_when_its_failures_leave_the_window() {
        let mut t = Throttle::new(cfg());
        let t0 = Instant::now();
        for n in 0..5 {
            t.fail("admin", ip(n), t0);
        }
        let now = t0 + secs(2);
        assert_eq!(t.check("admin", ip(0), now), Ok(()));
        assert!(t.check("admin", ip(1), now).is_err());
        // A new failure from ip(1) after the window is its first again, and the
        // account's count restarts: no shared lane.
        let later = t0 + secs(700);
        assert_eq!(t.check("admin", ip(1), later), Ok(()));
        t.fail("admin", ip(1), later);
        assert_eq!(t.check("admin", ip(1), later + secs(1)), Ok(()));
    }

    #[test]
    fn zero_backoff_means_no_pair_delay() {
        let mut t = Throttle::new(ThrottleConfig {
            backoff: Duration::ZERO,
            ..cfg()
        });
        let now = Instant::now();
        t.fail("alice", A, now);
        t.fail("alice", A, now);
        assert_eq!(t.check("alice", A, now), Ok(()));
    }

    #[test]
    fn the_tables_stay_bounded() {
        let mut t = Throttle::new(ThrottleConfig {
            max_entries: 100,
            ..cfg()
        });
        let t0 = Instant::now();
        for n in 0..1000u32 {
            let at = t0 + Duration::from_millis(u64::from(n));
            t.fail(&format!("user{n}"), ip(n), at);
        }
        let (pairs, accounts) = t.len();
        assert!(
            pairs <= 100 && accounts <= 100,
            "{pairs} pairs, {accounts} accounts"
        );
        // The most recent ones are kept.
        assert!(t.check("user999", ip(999), t0 + secs(1)).is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        let now = Instant::now();
        assert_eq!(Wait::Pair(now).retry_after(now), 1);
        assert_eq!(
            Wait::Pair(now + Duration::from_millis(1)).retry_after(now),
            1
        );
        assert_eq!(
            Wait::Pair(now + Duration::from_millis(1001)).retry_after(now),
            2
        );
        assert_eq!(Wait::Account(now + secs(10)).retry_after(now), 10);
    }

    #[tokio::test]
    async fn attempts_from_one_pair_run_one_at_a_time() {
        let locks = Arc::new(AttemptLocks::default());
        let first = locks.acquire("alice", A).await;
        let other = locks.acquire("alice", B).await; // another pair: not blocked
        drop(other);
        let l2 = locks.clone();
        let second = tokio::spawn(async move {
            let _g = l2.acquire("alice", A).await;
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        drop(first);
        second.await.expect("second attempt ran");
        assert_eq!(locks.len(), 0, "locks of finished attempts are dropped");
    }
}
