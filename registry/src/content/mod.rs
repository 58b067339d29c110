//! The one content-addressed store.
//!
//! Owns blob bytes and nothing else: no repositories, no tags, no redb. Blobs
//! live in an `object_store` under `blobs/<alg>/<2 hex>/<hex>`. Uploads in
//! progress ("ingests") live in a local spool directory on the local and
//! memory backends (`spool.rs`), where they can be appended to, fsynced and
//! resumed after a crash; on S3 they live in the bucket under `_uploads/`
//! (`bucket.rs`), where any process sharing the bucket can continue them,
//! and placing is a server-side copy of the completed upload.
//!
//! The write path follows containerd's content store: bytes are hashed while
//! they stream in; `Ingest::finish` fsyncs and checks size and digest;
//! `ContentStore::place` moves the verified file into the store (an atomic
//! rename plus a directory fsync on the local backend, a multipart upload
//! elsewhere). An existing target is success: identical content, stored once.
//!
//! Ingest state (acknowledged offset, owner, algorithm) is written atomically
//! beside the data on every `sync`, so a restart resumes from the last
//! acknowledged offset and never from bytes the client was not told about.
//!
//! Placing does not end an ingest: its directory stays until the caller has
//! recorded the blob and removes it (`abort_ingest`). On the local backend,
//! where placing moves the data file away, `mark_placing` first notes in the
//! ingest's state which blob it becomes, so that a crash between the rename
//! and the caller's record leaves something to reconcile at start-up
//! (`placed_ingests`) instead of a session without data and a blob nobody
//! knows about.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;

use crate::oci::Digest;

pub use chunks::{collect, file_stream, read_chunk, IngestData, ReadQuota, READ_CHUNK};
pub use ingest::{FinishedIngest, Ingest};
use ingest::{Held, Kept};
pub use placing::{PlacedIngest, Placing};
pub use spool::IngestState;

use bucket::Bucket;
use presign::Presign;

mod blobs;
mod bucket;
mod chunks;
mod commit;
mod ingest;
mod parthash;
mod placing;
mod presign;
mod spool;
mod uploads;

/// Parts of a multipart upload to a remote object store.
const PART_SIZE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    #[error("upload {0} not found")]
    IngestNotFound(String),
    #[error("content digest {actual} does not match the expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content is {actual} bytes, not the expected {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

pub type Result<T, E = ContentError> = std::result::Result<T, E>;

/// A byte range of a blob: `start..=end` (end inclusive), or `start..` when `end` is None.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// An open blob: its total size, the range being read and the bytes of that range.
pub struct BlobRead {
    pub size: u64,
    /// First byte and length of what `body` yields.
    pub start: u64,
    pub len: u64,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// A blob present in the store, as listed by `ContentStore::list`.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
}

#[derive(Clone)]
pub struct ContentStore {
    objects: Arc<dyn ObjectStore>,
    /// Set when `objects` is a local filesystem: commits rename, reads open files.
    local: Option<Arc<LocalFileSystem>>,
    ingest_dir: PathBuf,
    /// Set when uploads live in the bucket rather than in `ingest_dir`.
    bucket: Option<Arc<Bucket>>,
    /// Set when blob GETs are redirected to presigned URLs (`presign.rs`).
    presign: Option<Presign>,
}

impl std::fmt::Debug for ContentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentStore")
            .field("objects", &self.objects.to_string())
            .field("ingest_dir", &self.ingest_dir)
            .finish()
    }
}

/// The object path of a blob.
pub fn blob_path(d: &Digest) -> ObjPath {
    let hex = d.hex();
    ObjPath::from(format!(
        "blobs/{}/{}/{}",
        d.algorithm().as_str(),
        &hex[..2],
        hex
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl ContentStore {
    /// Blobs under `root/blobs`, ingests under `ingest_dir` (same filesystem, so commits are renames).
    pub fn local(root: &Path, ingest_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)?;
        std::fs::create_dir_all(ingest_dir)?;
        let fs = Arc::new(LocalFileSystem::new_with_prefix(root)?);
        Ok(Self {
            objects: fs.clone(),
            local: Some(fs),
            ingest_dir: ingest_dir.to_path_buf(),
            bucket: None,
            presign: None,
        })
    }

    /// Blobs in memory (tests, throwaway instances); ingests still spool to disk.
    pub fn memory(ingest_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(ingest_dir)?;
        Ok(Self::with_object_store(
            Arc::new(InMemory::new()),
            ingest_dir,
        ))
    }

    /// Any object store. Ingests spool to `ingest_dir`.
    pub fn with_object_store(objects: Arc<dyn ObjectStore>, ingest_dir: &Path) -> Self {
        Self {
            objects,
            local: None,
            ingest_dir: ingest_dir.to_path_buf(),
            bucket: None,
            presign: None,
        }
    }

    /// Blobs and uploads both in `store` (S3): any process sharing the
    /// bucket can continue an upload (see `bucket.rs`). Upload bytes go up in
    /// multipart parts of `part_size`; `ingest_dir` is not used for them.
    pub fn in_bucket<S: ObjectStore + MultipartStore>(
        store: Arc<S>,
        part_size: u64,
        ingest_dir: &Path,
    ) -> Self {
        Self {
            objects: store.clone(),
            local: None,
            ingest_dir: ingest_dir.to_path_buf(),
            bucket: Some(Arc::new(Bucket::new(store, part_size))),
            presign: None,
        }
    }

    /// Whether uploads live in the object store (shared by every process
    /// using it) rather than in this process's spool directory.
    pub fn uploads_in_bucket(&self) -> bool {
        self.bucket.is_some()
    }

    pub fn ingest_dir(&self) -> &Path {
        &self.ingest_dir
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ContentError::Io(std::io::Error::other(e)))?
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod handover;

#[cfg(test)]
mod tests;
