//! The blobs' bytes, beside a metadata copy: streamed from one content
//! store into another through an ingest, so the target verifies each
//! digest and size before the blob is placed (nothing unverified lands);
//! blobs the target has already, at the right size, are skipped, so a copy
//! interrupted half-way resumes where it stopped. And the check a restore
//! runs: which listed blobs a store does not have.

use futures::StreamExt;

use super::{Progress, Result, TransferError};
use crate::content::{ContentError, ContentStore};
use crate::meta::BlobRecord;

/// What a blob copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobCopy {
    pub copied: u64,
    pub bytes: u64,
    /// Already in the target, at the right size.
    pub present: u64,
}

fn failed(digest: &impl std::fmt::Display, e: impl std::fmt::Display) -> TransferError {
    TransferError::Blob {
        digest: digest.to_string(),
        message: e.to_string(),
    }
}

/// Copies each of `blobs` from `from` into `to`.
pub async fn copy_blobs(
    from: &ContentStore,
    to: &ContentStore,
    blobs: &[BlobRecord],
    progress: Progress<'_>,
) -> Result<BlobCopy> {
    let mut done = BlobCopy::default();
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    for (i, blob) in blobs.iter().enumerate() {
        let d = &blob.digest;
        if to.stat(d).await.map_err(|e| failed(d, e))? == Some(blob.size) {
            done.present += 1;
            continue;
        }
        progress(&format!(
            "blob {}/{} ({} of {} bytes): {d}",
            i + 1,
            blobs.len(),
            done.bytes,
            total
        ));
        copy_one(from, to, blob).await?;
        done.copied += 1;
        done.bytes += blob.size;
    }
    Ok(done)
}

async fn copy_one(from: &ContentStore, to: &ContentStore, blob: &BlobRecord) -> Result<()> {
    let d = &blob.digest;
    let mut read = from.read(d, None).await.map_err(|e| failed(d, e))?;
    let id = format!("copy-{}", uuid::Uuid::new_v4().simple());
    let mut ingest = to
        .begin_ingest(&id, "berth-copy", d.algorithm())
        .await
        .map_err(|e| failed(d, e))?;
    let written = async {
        while let Some(chunk) = read.body.next().await {
            ingest.write(chunk.map_err(ContentError::Io)?).await?;
        }
        let finished = ingest.finish(d, Some(blob.size)).await?;
        to.place(finished).await
    }
    .await;
    // The ingest's leftovers go whatever happened (the blob, if placed, stays).
    let _ = to.abort_ingest(&id).await;
    written.map_err(|e| failed(d, e))
}

/// The blobs of `blobs` that `store` does not have at their size.
pub async fn check_blobs(store: &ContentStore, blobs: &[BlobRecord]) -> Result<Vec<BlobRecord>> {
    let mut missing = Vec::new();
    for blob in blobs {
        let size = store
            .stat(&blob.digest)
            .await
            .map_err(|e| failed(&blob.digest, e))?;
        if size != Some(blob.size) {
            missing.push(blob.clone());
        }
    }
    Ok(missing)
}
