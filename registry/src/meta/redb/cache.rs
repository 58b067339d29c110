//! `CacheBook` in the embedded file. The tables keep the names and formats
//! the edge and the proxy projects gave them when they opened them
//! themselves:
//!
//! ```text
//! edge_tag_fetched   (repo, tag)       → unix ms when upstream last confirmed the tag (edge)
//! proxy_tag_fetched  (repo, tag)       → the same, for proxy-cache projects
//! edge_access        digest            → unix ms of the last read (LRU order)
//! edge_pins          (image, digest)   → ()   blobs a prefetch pinned, per image
//! edge_jobs          job id            → JSON Job
//! ```
//!
//! A table is made by its first write; reading one that was never written
//! finds nothing.

use ::redb::{ReadOnlyTable, ReadableTable, TableDefinition, TableError};
use async_trait::async_trait;

use super::{RedbMeta, HIGH};
use crate::meta::{CacheBook, Result, TagClockOwner};

const EDGE_TAG_FETCHED: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("edge_tag_fetched");
const PROXY_TAG_FETCHED: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("proxy_tag_fetched");
const ACCESS: TableDefinition<&str, u64> = TableDefinition::new("edge_access");
const PINS: TableDefinition<(&str, &str), ()> = TableDefinition::new("edge_pins");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("edge_jobs");

fn clock(owner: TagClockOwner) -> TableDefinition<'static, (&'static str, &'static str), u64> {
    match owner {
        TagClockOwner::Edge => EDGE_TAG_FETCHED,
        TagClockOwner::Proxy => PROXY_TAG_FETCHED,
    }
}

/// Opens `t` for reading; `None` when nothing was ever written to it.
fn read<K: ::redb::Key + 'static, V: ::redb::Value + 'static>(
    meta: &RedbMeta,
    t: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>> {
    let tx = meta.db().begin_read()?;
    match tx.open_table(t) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl CacheBook for RedbMeta {
    async fn tag_fetched(
        &self,
        owner: TagClockOwner,
        repo: &str,
        tag: &str,
    ) -> Result<Option<u64>> {
        let Some(t) = read(self, clock(owner))? else {
            return Ok(None);
        };
        Ok(t.get((repo, tag))?.map(|v| v.value()))
    }

    async fn set_tag_fetched(
        &self,
        owner: TagClockOwner,
        repo: &str,
        tag: &str,
        at_ms: u64,
    ) -> Result<()> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.write_elsewhere(move |m| {
            let tx = m.db().begin_write()?;
            tx.open_table(clock(owner))?
                .insert((repo.as_str(), tag.as_str()), at_ms)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn tag_clocks(&self, owner: TagClockOwner) -> Result<Vec<(String, String, u64)>> {
        let Some(t) = read(self, clock(owner))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            let (repo, tag) = k.value();
            out.push((repo.to_string(), tag.to_string(), v.value()));
        }
        Ok(out)
    }

    async fn access_times(&self) -> Result<Vec<(String, u64)>> {
        let Some(t) = read(self, ACCESS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    async fn put_access_times(&self, times: &[(String, u64)]) -> Result<()> {
        let times = times.to_vec();
        self.write_elsewhere(move |m| {
            let tx = m.db().begin_write()?;
            {
                let mut t = tx.open_table(ACCESS)?;
                for (k, v) in times {
                    t.insert(k.as_str(), v)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn forget_access(&self, digest: &str) -> Result<()> {
        let digest = digest.to_string();
        self.write_elsewhere(move |m| {
            let tx = m.db().begin_write()?;
            tx.open_table(ACCESS)?.remove(digest.as_str())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn pin(&self, image: &str, digests: &[String]) -> Result<()> {
        let (image, digests) = (image.to_string(), digests.to_vec());
        self.write_elsewhere(move |m| {
            let tx = m.db().begin_write()?;
            {
                let mut t = tx.open_table(PINS)?;
                for d in &digests {
                    t.insert((image.as_str(), d.as_str()), ())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn unpin(&self, image: &str) -> Result<usize> {
        let image = image.to_string();
        self.write_elsewhere(move |m| {
            let tx = m.db().begin_write()?;
            let n;
            {
                let mut t = tx.open_table(PINS)?;
                let mut keys = Vec::new();
                for r in t.range((image.as_str(), "")..(image.as_str(), HIGH))? {
                    keys.push(r?.0.value().1.to_string());
                }
                n = keys.len();
                for k in keys {
                    t.remove((image.as_str(), k.as_str()))?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn pins(&self) -> Result<Vec<(String, String)>> {
        let Some(t) = read(self, PINS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, _) = r?;
            let (image, digest) = k.value();
            out.push((image.to_string(), digest.to_string()));
        }
        Ok(out)
    }

    async fn put_job(&self, id: &str, json: &[u8]) -> Result<()> {
        let (id, json) = (id.to_string(), json.to_vec());
        self.write_elsewhere(move |m| {
            let tx = m.db().begin_write()?;
            tx.open_table(JOBS)?.insert(id.as_str(), json.as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn jobs(&self) -> Result<Vec<Vec<u8>>> {
        let Some(t) = read(self, JOBS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for r in t.iter()? {
            out.push(r?.1.value().to_vec());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_embedded_file_passes_the_cache_book_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = super::RedbMeta::open(&dir.path().join("berth.redb")).expect("open");
        crate::meta::cache::suite(&meta).await;
    }
}
