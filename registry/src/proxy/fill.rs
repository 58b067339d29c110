//! Fills: a blob missing from the local registry, fetched from upstream once
//! however many clients ask, and streamed to all of them while it arrives.
//!
//! A fill is a task, independent of any client, that streams the blob from
//! upstream into an ingest of the local registry (hashing as it goes) and
//! publishes how many bytes are written. Every client, the first and the
//! late, follows that mark (`follow.rs`): from the fill's latest chunks in
//! memory, the ingest's file, or, once committed, the stored blob. Size and
//! digest are checked as soon as upstream's last byte is written, and the
//! clients get their last byte then (`FillState::verified`), while the fill
//! commits; a corrupt or truncated transfer is never verified nor
//! committed, and the clients following it get an error before their last
//! byte (their connection is cut, so they retry). A broken transfer resumes
//! with a Range request from the last byte written.
//!
//! The commit is the registry's own (`LocalRegistry::commit_verified`): the
//! bytes are made durable, placed and recorded in one metadata transaction,
//! so a crash never leaves a blob that nothing counts, nor a record of an
//! incomplete file. Owns the fills in flight and nothing else: what is
//! kept, and for how long, is the `Keeper`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::oci::{Digest, RepoName};
use crate::service::{blob_unknown, BlobRead, Ingest, LocalRegistry, ServiceError};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

use super::follow::{follow, Found, Recent};
use super::gather::Gather;
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
    /// Bytes written to the ingest.
    pub written: u64,
    /// Bytes received from upstream: those past `written` are on their way
    /// to the ingest, and the followers have them from memory.
    pub received: u64,
    /// Size of the blob, once upstream said.
    pub total: Option<u64>,
    /// All of the blob is written and its size and digest checked: clients
    /// may have their last byte, before the commit ends.
    pub verified: bool,
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
    /// Its latest chunks, for the clients following it.
    recent: Mutex<Recent>,
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
            recent: Mutex::default(),
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
            // Followers of a committed blob go on from the file or the store;
            // those of a verified blob whose commit failed may still need it.
            if res.is_ok() || !f.state.borrow().verified {
                f.recent_mut().reset(0);
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
        fill.recent_mut().reset(ingest.offset());
        fill.state.send_modify(|s| {
            s.written = ingest.offset();
            s.received = ingest.offset();
        });
        let total = match self.download(fill, &mut ingest).await {
            Ok(t) => t,
            Err(e) => {
                if matches!(e, FillError::NotUpstream { .. }) {
                    let _ = self.local.discard_ingest(&fill.id).await;
                }
                return Err(e);
            }
        };
        // The bytes were hashed as they were written: the clients may have
        // their last byte now, while `finish` and the commit make it durable.
        let size = ingest.offset();
        if total.is_none_or(|t| t == size) && ingest.digest_so_far().as_ref() == Some(digest) {
            fill.state.send_modify(|s| {
                s.verified = true;
                s.total.get_or_insert(size);
            });
        }
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
    /// Receiving and writing run side by side: the next bytes arrive from
    /// upstream (and go to the followers) while the last ones are hashed
    /// and written. Returns why the transfer broke off, if it did.
    async fn copy(
        &self,
        fill: &Fill,
        ingest: &mut Ingest,
        body: BlobBody,
        total: Option<u64>,
        last_sync: &mut u64,
    ) -> Result<Option<String>, FillError> {
        let (tx, rx) = tokio::sync::mpsc::channel(WRITES_AHEAD);
        let from = ingest.offset();
        let (broke, wrote) = tokio::join!(
            self.receive(fill, body, from, total, tx),
            write_all(fill, ingest, rx, last_sync),
        );
        wrote?;
        Ok(broke)
    }

    /// Reads one upstream body from offset `from` in chunks of at least
    /// `FILL_CHUNK`, handing each to the followers and to the writer.
    /// Returns why the transfer broke off, if it did.
    async fn receive(
        &self,
        fill: &Fill,
        body: BlobBody,
        from: u64,
        total: Option<u64>,
        tx: tokio::sync::mpsc::Sender<Bytes>,
    ) -> Option<String> {
        // Upstream ignored the Range: skip what the ingest already has.
        let mut skip = match body.extent {
            Extent::Full => from,
            Extent::From(_) => 0,
        };
        let mut received = from;
        let mut stream = body.stream;
        let mut buf = Gather::new(FILL_CHUNK);
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
            if total.is_some_and(|t| received + (buf.pending() + chunk.len()) as u64 > t) {
                buf.clear();
                broke = Some("upstream sent more bytes than announced".into());
                break;
            }
            if let Some(c) = buf.push(chunk) {
                received += c.len() as u64;
                fill.received(c.clone());
                if tx.send(c).await.is_err() {
                    return None; // the writer failed, and says why
                }
            }
        }
        if let Some(c) = buf.rest() {
            fill.received(c.clone());
            let _ = tx.send(c).await;
        }
        broke
    }
}

/// Chunks received and not yet being written: how far receiving may run
/// ahead of the disk.
const WRITES_AHEAD: usize = 2;

/// Writes the chunks `receive` hands over, in order, publishing what is on
/// disk, with a durable checkpoint every `SYNC_EVERY`.
async fn write_all(
    fill: &Fill,
    ingest: &mut Ingest,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    last_sync: &mut u64,
) -> Result<(), FillError> {
    while let Some(chunk) = rx.recv().await {
        ingest.write(chunk).await.map_err(local)?;
        fill.written(ingest.offset());
        if ingest.offset() - *last_sync >= SYNC_EVERY {
            ingest.sync().await.map_err(local)?;
            *last_sync = ingest.offset();
        }
    }
    Ok(())
}

impl Fill {
    pub(super) fn repo(&self) -> &RepoName {
        &self.repo
    }

    pub(super) fn ingest_id(&self) -> &str {
        &self.id
    }

    fn recent_mut(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the bytes from `pos` to at most `upto` are (see `Recent::find`).
    pub(super) fn find(&self, pos: u64, upto: u64) -> Option<Found> {
        self.recent_mut().find(pos, upto)
    }

    /// Publishes a chunk just received from upstream to the followers.
    fn received(&self, chunk: Bytes) {
        let end = {
            let mut recent = self.recent_mut();
            recent.push(chunk);
            recent.end()
        };
        self.state.send_modify(|s| s.received = end);
    }

    /// Publishes that the ingest holds `offset` bytes.
    fn written(&self, offset: u64) {
        self.recent_mut().written(offset);
        self.state.send_modify(|s| s.written = offset);
    }

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
