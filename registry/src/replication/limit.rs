//! The bandwidth cap: a token bucket refilled at the policy's rate, with
//! one second of burst. Bytes are taken as they move; a take that leaves
//! the bucket in debt waits the debt off, so the rate holds on average
//! over any minute however large the pieces.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// The bucket's arithmetic, with the time given (pure).
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Self {
        Bucket {
            rate: rate as f64,
            tokens: rate as f64,
            at: now,
        }
    }

    /// Takes `n` tokens at `now`: how long to wait before the bytes may move.
    fn take(&mut self, now: Instant, n: usize) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate) - n as f64;
        self.at = now;
        if self.tokens < 0.0 {
            Duration::from_secs_f64(-self.tokens / self.rate)
        } else {
            Duration::ZERO
        }
    }
}

pub struct Limiter {
    bucket: Option<Mutex<Bucket>>,
}

impl Limiter {
    /// `rate` bytes per second; None: unlimited.
    pub fn new(rate: Option<u64>) -> Self {
        Limiter {
            bucket: rate.map(|r| Mutex::new(Bucket::new(r, Instant::now()))),
        }
    }

    /// Takes `n` bytes' worth of tokens, waiting while the bucket is in debt.
    pub async fn take(&self, n: usize) {
        let Some(bucket) = &self.bucket else { return };
        let wait = bucket.lock().await.take(Instant::now(), n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_holds_on_average_over_the_waits_it_asks_for() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, t0);
        let mut now = t0;
        // A second of burst, then 10 000 bytes more in pieces of 100 and of 3000.
        for n in std::iter::repeat_n(100, 60).chain(std::iter::repeat_n(3000, 3)) {
            now += b.take(now, n);
        }
        let waited = now - t0;
        assert!(
            (waited.as_secs_f64() - 14.0).abs() < 1e-6,
            "15 000 bytes at 1000 B/s after 1000 of burst: {waited:?}"
        );
    }

    #[test]
    fn idle_time_refills_no_more_than_the_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, t0);
        assert_eq!(b.take(t0 + Duration::from_secs(60), 1000), Duration::ZERO);
        assert_eq!(
            b.take(t0 + Duration::from_secs(60), 500),
            Duration::from_millis(500)
        );
    }
}
