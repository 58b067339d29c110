//! Upload sessions of `LocalRegistry`: one in-memory slot per session,
//! re-opened from the content store's spool after a restart (or, with
//! uploads in a shared bucket, caught up with what another process did to
//! it before each request); appending a
//! chunk (rolled back to the last acknowledged offset on any failure); and
//! the discarding of sessions nobody came back for.
//!
//! A request for a session supersedes a body still arriving on it: a client
//! comes back to a session (asks its offset, appends again) only once it
//! has given up on its previous request, as OCI clients drive a session one
//! request at a time. So when a link breaks and only the client hears of it,
//! its retry takes the session over at once, from the last acknowledged
//! offset, instead of waiting for the dead request's body to time out.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;

use super::{BodyStream, LocalRegistry, Result, ServiceError};
use crate::content::{ContentError, ContentStore, FinishedIngest, Ingest};
use crate::oci::{ErrorCode, RepoName};

/// Writes are coalesced into chunks of this size before they hit the disk.
const WRITE_CHUNK: usize = 1024 * 1024;

pub(super) type UploadSlot = Arc<UploadSession>;

/// One upload session in memory: its ingest (None once finished), and who
/// waits for it.
pub(super) struct UploadSession {
    ingest: tokio::sync::Mutex<Option<Ingest>>,
    /// Counts the requests that arrived for the session; a body being
    /// appended gives way when it moves.
    arrivals: tokio::sync::watch::Sender<u64>,
}

/// Ends when a newer request for the same session arrives.
pub(super) struct Superseded(tokio::sync::watch::Receiver<u64>);

impl Superseded {
    /// For a body that belongs to no session (a one-shot upload).
    pub(super) fn never() -> Self {
        let (_, rx) = tokio::sync::watch::channel(0);
        Superseded(rx)
    }

    async fn arrived(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl UploadSession {
    pub(super) fn new(ingest: Ingest) -> UploadSlot {
        Arc::new(UploadSession {
            ingest: tokio::sync::Mutex::new(Some(ingest)),
            arrivals: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The session, for this request: a request still holding it is told
    /// to give way (see the module doc).
    pub(super) async fn lock(&self) -> tokio::sync::MutexGuard<'_, Option<Ingest>> {
        if let Ok(guard) = self.ingest.try_lock() {
            return guard;
        }
        self.arrivals.send_modify(|n| *n += 1);
        self.ingest.lock().await
    }

    /// What a body appended under the lock just taken watches for.
    pub(super) fn superseded(&self) -> Superseded {
        let mut rx = self.arrivals.subscribe();
        rx.borrow_and_update();
        Superseded(rx)
    }
}

impl LocalRegistry {
    /// Commits a finished upload (`commit_verified`) and counts it.
    pub(super) async fn commit_upload(&self, repo: &RepoName, done: FinishedIngest) -> Result<u64> {
        let c = self.commit_verified(repo, done).await?;
        self.metrics.blobs_pushed.inc();
        self.metrics.bytes_pushed.inc_by(c.size);
        Ok(c.size)
    }

    pub(super) fn slot(&self, id: &str) -> Option<UploadSlot> {
        self.uploads.lock().ok()?.get(id).cloned()
    }

    /// The in-memory session for `id`, re-opened from the spool after a restart.
    pub(super) async fn session(&self, repo: &RepoName, id: &str) -> Result<UploadSlot> {
        let unknown = || {
            ServiceError::oci(
                ErrorCode::BlobUploadUnknown,
                format!("upload {id} is unknown in {repo}: it finished, was cancelled or expired; start a new upload"),
            )
        };
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(unknown());
        }
        if let Some(slot) = self.slot(id) {
            let mut guard = slot.lock().await;
            match guard.as_mut() {
                Some(ing) if ing.owner() == repo.as_str() => {
                    // In a bucket shared with other processes, one of them
                    // may have moved the upload on, or ended it, since.
                    match ing.catch_up().await {
                        Ok(()) => {}
                        Err(ContentError::IngestNotFound(_)) => {
                            *guard = None;
                            drop(guard);
                            self.forget(id);
                            return Err(unknown());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => return Err(unknown()),
            }
            drop(guard);
            return Ok(slot);
        }
        let state = self.content.ingest_state(id).await?.ok_or_else(unknown)?;
        if state.owner != repo.as_str() {
            return Err(unknown());
        }
        let ingest = self.content.resume_ingest(id).await?;
        let mut map = self
            .uploads
            .lock()
            .map_err(|_| ServiceError::Internal("upload table poisoned".into()))?;
        Ok(map
            .entry(id.to_string())
            .or_insert_with(|| UploadSession::new(ingest))
            .clone())
    }

    pub(super) fn forget(&self, id: &str) {
        if let Ok(mut m) = self.uploads.lock() {
            m.remove(id);
        }
    }

    /// Ingest ids of uploads untouched for longer than `ttl`, discarded.
    pub(crate) async fn purge_stale_uploads(&self, ttl: Duration) -> Result<usize> {
        let stale = self.content.stale_ingests(ttl).await?;
        let n = stale.len();
        for id in stale {
            self.forget(&id);
            self.content.abort_ingest(&id).await?;
        }
        Ok(n)
    }
}

/// Removes an ingest when dropped; a no-op once it was placed or aborted.
pub(super) struct DiscardOnDrop<'a> {
    pub(super) content: &'a ContentStore,
    pub(super) id: &'a str,
}

impl Drop for DiscardOnDrop<'_> {
    fn drop(&mut self) {
        self.content.abort_ingest_now(self.id);
    }
}

/// Streams `body` into `ingest`, coalescing small frames into large writes,
/// until it ends or a newer request for the session arrives. Returns the
/// number of bytes taken from the body.
pub(super) async fn pump(
    ingest: &mut Ingest,
    mut body: BodyStream,
    superseded: &mut Superseded,
) -> Result<u64, PumpError> {
    let mut buf = BytesMut::new();
    let mut total = 0u64;
    loop {
        let chunk = tokio::select! {
            next = body.next() => match next {
                Some(chunk) => chunk,
                None => break,
            },
            () = superseded.arrived() => return Err(PumpError::Superseded),
        };
        let chunk = chunk.map_err(PumpError::Body)?;
        total += chunk.len() as u64;
        if buf.is_empty() && chunk.len() >= WRITE_CHUNK {
            ingest.write(chunk).await.map_err(PumpError::Store)?;
            continue;
        }
        buf.extend_from_slice(&chunk);
        if buf.len() >= WRITE_CHUNK {
            ingest
                .write(buf.split().freeze())
                .await
                .map_err(PumpError::Store)?;
        }
    }
    if !buf.is_empty() {
        ingest.write(buf.freeze()).await.map_err(PumpError::Store)?;
    }
    Ok(total)
}

pub(super) enum PumpError {
    Body(std::io::Error),
    Store(ContentError),
    /// A newer request for the session took it over.
    Superseded,
}

impl LocalRegistry {
    /// Appends `body` to the session in `slot`; on any failure the upload is
    /// rolled back to its last acknowledged offset, as if the request never came.
    pub(super) async fn append_locked(
        &self,
        guard: &mut Option<Ingest>,
        superseded: &mut Superseded,
        id: &str,
        range: Option<(u64, u64)>,
        body: BodyStream,
        sync: bool,
    ) -> Result<u64> {
        let ingest = guard.as_mut().ok_or_else(|| {
            ServiceError::oci(
                ErrorCode::BlobUploadUnknown,
                format!("upload {id} has already finished"),
            )
        })?;
        let start = ingest.offset();
        if let Some((from, to)) = range {
            if from != start {
                return Err(ServiceError::UploadOffset { current: start });
            }
            if to < from {
                return Err(ServiceError::oci(
                    ErrorCode::BlobUploadInvalid,
                    format!("Content-Range {from}-{to} ends before it starts"),
                ));
            }
        }
        let res = pump(ingest, body, superseded).await;
        let failure = match res {
            Ok(n) => match range {
                Some((from, to)) if to - from + 1 != n => Some(ServiceError::oci(
                    ErrorCode::BlobUploadInvalid,
                    format!(
                        "Content-Range {from}-{to} announces {} bytes but the body had {n}; the chunk was discarded",
                        to - from + 1
                    ),
                )),
                _ => None,
            },
            Err(PumpError::Body(e)) => Some(ServiceError::oci(
                ErrorCode::BlobUploadInvalid,
                format!("the request body broke off ({e}); the upload continues from byte {}", ingest.acknowledged()),
            )),
            Err(PumpError::Store(e)) => Some(e.into()),
            Err(PumpError::Superseded) => Some(ServiceError::oci(
                ErrorCode::BlobUploadInvalid,
                format!("a newer request for upload {id} took it over while this body was arriving; the upload continues from byte {}", ingest.acknowledged()),
            )),
        };
        if let Some(err) = failure {
            // Re-open from the durable state: drops the partial chunk.
            *guard = None;
            *guard = Some(self.content.resume_ingest(id).await?);
            return Err(err);
        }
        if sync {
            ingest.sync().await?;
        }
        Ok(ingest.offset())
    }
}
