//! Fills: a blob missing from the local registry, fetched from upstream once
//! however many clients ask, and streamed to all of them while it arrives.
//!
//! A fill is a task, independent of any client, that streams the blob from
//! upstream into an ingest of the local registry (hashing as it goes) and
//! publishes how many bytes are on disk. Every client, the first and the
//! late, reads the ingest up to that mark and follows it (`follow`); a client
//! that joins after the commit reads the stored blob. Size and digest are
//! verified before the commit; a corrupt or truncated transfer is never
//! committed, and the clients following it get an error mid-body (their
//! connection is cut, so they retry). A broken transfer resumes with a Range
//! request from the last byte written.
//!
//! The commit is the registry's own (`LocalRegistry::commit_verified`): the
//! bytes are placed and recorded in one metadata transaction, so a crash
//! never leaves a blob that nothing counts. Owns the fills in flight and
//! nothing else: what is kept, and for how long, is the `Keeper`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::oci::{Digest, RepoName};
use crate::service::{
    blob_unknown, BlobRead, ByteRange, Ingest, IngestData, LocalRegistry, Namespace, ServiceError,
};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;

use super::upstream::{BlobBody, Extent, Upstream, UpstreamError};
use super::{Keeper, ProxyMetrics, ReadGuard};

/// Bytes gathered before a write to the ingest (and a progress update).
const FILL_CHUNK: usize = 128 * 1024;
/// Durable checkpoints of a fill, for resuming after a restart.
const SYNC_EVERY: u64 = 64 * 1024 * 1024;
const FILL_ATTEMPTS: u32 = 4;
/// How long a fill keeps trying while upstream is unreachable (a prefetch
/// outlives a registry restart; clients only start fills upstream just answered).
const UNREACHABLE_BUDGET: Duration = Duration::from_secs(30);

/// Why a fill failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FillError {
    #[error("upstream has no blob {digest} in {repo}")]
    NotUpstream { repo: RepoName, digest: Digest },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("transfer of {digest} broke off at byte {offset}: {why}")]
    BrokeOff {
        digest: Digest,
        offset: u64,
        why: String,
    },
    #[error("upstream data for {digest} failed verification: {why}")]
    Corrupt { digest: Digest, why: String },
    /// The local registry could not take the blob (or the cache cannot work).
    #[error("{0}")]
    Local(String),
}

impl FillError {
    /// The answer for a client of `repo` that wanted the blob.
    pub fn into_service(self, repo: &RepoName, digest: &Digest) -> ServiceError {
        match self {
            FillError::NotUpstream { .. } => blob_unknown(repo, digest),
            other => ServiceError::Unavailable(other.to_string()),
        }
    }
}

fn local(e: impl std::fmt::Display) -> FillError {
    FillError::Local(e.to_string())
}

#[derive(Debug, Clone, Default)]
pub struct FillState {
    /// Bytes on disk in the ingest.
    pub written: u64,
    /// Size of the blob, once upstream said.
    pub total: Option<u64>,
    /// Some(Ok) when committed; Some(Err) when the fill failed.
    pub outcome: Option<Result<(), FillError>>,
}

pub struct Fill {
    pub digest: Digest,
    /// The repository it is fetched from and committed to.
    repo: RepoName,
    /// The ingest it writes: one per digest, so a restart resumes it.
    id: String,
    pub state: watch::Sender<FillState>,
}

/// Checked before a fill writes anything; the error says why the cache
/// cannot work (the edge recreates a removed cache directory here).
pub type Ready = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The fills in flight.
pub struct Fills {
    /// Starts the name of each fill's ingest (see `PullThrough::new`).
    ingest_prefix: String,
    local: Arc<LocalRegistry>,
    upstream: Arc<Upstream>,
    keeper: Arc<dyn Keeper>,
    metrics: Arc<ProxyMetrics>,
    ready: Ready,
    running: Mutex<HashMap<Digest, Arc<Fill>>>,
}

/// What every fill's ingest id starts with. Fixed per cache, so that a fill
/// cut off by a restart is resumed, unless ingests live in a bucket other
/// processes share: they fill the same blobs, and a fixed id would have two
/// of them write into one upload. Those get a prefix of their own (a fill
/// cut off then is left to the upload expiry sweep).
fn ingest_prefix(name: &str, shared: bool) -> String {
    let name = match name {
        "" => "fill-".to_string(),
        name => format!("fill-{name}-"),
    };
    match shared {
        false => name,
        true => format!("{name}{}-", uuid::Uuid::new_v4().simple()),
    }
}

impl Fills {
    pub fn new(
        name: &str,
        local: Arc<LocalRegistry>,
        upstream: Arc<Upstream>,
        keeper: Arc<dyn Keeper>,
        metrics: Arc<ProxyMetrics>,
        ready: Ready,
    ) -> Self {
        let ingest_prefix = ingest_prefix(name, local.uploads_shared());
        Self {
            ingest_prefix,
            local,
            upstream,
            keeper,
            metrics,
            ready,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Joins the fill for `digest`, starting it (from `repo`) if none runs.
    pub fn join(self: &Arc<Self>, repo: &RepoName, digest: &Digest) -> Arc<Fill> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = running.get(digest) {
            return f.clone();
        }
        let (tx, _) = watch::channel(FillState::default());
        let fill = Arc::new(Fill {
            digest: digest.clone(),
            repo: repo.clone(),
            id: format!(
                "{}{}-{}",
                self.ingest_prefix,
                digest.algorithm().as_str(),
                digest.hex()
            ),
            state: tx,
        });
        running.insert(digest.clone(), fill.clone());
        self.metrics.misses.inc();
        let (this, f) = (self.clone(), fill.clone());
        tokio::spawn(async move {
            let res = this.run(&f).await;
            if let Err(e) = &res {
                this.metrics.fill_errors.inc();
                tracing::warn!(repo = %f.repo, digest = %f.digest, error = %e, "fill failed");
            }
            f.state.send_modify(|s| s.outcome = Some(res.clone()));
            if let Ok(mut running) = this.running.lock() {
                running.remove(&f.digest);
            }
            if res.is_ok() {
                this.keeper.after_fill().await;
            }
        });
        fill
    }

    /// The size of the blob a running fill has learned from upstream.
    pub fn running_size(&self, digest: &Digest) -> Option<u64> {
        let running = self.running.lock().ok()?.get(digest).cloned();
        running.and_then(|f| f.state.borrow().total)
    }

    async fn run(&self, fill: &Fill) -> Result<(), FillError> {
        let (repo, digest) = (&fill.repo, &fill.digest);
        // Whatever the fill writes must land where the cache will find it again.
        let ready = self.ready.clone();
        tokio::task::spawn_blocking(move || ready())
            .await
            .map_err(local)?
            .map_err(FillError::Local)?;
        let mut ingest = self
            .local
            .open_ingest(&fill.id, repo, digest.algorithm())
            .await
            .map_err(local)?;
        fill.state.send_modify(|s| s.written = ingest.offset());
        let total = match self.download(fill, &mut ingest).await {
            Ok(t) => t,
            Err(e) => {
                if matches!(e, FillError::NotUpstream { .. }) {
                    let _ = self.local.discard_ingest(&fill.id).await;
                }
                return Err(e);
            }
        };
        let done = match ingest.finish(digest, total).await {
            Ok(d) => d,
            Err(e) => {
                // Corrupt or short: nothing of it stays.
                let _ = self.local.discard_ingest(&fill.id).await;
                return Err(FillError::Corrupt {
                    digest: digest.clone(),
                    why: e.to_string(),
                });
            }
        };
        match self.local.commit_verified(repo, done).await {
            Ok(committed) => {
                self.keeper.stored(digest, &committed);
                Ok(())
            }
            Err(e) => {
                // A fill that failed here starts over, and must find no leftovers.
                let _ = self.local.discard_ingest(&fill.id).await;
                Err(local(e))
            }
        }
    }

    /// Streams the blob from upstream into `ingest`, resuming with a Range
    /// request where a transfer breaks off. Returns its size if upstream said.
    async fn download(&self, fill: &Fill, ingest: &mut Ingest) -> Result<Option<u64>, FillError> {
        let (repo, digest) = (&fill.repo, &fill.digest);
        let mut total: Option<u64> = None;
        let mut attempt = 0;
        let mut last_sync = ingest.offset();
        let started = Instant::now();
        loop {
            attempt += 1;
            let from = ingest.offset();
            let body = match self.upstream.get_blob(repo, digest, from).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    return Err(FillError::NotUpstream {
                        repo: repo.clone(),
                        digest: digest.clone(),
                    })
                }
                Err(UpstreamError::Unreachable(why)) if started.elapsed() < UNREACHABLE_BUDGET => {
                    // Past the circuit breaker's window, so the next try really connects.
                    tracing::info!(%digest, error = %why, "upstream unreachable during a fill; trying again");
                    tokio::time::sleep(super::upstream::DOWN_FOR + Duration::from_millis(200))
                        .await;
                    attempt -= 1;
                    continue;
                }
                Err(e) if attempt < FILL_ATTEMPTS && !matches!(e, UpstreamError::Refused(_)) => {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // No length on the GET (a body delimited by the connection's end):
            // ask HEAD, so clients can be answered while the blob streams in and
            // a short body is told from a complete one.
            let t = match (body.total, total) {
                (None, None) => self.upstream.head_blob(repo, digest).await.ok().flatten(),
                (t, _) => t,
            };
            if let Some(t) = t {
                total = Some(t);
                fill.state.send_modify(|s| s.total = Some(t));
            }
            let broke = self.copy(fill, ingest, body, total, &mut last_sync).await?;
            let complete = total.is_some_and(|t| ingest.offset() == t);
            if complete || (broke.is_none() && total.is_none()) {
                return Ok(total);
            }
            let why = broke.unwrap_or_else(|| "upstream closed the connection early".into());
            if attempt >= FILL_ATTEMPTS {
                let _ = ingest.sync().await;
                return Err(FillError::BrokeOff {
                    digest: digest.clone(),
                    offset: ingest.offset(),
                    why,
                });
            }
            tracing::info!(%digest, offset = ingest.offset(), error = %why, "upstream transfer broke off; resuming with a Range request");
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
    }

    /// Copies one upstream body into the ingest, publishing progress.
    /// Returns why the transfer broke off, if it did.
    async fn copy(
        &self,
        fill: &Fill,
        ingest: &mut Ingest,
        body: BlobBody,
        total: Option<u64>,
        last_sync: &mut u64,
    ) -> Result<Option<String>, FillError> {
        // Upstream ignored the Range: skip what the ingest already has.
        let mut skip = match body.extent {
            Extent::Full => ingest.offset(),
            Extent::From(_) => 0,
        };
        let mut stream = body.stream;
        let mut buf = BytesMut::new();
        let mut broke: Option<String> = None;
        while let Some(chunk) = stream.next().await {
            let mut chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    broke = Some(e.to_string());
                    break;
                }
            };
            self.metrics.upstream_bytes.inc_by(chunk.len() as u64);
            if skip > 0 {
                let n = (skip as usize).min(chunk.len());
                chunk = chunk.slice(n..);
                skip -= n as u64;
            }
            buf.extend_from_slice(&chunk);
            if buf.len() >= FILL_CHUNK {
                ingest.write(buf.split().freeze()).await.map_err(local)?;
                fill.state.send_modify(|s| s.written = ingest.offset());
                if ingest.offset() - *last_sync >= SYNC_EVERY {
                    ingest.sync().await.map_err(local)?;
                    *last_sync = ingest.offset();
                }
            }
            if total.is_some_and(|t| ingest.offset() + buf.len() as u64 > t) {
                broke = Some("upstream sent more bytes than announced".into());
                break;
            }
        }
        if !buf.is_empty() {
            ingest.write(buf.freeze()).await.map_err(local)?;
            fill.state.send_modify(|s| s.written = ingest.offset());
        }
        Ok(broke)
    }
}

impl Fill {
    /// Waits until the fill knows the blob's size (or failed).
    pub async fn size(&self) -> Result<u64, FillError> {
        let mut rx = self.state.subscribe();
        loop {
            {
                let s = rx.borrow_and_update();
                if let Some(t) = s.total {
                    return Ok(t);
                }
                match &s.outcome {
                    Some(Err(e)) => return Err(e.clone()),
                    // Committed without ever learning the size upfront.
                    Some(Ok(())) => return Ok(s.written),
                    None => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(FillError::Local("the fill ended without a result".into()));
            }
        }
    }

    /// `[start, end)` of the blob for a client: followed while the fill
    /// writes it, read from the registry once committed.
    pub fn read(
        self: Arc<Self>,
        start: u64,
        end: u64,
        size: u64,
        guard: Arc<ReadGuard>,
        local: Arc<LocalRegistry>,
    ) -> BlobRead {
        BlobRead {
            size,
            start,
            len: end - start,
            body: follow(self, start, end, guard, local),
        }
    }
}

/// A follower's place in a fill.
struct Follower {
    fill: Arc<Fill>,
    rx: watch::Receiver<FillState>,
    data: Option<IngestData>,
    pos: u64,
    end: u64,
    _guard: Arc<ReadGuard>,
    local: Arc<LocalRegistry>,
    from_store: Option<BoxStream<'static, std::io::Result<Bytes>>>,
}

/// Streams `[start, end)` of a blob being filled, following the fill.
fn follow(
    fill: Arc<Fill>,
    start: u64,
    end: u64,
    guard: Arc<ReadGuard>,
    local: Arc<LocalRegistry>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let st = Follower {
        rx: fill.state.subscribe(),
        fill,
        data: None,
        pos: start,
        end,
        _guard: guard,
        local,
        from_store: None,
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
        let Some(available) = st.wait_for_bytes().await? else {
            // Committed before we opened the ingest: read the stored blob.
            let range = ByteRange {
                start: st.pos,
                end: Some(st.end - 1),
            };
            let read = st
                .local
                .blob_read(&st.fill.repo, &st.fill.digest, Some(range))
                .await
                .map_err(std::io::Error::other)?;
            st.from_store = Some(read.body);
            return Ok(Some((Bytes::new(), st)));
        };
        if st.data.is_none() {
            match st.local.ingest_data(&st.fill.id)? {
                Some(d) => st.data = Some(d),
                None => {
                    // Renamed into the store between our checks: wait for the outcome.
                    let _ = st.rx.changed().await;
                    return Ok(Some((Bytes::new(), st)));
                }
            }
        }
        let want = available.min(st.end) - st.pos;
        let data = st
            .data
            .as_mut()
            .ok_or_else(|| std::io::Error::other("ingest data vanished"))?;
        let chunk = data.read(st.pos, want).await?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "ingest file shorter than the bytes it reported written",
            ));
        }
        st.pos += chunk.len() as u64;
        Ok(Some((chunk, st)))
    })
    .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())))
    .boxed()
}

impl Follower {
    /// Waits for bytes past our position: how far we may read, or None
    /// when the fill committed before we opened its ingest.
    async fn wait_for_bytes(&mut self) -> std::io::Result<Option<u64>> {
        loop {
            let (written, outcome) = {
                let s = self.rx.borrow_and_update();
                (s.written, s.outcome.clone())
            };
            match &outcome {
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "upstream transfer failed: {e}"
                    )));
                }
                Some(Ok(())) if self.data.is_none() => return Ok(None),
                _ => {}
            }
            // The last byte of a response waits for the verified commit: a
            // client must never receive a complete body that then fails
            // verification (it would look like a good transfer).
            let servable = match outcome {
                Some(Ok(())) => written,
                _ => written.min(self.end - 1),
            };
            if servable > self.pos {
                return Ok(Some(servable));
            }
            if self.rx.changed().await.is_err() {
                return Err(std::io::Error::other("fill ended unexpectedly"));
            }
        }
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::ingest_prefix;

    #[test]
    fn processes_sharing_a_bucket_never_fill_into_one_upload() {
        assert_eq!(ingest_prefix("", false), "fill-");
        assert_eq!(ingest_prefix("hub", false), ingest_prefix("hub", false));
        let (a, b) = (ingest_prefix("hub", true), ingest_prefix("hub", true));
        assert!(
            a.starts_with("fill-hub-") && b.starts_with("fill-hub-"),
            "{a} {b}"
        );
        assert_ne!(a, b);
    }
}
