//! Pull-through: a `Namespace` that decorates a `LocalRegistry` with the
//! client of an upstream registry, as distribution's proxy decorates its own
//! handlers. One implementation, used by the edge cache (`berth edge`, one
//! upstream for the whole cache) and by proxy-cache projects of `berth serve`
//! (one upstream per project).
//!
//! - `pull_through.rs`: the decorator; hits run the local registry's code,
//!   misses go upstream and are recorded the way a push would be.
//! - `fill.rs`: one download per blob, streamed to every waiting client while
//!   it arrives, verified before it is committed.
//! - `flight.rs`: one upstream lookup per key for the small requests.
//! - `tags.rs`: tag freshness, stale answers while upstream cannot answer.
//! - `upstream.rs`: the HTTP client (Bearer token flow, Basic, anonymous), a
//!   circuit breaker, typed answers.
//! - `target.rs`: which upstream addresses may be reached at all.
//!
//! What is kept, and for how long, is not decided here: the owner of the
//! cache implements [`Keeper`] (the edge: capacity, LRU and pins) and
//! [`TagClock`] (where the time a tag was last confirmed is kept).

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;

use crate::oci::{Digest, RepoName, Tag};
use crate::service::metrics::Metrics;
use crate::service::Committed;

pub mod fill;
pub mod flight;
mod follow;
mod gather;
pub mod mirror;
pub mod projects;
pub mod pull_through;
pub mod retention;
pub mod tags;
pub mod target;
pub mod upstream;

pub use fill::{Fill, FillError, FillState, Ready};
pub use pull_through::PullThrough;
pub use tags::{TagFreshness, TagPolicy};
pub use upstream::{Upstream, UpstreamError};

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Held while a client reads a blob; what the keeper does with it (keep
/// the blob from eviction) ends when it is dropped.
pub type ReadGuard = Box<dyn Send + Sync>;

/// What the owner of a pull-through keeps: told of every read and fill, it
/// decides what stays (capacity, last access, pins).
#[async_trait]
pub trait Keeper: Send + Sync {
    /// `d` is being read until the guard is dropped.
    fn reader(&self, d: &Digest) -> ReadGuard;
    /// `d` was just used.
    fn touch(&self, d: &Digest);
    /// A fill committed `d`.
    fn stored(&self, d: &Digest, committed: &Committed);
    /// After a fill committed: make room if the cache is over its limits.
    async fn after_fill(&self);
}

/// A keeper that keeps everything: no limit, nothing to count.
pub struct KeepAll;

#[async_trait]
impl Keeper for KeepAll {
    fn reader(&self, _d: &Digest) -> ReadGuard {
        Box::new(())
    }
    fn touch(&self, _d: &Digest) {}
    fn stored(&self, _d: &Digest, _c: &Committed) {}
    async fn after_fill(&self) {}
}

/// When upstream last confirmed each tag (unix ms), kept by the owner.
#[async_trait]
pub trait TagClock: Send + Sync {
    async fn fetched(&self, repo: &RepoName, tag: &Tag) -> Option<u64>;
    /// Upstream confirmed the tag now.
    async fn confirmed(&self, repo: &RepoName, tag: &Tag);
}

/// A `TagClock` in the registry's `CacheBook` (the edge's, or the proxy
/// projects'); a failure to read is a tag never confirmed, a failure to
/// write is logged.
pub struct BookTagClock {
    pub book: Arc<dyn crate::meta::CacheBook>,
    pub owner: crate::meta::TagClockOwner,
}

#[async_trait]
impl TagClock for BookTagClock {
    async fn fetched(&self, repo: &RepoName, tag: &Tag) -> Option<u64> {
        match self
            .book
            .tag_fetched(self.owner, repo.as_str(), tag.as_str())
            .await
        {
            Ok(at) => at,
            Err(e) => {
                tracing::warn!(%repo, %tag, error = %e, "cannot read when a tag was confirmed");
                None
            }
        }
    }
    async fn confirmed(&self, repo: &RepoName, tag: &Tag) {
        let res = self
            .book
            .set_tag_fetched(self.owner, repo.as_str(), tag.as_str(), now_ms())
            .await;
        if let Err(e) = res {
            tracing::warn!(%repo, %tag, error = %e, "cannot note when a tag was confirmed");
        }
    }
}

/// Counters of a pull-through, registered under a prefix (`edge`, `proxy`).
#[derive(Default)]
pub struct ProxyMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub upstream_bytes: Counter,
    pub served_bytes: Counter,
    pub stale_serves: Counter,
    pub fill_errors: Counter,
}

impl ProxyMetrics {
    /// Registers the counters as `<prefix>_hits` and so on.
    pub fn register(self: &Arc<Self>, m: &Metrics, prefix: &str) {
        m.register(|r| {
            let mut add = |name: &str, help: &str, c: &Counter| {
                r.register(format!("{prefix}_{name}"), help, c.clone());
            };
            add("hits", "Requests answered from the cache", &self.hits);
            add("misses", "Requests that went upstream", &self.misses);
            add(
                "upstream_bytes",
                "Bytes received from upstream",
                &self.upstream_bytes,
            );
            add(
                "served_bytes",
                "Blob bytes served to clients",
                &self.served_bytes,
            );
            add(
                "stale_serves",
                "Tags served stale while upstream was unreachable",
                &self.stale_serves,
            );
            add(
                "fill_errors",
                "Upstream transfers that failed or failed verification",
                &self.fill_errors,
            );
        });
    }
}
