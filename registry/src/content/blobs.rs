//! Stored blobs: size, ranged reads, listing, modification times and deletion.

use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, GetResultPayload};

use super::{
    blob_path, collect, file_stream, BlobRead, ByteRange, ContentError, ContentStore, Result,
    StoredBlob,
};
use crate::oci::Digest;

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

impl ContentStore {
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
}
