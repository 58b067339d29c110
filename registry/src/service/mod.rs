//! The domain API the HTTP layer calls: a `Namespace` of repositories with
//! blobs, uploads, manifests, tags and referrers.
//!
//! `LocalRegistry` implements it over the one content store and the metadata
//! database: a blob is served from a repository only if it is linked to it.
//! The edge cache implements the read half of the same trait as a
//! pull-through namespace. Nothing here knows about HTTP bodies or statuses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::content::{BlobRead, ByteRange, ContentError, ContentStore, FinishedIngest, Ingest};
use crate::meta::{BadReference, LinkOutcome, Meta, MetaError};
use crate::oci::{manifest, Algorithm, Descriptor, Digest, ErrorCode, Reference, RepoName, Tag};

pub mod metrics;

/// A request body as the service sees it: a stream of byte chunks.
pub type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Writes are coalesced into chunks of this size before they hit the disk.
const WRITE_CHUNK: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{message}")]
    Oci {
        code: ErrorCode,
        message: String,
        detail: Option<serde_json::Value>,
    },
    /// A chunk that does not start where the upload ends.
    #[error("chunk does not start at the upload's current end ({current} bytes received)")]
    UploadOffset { current: u64 },
    #[error("range not satisfiable: the blob has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// A push to a namespace that only serves pulls.
    #[error("{0}")]
    ReadOnly(String),
    /// Upstream could not be reached and nothing is cached (edge cache).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn oci(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError::Oci {
            code,
            message: message.into(),
            detail: None,
        }
    }
    pub fn with_detail(
        code: ErrorCode,
        message: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        ServiceError::Oci {
            code,
            message: message.into(),
            detail: Some(detail),
        }
    }
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ServiceError::Oci { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<MetaError> for ServiceError {
    fn from(e: MetaError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

impl From<ContentError> for ServiceError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::NotFound(d) => {
                ServiceError::oci(ErrorCode::BlobUnknown, format!("blob {d} is not in the store"))
            }
            ContentError::IngestNotFound(id) => ServiceError::oci(
                ErrorCode::BlobUploadUnknown,
                format!("upload {id} is unknown: it finished, was cancelled or expired; start a new upload"),
            ),
            ContentError::DigestMismatch { expected, actual } => ServiceError::with_detail(
                ErrorCode::DigestInvalid,
                format!("uploaded content has digest {actual}, not the {expected} given; nothing was stored"),
                serde_json::json!({"expected": expected.to_string(), "actual": actual.to_string()}),
            ),
            ContentError::SizeMismatch { expected, actual } => ServiceError::with_detail(
                ErrorCode::SizeInvalid,
                format!("uploaded content is {actual} bytes, but {expected} were declared; nothing was stored"),
                serde_json::json!({"expected": expected, "actual": actual}),
            ),
            ContentError::RangeNotSatisfiable { size } => ServiceError::RangeNotSatisfiable { size },
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A manifest as served.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    /// Served from a cache past its freshness because upstream is unreachable.
    pub stale: bool,
}

/// Where an upload stands.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received and acknowledged.
    pub offset: u64,
}

/// What a manifest push did.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub tags: Vec<Tag>,
}

/// Filter for listings: which repository names the caller may see.
pub type Visible<'a> = &'a (dyn Fn(&str) -> bool + Send + Sync);

/// A namespace of repositories. Reads are required; writes default to
/// "read-only" so that a pull-through namespace implements only what it serves.
#[async_trait]
pub trait Namespace: Send + Sync + 'static {
    async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<u64>;
    async fn blob_read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead>;
    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Manifest>;
    async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)>;
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>>;
    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)>;

    async fn upload_start(&self, _repo: &RepoName) -> Result<UploadStatus> {
        Err(read_only())
    }
    async fn upload_status(&self, _repo: &RepoName, _id: &str) -> Result<UploadStatus> {
        Err(read_only())
    }
    async fn upload_append(
        &self,
        _repo: &RepoName,
        _id: &str,
        _range: Option<(u64, u64)>,
        _body: BodyStream,
    ) -> Result<UploadStatus> {
        Err(read_only())
    }
    async fn upload_finish(
        &self,
        _repo: &RepoName,
        _id: &str,
        _digest: &Digest,
        _range: Option<(u64, u64)>,
        _body: Option<BodyStream>,
    ) -> Result<u64> {
        Err(read_only())
    }
    async fn upload_cancel(&self, _repo: &RepoName, _id: &str) -> Result<()> {
        Err(read_only())
    }
    async fn blob_put(
        &self,
        _repo: &RepoName,
        _digest: &Digest,
        _len: Option<u64>,
        _body: BodyStream,
    ) -> Result<u64> {
        Err(read_only())
    }
    /// Mounts a blob from `from` (or, without `from`, from any readable repository of the
    /// same project). None when it could not be mounted; the caller then starts an upload.
    async fn blob_mount(
        &self,
        _repo: &RepoName,
        _digest: &Digest,
        _from: Option<&RepoName>,
        _may_read: Visible<'_>,
    ) -> Result<Option<u64>> {
        Err(read_only())
    }
    async fn blob_delete(&self, _repo: &RepoName, _digest: &Digest) -> Result<()> {
        Err(read_only())
    }
    async fn manifest_put(
        &self,
        _repo: &RepoName,
        _reference: &Reference,
        _content_type: &str,
        _body: Bytes,
        _extra_tags: &[Tag],
    ) -> Result<PushedManifest> {
        Err(read_only())
    }
    async fn manifest_delete(&self, _repo: &RepoName, _reference: &Reference) -> Result<()> {
        Err(read_only())
    }
}

fn read_only() -> ServiceError {
    ServiceError::ReadOnly("this registry serves pulls only; push to the central registry".into())
}

type UploadSlot = Arc<tokio::sync::Mutex<Option<Ingest>>>;

/// The registry's own namespace over the content store and metadata.
pub struct LocalRegistry {
    pub meta: Meta,
    pub content: ContentStore,
    uploads: Mutex<HashMap<String, UploadSlot>>,
    pub metrics: Arc<metrics::Metrics>,
    /// Holders of references GC must respect besides tags (the controller).
    pub gc_roots: std::sync::RwLock<Vec<Arc<dyn crate::gc::GcRoots>>>,
    /// Fault injection for tests: fail a commit after its rename, before its
    /// metadata transaction commits, as a crash would.
    #[cfg(test)]
    crash_before_record: std::sync::atomic::AtomicBool,
}

impl LocalRegistry {
    pub fn new(meta: Meta, content: ContentStore, metrics: Arc<metrics::Metrics>) -> Self {
        Self {
            meta,
            content,
            uploads: Mutex::new(HashMap::new()),
            metrics,
            gc_roots: std::sync::RwLock::new(Vec::new()),
            #[cfg(test)]
            crash_before_record: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// At start-up: records the blobs of uploads whose data a crash left
    /// placed in the store but unrecorded (see `commit`), links each to the
    /// upload's repository, and removes those uploads. Returns how many.
    pub fn recover_placed_uploads(&self) -> Result<usize> {
        let placed = self.content.placed_ingests()?;
        for p in &placed {
            match p.owner.parse::<RepoName>() {
                Ok(repo) => {
                    self.meta.record_and_link(&repo, &p.digest, p.size)?;
                    tracing::info!(upload = %p.id, %repo, digest = %p.digest, "recorded the blob of an upload finished just before a crash");
                }
                Err(e) => {
                    tracing::warn!(upload = %p.id, owner = %p.owner, error = %e, "an upload placed before a crash names no repository; its blob is left to GC");
                }
            }
            self.content.abort_ingest_now(&p.id);
        }
        Ok(placed.len())
    }

    async fn meta_write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Meta) -> std::result::Result<T, MetaError> + Send + 'static,
    ) -> Result<T> {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .map_err(Into::into)
    }

    fn slot(&self, id: &str) -> Option<UploadSlot> {
        self.uploads.lock().ok()?.get(id).cloned()
    }

    /// The in-memory session for `id`, re-opened from the spool after a restart.
    async fn session(&self, repo: &RepoName, id: &str) -> Result<UploadSlot> {
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
            let guard = slot.lock().await;
            match guard.as_ref() {
                Some(ing) if ing.owner() == repo.as_str() => {}
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
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Some(ingest))))
            .clone())
    }

    fn forget(&self, id: &str) {
        if let Ok(mut m) = self.uploads.lock() {
            m.remove(id);
        }
    }

    /// Links a verified ingest into `repo`: if the CAS already has the blob the
    /// new copy is dropped, otherwise it is placed and recorded (on the local
    /// backend in one metadata transaction, so GC never sees one without the other).
    ///
    /// The order is what makes a crash at any point harmless: the bytes are
    /// placed (fsynced, verified, renamed), then one transaction records and
    /// links the blob, and only then is the upload's directory removed. Before
    /// the commit the session is still there to resume (or, once its data was
    /// renamed away, its directory says which blob it became, and start-up
    /// records it: `recover_placed_uploads`); after it, the blob is recorded.
    async fn commit(&self, repo: &RepoName, done: FinishedIngest) -> Result<u64> {
        let size = done.size;
        let digest = done.digest.clone();
        let id = done.id.clone();
        let (r, d) = (repo.clone(), digest.clone());
        let outcome = self.meta_write(move |m| m.link_blob(&r, &d)).await?;
        match outcome {
            LinkOutcome::Linked => {}
            LinkOutcome::NotInStore if self.content.places_by_rename() => {
                self.content.mark_placing(&done).await?;
                let (r, d, content) = (repo.clone(), digest.clone(), self.content.clone());
                #[cfg(test)]
                let crash = self
                    .crash_before_record
                    .load(std::sync::atomic::Ordering::SeqCst);
                self.meta_write(move |m| {
                    m.place_record_and_link(&r, &d, size, || {
                        content.place_now(done)?;
                        #[cfg(test)]
                        if crash {
                            // The process "dies" here: the transaction is dropped uncommitted.
                            return Err(crate::content::ContentError::Io(std::io::Error::other(
                                "simulated crash between placing and recording",
                            )));
                        }
                        Ok::<(), crate::content::ContentError>(())
                    })
                })
                .await?;
            }
            LinkOutcome::NotInStore => {
                self.content.place(done).await?;
                let (r, d) = (repo.clone(), digest.clone());
                self.meta_write(move |m| m.record_and_link(&r, &d, size))
                    .await?;
            }
        }
        // The blob is recorded: a directory that will not go away is litter
        // for the upload TTL to sweep, not a failed push.
        if let Err(e) = self.content.abort_ingest(&id).await {
            tracing::warn!(upload = %id, error = %e, "cannot remove a finished upload's directory");
        }
        self.metrics.blobs_pushed.inc();
        self.metrics.bytes_pushed.inc_by(size);
        Ok(size)
    }

    fn stored_manifest_by_ref(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Manifest>> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => match self.meta.resolve_tag(repo, t)? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        Ok(self.meta.get_manifest(repo, &digest)?.map(|m| Manifest {
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.bytes,
            stale: false,
        }))
    }

    /// Ingest ids of uploads untouched for longer than `ttl`, discarded.
    pub async fn purge_stale_uploads(&self, ttl: Duration) -> Result<usize> {
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
struct DiscardOnDrop<'a> {
    content: &'a ContentStore,
    id: &'a str,
}

impl Drop for DiscardOnDrop<'_> {
    fn drop(&mut self) {
        self.content.abort_ingest_now(self.id);
    }
}

/// Streams `body` into `ingest`, coalescing small frames into large writes.
/// Returns the number of bytes taken from the body.
async fn pump(ingest: &mut Ingest, mut body: BodyStream) -> Result<u64, PumpError> {
    let mut buf = BytesMut::new();
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
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

enum PumpError {
    Body(std::io::Error),
    Store(ContentError),
}

impl LocalRegistry {
    /// Appends `body` to the session in `slot`; on any failure the upload is
    /// rolled back to its last acknowledged offset, as if the request never came.
    async fn append_locked(
        &self,
        guard: &mut Option<Ingest>,
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
        let res = pump(ingest, body).await;
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

#[async_trait]
impl Namespace for LocalRegistry {
    async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.meta.linked_blob(repo, digest)? {
            return Ok(size);
        }
        // Manifests are content too; some clients fetch them through /blobs.
        if let Some(m) = self.meta.get_manifest(repo, digest)? {
            return Ok(m.bytes.len() as u64);
        }
        Err(blob_unknown(repo, digest))
    }

    async fn blob_read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        let Some(size) = self.meta.linked_blob(repo, digest)? else {
            if let Some(m) = self.meta.get_manifest(repo, digest)? {
                return bytes_read(m.bytes, range);
            }
            return Err(blob_unknown(repo, digest));
        };
        if let Some(r) = range {
            if r.start >= size || r.end.is_some_and(|e| e < r.start) {
                return Err(ServiceError::RangeNotSatisfiable { size });
            }
        }
        let read = self.content.read(digest, range).await?;
        self.metrics.bytes_served.inc_by(read.len);
        Ok(read)
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Manifest> {
        match self.stored_manifest_by_ref(repo, reference)? {
            Some(m) => Ok(m),
            None => Err(manifest_unknown(repo, reference)),
        }
    }

    async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)> {
        if !self.meta.repo_exists(repo)? {
            return Err(name_unknown(repo));
        }
        Ok(self.meta.tags(repo, last, n)?)
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.meta.referrers(repo, subject)?)
    }

    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)> {
        Ok(self.meta.catalog(last, n, visible)?)
    }

    async fn upload_start(&self, repo: &RepoName) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        let ingest = self
            .content
            .begin_ingest(&id, repo.as_str(), Algorithm::Sha256)
            .await?;
        if let Ok(mut m) = self.uploads.lock() {
            m.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(Some(ingest))));
        }
        Ok(UploadStatus { id, offset: 0 })
    }

    async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        let slot = self.session(repo, id).await?;
        let guard = slot.lock().await;
        // Finished or cancelled while we waited for the slot.
        let offset = guard.as_ref().map(|i| i.offset()).ok_or_else(|| {
            ServiceError::oci(
                ErrorCode::BlobUploadUnknown,
                format!("upload {id} has already finished"),
            )
        })?;
        Ok(UploadStatus {
            id: id.to_string(),
            offset,
        })
    }

    async fn upload_append(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        body: BodyStream,
    ) -> Result<UploadStatus> {
        let slot = self.session(repo, id).await?;
        let mut guard = slot.lock().await;
        let offset = self
            .append_locked(&mut guard, id, range, body, true)
            .await?;
        Ok(UploadStatus {
            id: id.to_string(),
            offset,
        })
    }

    async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: Option<BodyStream>,
    ) -> Result<u64> {
        let slot = self.session(repo, id).await?;
        let mut guard = slot.lock().await;
        if let Some(body) = body {
            self.append_locked(&mut guard, id, range, body, false)
                .await?;
        }
        let ingest = guard.take().ok_or_else(|| {
            ServiceError::oci(
                ErrorCode::BlobUploadUnknown,
                format!("upload {id} has already finished"),
            )
        })?;
        let res = match ingest.finish(digest, None).await {
            Ok(done) => self.commit(repo, done).await,
            Err(e) => {
                // A failed verification ends the upload: nothing of it is kept.
                self.content
                    .abort_ingest(id)
                    .await
                    .map_err(Into::into)
                    .and(Err(e.into()))
            }
        };
        // Only now that its spool is placed or gone: until then a request for
        // this id must find the finished (empty) slot and wait on it, not
        // re-open the session from the spool (which would cut the file being
        // placed back to the acknowledged offset).
        self.forget(id);
        res
    }

    async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<()> {
        let slot = self.session(repo, id).await?;
        let mut guard = slot.lock().await;
        *guard = None;
        let res = self.content.abort_ingest(id).await;
        // After the spool is gone, for the same reason as in `upload_finish`.
        self.forget(id);
        res.map_err(Into::into)
    }

    async fn blob_put(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: BodyStream,
    ) -> Result<u64> {
        let id = uuid::Uuid::new_v4().to_string();
        // A one-shot upload has no session to come back to: if this request is
        // dropped half way (the server shutting down), its spool goes with it.
        let _spool = DiscardOnDrop {
            content: &self.content,
            id: &id,
        };
        let mut ingest = self
            .content
            .begin_ingest(&id, repo.as_str(), digest.algorithm())
            .await?;
        let res = pump(&mut ingest, body).await;
        let failure = match res {
            Ok(_) => None,
            Err(PumpError::Body(e)) => Some(ServiceError::oci(
                ErrorCode::BlobUploadInvalid,
                format!("the request body broke off ({e}); nothing was stored"),
            )),
            Err(PumpError::Store(e)) => Some(e.into()),
        };
        if let Some(err) = failure {
            drop(ingest);
            self.content.abort_ingest(&id).await?;
            return Err(err);
        }
        match ingest.finish(digest, len).await {
            Ok(done) => self.commit(repo, done).await,
            Err(e) => {
                self.content.abort_ingest(&id).await?;
                Err(e.into())
            }
        }
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        may_read: Visible<'_>,
    ) -> Result<Option<u64>> {
        // Readability is decided by the caller's rights; evaluate before moving to the blocking pool.
        let meta = self.meta.clone();
        let (r, d) = (repo.clone(), digest.clone());
        let from_ok = from.filter(|f| may_read(f.as_str())).cloned();
        let project_prefix = format!("{}/", repo.project());
        let project_repos: Vec<String> = self
            .meta
            .repos_with_prefix(&project_prefix)?
            .into_iter()
            .chain(std::iter::once(repo.project().to_string()))
            .filter(|n| may_read(n))
            .collect();
        let fallback = from.is_none();
        let mounted = tokio::task::spawn_blocking(move || {
            let allowed = |name: &str| {
                from_ok.as_ref().is_some_and(|f| f.as_str() == name)
                    || project_repos.iter().any(|p| p == name)
            };
            meta.mount(&r, &d, from_ok.as_ref(), fallback, &allowed)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        Ok(mounted)
    }

    async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let (r, d) = (repo.clone(), digest.clone());
        if self.meta_write(move |m| m.unlink_blob(&r, &d)).await? {
            Ok(())
        } else {
            Err(blob_unknown(repo, digest))
        }
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: &str,
        body: Bytes,
        extra_tags: &[Tag],
    ) -> Result<PushedManifest> {
        let summary = manifest::decode(content_type, &body).map_err(|e| match e {
            manifest::ManifestError::Invalid(m) => ServiceError::oci(ErrorCode::ManifestInvalid, m),
            manifest::ManifestError::Unsupported(m) => {
                ServiceError::oci(ErrorCode::ManifestInvalid, m)
            }
        })?;
        let digest = match reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &body);
                if &actual != d {
                    return Err(ServiceError::with_detail(
                        ErrorCode::DigestInvalid,
                        format!("manifest content has digest {actual}, not {d} as in the URL"),
                        serde_json::json!({"expected": d.to_string(), "actual": actual.to_string()}),
                    ));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        let mut tags: Vec<Tag> = Vec::new();
        if let Reference::Tag(t) = reference {
            tags.push(t.clone());
        }
        for t in extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let subject = summary.subject.as_ref().map(|s| s.digest.clone());
        let (r, d, t) = (repo.clone(), digest.clone(), tags.clone());
        let outcome = self
            .meta_write(move |m| m.put_manifest(&r, &d, &body, &summary, &t))
            .await?;
        match outcome {
            Ok(()) => {
                self.metrics.manifests_pushed.inc();
                Ok(PushedManifest { digest, subject, tags })
            }
            Err(BadReference::Blob(b)) => Err(ServiceError::with_detail(
                ErrorCode::ManifestBlobUnknown,
                format!("the manifest references blob {b}, which has not been pushed to {repo}; push the blob first"),
                serde_json::json!({"digest": b.to_string()}),
            )),
            // distribution's code for a missing index child too: the child is
            // content the manifest needs, like a layer (MANIFEST_UNKNOWN would
            // say the index itself is unknown).
            Err(BadReference::Manifest(m)) => Err(ServiceError::with_detail(
                ErrorCode::ManifestBlobUnknown,
                format!("the index references manifest {m}, which is not in {repo}; push the child manifests first"),
                serde_json::json!({"digest": m.to_string()}),
            )),
            Err(BadReference::Size {
                digest: d,
                declared,
                actual,
            }) => Err(ServiceError::with_detail(
                ErrorCode::ManifestInvalid,
                format!("the descriptor of {d} declares {declared} bytes, but {d} in {repo} has {actual}; fix the size in the manifest"),
                serde_json::json!({"digest": d.to_string(), "declared": declared, "actual": actual}),
            )),
        }
    }

    async fn manifest_delete(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let (r, reference2) = (repo.clone(), reference.clone());
        let removed = self
            .meta_write(move |m| match &reference2 {
                Reference::Digest(d) => m.delete_manifest(&r, d),
                Reference::Tag(t) => m.delete_tag(&r, t),
            })
            .await?;
        if removed {
            Ok(())
        } else {
            Err(manifest_unknown(repo, reference))
        }
    }
}

fn bytes_read(bytes: Bytes, range: Option<ByteRange>) -> Result<BlobRead> {
    let size = bytes.len() as u64;
    let (start, end) = match range {
        None => (0, size),
        Some(r) => {
            if r.start >= size || r.end.is_some_and(|e| e < r.start) {
                return Err(ServiceError::RangeNotSatisfiable { size });
            }
            (r.start, r.end.map(|e| (e + 1).min(size)).unwrap_or(size))
        }
    };
    let slice = bytes.slice(start as usize..end as usize);
    Ok(BlobRead {
        size,
        start,
        len: end - start,
        body: futures::stream::once(async move { Ok(slice) }).boxed(),
    })
}

pub fn blob_unknown(repo: &RepoName, digest: &Digest) -> ServiceError {
    ServiceError::with_detail(
        ErrorCode::BlobUnknown,
        format!("blob {digest} is not in repository {repo}"),
        serde_json::json!({"digest": digest.to_string()}),
    )
}

pub fn manifest_unknown(repo: &RepoName, reference: &Reference) -> ServiceError {
    ServiceError::with_detail(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not in repository {repo}"),
        serde_json::json!({"reference": reference.to_string()}),
    )
}

pub fn name_unknown(repo: &RepoName) -> ServiceError {
    ServiceError::with_detail(
        ErrorCode::NameUnknown,
        format!("repository {repo} is not known to this registry"),
        serde_json::json!({"name": repo.as_str()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn registry(dir: &Path) -> Arc<LocalRegistry> {
        let meta = Meta::open(&dir.join("berth.redb")).expect("meta");
        let content =
            ContentStore::local(&dir.join("store"), &dir.join("uploads")).expect("content");
        Arc::new(LocalRegistry::new(
            meta,
            content,
            Arc::new(metrics::Metrics::new()),
        ))
    }

    fn body(bytes: &[u8]) -> BodyStream {
        let b = Bytes::copy_from_slice(bytes);
        futures::stream::once(async move { Ok(b) }).boxed()
    }

    /// Polls `cond` every millisecond, at most `tries` times.
    async fn wait_for(tries: u32, mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..tries {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cond()
    }

    /// Finding: a kill -9 during the final PUT of a chunked upload lost the
    /// session while the complete blob lay in the store unrecorded. A crash
    /// right after the rename, before the metadata commit, must leave the
    /// blob recorded after the restart (or the session resumable).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_between_placing_and_recording_leaves_the_blob_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo: RepoName = "p/app".parse().expect("name");
        let content: Vec<u8> = (0..3u32 << 20).map(|i| (i % 249) as u8).collect();
        let digest = Digest::sha256_of(&content);
        let ack = 1usize << 20;
        let id = {
            let reg = registry(dir.path());
            let up = reg.upload_start(&repo).await.expect("start");
            reg.upload_append(
                &repo,
                &up.id,
                Some((0, ack as u64 - 1)),
                body(&content[..ack]),
            )
            .await
            .expect("acknowledged chunk");
            reg.crash_before_record
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let range = Some((ack as u64, content.len() as u64 - 1));
            let res = reg
                .upload_finish(&repo, &up.id, &digest, range, Some(body(&content[ack..])))
                .await;
            assert!(res.is_err(), "the simulated crash fails the PUT");
            up.id
        };
        // The restart: the same directories, start-up recovery, as `RegistryApp::open`.
        let reg = registry(dir.path());
        let recovered = reg.recover_placed_uploads().expect("recover");
        reg.content
            .discard_unacknowledged_ingests()
            .expect("discard");
        let recorded = reg.blob_stat(&repo, &digest).await.ok();
        let resumable = reg.upload_status(&repo, &id).await.ok();
        assert!(
            recorded.is_some() || resumable.is_some(),
            "the session is lost and the blob unrecorded"
        );
        assert_eq!(recovered, 1);
        assert_eq!(recorded, Some(content.len() as u64), "the blob is recorded");
        assert!(resumable.is_none(), "its session ended with it");
        let read = reg.blob_read(&repo, &digest, None).await.expect("blob");
        let stored = crate::content::collect(read.body, read.len)
            .await
            .expect("blob bytes");
        assert_eq!(Digest::sha256_of(&stored), digest);
        assert!(
            std::fs::read_dir(dir.path().join("uploads"))
                .expect("uploads dir")
                .next()
                .is_none(),
            "nothing is left of the upload"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_status_request_during_the_final_put_does_not_resurrect_the_upload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = registry(dir.path());
        let repo: RepoName = "p/app".parse().expect("name");
        let content: Vec<u8> = (0..9u32 << 20).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256_of(&content);
        let up = reg.upload_start(&repo).await.expect("start");
        let ack = 1u64 << 20;
        reg.upload_append(
            &repo,
            &up.id,
            Some((0, ack - 1)),
            body(&content[..ack as usize]),
        )
        .await
        .expect("first chunk");

        // Hold the metadata lock: the final PUT verifies its data, then waits for it.
        let tx = reg.meta.begin_write().expect("write lock");
        let fin = tokio::spawn({
            let (reg, repo, id, digest) =
                (reg.clone(), repo.clone(), up.id.clone(), digest.clone());
            let rest = content[ack as usize..].to_vec();
            let range = Some((ack, content.len() as u64 - 1));
            async move {
                reg.upload_finish(&repo, &id, &digest, range, Some(body(&rest)))
                    .await
            }
        });
        let spool = dir.path().join("uploads").join(&up.id).join("data");
        let spooled = || std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0);
        assert!(
            wait_for(60_000, || spooled() == content.len() as u64).await,
            "the final chunk never reached the spool"
        );
        // Past its data, the PUT goes on to verify and place it; let it get there.
        wait_for(200, || reg.slot(&up.id).is_none()).await;

        // A client asks for the upload's status meanwhile.
        let status = tokio::spawn({
            let (reg, repo, id) = (reg.clone(), repo.clone(), up.id.clone());
            async move { reg.upload_status(&repo, &id).await }
        });
        wait_for(200, || status.is_finished()).await;
        tx.abort().expect("release the lock");

        let size = fin.await.expect("PUT task").expect("the PUT succeeds");
        assert_eq!(size, content.len() as u64);
        match status.await.expect("status task") {
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::BlobUploadUnknown)),
            Ok(s) => panic!("the finishing upload came back at offset {}", s.offset),
        }
        let read = reg.blob_read(&repo, &digest, None).await.expect("blob");
        let stored = crate::content::collect(read.body, read.len)
            .await
            .expect("blob bytes");
        assert_eq!(stored.len(), content.len(), "stored blob length");
        assert_eq!(Digest::sha256_of(&stored), digest);
        assert!(
            reg.upload_status(&repo, &up.id).await.is_err(),
            "the session is gone"
        );
    }
}
