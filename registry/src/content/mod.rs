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

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, WriteMultipart};

use crate::oci::{Algorithm, Digest, Digester};

pub use chunks::{collect, file_stream, read_chunk, IngestData, ReadQuota, READ_CHUNK};
pub use placing::{PlacedIngest, Placing};
pub use spool::IngestState;

use bucket::{Bucket, BucketIngest};
use presign::Presign;
use spool::{IngestInner, SpoolIngest};

mod bucket;
mod chunks;
mod parthash;
mod placing;
mod presign;
mod spool;

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

fn digest_from_path(p: &ObjPath) -> Option<Digest> {
    let mut parts = p.parts();
    if parts.next()?.as_ref() != "blobs" {
        return None;
    }
    let alg = parts.next()?;
    let _fan = parts.next()?;
    let hex = parts.next()?;
    format!("{}:{}", alg.as_ref(), hex.as_ref()).parse().ok()
}

/// Sends the digests of `root/<algorithm>/<fan>/<hex>`, a directory at a
/// time, until the receiver goes away; names that are no digest are skipped.
fn walk_blobs(root: &Path, tx: &tokio::sync::mpsc::Sender<Result<Vec<Digest>>>) {
    let entries = |dir: &Path| -> std::io::Result<Vec<std::fs::DirEntry>> {
        match std::fs::read_dir(dir) {
            Ok(rd) => rd.collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    let walk = || -> std::io::Result<()> {
        for alg in entries(root)? {
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            for fan in entries(&alg.path())? {
                let page: Vec<Digest> = entries(&fan.path())?
                    .iter()
                    .filter_map(|f| {
                        format!("{alg_name}:{}", f.file_name().to_string_lossy())
                            .parse()
                            .ok()
                    })
                    .collect();
                if tx.blocking_send(Ok(page)).is_err() {
                    return Ok(()); // nobody listens any more
                }
            }
        }
        Ok(())
    };
    if let Err(e) = walk() {
        let _ = tx.blocking_send(Err(e.into()));
    }
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

    /// Size of a stored blob, or None.
    pub async fn stat(&self, d: &Digest) -> Result<Option<u64>> {
        match self.objects.head(&blob_path(d)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a blob, or a range of it. `size_hint` (from metadata) lets an open
    /// range be resolved without a second round trip.
    pub async fn read(&self, d: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        let mut opts = GetOptions::default();
        if let Some(r) = range {
            opts.range = Some(match r.end {
                Some(end) => GetRange::Bounded(r.start..end.saturating_add(1)),
                None => GetRange::Offset(r.start),
            });
        }
        let res = match self.objects.get_opts(&blob_path(d), opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ContentError::NotFound(d.clone()))
            }
            Err(object_store::Error::NotModified { .. }) => {
                return Err(ContentError::NotFound(d.clone()))
            }
            Err(e) => {
                // A range past the end is reported as a generic error by some backends.
                if range.is_some() {
                    if let Ok(meta) = self.objects.head(&blob_path(d)).await {
                        if range.map(|r| r.start >= meta.size).unwrap_or(false) {
                            return Err(ContentError::RangeNotSatisfiable { size: meta.size });
                        }
                    }
                }
                return Err(e.into());
            }
        };
        let size = res.meta.size;
        let start = res.range.start;
        let len = res.range.end - res.range.start;
        let body: BoxStream<'static, std::io::Result<Bytes>> = match res.payload {
            GetResultPayload::File(file, _) => file_stream(file, start, len),
            GetResultPayload::Stream(s) => s.map_err(std::io::Error::other).boxed(),
        };
        Ok(BlobRead {
            size,
            start,
            len,
            body,
        })
    }

    /// Reads a whole (small) blob into memory. For manifests and configs only.
    pub async fn read_to_bytes(&self, d: &Digest, limit: u64) -> Result<Bytes> {
        let r = self.read(d, None).await?;
        if r.size > limit {
            return Err(ContentError::SizeMismatch {
                expected: limit,
                actual: r.size,
            });
        }
        Ok(collect(r.body, r.len).await?)
    }

    pub async fn delete(&self, d: &Digest) -> Result<()> {
        match self.objects.delete(&blob_path(d)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob in the store.
    pub fn list(&self) -> BoxStream<'static, Result<StoredBlob>> {
        self.objects
            .list(Some(&ObjPath::from("blobs")))
            .filter_map(|m| async move {
                match m {
                    Ok(meta) => digest_from_path(&meta.location).map(|digest| {
                        Ok(StoredBlob {
                            digest,
                            size: meta.size,
                            modified: meta.last_modified.into(),
                        })
                    }),
                    Err(e) => Some(Err(e.into())),
                }
            })
            .boxed()
    }

    /// The digest of every stored blob, streamed. On the local backend it
    /// reads only the directories (no stat per file), so GC's scan for
    /// unrecorded objects costs the listing of names, not a million stats.
    pub fn list_digests(&self) -> BoxStream<'static, Result<Digest>> {
        let Some(local) = &self.local else {
            return self.list().map_ok(|b| b.digest).boxed();
        };
        let root = match local.path_to_filesystem(&ObjPath::from("blobs")) {
            Ok(root) => root,
            Err(e) => return futures::stream::once(async move { Err(e.into()) }).boxed(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || walk_blobs(&root, &tx));
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .flat_map(|page: Result<Vec<Digest>>| {
                futures::stream::iter(match page {
                    Ok(digests) => digests.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                })
            })
            .boxed()
    }

    /// Last modification time of a stored blob (GC re-checks it before deleting).
    pub async fn modified(&self, d: &Digest) -> Result<Option<SystemTime>> {
        match self.objects.head(&blob_path(d)).await {
            Ok(meta) => Ok(Some(meta.last_modified.into())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn ingest_path(&self, id: &str) -> PathBuf {
        self.ingest_dir.join(id)
    }

    /// Starts an ingest. `id` must be a fresh identifier (the upload UUID);
    /// `owner` is opaque to the store (the service records the repository).
    pub async fn begin_ingest(
        &self,
        id: &str,
        owner: &str,
        algorithm: Algorithm,
    ) -> Result<Ingest> {
        if let Some(b) = &self.bucket {
            let held = Held::Bucket(Box::new(b.begin(id, owner, algorithm).await?));
            return Ok(Ingest { held });
        }
        let dir = self.ingest_path(id);
        let owner = owner.to_string();
        let id = id.to_string();
        blocking(move || {
            if let Some(parent) = dir.parent() {
                // Removed under us (an operator clearing a cache): recreate it.
                std::fs::create_dir_all(parent)?;
            }
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                // Left by a crash before its state was first written (a cache fill's id
                // is fixed, so the next fill of the blob lands here): nothing there was
                // acknowledged, and an id without a readable state is unknown.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && IngestState::read(&dir).is_err() =>
                {
                    std::fs::remove_dir_all(&dir)?;
                    std::fs::create_dir(&dir)?;
                }
                Err(e) => return Err(e.into()),
            }
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(dir.join("data"))?;
            let state = IngestState {
                owner,
                offset: 0,
                algorithm: algorithm.as_str().to_string(),
                started: unix_now(),
                placing: None,
            };
            // Not synced: an ingest becomes durable at its first `sync` (the first
            // acknowledged chunk). A crash before that leaves it cleanly unknown,
            // and monolithic uploads and cache fills never pay for it.
            state.write(&dir, false)?;
            Ok(Ingest::spool(SpoolIngest {
                id,
                dir,
                inner: Some(Box::new(IngestInner {
                    file,
                    digester: Digester::new(algorithm),
                    offset: 0,
                    written_back: 0,
                    flushing: Arc::default(),
                    state,
                })),
            }))
        })
        .await
    }

    /// Re-opens an ingest after a restart (or after it was dropped from memory):
    /// bytes past the last acknowledged offset are discarded, and the
    /// acknowledged prefix is hashed again.
    pub async fn resume_ingest(&self, id: &str) -> Result<Ingest> {
        if let Some(b) = &self.bucket {
            let held = Held::Bucket(Box::new(b.resume(id).await?));
            return Ok(Ingest { held });
        }
        let dir = self.ingest_path(id);
        let id = id.to_string();
        blocking(move || {
            let mut state = IngestState::read(&dir).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ContentError::IngestNotFound(id.clone()),
                _ => ContentError::Io(e),
            })?;
            // A placement that never happened (its data is still here): the
            // session goes on from its acknowledged offset.
            state.placing = None;
            let algorithm = match state.algorithm.as_str() {
                "sha512" => Algorithm::Sha512,
                _ => Algorithm::Sha256,
            };
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join("data"))
                .map_err(|_| ContentError::IngestNotFound(id.clone()))?;
            file.set_len(state.offset)?;
            let mut digester = Digester::new(algorithm);
            file.seek(SeekFrom::Start(0))?;
            let mut buf = vec![0u8; READ_CHUNK];
            let mut left = state.offset;
            while left > 0 {
                let n = file.read(&mut buf[..(left.min(READ_CHUNK as u64) as usize)])?;
                if n == 0 {
                    break;
                }
                digester.update(&buf[..n]);
                left -= n as u64;
            }
            file.seek(SeekFrom::Start(state.offset))?;
            Ok(Ingest::spool(SpoolIngest {
                id,
                dir,
                inner: Some(Box::new(IngestInner {
                    file,
                    digester,
                    offset: state.offset,
                    written_back: state.offset,
                    flushing: Arc::default(),
                    state,
                })),
            }))
        })
        .await
    }

    /// The data file of ingest `id` as written so far, or None when the
    /// ingest is gone (placed or aborted), or is not in a local file (in
    /// the bucket: its parts cannot be read before it completes).
    pub fn ingest_data(&self, id: &str) -> std::io::Result<Option<IngestData>> {
        if self.bucket.is_some() {
            return Ok(None);
        }
        match std::fs::File::open(self.ingest_path(id).join("data")) {
            Ok(f) => Ok(Some(IngestData::new(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Owner and acknowledged offset of an ingest, without opening it.
    pub async fn ingest_state(&self, id: &str) -> Result<Option<IngestState>> {
        if let Some(b) = &self.bucket {
            return b.state(id).await;
        }
        let dir = self.ingest_path(id);
        blocking(move || match IngestState::read(&dir) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// Discards an ingest and its bytes. Unknown ids are fine.
    pub async fn abort_ingest(&self, id: &str) -> Result<()> {
        if let Some(b) = &self.bucket {
            return b.abort(id).await;
        }
        let dir = self.ingest_path(id);
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// `abort_ingest` for drop guards, where nothing can be awaited.
    pub fn abort_ingest_now(&self, id: &str) {
        if let Some(b) = &self.bucket {
            // Nothing can be awaited here: the bucket's objects go in the background.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (b, id) = (b.clone(), id.to_string());
                rt.spawn(async move {
                    if let Err(e) = b.abort(&id).await {
                        tracing::warn!(upload = %id, error = %e, "cannot remove an abandoned upload; the expiry sweep will");
                    }
                });
            }
            return;
        }
        let _ = std::fs::remove_dir_all(self.ingest_path(id));
    }

    /// At start-up: discards ingests that never acknowledged a byte (monolithic
    /// uploads and fresh sessions cut off by a crash). They are "cleanly unknown";
    /// without this their spool would wait for GC's upload TTL. Returns how many.
    /// None in the bucket: other processes sharing it may have uploads
    /// begun a moment ago; the expiry sweep removes abandoned ones there.
    pub fn discard_unacknowledged_ingests(&self) -> Result<usize> {
        if self.bucket.is_some() {
            return Ok(0);
        }
        let mut n = 0;
        let entries = match std::fs::read_dir(&self.ingest_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                // Leftover temporary files of `put_bytes`.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let acked = IngestState::read(&path)
                .map(|s| s.offset > 0)
                .unwrap_or(false);
            if !acked {
                std::fs::remove_dir_all(&path)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Ingests whose state was last written before `older_than` ago.
    pub async fn stale_ingests(&self, older_than: Duration) -> Result<Vec<String>> {
        if let Some(b) = &self.bucket {
            return b.stale(older_than).await;
        }
        let dir = self.ingest_dir.clone();
        blocking(move || {
            let mut out = Vec::new();
            let now = SystemTime::now();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let modified = match entry
                    .path()
                    .join("state.json")
                    .metadata()
                    .and_then(|m| m.modified())
                    .or_else(|_| entry.metadata().and_then(|m| m.modified()))
                {
                    Ok(m) => m,
                    // Finished or cancelled while we looked: not stale, just gone.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                if now.duration_since(modified).unwrap_or_default() > older_than {
                    out.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    /// Moves a verified ingest's bytes into the store. Content-addressed: if
    /// the blob is already there, the result is the same. The ingest's
    /// directory stays: remove it with `abort_ingest` once the blob is recorded.
    pub async fn place(&self, done: FinishedIngest) -> Result<()> {
        let target = blob_path(&done.digest);
        if self.local.is_some() {
            let store = self.clone();
            return blocking(move || store.place_now(done)).await;
        }
        let dir = match &done.kept {
            Kept::Spool { dir, .. } => dir,
            Kept::Bucket { staged } => {
                // Verified already; a server-side copy, never through this process.
                self.objects.copy(staged, &target).await?;
                return Ok(());
            }
        };
        let upload = self.objects.put_multipart(&target).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut file = tokio::fs::File::open(dir.join("data")).await?;
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// Whether [`place_now`](Self::place_now) works: the local backend, where
    /// placing a blob is a rename.
    pub fn places_by_rename(&self) -> bool {
        self.local.is_some()
    }

    /// `place` on the local backend, synchronously (a rename and a directory
    /// fsync), so that the caller can do it inside a metadata transaction.
    /// Call `mark_placing` first where a crash must not lose the session.
    pub fn place_now(&self, done: FinishedIngest) -> Result<()> {
        let local = self.local.as_ref().ok_or_else(|| {
            ContentError::Io(std::io::Error::other(
                "placing by rename needs the local backend",
            ))
        })?;
        let Kept::Spool { dir, .. } = &done.kept else {
            return Err(ContentError::Io(std::io::Error::other(
                "placing by rename needs an upload in the local spool",
            )));
        };
        let dest = local.path_to_filesystem(&blob_path(&done.digest))?;
        let src = dir.join("data");
        let parent = dest
            .parent()
            .ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
        std::fs::create_dir_all(parent)?;
        // A fresh mtime tells GC's store sweep this object is newly wanted.
        std::fs::File::options()
            .write(true)
            .open(&src)?
            .set_modified(SystemTime::now())?;
        std::fs::rename(&src, &dest)?;
        sync_dir(parent)?;
        Ok(())
    }

    /// Stores small, already-verified bytes directly (manifests fetched by the edge cache).
    pub async fn put_bytes(&self, d: &Digest, bytes: Bytes) -> Result<()> {
        let actual = Digest::of(d.algorithm(), &bytes);
        if &actual != d {
            return Err(ContentError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        if let Some(local) = &self.local {
            let dest = local.path_to_filesystem(&blob_path(d))?;
            let tmp_dir = self.ingest_dir.clone();
            return blocking(move || {
                let parent = dest
                    .parent()
                    .ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
                std::fs::create_dir_all(parent)?;
                std::fs::create_dir_all(&tmp_dir)?;
                let mut tmp = tempfile_in(&tmp_dir)?;
                tmp.1.write_all(&bytes)?;
                tmp.1.sync_all()?;
                std::fs::rename(&tmp.0, &dest)?;
                sync_dir(parent)?;
                Ok(())
            })
            .await;
        }
        self.objects.put(&blob_path(d), bytes.into()).await?;
        Ok(())
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)?;
    Ok((path, f))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ContentError::Io(std::io::Error::other(e)))?
}

/// An ingest whose bytes are synced and verified, ready for `ContentStore::place`.
#[derive(Debug)]
pub struct FinishedIngest {
    pub id: String,
    pub digest: Digest,
    pub size: u64,
    kept: Kept,
}

/// Where a finished ingest's verified bytes wait for `place`.
#[derive(Debug)]
enum Kept {
    /// The spool directory's `data` file, and the state as last written
    /// (for `mark_placing`).
    Spool { dir: PathBuf, state: IngestState },
    /// The completed upload's `data` object in the bucket.
    Bucket { staged: ObjPath },
}

/// An upload in progress: appended to, hashed on the way in, made durable
/// and acknowledged by `sync`; in the local spool or in the bucket.
pub struct Ingest {
    held: Held,
}

enum Held {
    Spool(SpoolIngest),
    Bucket(Box<BucketIngest>),
}

impl Ingest {
    fn spool(s: SpoolIngest) -> Self {
        Self {
            held: Held::Spool(s),
        }
    }

    pub fn id(&self) -> &str {
        match &self.held {
            Held::Spool(s) => s.id(),
            Held::Bucket(b) => b.id(),
        }
    }

    /// Bytes written so far (acknowledged or not).
    pub fn offset(&self) -> u64 {
        match &self.held {
            Held::Spool(s) => s.offset(),
            Held::Bucket(b) => b.offset(),
        }
    }

    /// The offset last made durable by `sync`.
    pub fn acknowledged(&self) -> u64 {
        match &self.held {
            Held::Spool(s) => s.acknowledged(),
            Held::Bucket(b) => b.acknowledged(),
        }
    }

    pub fn owner(&self) -> &str {
        match &self.held {
            Held::Spool(s) => s.owner(),
            Held::Bucket(b) => b.owner(),
        }
    }

    /// Before a request on an ingest held in memory: in the bucket, reloads
    /// it if another process sharing the bucket has moved it on since, and
    /// fails with `IngestNotFound` if that one finished or cancelled it. The
    /// spool is this process's own: nothing to do.
    pub async fn catch_up(&mut self) -> Result<()> {
        match &mut self.held {
            Held::Spool(_) => Ok(()),
            Held::Bucket(b) => b.catch_up().await,
        }
    }

    /// Appends and hashes `chunk`.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        match &mut self.held {
            Held::Spool(s) => s.write(chunk).await,
            Held::Bucket(b) => b.write(chunk).await,
        }
    }

    /// The digest of every byte written so far, where the ingest hashes
    /// them as they arrive (the spool), without making them durable first: a
    /// fill tells its clients that a blob is good before committing it. None
    /// in the bucket, which learns its digest only in `finish`.
    pub fn digest_so_far(&self) -> Option<Digest> {
        match &self.held {
            Held::Spool(s) => s.digest_so_far(),
            Held::Bucket(_) => None,
        }
    }

    /// Makes everything written so far durable and records it as acknowledged.
    pub async fn sync(&mut self) -> Result<()> {
        match &mut self.held {
            Held::Spool(s) => s.sync().await,
            Held::Bucket(b) => b.sync().await,
        }
    }

    /// Makes the bytes durable and verifies them. On a mismatch nothing
    /// enters the store; the caller aborts the ingest.
    pub async fn finish(
        self,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<FinishedIngest> {
        match self.held {
            Held::Spool(s) => s.finish(expected, expected_size).await,
            Held::Bucket(b) => {
                let id = b.id().to_string();
                let (digest, size, staged) = b.finish(expected, expected_size).await?;
                Ok(FinishedIngest {
                    id,
                    digest,
                    size,
                    kept: Kept::Bucket { staged },
                })
            }
        }
    }
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod handover;

#[cfg(test)]
mod tests {
    use super::*;

    /// A fill's ingest id is fixed: a directory a crash left before the ingest's
    /// state was written must not block every later fill of that blob.
    #[tokio::test]
    async fn an_ingest_left_without_state_is_begun_again() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ingest = tmp.path().join("uploads");
        let store = ContentStore::local(&tmp.path().join("blobs"), &ingest).expect("store");
        let id = "fill-sha256-abc";
        std::fs::create_dir_all(store.ingest_path(id)).expect("leftover");
        std::fs::write(store.ingest_path(id).join("data"), b"partial").expect("data");
        assert!(store.ingest_state(id).await.expect("state").is_none());
        let ing = store
            .begin_ingest(id, "proj/repo", Algorithm::Sha256)
            .await
            .expect("begun again");
        assert_eq!(ing.offset(), 0);
        // A live ingest (its state written) is not taken over.
        drop(ing);
        assert!(store
            .begin_ingest(id, "proj/repo", Algorithm::Sha256)
            .await
            .is_err());
    }
}
