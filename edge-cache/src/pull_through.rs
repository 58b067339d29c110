//! The pull-through namespace: the registry's read API answered from the
//! local cache (the same content store and metadata as the registry), with
//! misses filled from upstream.
//!
//! A blob miss starts one *fill* per digest, however many clients ask: a
//! task, independent of any client, streams the blob from upstream into an
//! ingest (hashing as it goes) and publishes how many bytes are on disk.
//! Every client, the first and the late, reads the ingest file up to that
//! mark and follows it; a client that joins after the commit reads the
//! stored blob. Size and digest are verified before the commit; a corrupt or
//! truncated transfer is never committed, and the clients following it get
//! an error mid-body (their connection is cut, so they retry). A broken
//! transfer resumes with a Range request from the last byte written.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_registry::content::{
    read_chunk, BlobRead, ByteRange, ContentError, ContentStore, ReadQuota,
};
use berth_registry::meta::Meta;
use berth_registry::oci::{manifest, Descriptor, Digest, ErrorCode, Reference, RepoName, Tag};
use berth_registry::service::{manifest_unknown, Manifest, Namespace, ServiceError, Visible};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::watch;

use crate::cache_dir::CacheDir;
use crate::flight::Flights;
use crate::metrics::EdgeMetrics;
use crate::store::{now_ms, EdgeStore};
use crate::upstream::{Upstream, UpstreamError};

/// Bytes gathered before a write to the ingest (and a progress update).
const FILL_CHUNK: usize = 128 * 1024;
/// Durable checkpoints of a fill, for resuming after a restart.
const SYNC_EVERY: u64 = 64 * 1024 * 1024;
const FILL_ATTEMPTS: u32 = 4;
/// How long a fill keeps trying while upstream is unreachable (a prefetch
/// outlives a registry restart; clients only start fills upstream just answered).
const UNREACHABLE_BUDGET: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct FillState {
    /// Bytes on disk in the ingest file.
    pub written: u64,
    /// Size of the blob, once upstream said.
    pub total: Option<u64>,
    /// Some(Ok) when committed; Some(Err) when the fill failed.
    pub outcome: Option<Result<(), String>>,
}

pub struct Fill {
    pub digest: Digest,
    pub state: watch::Sender<FillState>,
    data: PathBuf,
}

pub struct EdgeSettings {
    pub tag_freshness: Duration,
    pub stale_limit: Duration,
    pub capacity: u64,
}

pub struct PullThrough {
    pub meta: Meta,
    pub content: ContentStore,
    pub upstream: Arc<Upstream>,
    pub store: Arc<EdgeStore>,
    pub metrics: Arc<EdgeMetrics>,
    pub settings: EdgeSettings,
    fills: Mutex<HashMap<Digest, Arc<Fill>>>,
    /// Readers per digest: a blob being read is never evicted.
    readers: Arc<Mutex<HashMap<Digest, usize>>>,
    /// Bytes cached, kept in step with the metadata.
    used: Mutex<u64>,
    /// Upstream metadata lookups in progress, one per key.
    flights: Flights,
    pub(crate) cache_dir: CacheDir,
}

fn unavailable(what: impl std::fmt::Display, e: &UpstreamError) -> ServiceError {
    ServiceError::Unavailable(format!("{what} is not cached here and {e}"))
}

struct ReaderGuard {
    digest: Digest,
    readers: Arc<Mutex<HashMap<Digest, usize>>>,
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

impl PullThrough {
    pub fn new(
        meta: Meta,
        content: ContentStore,
        upstream: Arc<Upstream>,
        store: Arc<EdgeStore>,
        metrics: Arc<EdgeMetrics>,
        settings: EdgeSettings,
        cache_dir: CacheDir,
    ) -> Result<Self, ServiceError> {
        let used = meta.all_blobs()?.iter().map(|(_, s)| *s).sum();
        Ok(Self {
            meta,
            content,
            upstream,
            store,
            metrics,
            settings,
            fills: Mutex::new(HashMap::new()),
            readers: Arc::new(Mutex::new(HashMap::new())),
            used: Mutex::new(used),
            flights: Flights::default(),
            cache_dir,
        })
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.lock().map(|u| *u).unwrap_or(0)
    }

    /// Recounts the bytes cached from the metadata (after it was recreated).
    pub(crate) fn reset_used(&self) {
        let used = self
            .meta
            .all_blobs()
            .map(|b| b.iter().map(|(_, s)| *s).sum())
            .unwrap_or(0);
        if let Ok(mut u) = self.used.lock() {
            *u = used;
        }
    }

    fn guard(&self, d: &Digest) -> ReaderGuard {
        if let Ok(mut r) = self.readers.lock() {
            *r.entry(d.clone()).or_insert(0) += 1;
        }
        ReaderGuard {
            digest: d.clone(),
            readers: self.readers.clone(),
        }
    }

    /// The manifest for `reference`, from cache or upstream, cached on the way.
    async fn resolve_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Manifest, ServiceError> {
        match reference {
            Reference::Digest(d) => {
                if let Some(m) = self.meta.get_manifest(repo, d)? {
                    self.metrics.hits.inc();
                    return Ok(to_manifest(m, false));
                }
                let _flight = self.flights.join(format!("manifest {repo}@{d}")).await;
                if let Some(m) = self.meta.get_manifest(repo, d)? {
                    // Fetched by the caller we waited for.
                    self.metrics.hits.inc();
                    return Ok(to_manifest(m, false));
                }
                self.metrics.misses.inc();
                let fetched = self
                    .upstream
                    .get_manifest(repo, &d.to_string())
                    .await
                    .map_err(|e| unavailable(format!("manifest {repo}@{d}"), &e))?;
                let f = fetched.ok_or_else(|| manifest_unknown(repo, reference))?;
                self.cache_manifest(repo, &f.digest, &f.media_type, f.bytes.clone(), None)
                    .await?;
                Ok(Manifest {
                    digest: f.digest,
                    media_type: f.media_type,
                    bytes: f.bytes,
                    stale: false,
                })
            }
            Reference::Tag(tag) => self.resolve_tag(repo, tag).await,
        }
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Manifest, ServiceError> {
        let cached = self.meta.resolve_tag(repo, tag)?;
        let fetched_at = self.store.tag_fetched(repo.as_str(), tag.as_str());
        let age = fetched_at.map(|f| Duration::from_millis(now_ms().saturating_sub(f)));
        if let (Some(d), Some(age)) = (&cached, age) {
            if age < self.settings.tag_freshness {
                if let Some(m) = self.meta.get_manifest(repo, d)? {
                    self.metrics.hits.inc();
                    return Ok(to_manifest(m, false));
                }
            }
        }
        let asked = now_ms();
        let _flight = self.flights.join(format!("tag {repo}:{tag}")).await;
        if self
            .store
            .tag_fetched(repo.as_str(), tag.as_str())
            .is_some_and(|f| f >= asked)
        {
            // The caller we waited for just looked it up.
            if let Some(d) = self.meta.resolve_tag(repo, tag)? {
                if let Some(m) = self.meta.get_manifest(repo, &d)? {
                    self.metrics.hits.inc();
                    return Ok(to_manifest(m, false));
                }
            }
        }
        match self.upstream.head_manifest(repo, tag.as_str()).await {
            Ok(Some(digest)) => {
                let have = self.meta.get_manifest(repo, &digest)?;
                let m = match have {
                    Some(m) => {
                        self.metrics.hits.inc();
                        if cached.as_ref() != Some(&digest) {
                            let summary = self.meta.manifest_summary(&digest)?;
                            if let Some(s) = summary {
                                let (meta, r, d, b, t) = (self.meta.clone(), repo.clone(), digest.clone(), m.bytes.clone(), tag.clone());
                                blocking(move || meta.cache_manifest(&r, &d, &b, &s, Some(&t))).await?;
                            }
                        }
                        to_manifest(m, false)
                    }
                    None => {
                        self.metrics.misses.inc();
                        let f = self
                            .upstream
                            .get_manifest(repo, &digest.to_string())
                            .await
                            .map_err(|e| unavailable(format!("manifest {repo}:{tag}"), &e))?
                            .ok_or_else(|| manifest_unknown(repo, &Reference::Tag(tag.clone())))?;
                        self.cache_manifest(repo, &f.digest, &f.media_type, f.bytes.clone(), Some(tag)).await?;
                        Manifest {
                            digest: f.digest,
                            media_type: f.media_type,
                            bytes: f.bytes,
                            stale: false,
                        }
                    }
                };
                let _ = self.store.set_tag_fetched(repo.as_str(), tag.as_str());
                Ok(m)
            }
            Ok(None) => Err(manifest_unknown(repo, &Reference::Tag(tag.clone()))),
            Err(UpstreamError::Refused(s)) => Err(ServiceError::oci(
                ErrorCode::ManifestUnknown,
                format!("upstream refused access to {repo} ({s}); the edge's upstream credentials cannot pull it"),
            )),
            Err(e) => {
                // Upstream unreachable: serve what we have within the staleness limit.
                let limit = self.settings.tag_freshness + self.settings.stale_limit;
                if let (Some(d), Some(age)) = (cached, age) {
                    if age < limit {
                        if let Some(m) = self.meta.get_manifest(repo, &d)? {
                            self.metrics.stale_serves.inc();
                            tracing::warn!(%repo, %tag, digest = %d, age_s = age.as_secs(), error = %e, "upstream unreachable; serving a stale tag");
                            return Ok(to_manifest(m, true));
                        }
                    }
                }
                Err(unavailable(format!("manifest {repo}:{tag}"), &e))
            }
        }
    }

    async fn cache_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        media_type: &str,
        bytes: Bytes,
        tag: Option<&Tag>,
    ) -> Result<(), ServiceError> {
        let summary = manifest::decode(media_type, &bytes).map_err(|e| {
            ServiceError::Internal(format!(
                "upstream sent an invalid manifest {repo}@{digest}: {e}"
            ))
        })?;
        let (meta, r, d, t) = (
            self.meta.clone(),
            repo.clone(),
            digest.clone(),
            tag.cloned(),
        );
        blocking(move || meta.cache_manifest(&r, &d, &bytes, &summary, t.as_ref())).await?;
        if let Some(t) = tag {
            let _ = self.store.set_tag_fetched(repo.as_str(), t.as_str());
        }
        Ok(())
    }

    /// Joins the fill for `digest`, starting it if none runs.
    pub fn fill(self: &Arc<Self>, repo: &RepoName, digest: &Digest) -> Arc<Fill> {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = fills.get(digest) {
            return f.clone();
        }
        let id = format!("fill-{}-{}", digest.algorithm().as_str(), digest.hex());
        let (tx, _) = watch::channel(FillState::default());
        let fill = Arc::new(Fill {
            digest: digest.clone(),
            state: tx,
            data: self.content.ingest_dir().join(&id).join("data"),
        });
        fills.insert(digest.clone(), fill.clone());
        self.metrics.misses.inc();
        let this = self.clone();
        let (repo, f2) = (repo.clone(), fill.clone());
        tokio::spawn(async move {
            let res = this.run_fill(&repo, &f2, &id).await;
            if let Err(e) = &res {
                this.metrics.fill_errors.inc();
                tracing::warn!(%repo, digest = %f2.digest, error = %e, "fill failed");
            }
            f2.state.send_modify(|s| s.outcome = Some(res.clone()));
            if let Ok(mut fills) = this.fills.lock() {
                fills.remove(&f2.digest);
            }
            if res.is_ok() {
                this.evict_if_needed().await;
            }
        });
        fill
    }

    async fn run_fill(
        self: &Arc<Self>,
        repo: &RepoName,
        fill: &Fill,
        id: &str,
    ) -> Result<(), String> {
        let digest = &fill.digest;
        // Whatever the fill writes must land where the edge will find it again.
        self.ensure_cache_dir_async().await?;
        let mut ingest = match self.content.resume_ingest(id).await {
            Ok(i) => i,
            Err(ContentError::IngestNotFound(_)) => self
                .content
                .begin_ingest(id, repo.as_str(), digest.algorithm())
                .await
                .map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        fill.state.send_modify(|s| s.written = ingest.offset());
        let mut total: Option<u64> = None;
        let mut attempt = 0;
        let mut last_sync = ingest.offset();
        let started = std::time::Instant::now();
        loop {
            attempt += 1;
            let from = ingest.offset();
            let res = match self.upstream.get_blob(repo, digest, from).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let _ = self.content.abort_ingest(id).await;
                    return Err(format!("upstream has no blob {digest} in {repo}"));
                }
                Err(UpstreamError::Unreachable(why)) if started.elapsed() < UNREACHABLE_BUDGET => {
                    // Past the circuit breaker's window, so the next try really connects.
                    tracing::info!(%digest, error = %why, "upstream unreachable during a fill; trying again");
                    tokio::time::sleep(crate::upstream::DOWN_FOR + Duration::from_millis(200))
                        .await;
                    attempt -= 1;
                    continue;
                }
                Err(e) if attempt < FILL_ATTEMPTS && !matches!(e, UpstreamError::Refused(_)) => {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            let partial = res.status() == reqwest::StatusCode::PARTIAL_CONTENT;
            let len = res.content_length();
            let mut skip = if partial { 0 } else { from };
            let t = if partial {
                res.headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit('/').next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .or(len.map(|l| l + from))
            } else {
                len
            };
            // No length on the GET (a body delimited by the connection's end):
            // ask HEAD, so clients can be answered while the blob streams in and
            // a short body is told from a complete one.
            let t = match (t, total) {
                (None, None) => self.upstream.head_blob(repo, digest).await.ok().flatten(),
                (t, _) => t,
            };
            if let Some(t) = t {
                total = Some(t);
                fill.state.send_modify(|s| s.total = Some(t));
            }
            let mut body = res.bytes_stream();
            let mut buf = BytesMut::new();
            let mut broke: Option<String> = None;
            while let Some(chunk) = body.next().await {
                let mut chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        broke = Some(e.to_string());
                        break;
                    }
                };
                self.upstream
                    .counters
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                self.metrics.upstream_bytes.inc_by(chunk.len() as u64);
                if skip > 0 {
                    let n = (skip as usize).min(chunk.len());
                    chunk = chunk.slice(n..);
                    skip -= n as u64;
                }
                buf.extend_from_slice(&chunk);
                if buf.len() >= FILL_CHUNK {
                    ingest
                        .write(buf.split().freeze())
                        .await
                        .map_err(|e| e.to_string())?;
                    fill.state.send_modify(|s| s.written = ingest.offset());
                    if ingest.offset() - last_sync >= SYNC_EVERY {
                        ingest.sync().await.map_err(|e| e.to_string())?;
                        last_sync = ingest.offset();
                    }
                }
                if total.is_some_and(|t| ingest.offset() + buf.len() as u64 > t) {
                    broke = Some("upstream sent more bytes than announced".into());
                    break;
                }
            }
            if !buf.is_empty() {
                ingest
                    .write(buf.freeze())
                    .await
                    .map_err(|e| e.to_string())?;
                fill.state.send_modify(|s| s.written = ingest.offset());
            }
            let complete = total.is_some_and(|t| ingest.offset() == t);
            if complete || (broke.is_none() && total.is_none()) {
                break;
            }
            let why = broke.unwrap_or_else(|| "upstream closed the connection early".into());
            if attempt >= FILL_ATTEMPTS {
                let _ = ingest.sync().await;
                return Err(format!(
                    "transfer of {digest} broke off at byte {}: {why}",
                    ingest.offset()
                ));
            }
            tracing::info!(%digest, offset = ingest.offset(), error = %why, "upstream transfer broke off; resuming with a Range request");
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        let done = match ingest.finish(digest, total).await {
            Ok(d) => d,
            Err(e) => {
                // Corrupt or short: nothing of it stays.
                let _ = self.content.abort_ingest(id).await;
                return Err(format!(
                    "upstream data for {digest} failed verification: {e}"
                ));
            }
        };
        let size = done.size;
        self.content.place(done).await.map_err(|e| e.to_string())?;
        // Already recorded (cached for another repository, or metadata whose
        // bytes went missing): linking it again adds no bytes to the cache.
        let known = self.meta.blob_size(digest).ok().flatten().is_some();
        let (meta, r, d) = (self.meta.clone(), repo.clone(), digest.clone());
        let recorded = blocking(move || meta.record_and_link(&r, &d, size)).await;
        // Its bytes are placed: what is left of the ingest goes either way
        // (a fill that failed here starts over, and must find no leftovers).
        let _ = self.content.abort_ingest(id).await;
        recorded.map_err(|e| e.to_string())?;
        if !known {
            if let Ok(mut u) = self.used.lock() {
                *u += size;
            }
        }
        self.store.touch(digest);
        Ok(())
    }

    /// Evicts least-recently-used blobs that are neither pinned nor being read,
    /// until the cache fits its capacity.
    pub async fn evict_if_needed(&self) {
        if self.used_bytes() <= self.settings.capacity {
            return;
        }
        let pins = self.store.pins().unwrap_or_default();
        let mut blobs = match self.meta.all_blobs() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot list cached blobs for eviction");
                return;
            }
        };
        blobs.sort_by_key(|(d, _)| self.store.last_access(d));
        for (d, size) in blobs {
            if self.used_bytes() <= self.settings.capacity {
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
        if self.used_bytes() > self.settings.capacity {
            tracing::warn!(
                used = self.used_bytes(),
                capacity = self.settings.capacity,
                "cache over capacity: everything left is pinned or being read"
            );
        }
    }

    /// Removes a cached blob (metadata first, then bytes). Readers that already
    /// opened it keep reading: the file's data lives until they close it.
    pub async fn drop_blob(&self, d: &Digest) -> bool {
        let Ok(Some(size)) = self.meta.blob_size(d) else {
            return false;
        };
        let (meta, dd) = (self.meta.clone(), d.clone());
        if blocking(move || meta.forget_blob(&dd)).await.is_err() {
            return false;
        }
        let _ = self.content.delete(d).await;
        let _ = self.store.forget_access(d);
        if let Ok(mut u) = self.used.lock() {
            *u = u.saturating_sub(size);
        }
        true
    }

    /// Whether `repo` may serve `digest` from the cache: it was fetched for
    /// `repo`, or upstream confirms `repo` has it (then it is linked).
    pub(crate) async fn linked_or_confirm(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, ServiceError> {
        if let Some(size) = self.meta.linked_blob(repo, digest)? {
            return Ok(Some(size));
        }
        if let Some(size) = self.meta.blob_size(digest)? {
            // Cached for another repository: only upstream may say this one
            // has it too; one caller asks, the others find the link.
            let _flight = self.flights.join(format!("link {repo}@{digest}")).await;
            if let Some(size) = self.meta.linked_blob(repo, digest)? {
                return Ok(Some(size));
            }
            return match self.upstream.head_blob(repo, digest).await {
                Ok(Some(_)) => {
                    let (meta, r, d) = (self.meta.clone(), repo.clone(), digest.clone());
                    blocking(move || meta.record_and_link(&r, &d, size)).await?;
                    Ok(Some(size))
                }
                Ok(None) => Err(berth_registry::service::blob_unknown(repo, digest)),
                Err(e) => Err(unavailable(format!("blob {digest} in {repo}"), &e)),
            };
        }
        Ok(None)
    }

    /// Waits until the fill knows the blob's size (or failed).
    async fn fill_size(fill: &Fill) -> Result<u64, ServiceError> {
        let mut rx = fill.state.subscribe();
        loop {
            {
                let s = rx.borrow_and_update();
                if let Some(t) = s.total {
                    return Ok(t);
                }
                match &s.outcome {
                    Some(Err(e)) => return Err(ServiceError::Unavailable(e.clone())),
                    // Committed without ever learning the size upfront.
                    Some(Ok(())) => return Ok(s.written),
                    None => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(ServiceError::Unavailable("fill ended".into()));
            }
        }
    }
}

fn to_manifest(m: berth_registry::meta::StoredManifest, stale: bool) -> Manifest {
    Manifest {
        digest: m.digest,
        media_type: m.media_type,
        bytes: m.bytes,
        stale,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, berth_registry::meta::MetaError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(Into::into)
}

/// Streams `[start, end)` of a blob being filled, following the fill.
fn follow(
    fill: Arc<Fill>,
    start: u64,
    end: u64,
    guard: ReaderGuard,
    content: ContentStore,
) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
    struct St {
        fill: Arc<Fill>,
        rx: watch::Receiver<FillState>,
        file: Option<std::fs::File>,
        pos: u64,
        end: u64,
        _guard: ReaderGuard,
        content: ContentStore,
        from_store: Option<futures::stream::BoxStream<'static, std::io::Result<Bytes>>>,
        quota: ReadQuota,
    }
    let rx = fill.state.subscribe();
    let st = St {
        fill,
        rx,
        file: None,
        pos: start,
        end,
        _guard: guard,
        content,
        from_store: None,
        quota: ReadQuota::default(),
    };
    futures::stream::try_unfold(st, |mut st| async move {
        if st.pos >= st.end {
            return Ok(None);
        }
        if let Some(s) = st.from_store.as_mut() {
            return match s.next().await {
                Some(Ok(b)) => {
                    st.pos += b.len() as u64;
                    Ok(Some((b, st)))
                }
                Some(Err(e)) => Err(e),
                None => Ok(None),
            };
        }
        // Wait for bytes past our position, or the end of the fill.
        let available = loop {
            let (written, outcome) = {
                let s = st.rx.borrow_and_update();
                (s.written, s.outcome.clone())
            };
            match outcome {
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "upstream transfer failed: {e}"
                    )));
                }
                Some(Ok(())) if st.file.is_none() => {
                    // Committed before we opened the ingest: read the stored blob.
                    let r = st
                        .content
                        .read(
                            &st.fill.digest,
                            Some(ByteRange {
                                start: st.pos,
                                end: Some(st.end - 1),
                            }),
                        )
                        .await
                        .map_err(std::io::Error::other)?;
                    st.from_store = Some(r.body);
                    return Ok(Some((Bytes::new(), st)));
                }
                _ => {}
            }
            // The last byte of a response waits for the verified commit: a
            // client must never receive a complete body that then fails
            // verification (it would look like a good transfer).
            let servable = match outcome {
                Some(Ok(())) => written,
                _ => written.min(st.end - 1),
            };
            if servable > st.pos {
                break servable;
            }
            if st.rx.changed().await.is_err() {
                return Err(std::io::Error::other("fill ended unexpectedly"));
            }
        };
        if st.file.is_none() {
            match std::fs::File::open(&st.fill.data) {
                Ok(f) => st.file = Some(f),
                Err(_) => {
                    // Renamed into the store between our checks: wait for the outcome.
                    let _ = st.rx.changed().await;
                    return Ok(Some((Bytes::new(), st)));
                }
            }
        }
        let want = available.min(st.end) - st.pos;
        let pos = st.pos;
        let file = match st.file.take() {
            Some(f) => f,
            None => return Err(std::io::Error::other("ingest file vanished")),
        };
        let (file, chunk) = read_chunk(file, pos, want, &st.quota).await?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "ingest file shorter than the bytes it reported written",
            ));
        }
        st.file = Some(file);
        st.pos += chunk.len() as u64;
        Ok(Some((chunk, st)))
    })
    .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())))
    .boxed()
}

/// The pull-through namespace as the router sees it.
pub struct EdgeNamespace(pub Arc<PullThrough>);

#[async_trait]
impl Namespace for EdgeNamespace {
    async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<u64, ServiceError> {
        let pt = &self.0;
        if let Some(size) = pt.linked_or_confirm(repo, digest).await? {
            return Ok(size);
        }
        if let Some(m) = pt.meta.get_manifest(repo, digest)? {
            return Ok(m.bytes.len() as u64);
        }
        let running_size = || {
            let running = pt.fills.lock().ok().and_then(|f| f.get(digest).cloned());
            running.and_then(|f| f.state.borrow().total)
        };
        if let Some(t) = running_size() {
            return Ok(t);
        }
        // Many clients asking for the same cold blob at once: one HEAD upstream.
        let key = format!("blob {repo}@{digest}");
        let _flight = pt.flights.join(key.clone()).await;
        if let Some(t) = pt.flights.recent(&key).or_else(running_size) {
            return Ok(t);
        }
        match pt.upstream.head_blob(repo, digest).await {
            Ok(Some(size)) => {
                pt.flights.remember(key, size);
                Ok(size)
            }
            Ok(None) => Err(berth_registry::service::blob_unknown(repo, digest)),
            Err(e) => Err(unavailable(format!("blob {digest} in {repo}"), &e)),
        }
    }

    async fn blob_read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead, ServiceError> {
        let pt = &self.0;
        let guard = pt.guard(digest);
        if let Some(size) = pt.linked_or_confirm(repo, digest).await? {
            if let Some(r) = range {
                if r.start >= size {
                    return Err(ServiceError::RangeNotSatisfiable { size });
                }
            }
            match pt.content.read(digest, range).await {
                Ok(read) => {
                    pt.metrics.hits.inc();
                    pt.metrics.served_bytes.inc_by(read.len);
                    pt.store.touch(digest);
                    let body = read.body.map(move |c| {
                        let _keep = &guard;
                        c
                    });
                    return Ok(BlobRead {
                        body: body.boxed(),
                        ..read
                    });
                }
                Err(ContentError::NotFound(_)) => {
                    // Metadata without bytes (evicted under us): fill again.
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(m) = pt.meta.get_manifest(repo, digest)? {
            let b = m.bytes;
            let size = b.len() as u64;
            return Ok(BlobRead {
                size,
                start: 0,
                len: size,
                body: futures::stream::once(async move { Ok(b) }).boxed(),
            });
        }
        let fill = pt.fill(repo, digest);
        let size = PullThrough::fill_size(&fill).await.map_err(|e| match e {
            ServiceError::Unavailable(m) if m.contains("has no blob") => {
                berth_registry::service::blob_unknown(repo, digest)
            }
            other => other,
        })?;
        let (start, end) = match range {
            None => (0, size),
            Some(r) => {
                if r.start >= size {
                    return Err(ServiceError::RangeNotSatisfiable { size });
                }
                (r.start, r.end.map(|e| (e + 1).min(size)).unwrap_or(size))
            }
        };
        pt.metrics.served_bytes.inc_by(end - start);
        Ok(BlobRead {
            size,
            start,
            len: end - start,
            body: follow(fill, start, end, guard, pt.content.clone()),
        })
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Manifest, ServiceError> {
        self.0.resolve_manifest(repo, reference).await
    }

    async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool), ServiceError> {
        match self
            .0
            .upstream
            .get_json(repo, &format!("/v2/{repo}/tags/list"))
            .await
        {
            Ok(Some(v)) => {
                let mut tags: Vec<String> = v
                    .get("tags")
                    .and_then(|t| t.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                tags.sort();
                let tags: Vec<String> = tags
                    .into_iter()
                    .filter(|t| last.is_none_or(|l| t.as_str() > l))
                    .collect();
                let more = tags.len() > n;
                Ok((tags.into_iter().take(n).collect(), more))
            }
            Ok(None) => Err(berth_registry::service::name_unknown(repo)),
            Err(_) => Ok(self.0.meta.tags(repo, last, n)?),
        }
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, ServiceError> {
        match self
            .0
            .upstream
            .get_json(repo, &format!("/v2/{repo}/referrers/{subject}"))
            .await
        {
            Ok(Some(v)) => Ok(v
                .get("manifests")
                .cloned()
                .and_then(|m| serde_json::from_value(m).ok())
                .unwrap_or_default()),
            Ok(None) => Ok(vec![]),
            Err(_) => Ok(self.0.meta.referrers(repo, subject)?),
        }
    }

    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool), ServiceError> {
        Ok(self.0.meta.catalog(last, n, visible)?)
    }
}
