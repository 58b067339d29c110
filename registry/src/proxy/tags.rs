//! Tag freshness: a tag the cache resolved stands for `freshness` without
//! asking upstream again; past that upstream is asked (one caller per tag),
//! and while upstream is unreachable the cached answer is served up to
//! `stale_limit` longer, marked stale (the HTTP layer adds a Warning).
//!
//! Owns when a tag was last confirmed by upstream (kept where the cache's
//! owner keeps it, a `TagClock`) and the resolution of a tag through the local
//! registry and upstream (`PullThrough::resolve_tag`).

use std::sync::Arc;
use std::time::Duration;

use crate::oci::{ErrorCode, Reference, RepoName, Tag};
use crate::service::{manifest_unknown, Manifest, ServiceError};

use super::pull_through::{unavailable, PullThrough};
use super::upstream::UpstreamError;
use super::{now_ms, TagClock};

/// How long a tag stands, and how long past that it may be served stale.
#[derive(Debug, Clone, Copy)]
pub struct TagPolicy {
    pub freshness: Duration,
    pub stale_limit: Duration,
}

/// When upstream last confirmed each tag.
pub struct TagFreshness {
    clock: Arc<dyn TagClock>,
    policy: TagPolicy,
}

impl TagFreshness {
    pub fn new(clock: Arc<dyn TagClock>, policy: TagPolicy) -> Self {
        Self { clock, policy }
    }

    /// How long ago upstream confirmed the tag.
    async fn age(&self, repo: &RepoName, tag: &Tag) -> Option<Duration> {
        let at = self.clock.fetched(repo, tag).await?;
        Some(Duration::from_millis(now_ms().saturating_sub(at)))
    }

    /// Whether upstream confirmed the tag at `asked` (unix ms) or later.
    async fn confirmed_since(&self, repo: &RepoName, tag: &Tag, asked: u64) -> bool {
        self.clock
            .fetched(repo, tag)
            .await
            .is_some_and(|f| f >= asked)
    }

    /// Upstream just confirmed the tag.
    pub async fn confirmed(&self, repo: &RepoName, tag: &Tag) {
        self.clock.confirmed(repo, tag).await;
    }
}

impl PullThrough {
    /// The manifest a tag names: from the local registry while the tag is
    /// fresh, else as upstream says now (cached on the way), else stale.
    pub(crate) async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Manifest, ServiceError> {
        let by_tag = Reference::Tag(tag.clone());
        let cached = self.local_manifest(repo, &by_tag).await?;
        let policy = self.tags.policy;
        let age = self.tags.age(repo, tag).await;
        if let (Some(m), Some(age)) = (&cached, age) {
            if age < policy.freshness {
                self.metrics.hits.inc();
                return Ok(m.clone());
            }
        }
        let asked = now_ms();
        let _flight = self.flights.join(format!("tag {repo}:{tag}")).await;
        if self.tags.confirmed_since(repo, tag, asked).await {
            // The caller we waited for just looked it up.
            if let Some(m) = self.local_manifest(repo, &by_tag).await? {
                self.metrics.hits.inc();
                return Ok(m);
            }
        }
        match self.upstream.head_manifest(repo, tag.as_str()).await {
            Ok(Some(digest)) => {
                let have = self
                    .local_manifest(repo, &Reference::Digest(digest.clone()))
                    .await?;
                let m = match have {
                    Some(m) => {
                        self.metrics.hits.inc();
                        if cached.as_ref().map(|c| &c.digest) != Some(&digest) {
                            // The tag moved to a manifest this cache holds.
                            self.local
                                .cache_manifest(repo, &digest, &m.media_type, m.bytes.clone(), Some(tag))
                                .await?;
                        }
                        m
                    }
                    None => {
                        self.metrics.misses.inc();
                        let f = self
                            .upstream
                            .get_manifest(repo, &digest.to_string())
                            .await
                            .map_err(|e| unavailable(format!("manifest {repo}:{tag}"), &e))?
                            .ok_or_else(|| manifest_unknown(repo, &by_tag))?;
                        self.cache_manifest(repo, f, Some(tag)).await?
                    }
                };
                self.tags.confirmed(repo, tag).await;
                Ok(m)
            }
            Ok(None) => Err(manifest_unknown(repo, &by_tag)),
            Err(UpstreamError::Refused(s)) => Err(ServiceError::oci(
                ErrorCode::ManifestUnknown,
                format!("upstream refused access to {repo} ({s}); this cache's upstream credentials cannot pull it"),
            )),
            Err(e) => {
                // Upstream unreachable: serve what we have within the staleness limit.
                let limit = policy.freshness + policy.stale_limit;
                if let (Some(m), Some(age)) = (cached, age) {
                    if age < limit {
                        self.metrics.stale_serves.inc();
                        tracing::warn!(%repo, %tag, digest = %m.digest, age_s = age.as_secs(), error = %e, "upstream unreachable; serving a stale tag");
                        return Ok(Manifest { stale: true, ..m });
                    }
                }
                Err(unavailable(format!("manifest {repo}:{tag}"), &e))
            }
        }
    }
}
