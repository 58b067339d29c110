//! What a pull-through cache keeps beside the registry's metadata: when
//! upstream last confirmed each tag (the edge's, and the proxy-cache
//! projects'), when each blob was last read (the edge's LRU order), the
//! blobs a prefetch pinned per image, and the prefetch jobs.
//!
//! `CacheBook` is the interface; `RedbMeta` implements it in the same file
//! as the metadata (`redb/cache.rs`), `pg::PgMeta` in the same database
//! (`pg/cache.rs`). It carries no database types and suits
//! an async driver; each call is one transaction.

use async_trait::async_trait;

use super::Result;

/// Whose tag clock: the edge cache's, or the proxy-cache projects' of a
/// registry (kept apart, as they were before this interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagClockOwner {
    Edge,
    Proxy,
}

#[async_trait]
pub trait CacheBook: Send + Sync {
    /// When upstream last confirmed `repo:tag` (unix ms).
    async fn tag_fetched(&self, owner: TagClockOwner, repo: &str, tag: &str)
        -> Result<Option<u64>>;
    async fn set_tag_fetched(
        &self,
        owner: TagClockOwner,
        repo: &str,
        tag: &str,
        at_ms: u64,
    ) -> Result<()>;

    /// Every tag `owner`'s clock holds, as (repo, tag, unix ms), in repo
    /// and tag order (what a copy to another backend reads).
    async fn tag_clocks(&self, owner: TagClockOwner) -> Result<Vec<(String, String, u64)>>;

    /// Every blob's last read (digest, unix ms), in digest order.
    async fn access_times(&self) -> Result<Vec<(String, u64)>>;
    /// Records last reads, all in one transaction.
    async fn put_access_times(&self, times: &[(String, u64)]) -> Result<()>;
    async fn forget_access(&self, digest: &str) -> Result<()>;

    /// Pins `digests` for `image` (kept through eviction).
    async fn pin(&self, image: &str, digests: &[String]) -> Result<()>;
    /// Removes an image's pins; answers how many there were.
    async fn unpin(&self, image: &str) -> Result<usize>;
    /// Every pin, as (image, digest), in that order.
    async fn pins(&self) -> Result<Vec<(String, String)>>;

    /// Stores a prefetch job's JSON under its id (replacing it).
    async fn put_job(&self, id: &str, json: &[u8]) -> Result<()>;
    /// Every stored job's JSON, in id order, as stored (byte for byte).
    async fn jobs(&self) -> Result<Vec<Vec<u8>>>;
}

/// The suite every `CacheBook` passes, given a fresh one.
#[cfg(test)]
pub(crate) async fn suite(book: &dyn CacheBook) {
    use TagClockOwner::{Edge, Proxy};
    // Nothing written yet: nothing found.
    assert_eq!(
        book.tag_fetched(Edge, "a/b", "1").await.expect("read"),
        None
    );
    assert!(book.access_times().await.expect("read").is_empty());
    assert!(book.pins().await.expect("read").is_empty());
    assert!(book.jobs().await.expect("read").is_empty());
    // The two clocks are apart.
    book.set_tag_fetched(Edge, "a/b", "1", 10)
        .await
        .expect("write");
    book.set_tag_fetched(Edge, "a/b", "1", 20)
        .await
        .expect("write");
    assert_eq!(
        book.tag_fetched(Edge, "a/b", "1").await.expect("read"),
        Some(20)
    );
    assert_eq!(
        book.tag_fetched(Proxy, "a/b", "1").await.expect("read"),
        None
    );
    assert_eq!(
        book.tag_fetched(Edge, "a/b", "2").await.expect("read"),
        None
    );
    // Each clock lists its own tags, in order.
    book.set_tag_fetched(Proxy, "a/c", "2", 40)
        .await
        .expect("write");
    book.set_tag_fetched(Proxy, "a/b", "9", 30)
        .await
        .expect("write");
    let s = |v: &str| v.to_string();
    assert_eq!(
        book.tag_clocks(Edge).await.expect("read"),
        [(s("a/b"), s("1"), 20)]
    );
    assert_eq!(
        book.tag_clocks(Proxy).await.expect("read"),
        [(s("a/b"), s("9"), 30), (s("a/c"), s("2"), 40)]
    );
    // Access times replace, and go.
    let times = [("sha256:aa".to_string(), 5), ("sha256:bb".to_string(), 6)];
    book.put_access_times(&times).await.expect("write");
    book.put_access_times(&[("sha256:aa".to_string(), 7)])
        .await
        .expect("write");
    book.forget_access("sha256:bb").await.expect("forget");
    assert_eq!(
        book.access_times().await.expect("read"),
        [("sha256:aa".to_string(), 7)]
    );
    // Pins per image: unpinning one image leaves the other's.
    let d = |s: &str| s.to_string();
    book.pin("x/app:1", &[d("sha256:aa"), d("sha256:bb")])
        .await
        .expect("pin");
    book.pin("x/app:10", &[d("sha256:aa")]).await.expect("pin");
    assert_eq!(book.unpin("x/app:1").await.expect("unpin"), 2);
    assert_eq!(book.unpin("x/app:1").await.expect("unpin"), 0);
    assert_eq!(
        book.pins().await.expect("read"),
        [(d("x/app:10"), d("sha256:aa"))]
    );
    // Jobs replace by id.
    book.put_job("j1", b"{\"v\":1}").await.expect("job");
    book.put_job("j1", b"{\"v\":2}").await.expect("job");
    book.put_job("j2", b"{}").await.expect("job");
    assert_eq!(
        book.jobs().await.expect("read"),
        [b"{\"v\":2}".to_vec(), b"{}".to_vec()]
    );
}
