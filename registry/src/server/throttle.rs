//! Rate-limited log lines: at most one line per interval for one kind of
//! event, each standing for every event since the previous one.
//!
//! A flood of refused or timed-out connections must not become a flood of log
//! lines (the log is then the denial of service). Each kind of event gets one
//! `LogThrottle`. The first event is written at once; events within the
//! interval after a line are held, and the first one held asks the caller to
//! [`flush`](LogThrottle::flush) them when the interval ends, so a burst is
//! always summed up in the log within one interval. Exact counts are in `/metrics`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) struct LogThrottle {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_line: Option<Instant>,
    /// Events seen since the last line, not yet reported.
    held: u64,
}

/// What to do about one event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Write a line now, standing for this many events.
    Write(u64),
    /// Held back; the first held since the last line: flush at this instant.
    FlushAt(Instant),
    /// Held back; a flush is already due.
    Held,
}

impl LogThrottle {
    pub(super) fn new(every: Duration) -> Self {
        LogThrottle {
            every,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one event at `now`.
    pub(super) fn hit(&self, now: Instant) -> Verdict {
        let mut s = self.state();
        s.held += 1;
        match s.last_line {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                if s.held == 1 {
                    Verdict::FlushAt(last + self.every)
                } else {
                    Verdict::Held
                }
            }
            _ => {
                s.last_line = Some(now);
                Verdict::Write(std::mem::take(&mut s.held))
            }
        }
    }

    /// The events held back, as a line written at `now`; `None` if there are none.
    pub(super) fn flush(&self, now: Instant) -> Option<u64> {
        let mut s = self.state();
        if s.held == 0 {
            return None;
        }
        s.last_line = Some(now);
        Some(std::mem::take(&mut s.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_a_flush_for_what_was_held_back() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.hit(start), Verdict::Write(1), "the first event is logged");
        assert_eq!(
            t.hit(start + Duration::from_millis(1)),
            Verdict::FlushAt(start + Duration::from_secs(10))
        );
        for i in 2..=500u64 {
            assert_eq!(t.hit(start + Duration::from_millis(i)), Verdict::Held);
        }
        let flushed = start + Duration::from_secs(10);
        assert_eq!(t.flush(flushed), Some(500), "the flush sums up the burst");
        assert_eq!(t.flush(flushed), None, "and only once");
        assert_eq!(
            t.hit(flushed + Duration::from_secs(1)),
            Verdict::FlushAt(flushed + Duration::from_secs(10)),
            "a flush is a line too"
        );
        assert_eq!(t.hit(flushed + Duration::from_secs(30)), Verdict::Write(2));
        assert_eq!(t.flush(flushed + Duration::from_secs(40)), None);
    }

    #[test]
    fn a_clock_that_goes_backwards_holds_lines_back() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now() + Duration::from_secs(100);
        assert_eq!(t.hit(start), Verdict::Write(1));
        assert!(matches!(
            t.hit(start - Duration::from_secs(50)),
            Verdict::FlushAt(_)
        ));
    }
}
