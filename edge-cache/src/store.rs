//! The edge cache's own bookkeeping, kept in the local registry's
//! `CacheBook` (the same file as its metadata; its table tree is with the
//! registry's embedded metadata): when upstream last confirmed
//! each tag, the last read of each blob (LRU order), the blobs a prefetch
//! pinned per image, and prefetch jobs.
//!
//! Access times are kept in memory and flushed every few seconds and at
//! shutdown, so a read costs no write transaction. When the cache directory
//! was removed and its database recreated (`reset`), they start over.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use berth_registry::oci::Digest;
use berth_registry::proxy::{BookTagClock, TagClock};
use berth_registry::service::{CacheBook, LocalRegistry, TagClockOwner};

pub use berth_registry::proxy::now_ms;

#[derive(Debug, thiserror::Error)]
#[error("edge cache database: {0}")]
pub struct StoreError(pub String);

fn e<E: std::fmt::Display>(x: E) -> StoreError {
    StoreError(x.to_string())
}

pub struct EdgeStore {
    /// Follows `LocalRegistry::reopen_database` to the new file.
    book: Arc<dyn CacheBook>,
    access: Mutex<HashMap<String, u64>>,
    dirty: Mutex<HashSet<String>>,
}

impl EdgeStore {
    pub async fn open(local: &LocalRegistry) -> Result<Self, StoreError> {
        let store = Self {
            book: local.cache_book(),
            access: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
        };
        store.reset().await?;
        Ok(store)
    }

    /// The pull-through's tag freshness, in the book's edge clock.
    pub fn tag_clock(&self) -> Arc<dyn TagClock> {
        Arc::new(BookTagClock {
            book: self.book.clone(),
            owner: TagClockOwner::Edge,
        })
    }

    /// Reloads access times from the database (after `reopen_database`: an
    /// empty one).
    pub async fn reset(&self) -> Result<(), StoreError> {
        let access: HashMap<String, u64> = self
            .book
            .access_times()
            .await
            .map_err(e)?
            .into_iter()
            .collect();
        *self.access.lock().map_err(e)? = access;
        self.dirty.lock().map_err(e)?.clear();
        Ok(())
    }

    /// Marks a blob as just used.
    pub fn touch(&self, d: &Digest) {
        let k = d.to_string();
        if let Ok(mut a) = self.access.lock() {
            a.insert(k.clone(), now_ms());
        }
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(k);
        }
    }

    pub fn last_access(&self, d: &Digest) -> u64 {
        self.access
            .lock()
            .ok()
            .and_then(|a| a.get(&d.to_string()).copied())
            .unwrap_or(0)
    }

    pub async fn forget_access(&self, d: &Digest) -> Result<(), StoreError> {
        let k = d.to_string();
        if let Ok(mut a) = self.access.lock() {
            a.remove(&k);
        }
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.remove(&k);
        }
        self.book.forget_access(&k).await.map_err(e)
    }

    /// Writes changed access times in one transaction.
    pub async fn flush_access(&self) -> Result<(), StoreError> {
        let dirty: Vec<String> = match self.dirty.lock() {
            Ok(mut d) => d.drain().collect(),
            Err(_) => return Ok(()),
        };
        if dirty.is_empty() {
            return Ok(());
        }
        let snapshot: Vec<(String, u64)> = {
            let a = self.access.lock().map_err(e)?;
            dirty
                .iter()
                .filter_map(|k| a.get(k).map(|v| (k.clone(), *v)))
                .collect()
        };
        self.book.put_access_times(&snapshot).await.map_err(e)
    }

    pub async fn pin(&self, image: &str, digests: &[Digest]) -> Result<(), StoreError> {
        let digests: Vec<String> = digests.iter().map(Digest::to_string).collect();
        self.book.pin(image, &digests).await.map_err(e)
    }

    /// Removes an image's pins; returns how many there were.
    pub async fn unpin(&self, image: &str) -> Result<usize, StoreError> {
        self.book.unpin(image).await.map_err(e)
    }

    /// Every pinned digest, with the images pinning it.
    pub async fn pins(&self) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (image, digest) in self.book.pins().await.map_err(e)? {
            out.entry(digest).or_default().push(image);
        }
        Ok(out)
    }

    pub async fn put_job(&self, id: &str, json: &[u8]) -> Result<(), StoreError> {
        self.book.put_job(id, json).await.map_err(e)
    }

    pub async fn jobs(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.book.jobs().await.map_err(e)
    }
}
