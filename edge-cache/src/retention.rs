//! Retention: what the cache keeps within its capacity. Owns the count of
//! bytes held, least-recently-used eviction, and the readers that keep a
//! blob from being evicted under them; pins (blobs a prefetch asked to keep)
//! and access times are the cache's bookkeeping in `store.rs`.
//!
//! The count follows the local registry's records: the sum of the recorded
//! blobs' sizes at start, then kept in step as fills commit new blobs and
//! eviction removes them (`reset` counts again after the database was
//! recreated). Evicting is the registry's `evict_blob`: records and bytes go
//! together, and a client that already opened the blob keeps reading it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_registry::oci::Digest;
use berth_registry::proxy::{Keeper, ReadGuard};
use berth_registry::service::{Committed, LocalRegistry, ServiceError};

use crate::metrics::EdgeMetrics;
use crate::store::EdgeStore;

/// Readers per digest.
type Readers = Arc<Mutex<HashMap<Digest, usize>>>;

pub struct Retention {
    local: Arc<LocalRegistry>,
    store: Arc<EdgeStore>,
    metrics: Arc<EdgeMetrics>,
    capacity: u64,
    /// Bytes recorded, kept in step with the registry's records.
    used: Mutex<u64>,
    /// A blob being read is never evicted.
    readers: Readers,
}

/// Held while a client reads a blob; the blob is not evicted meanwhile.
pub struct ReaderGuard {
    digest: Digest,
    readers: Readers,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        if let Ok(mut r) = self.readers.lock() {
            if let Some(n) = r.get_mut(&self.digest) {
                *n -= 1;
                if *n == 0 {
                    r.remove(&self.digest);
                }
            }
        }
    }
}

impl Retention {
    pub async fn new(
        local: Arc<LocalRegistry>,
        store: Arc<EdgeStore>,
        metrics: Arc<EdgeMetrics>,
        capacity: u64,
    ) -> Result<Self, ServiceError> {
        let used = local.recorded_blobs().await?.iter().map(|(_, s)| *s).sum();
        Ok(Self {
            local,
            store,
            metrics,
            capacity,
            used: Mutex::new(used),
            readers: Arc::default(),
        })
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.lock().map(|u| *u).unwrap_or(0)
    }

    /// Counts the bytes held again from the records (after the database was
    /// recreated). Blocking: called from `CacheDir::ensure`'s blocking context.
    pub fn reset(&self) {
        let used = tokio::runtime::Handle::try_current()
            .ok()
            .and_then(|h| h.block_on(self.local.recorded_blobs()).ok())
            .map(|b| b.iter().map(|(_, s)| *s).sum())
            .unwrap_or(0);
        if let Ok(mut u) = self.used.lock() {
            *u = used;
        }
    }

    /// Marks `d` as being read until the guard is dropped.
    pub fn reader(&self, d: &Digest) -> ReaderGuard {
        if let Ok(mut r) = self.readers.lock() {
            *r.entry(d.clone()).or_insert(0) += 1;
        }
        ReaderGuard {
            digest: d.clone(),
            readers: self.readers.clone(),
        }
    }

    /// Marks `d` as just used.
    pub fn touch(&self, d: &Digest) {
        self.store.touch(d);
    }

    /// A fill committed `d`: counts its bytes if they are new here.
    pub fn stored(&self, d: &Digest, c: &Committed) {
        if c.new_blob {
            if let Ok(mut u) = self.used.lock() {
                *u += c.size;
            }
        }
        self.store.touch(d);
    }

    /// Evicts least-recently-used blobs that are neither pinned nor being read,
    /// until the cache fits its capacity.
    pub async fn evict_if_needed(&self) {
        if self.used_bytes() <= self.capacity {
            return;
        }
        let pins = self.store.pins().await.unwrap_or_default();
        let mut blobs = match self.local.recorded_blobs().await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot list cached blobs for eviction");
                return;
            }
        };
        blobs.sort_by_key(|(d, _)| self.store.last_access(d));
        for (d, size) in blobs {
            if self.used_bytes() <= self.capacity {
                break;
            }
            let busy = self
                .readers
                .lock()
                .map(|r| r.contains_key(&d))
                .unwrap_or(true);
            if pins.contains_key(&d.to_string()) || busy {
                continue;
            }
            if !self.drop_blob(&d).await {
                continue;
            }
            self.metrics.evictions.inc();
            tracing::info!(digest = %d, size, "evicted");
        }
        if self.used_bytes() > self.capacity {
            tracing::warn!(
                used = self.used_bytes(),
                capacity = self.capacity,
                "cache over capacity: everything left is pinned or being read"
            );
        }
    }

    /// Removes a cached blob, records and bytes. Readers that already opened
    /// it keep reading: the file's data lives until they close it.
    pub async fn drop_blob(&self, d: &Digest) -> bool {
        let size = match self.local.evict_blob(d).await {
            Ok(Some(size)) => size,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(digest = %d, error = %e, "cannot evict");
                return false;
            }
        };
        let _ = self.store.forget_access(d).await;
        if let Ok(mut u) = self.used.lock() {
            *u = u.saturating_sub(size);
        }
        true
    }
}

/// The pull-through's reads and fills, as the edge keeps them.
#[async_trait]
impl Keeper for Retention {
    fn reader(&self, d: &Digest) -> ReadGuard {
        Box::new(Retention::reader(self, d))
    }
    fn touch(&self, d: &Digest) {
        Retention::touch(self, d)
    }
    fn stored(&self, d: &Digest, committed: &Committed) {
        Retention::stored(self, d, committed)
    }
    async fn after_fill(&self) {
        self.evict_if_needed().await
    }
}
