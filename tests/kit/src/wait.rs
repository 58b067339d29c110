//! Waiting for a state to arrive: the one polling loop every test uses.
//!
//! A bound is a generous limit for something that must happen, never a
//! measurement: tests do not assert on how long anything took.

use std::time::{Duration, Instant};

/// How often a check is repeated.
pub const POLL: Duration = Duration::from_millis(20);

/// What a check answers: `bool` (there yet or not), `Option<T>` (there, with
/// a value), or `Result<T, String>` (there with a value, or not yet and what
/// was seen instead, which the timeout message shows).
pub trait Check {
    type Value;
    /// `Ok(value)` when the state has arrived; otherwise what was seen (may be empty).
    fn outcome(self) -> Result<Self::Value, String>;
}

impl Check for bool {
    type Value = ();
    fn outcome(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err(String::new())
        }
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn outcome(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T> Check for Result<T, String> {
    type Value = T;
    fn outcome(self) -> Result<T, String> {
        self
    }
}

/// Repeats `check` every [`POLL`] until its state has arrived and returns the
/// value it gave; panics naming `what` (and what the last check saw) once
/// `bound` has passed.
///
/// ```no_run
/// # use std::time::Duration;
/// # use berth_testkit::wait::wait_until;
/// # let spool = std::path::Path::new("/tmp/x");
/// wait_until("the chunk in the spool", Duration::from_secs(60), || spool.exists());
/// let len = wait_until("a non-empty spool", Duration::from_secs(60), || {
///     let len = std::fs::metadata(spool).map(|m| m.len()).unwrap_or(0);
///     if len > 0 { Ok(len) } else { Err(format!("{len} bytes")) }
/// });
/// ```
#[track_caller]
pub fn wait_until<C: Check>(what: &str, bound: Duration, mut check: impl FnMut() -> C) -> C::Value {
    let deadline = Instant::now() + bound;
    loop {
        let seen = match check().outcome() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() > deadline {
            if seen.is_empty() {
                panic!("timed out after {bound:?} waiting for {what}");
            }
            panic!("timed out after {bound:?} waiting for {what}; last seen:\n{seen}");
        }
        std::thread::sleep(POLL);
    }
}

/// The async twin of [`wait_until`], for tests whose checks look at state
/// that tasks on the same runtime change: it sleeps with `tokio::time::sleep`,
/// so the runtime's threads stay free between checks.
pub async fn wait_until_async<C: Check>(
    what: &str,
    bound: Duration,
    mut check: impl FnMut() -> C,
) -> C::Value {
    let deadline = Instant::now() + bound;
    loop {
        let seen = match check().outcome() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() > deadline {
            if seen.is_empty() {
                panic!("timed out after {bound:?} waiting for {what}");
            }
            panic!("timed out after {bound:?} waiting for {what}; last seen:\n{seen}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_check_passes() {
        let mut calls = 0;
        let v = wait_until("the third call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        });
        assert_eq!(v, 30);
    }

    #[test]
    fn panics_with_what_and_the_last_state_seen() {
        let err = std::panic::catch_unwind(|| {
            wait_until("never", Duration::from_millis(50), || {
                Err::<(), _>("state 7".to_string())
            })
        })
        .expect_err("must time out");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("waiting for never"), "{msg}");
        assert!(msg.contains("state 7"), "{msg}");
    }

    #[tokio::test]
    async fn the_async_twin_lets_the_runtime_change_the_state() {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let setter = flag.clone();
        // On a current-thread runtime this task only runs while the waiter sleeps.
        tokio::spawn(async move { setter.store(true, std::sync::atomic::Ordering::SeqCst) });
        wait_until_async("the task to set the flag", Duration::from_secs(5), || {
            flag.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
    }
}
