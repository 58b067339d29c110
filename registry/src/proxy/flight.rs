//! One upstream metadata lookup per key at a time.
//!
//! Blob bytes are single-flighted by fills; this does the same for the small
//! requests around them (tag lookups, manifests by digest, blob sizes). The
//! first caller for a key asks upstream; callers arriving meanwhile wait for it
//! and then find its answer in the cache (or in [`Flights::recent`] for answers
//! that are not cached), so N clients cost one upstream request, not N.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

/// How long a remembered answer (a blob size upstream confirmed) stands in
/// for asking again: long enough for the GET that follows a HEAD.
const RECENT_FOR: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    recent: Mutex<HashMap<String, (u64, Instant)>>,
}

/// Held while a caller asks upstream for its key.
pub struct Flight<'a> {
    flights: &'a Flights,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Flights {
    /// Waits until no other caller is looking `key` up, then holds it.
    pub async fn join(&self, key: String) -> Flight<'_> {
        let lock = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.entry(key.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        Flight {
            flights: self,
            key,
            guard: Some(guard),
        }
    }

    /// A value remembered for `key` within the last few seconds.
    pub fn recent(&self, key: &str) -> Option<u64> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .get(key)
            .filter(|(_, at)| at.elapsed() < RECENT_FOR)
            .map(|(v, _)| *v)
    }

    /// Remembers `value` for `key` for a few seconds.
    pub fn remember(&self, key: String, value: u64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, (_, at)| at.elapsed() < RECENT_FOR);
        recent.insert(key, (value, Instant::now()));
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut running = self
            .flights
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(guard) = self.guard.take() {
            // The map and this guard hold the lock; anyone else is waiting
            // for it and keeps the entry.
            let idle = Arc::strong_count(OwnedMutexGuard::mutex(&guard)) <= 2;
            drop(guard);
            if idle {
                running.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_ask_once_and_the_map_empties() {
        let flights = Arc::new(Flights::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (flights, asked) = (flights.clone(), asked.clone());
            tasks.push(tokio::spawn(async move {
                let _f = flights.join("blob r@d".into()).await;
                if flights.recent("blob r@d").is_none() {
                    asked.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    flights.remember("blob r@d".into(), 42);
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(flights.recent("blob r@d"), Some(42));
        assert!(flights.running.lock().expect("not poisoned").is_empty());
    }
}
