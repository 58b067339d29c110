//! The domain API the HTTP layer calls: a `Namespace` of repositories with
//! blobs, uploads, manifests, tags and referrers.
//!
//! `LocalRegistry` implements it over the one content store and the metadata
//! database: a blob is served from a repository only if it is linked to it.
//! It is also the only door to that metadata and content: whoever needs
//! something else of them (admin, GC's roots, the controller's adapters, a
//! pull-through cache) gets a named call on it (`local.rs`). A pull-through
//! namespace (the edge cache) decorates a `LocalRegistry` with an upstream.
//! Nothing here knows about HTTP bodies or statuses.
//!
//! The types of those calls' signatures that belong to the content store are
//! re-exported here, so that users of the service need nothing below it.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::content::ContentError;
use crate::meta::MetaError;
use crate::oci::{Descriptor, Digest, ErrorCode, Reference, RepoName, Tag};

pub use crate::content::{BlobRead, ByteRange, FinishedIngest, Ingest, IngestData};
pub use crate::meta::{CacheBook, TagClockOwner};
pub use local::{CachedImage, Committed, GcRoots, LocalRegistry, Recovery, ResolvedImage};

mod local;
mod lookup;
pub mod metrics;
mod namespace;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cache;
mod uploads;

/// A request body as the service sees it: a stream of byte chunks.
pub type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

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
        match e {
            MetaError::Quota(q) => ServiceError::with_detail(
                ErrorCode::Denied,
                q.to_string(),
                serde_json::json!({
                    "project": q.project, "limit": q.limit, "usage": q.usage, "adding": q.adding,
                }),
            ),
            MetaError::Immutable(i) => ServiceError::with_detail(
                ErrorCode::Denied,
                i.to_string(),
                serde_json::json!({"repository": i.repo, "tag": i.tag, "rule": i.rule}),
            ),
            other => ServiceError::Internal(other.to_string()),
        }
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
    /// Older webhook events the push's own event pushed out of full queues.
    pub events_dropped: u64,
}

/// Builds a push's webhook event from what is being pushed, for the
/// metadata to queue in the manifest's own transaction
/// (`MetaStore::put_manifest_queued`).
pub type PushEvent<'a> = &'a (dyn Fn(&PushedManifest) -> crate::meta::OutboxEvent + Send + Sync);

/// A page of a repository's tags.
#[derive(Debug, Clone, Default)]
pub struct TagPage {
    pub tags: Vec<String>,
    /// More tags follow the page.
    pub more: bool,
    /// Assembled from a cache because upstream is unreachable.
    pub stale: bool,
}

/// The manifests that refer to a subject.
#[derive(Debug, Clone, Default)]
pub struct Referrers {
    pub manifests: Vec<Descriptor>,
    /// Assembled from a cache because upstream is unreachable: referrers
    /// pushed upstream since, or never fetched here, are missing.
    pub stale: bool,
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
    /// Where the client may GET blob `digest` of `repo` instead of through
    /// this registry: a presigned URL of the bucket (`storage.redirect`),
    /// handed out only for a blob linked to `repo`. The caller has checked
    /// that the client may pull. None: serve it with `blob_read`.
    async fn blob_redirect(&self, _repo: &RepoName, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }
    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Manifest>;
    async fn tags(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<TagPage>;
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Referrers>;
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
    /// Refuses, before its bytes are read, a push that would add at least
    /// `size` bytes to `repo` that it cannot take (its project's quota);
    /// the commit checks again, exactly. The default takes everything.
    async fn precheck_blob(&self, _repo: &RepoName, _digest: &Digest, _size: u64) -> Result<()> {
        Ok(())
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
    /// Stores a pushed manifest; `event`, when given, builds the push's
    /// webhook event, queued with the manifest in one transaction.
    async fn manifest_put(
        &self,
        _repo: &RepoName,
        _reference: &Reference,
        _content_type: &str,
        _body: Bytes,
        _extra_tags: &[Tag],
        _event: Option<PushEvent<'_>>,
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
