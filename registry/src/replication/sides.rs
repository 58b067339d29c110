//! The two ends of an execution: a `Source` images are read from and a
//! `Dest` they are written to. This registry (`LocalSide`, through the
//! `Namespace` its clients use) is the source of a push and the
//! destination of a pull; the remote (`RemoteSide`, the upstream client of
//! proxy projects) the other end. Errors say whether trying again may help.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::content::ByteRange;
use crate::meta::LinkOutcome;
use crate::oci::{Descriptor, Digest, ErrorCode, Reference, RepoName, Tag};
use crate::proxy::upstream::{Extent, Mounted};
use crate::proxy::{Upstream, UpstreamError};
use crate::service::{LocalRegistry, Namespace, ServiceError};

/// Why a step failed.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The link or the other end failed; the same step may succeed later.
    Transient(String),
    /// Trying again will not help (refused, invalid, missing).
    Permanent(String),
}

impl Fault {
    pub fn words(&self) -> &str {
        match self {
            Fault::Transient(w) | Fault::Permanent(w) => w,
        }
    }
}

impl From<UpstreamError> for Fault {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Unreachable(_) => Fault::Transient(e.to_string()),
            _ => Fault::Permanent(e.to_string()),
        }
    }
}

impl From<ServiceError> for Fault {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unavailable(_) | ServiceError::Internal(_) => {
                Fault::Transient(e.to_string())
            }
            _ => Fault::Permanent(e.to_string()),
        }
    }
}

pub type Bytestream = BoxStream<'static, Result<Bytes, Fault>>;

/// A manifest as read from the source.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

#[async_trait]
pub trait Source: Send + Sync {
    async fn repositories(&self) -> Result<Vec<String>, Fault>;
    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Fault>;
    async fn manifest(&self, repo: &RepoName, reference: &str) -> Result<Option<Fetched>, Fault>;
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>, Fault>;
    /// A blob's bytes from byte `from` on.
    async fn blob(&self, repo: &RepoName, digest: &Digest, from: u64) -> Result<Bytestream, Fault>;
}

#[async_trait]
pub trait Dest: Send + Sync {
    /// Bytes per append: what an interruption may cost again (they are
    /// held in memory until appended).
    fn chunk(&self) -> usize {
        4 << 20
    }
    async fn manifest_digest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<Option<Digest>, Fault>;
    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Fault>;
    async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, Fault>;
    /// Mounts `digest` into `repo` from `from`; false when it could not.
    async fn mount(&self, repo: &RepoName, digest: &Digest, from: &RepoName)
        -> Result<bool, Fault>;
    /// Starts an upload: its session (where it continues).
    async fn start_upload(&self, repo: &RepoName) -> Result<String, Fault>;
    /// The bytes the upload holds; None when it is gone.
    async fn upload_offset(&self, repo: &RepoName, session: &str) -> Result<Option<u64>, Fault>;
    /// Appends at `offset`: the session to continue with.
    async fn append(
        &self,
        repo: &RepoName,
        session: &str,
        offset: u64,
        bytes: Bytes,
    ) -> Result<String, Fault>;
    /// Ends the upload; the destination verifies the digest.
    async fn finish(&self, repo: &RepoName, session: &str, digest: &Digest) -> Result<(), Fault>;
    async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), Fault>;
    async fn delete_tag(&self, repo: &RepoName, tag: &str) -> Result<(), Fault>;
}

fn reference(r: &str) -> Result<Reference, Fault> {
    r.parse()
        .map_err(|e| Fault::Permanent(format!("reference {r:?}: {e}")))
}

fn not_found(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Oci { code, .. } if matches!(code,
        ErrorCode::ManifestUnknown | ErrorCode::BlobUnknown | ErrorCode::NameUnknown
            | ErrorCode::BlobUploadUnknown))
}

/// This registry.
pub struct LocalSide(pub Arc<LocalRegistry>);

#[async_trait]
impl Source for LocalSide {
    async fn repositories(&self) -> Result<Vec<String>, Fault> {
        Ok(self.0.catalog(None, usize::MAX, &|_| true).await?.0)
    }
    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Fault> {
        Ok(Dest::tags(self, repo).await?)
    }
    async fn manifest(&self, repo: &RepoName, r: &str) -> Result<Option<Fetched>, Fault> {
        match self.0.manifest(repo, &reference(r)?).await {
            Ok(m) => Ok(Some(Fetched {
                digest: m.digest,
                media_type: m.media_type,
                bytes: m.bytes,
            })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>, Fault> {
        Ok(Namespace::referrers(self.0.as_ref(), repo, subject)
            .await?
            .manifests)
    }
    async fn blob(&self, repo: &RepoName, digest: &Digest, from: u64) -> Result<Bytestream, Fault> {
        let range = (from > 0).then_some(ByteRange {
            start: from,
            end: None,
        });
        let read = self.0.blob_read(repo, digest, range).await?;
        Ok(read
            .body
            .map(|r| r.map_err(|e| Fault::Transient(format!("reading the local blob: {e}"))))
            .boxed())
    }
}

#[async_trait]
impl Dest for LocalSide {
    fn chunk(&self) -> usize {
        1 << 20
    }
    async fn manifest_digest(&self, repo: &RepoName, r: &str) -> Result<Option<Digest>, Fault> {
        Ok(Source::manifest(self, repo, r).await?.map(|m| m.digest))
    }
    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Fault> {
        match Namespace::tags(self.0.as_ref(), repo, None, usize::MAX).await {
            Ok(page) => Ok(page.tags),
            Err(e) if not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
    async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, Fault> {
        match self.0.blob_stat(repo, digest).await {
            Ok(_) => return Ok(true),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        // The store holds it for another repository: a link is all it takes.
        let linked = self
            .0
            .meta()
            .link_blob(repo, digest)
            .await
            .map_err(|e| Fault::Transient(e.to_string()))?;
        Ok(linked == LinkOutcome::Linked)
    }
    async fn mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        _from: &RepoName,
    ) -> Result<bool, Fault> {
        self.has_blob(repo, digest).await
    }
    async fn start_upload(&self, repo: &RepoName) -> Result<String, Fault> {
        Ok(self.0.upload_start(repo).await?.id)
    }
    async fn upload_offset(&self, repo: &RepoName, session: &str) -> Result<Option<u64>, Fault> {
        match self.0.upload_status(repo, session).await {
            Ok(s) => Ok(Some(s.offset)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    async fn append(
        &self,
        repo: &RepoName,
        session: &str,
        offset: u64,
        bytes: Bytes,
    ) -> Result<String, Fault> {
        let end = offset + bytes.len() as u64 - 1;
        let body = futures::stream::once(async move { Ok(bytes) }).boxed();
        self.0
            .upload_append(repo, session, Some((offset, end)), body)
            .await?;
        Ok(session.to_string())
    }
    async fn finish(&self, repo: &RepoName, session: &str, digest: &Digest) -> Result<(), Fault> {
        self.0
            .upload_finish(repo, session, digest, None, None)
            .await?;
        Ok(())
    }
    async fn put_manifest(
        &self,
        repo: &RepoName,
        r: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), Fault> {
        self.0
            .manifest_put(repo, &reference(r)?, media_type, bytes, &[], None)
            .await?;
        Ok(())
    }
    async fn delete_tag(&self, repo: &RepoName, tag: &str) -> Result<(), Fault> {
        let tag: Tag = tag
            .parse()
            .map_err(|e| Fault::Permanent(format!("tag {tag:?}: {e}")))?;
        self.0.delete_tag(repo, &tag).await?;
        Ok(())
    }
}

/// The remote registry of a policy.
pub struct RemoteSide(pub Arc<Upstream>);

#[async_trait]
impl Source for RemoteSide {
    async fn repositories(&self) -> Result<Vec<String>, Fault> {
        let any: RepoName = "catalog"
            .parse()
            .map_err(|e| Fault::Permanent(format!("{e}")))?;
        Ok(self.0.catalog(&any).await?)
    }
    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Fault> {
        Ok(self.0.tags(repo).await?.unwrap_or_default())
    }
    async fn manifest(&self, repo: &RepoName, r: &str) -> Result<Option<Fetched>, Fault> {
        Ok(self.0.get_manifest(repo, r).await?.map(|m| Fetched {
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.bytes,
        }))
    }
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>, Fault> {
        Ok(self.0.referrers(repo, subject).await?)
    }
    async fn blob(&self, repo: &RepoName, digest: &Digest, from: u64) -> Result<Bytestream, Fault> {
        let Some(body) = self.0.get_blob(repo, digest, from).await? else {
            return Err(Fault::Permanent(format!(
                "the remote has no blob {digest} in {repo}"
            )));
        };
        let mut stream = body.stream.map(|r| r.map_err(Fault::from)).boxed();
        if from > 0 && body.extent == Extent::Full {
            // The remote ignored the Range: skip what the destination has.
            let mut skip = from;
            stream = stream
                .filter_map(move |r| {
                    let out = match r {
                        Ok(b) if skip >= b.len() as u64 => {
                            skip -= b.len() as u64;
                            None
                        }
                        Ok(b) => {
                            let rest = b.slice(skip as usize..);
                            skip = 0;
                            Some(Ok(rest))
                        }
                        Err(e) => Some(Err(e)),
                    };
                    futures::future::ready(out)
                })
                .boxed();
        }
        Ok(stream)
    }
}

#[async_trait]
impl Dest for RemoteSide {
    async fn manifest_digest(&self, repo: &RepoName, r: &str) -> Result<Option<Digest>, Fault> {
        Ok(self.0.head_manifest(repo, r).await?)
    }
    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Fault> {
        Ok(self.0.tags(repo).await?.unwrap_or_default())
    }
    async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, Fault> {
        Ok(self.0.head_blob(repo, digest).await?.is_some())
    }
    async fn mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, Fault> {
        match self.0.mount_blob(repo, digest, from).await? {
            Mounted::Yes => Ok(true),
            // Not mounted: the upload it started is left to expire at the remote.
            Mounted::Upload(_) => Ok(false),
        }
    }
    async fn start_upload(&self, repo: &RepoName) -> Result<String, Fault> {
        Ok(self.0.start_upload(repo).await?)
    }
    async fn upload_offset(&self, repo: &RepoName, session: &str) -> Result<Option<u64>, Fault> {
        Ok(self.0.upload_offset(repo, session).await?)
    }
    async fn append(
        &self,
        repo: &RepoName,
        session: &str,
        offset: u64,
        bytes: Bytes,
    ) -> Result<String, Fault> {
        Ok(self.0.upload_chunk(repo, session, offset, bytes).await?)
    }
    async fn finish(&self, repo: &RepoName, session: &str, digest: &Digest) -> Result<(), Fault> {
        Ok(self.0.finish_upload(repo, session, digest).await?)
    }
    async fn put_manifest(
        &self,
        repo: &RepoName,
        r: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), Fault> {
        Ok(self.0.put_manifest(repo, r, media_type, bytes).await?)
    }
    async fn delete_tag(&self, repo: &RepoName, tag: &str) -> Result<(), Fault> {
        // Tag deletion first (OCI); registries without it (distribution)
        // delete the manifest the tag points to, if no other tag shares it.
        if let Ok(true) = self.0.delete_manifest(repo, tag).await {
            return Ok(());
        }
        let Some(digest) = self.0.head_manifest(repo, tag).await? else {
            return Ok(());
        };
        for other in Dest::tags(self, repo).await? {
            if other != tag && self.0.head_manifest(repo, &other).await? == Some(digest.clone()) {
                return Err(Fault::Permanent(format!(
                    "the remote cannot delete tag {tag} alone, and tag {other} shares its manifest"
                )));
            }
        }
        self.0.delete_manifest(repo, &digest.to_string()).await?;
        Ok(())
    }
}
