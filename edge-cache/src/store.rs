//! The edge cache's own bookkeeping, in the same redb file as the local
//! registry's metadata (`LocalRegistry::database`):
//!
//! ```text
//! edge_tag_fetched  (repo, tag)        → unix ms when upstream last confirmed the tag
//! edge_access       digest             → unix ms of the last read (LRU order)
//! edge_pins         (image, digest)    → ()   blobs a prefetch pinned, per image
//! edge_jobs         job id             → JSON Job
//! ```
//!
//! Access times are kept in memory and flushed every few seconds and at
//! shutdown, so a read costs no write transaction. When the cache directory
//! was removed and its database recreated (`reset`), they start over.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use berth_registry::oci::{Digest, RepoName, Tag};
use berth_registry::proxy::TagClock;
use berth_registry::service::LocalRegistry;
use redb::{Database, ReadableTable, TableDefinition};

const TAG_FETCHED: TableDefinition<(&str, &str), u64> = TableDefinition::new("edge_tag_fetched");
const ACCESS: TableDefinition<&str, u64> = TableDefinition::new("edge_access");
const PINS: TableDefinition<(&str, &str), ()> = TableDefinition::new("edge_pins");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("edge_jobs");

pub use berth_registry::proxy::now_ms;

#[derive(Debug, thiserror::Error)]
#[error("edge cache database: {0}")]
pub struct StoreError(pub String);

fn e<E: std::fmt::Display>(x: E) -> StoreError {
    StoreError(x.to_string())
}

pub struct EdgeStore {
    /// The database is asked for at each use: `reopen_database` may replace it.
    local: Arc<LocalRegistry>,
    access: Mutex<HashMap<String, u64>>,
    dirty: Mutex<HashSet<String>>,
}

impl EdgeStore {
    pub fn open(local: Arc<LocalRegistry>) -> Result<Self, StoreError> {
        let store = Self {
            local,
            access: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
        };
        store.reset()?;
        Ok(store)
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.local.database().map_err(e)
    }

    /// Creates the tables if missing and reloads access times from the
    /// database (after `reopen_database`: an empty one).
    pub fn reset(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(e)?;
        tx.open_table(TAG_FETCHED).map_err(e)?;
        tx.open_table(ACCESS).map_err(e)?;
        tx.open_table(PINS).map_err(e)?;
        tx.open_table(JOBS).map_err(e)?;
        tx.commit().map_err(e)?;
        let mut access = HashMap::new();
        {
            let rtx = db.begin_read().map_err(e)?;
            for r in rtx.open_table(ACCESS).map_err(e)?.iter().map_err(e)? {
                let (k, v) = r.map_err(e)?;
                access.insert(k.value().to_string(), v.value());
            }
        }
        *self.access.lock().map_err(e)? = access;
        self.dirty.lock().map_err(e)?.clear();
        Ok(())
    }

    pub fn tag_fetched(&self, repo: &str, tag: &str) -> Option<u64> {
        let tx = self.db().ok()?.begin_read().ok()?;
        let t = tx.open_table(TAG_FETCHED).ok()?;
        t.get((repo, tag)).ok().flatten().map(|v| v.value())
    }

    pub fn set_tag_fetched(&self, repo: &str, tag: &str) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write().map_err(e)?;
        tx.open_table(TAG_FETCHED)
            .map_err(e)?
            .insert((repo, tag), now_ms())
            .map_err(e)?;
        tx.commit().map_err(e)
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

    pub fn forget_access(&self, d: &Digest) -> Result<(), StoreError> {
        let k = d.to_string();
        if let Ok(mut a) = self.access.lock() {
            a.remove(&k);
        }
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.remove(&k);
        }
        let tx = self.db()?.begin_write().map_err(e)?;
        tx.open_table(ACCESS)
            .map_err(e)?
            .remove(k.as_str())
            .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Writes changed access times in one transaction.
    pub fn flush_access(&self) -> Result<(), StoreError> {
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
        let tx = self.db()?.begin_write().map_err(e)?;
        {
            let mut t = tx.open_table(ACCESS).map_err(e)?;
            for (k, v) in snapshot {
                t.insert(k.as_str(), v).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    pub fn pin(&self, image: &str, digests: &[Digest]) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write().map_err(e)?;
        {
            let mut t = tx.open_table(PINS).map_err(e)?;
            for d in digests {
                t.insert((image, d.to_string().as_str()), ()).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Removes an image's pins; returns how many there were.
    pub fn unpin(&self, image: &str) -> Result<usize, StoreError> {
        let tx = self.db()?.begin_write().map_err(e)?;
        let n;
        {
            let mut t = tx.open_table(PINS).map_err(e)?;
            let keys: Vec<String> = t
                .range((image, "")..(image, "\u{10ffff}"))
                .map_err(e)?
                .filter_map(|r| r.ok().map(|(k, _)| k.value().1.to_string()))
                .collect();
            n = keys.len();
            for k in keys {
                t.remove((image, k.as_str())).map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(n)
    }

    /// Every pinned digest, with the images pinning it.
    pub fn pins(&self) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let tx = self.db()?.begin_read().map_err(e)?;
        let t = tx.open_table(PINS).map_err(e)?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for r in t.iter().map_err(e)? {
            let (k, _) = r.map_err(e)?;
            let (img, d) = k.value();
            out.entry(d.to_string()).or_default().push(img.to_string());
        }
        Ok(out)
    }

    pub fn put_job(&self, id: &str, json: &[u8]) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write().map_err(e)?;
        tx.open_table(JOBS)
            .map_err(e)?
            .insert(id, json)
            .map_err(e)?;
        tx.commit().map_err(e)
    }

    pub fn jobs(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db()?.begin_read().map_err(e)?;
        let t = tx.open_table(JOBS).map_err(e)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(e)? {
            let (_, v) = r.map_err(e)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }
}

/// The pull-through's tag freshness, kept in `edge_tag_fetched`.
impl TagClock for EdgeStore {
    fn fetched(&self, repo: &RepoName, tag: &Tag) -> Option<u64> {
        self.tag_fetched(repo.as_str(), tag.as_str())
    }
    fn confirmed(&self, repo: &RepoName, tag: &Tag) {
        if let Err(e) = self.set_tag_fetched(repo.as_str(), tag.as_str()) {
            tracing::warn!(%repo, %tag, error = %e, "cannot note when a tag was confirmed");
        }
    }
}
