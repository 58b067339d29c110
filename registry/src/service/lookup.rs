//! Read-only lookups on what a repository holds, for modules above the
//! service that decide about manifests (the signature policy): a manifest's
//! decoded summary, a tag's digest, the indexes that list a manifest, and a
//! small blob's bytes. No writes, nothing about HTTP.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{LocalRegistry, Namespace, Result, ServiceError};
use crate::oci::{Digest, ManifestSummary, RepoName, Tag};

impl LocalRegistry {
    /// The decoded summary (blobs, children, subject, artifact type) of a
    /// manifest in `repo`, or None when `repo` does not hold it.
    pub async fn manifest_summary(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestSummary>> {
        if self
            .meta
            .linked_manifest_type(repo, digest)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        Ok(self.meta.manifest_summary(digest).await?)
    }

    /// The digest `tag` points to in `repo`.
    pub async fn tag_digest(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        Ok(self.meta.resolve_tag(repo, tag).await?)
    }

    /// The indexes in `repo` that list `child` among their manifests.
    pub async fn indexes_containing(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>> {
        Ok(self.meta.indexes_containing(repo, child).await?)
    }

    /// A blob of `repo` read whole, or None when it is larger than `limit`.
    pub async fn small_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        limit: u64,
    ) -> Result<Option<Bytes>> {
        let read = self.blob_read(repo, digest, None).await?;
        if read.size > limit {
            return Ok(None);
        }
        let mut out = BytesMut::with_capacity(read.size as usize);
        let mut body = read.body;
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.map_err(|e| ServiceError::Internal(e.to_string()))?);
            if out.len() as u64 > limit {
                return Ok(None);
            }
        }
        Ok(Some(out.freeze()))
    }
}
