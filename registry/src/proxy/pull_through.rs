//! The pull-through namespace: a decorator over a `LocalRegistry` and the
//! client of its upstream, as distribution's proxy is over its own handlers.
//!
//! Every read tries the local registry first, so a hit runs the registry's
//! own code (links, ranges, manifests by tag or digest, referrers). A miss
//! goes upstream and what comes back is recorded in the local registry the
//! way a push would be: manifests with their tags and referrers
//! (`LocalRegistry::cache_manifest`), blobs through a fill (`fill.rs`) that
//! commits with the registry's upload commit. Tags are resolved against
//! upstream once they are no longer fresh (`tags.rs`); what the cache keeps
//! is its `Keeper`'s. Listings are upstream's while it answers and the
//! local registry's, marked stale, while it does not.
//!
//! Nothing here is particular to the edge: one `PullThrough` serves one
//! upstream; the registry holds one per proxy-cache project.

use std::sync::Arc;

use crate::oci::{Digest, ErrorCode, Reference, RepoName, Tag};
use crate::service::{
    blob_unknown, manifest_unknown, name_unknown, BlobRead, ByteRange, LocalRegistry, Manifest,
    Namespace, Referrers, ServiceError, TagPage, Visible,
};
use async_trait::async_trait;
use futures::StreamExt;

use super::fill::{Fill, Fills, Ready};
use super::flight::Flights;
use super::tags::TagFreshness;
use super::upstream::{FetchedManifest, Upstream, UpstreamError};
use super::{Keeper, ProxyMetrics, ReadGuard};

pub struct PullThrough {
    pub local: Arc<LocalRegistry>,
    pub upstream: Arc<Upstream>,
    pub(crate) fills: Arc<Fills>,
    pub(crate) keeper: Arc<dyn Keeper>,
    pub(crate) tags: TagFreshness,
    pub metrics: Arc<ProxyMetrics>,
    /// Upstream metadata lookups in progress, one per key.
    pub(crate) flights: Flights,
}

pub(crate) fn unavailable(what: impl std::fmt::Display, e: &UpstreamError) -> ServiceError {
    ServiceError::Unavailable(format!("{what} is not cached here and {e}"))
}

/// Whether the local registry's answer means "not here" (so upstream may have it).
fn not_here(e: &ServiceError) -> bool {
    matches!(
        e.code(),
        Some(ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown)
    )
}

impl PullThrough {
    /// A pull-through of `upstream` into `local`. `name` tells its fills'
    /// ingests (named by digest, so that a restart resumes them) apart from
    /// those of other pull-throughs into the same local registry: a proxy
    /// project's name, or empty for the edge's only one. `ready` is checked
    /// before each fill writes (see `fill::Ready`).
    pub fn new(
        name: &str,
        local: Arc<LocalRegistry>,
        upstream: Arc<Upstream>,
        keeper: Arc<dyn Keeper>,
        tags: TagFreshness,
        metrics: Arc<ProxyMetrics>,
        ready: Ready,
    ) -> Self {
        let fills = Arc::new(Fills::new(
            name,
            local.clone(),
            upstream.clone(),
            keeper.clone(),
            metrics.clone(),
            ready,
        ));
        Self {
            local,
            upstream,
            fills,
            keeper,
            tags,
            metrics,
            flights: Flights::default(),
        }
    }

    /// Joins the fill for `digest` in `repo`, starting it if none runs.
    pub fn fill(&self, repo: &RepoName, digest: &Digest) -> Arc<Fill> {
        self.fills.join(repo, digest)
    }

    /// The local registry's manifest, or None where it has none.
    pub(crate) async fn local_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Manifest>, ServiceError> {
        match self.local.manifest(repo, reference).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if not_here(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records a manifest upstream sent (tagged `tag`) and returns it.
    pub(crate) async fn cache_manifest(
        &self,
        repo: &RepoName,
        f: FetchedManifest,
        tag: Option<&Tag>,
    ) -> Result<Manifest, ServiceError> {
        self.local
            .cache_manifest(repo, &f.digest, &f.media_type, f.bytes.clone(), tag)
            .await
            .map_err(|e| match e {
                ServiceError::Oci { .. } => ServiceError::Internal(format!(
                    "upstream sent an invalid manifest {repo}@{}: {e}",
                    f.digest
                )),
                other => other,
            })?;
        Ok(Manifest {
            digest: f.digest,
            media_type: f.media_type,
            bytes: f.bytes,
            stale: false,
        })
    }

    /// A manifest by digest: the local registry's, else upstream's (cached).
    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        d: &Digest,
    ) -> Result<Manifest, ServiceError> {
        let reference = Reference::Digest(d.clone());
        if let Some(m) = self.local_manifest(repo, &reference).await? {
            self.metrics.hits.inc();
            return Ok(m);
        }
        let _flight = self.flights.join(format!("manifest {repo}@{d}")).await;
        if let Some(m) = self.local_manifest(repo, &reference).await? {
            // Fetched by the caller we waited for.
            self.metrics.hits.inc();
            return Ok(m);
        }
        self.metrics.misses.inc();
        let f = self
            .upstream
            .get_manifest(repo, &d.to_string())
            .await
            .map_err(|e| unavailable(format!("manifest {repo}@{d}"), &e))?
            .ok_or_else(|| manifest_unknown(repo, &reference))?;
        self.cache_manifest(repo, f, None).await
    }

    /// A blob the local registry holds for another repository may be
    /// served from `repo` once upstream confirms `repo` has it; then it is
    /// linked. Its size when `repo` may serve it; None when the local
    /// registry does not hold it at all.
    async fn link_confirmed(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, ServiceError> {
        if self.local.recorded_blob_size(digest).await?.is_none() {
            return Ok(None);
        }
        // One caller asks, the others find the link.
        let _flight = self.flights.join(format!("link {repo}@{digest}")).await;
        if let Ok(size) = self.local.blob_stat(repo, digest).await {
            return Ok(Some(size));
        }
        match self.upstream.head_blob(repo, digest).await {
            Ok(Some(_)) => Ok(self.local.link_recorded_blob(repo, digest).await?),
            Ok(None) => Err(blob_unknown(repo, digest)),
            Err(e) => Err(unavailable(format!("blob {digest} in {repo}"), &e)),
        }
    }

    /// Whether `repo` may serve `digest` from the local registry and its
    /// bytes are there (a prefetch skips such blobs).
    pub async fn holds(&self, repo: &RepoName, digest: &Digest) -> bool {
        let linked = match self.local.blob_stat(repo, digest).await {
            Ok(_) => true,
            Err(e) if not_here(&e) => {
                matches!(self.link_confirmed(repo, digest).await, Ok(Some(_)))
            }
            Err(_) => false,
        };
        linked && matches!(self.local.stored_blob_size(digest).await, Ok(Some(_)))
    }

    /// The local registry's read of a blob, counted as a hit; None where it
    /// cannot serve it (not linked, or its bytes gone).
    async fn local_read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
        guard: &Arc<ReadGuard>,
    ) -> Result<Option<BlobRead>, ServiceError> {
        let read = match self.local.blob_read(repo, digest, range).await {
            Ok(r) => r,
            Err(e) if not_here(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.metrics.hits.inc();
        self.metrics.served_bytes.inc_by(read.len);
        self.keeper.touch(digest);
        let guard = guard.clone();
        let body = read.body.map(move |c| {
            let _keep = &guard;
            c
        });
        Ok(Some(BlobRead {
            body: body.boxed(),
            ..read
        }))
    }
}

#[async_trait]
impl Namespace for PullThrough {
    async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<u64, ServiceError> {
        match self.local.blob_stat(repo, digest).await {
            Ok(size) => return Ok(size),
            Err(e) if not_here(&e) => {}
            Err(e) => return Err(e),
        }
        if let Some(size) = self.link_confirmed(repo, digest).await? {
            return Ok(size);
        }
        if let Some(t) = self.fills.running_size(digest) {
            return Ok(t);
        }
        // Many clients asking for the same cold blob at once: one HEAD upstream.
        let key = format!("blob {repo}@{digest}");
        let _flight = self.flights.join(key.clone()).await;
        if let Some(t) = self
            .flights
            .recent(&key)
            .or_else(|| self.fills.running_size(digest))
        {
            return Ok(t);
        }
        match self.upstream.head_blob(repo, digest).await {
            Ok(Some(size)) => {
                self.flights.remember(key, size);
                Ok(size)
            }
            Ok(None) => Err(blob_unknown(repo, digest)),
            Err(e) => Err(unavailable(format!("blob {digest} in {repo}"), &e)),
        }
    }

    async fn blob_read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead, ServiceError> {
        let guard = Arc::new(self.keeper.reader(digest));
        if let Some(read) = self.local_read(repo, digest, range, &guard).await? {
            return Ok(read);
        }
        if self.link_confirmed(repo, digest).await?.is_some() {
            if let Some(read) = self.local_read(repo, digest, range, &guard).await? {
                return Ok(read);
            }
            // Recorded without its bytes (evicted under us): fill again.
        }
        let fill = self.fills.join(repo, digest);
        let size = fill
            .size()
            .await
            .map_err(|e| e.into_service(repo, digest))?;
        let (start, end) = match range {
            None => (0, size),
            Some(r) => {
                if r.start >= size {
                    return Err(ServiceError::RangeNotSatisfiable { size });
                }
                (r.start, r.end.map(|e| (e + 1).min(size)).unwrap_or(size))
            }
        };
        self.metrics.served_bytes.inc_by(end - start);
        Ok(fill.read(start, end, size, guard, self.local.clone()))
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Manifest, ServiceError> {
        match reference {
            Reference::Digest(d) => self.manifest_by_digest(repo, d).await,
            Reference::Tag(tag) => self.resolve_tag(repo, tag).await,
        }
    }

    async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<TagPage, ServiceError> {
        match self.upstream.tags(repo).await {
            Ok(Some(mut tags)) => {
                tags.sort();
                tags.retain(|t| last.is_none_or(|l| t.as_str() > l));
                let more = tags.len() > n;
                tags.truncate(n);
                Ok(TagPage {
                    tags,
                    more,
                    stale: false,
                })
            }
            Ok(None) => Err(name_unknown(repo)),
            // Upstream cannot be asked: the tags this cache knows, marked stale.
            Err(_) => match self.local.tags(repo, last, n).await {
                Ok(page) => Ok(TagPage {
                    stale: true,
                    ..page
                }),
                Err(e) if not_here(&e) => Ok(TagPage {
                    stale: true,
                    ..TagPage::default()
                }),
                Err(e) => Err(e),
            },
        }
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Referrers, ServiceError> {
        match self.upstream.referrers(repo, subject).await {
            Ok(manifests) => Ok(Referrers {
                manifests,
                stale: false,
            }),
            // Upstream cannot be asked: the referrers this cache holds, marked stale.
            Err(e) => {
                tracing::debug!(%repo, %subject, error = %e, "referrers from the cache");
                let cached = self.local.referrers(repo, subject).await?;
                Ok(Referrers {
                    stale: true,
                    ..cached
                })
            }
        }
    }

    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool), ServiceError> {
        self.local.catalog(last, n, visible).await
    }
}
