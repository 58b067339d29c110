//! Committing verified bytes into the store: `place` (a rename on the local backend, a multipart upload or a server-side copy elsewhere) and `put_bytes`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use object_store::WriteMultipart;

use super::{
    blob_path, blocking, sync_dir, ContentError, ContentStore, FinishedIngest, Kept, Result,
    PART_SIZE,
};
use crate::oci::Digest;

impl ContentStore {
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
