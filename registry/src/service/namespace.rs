//! `LocalRegistry` as a `Namespace`: what the /v2 handlers call.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::uploads::{pump, DiscardOnDrop, PumpError, Superseded, UploadSession};
use super::{
    blob_unknown, manifest_unknown, name_unknown, BlobRead, BodyStream, ByteRange, LocalRegistry,
    Manifest, Namespace, PushEvent, PushedManifest, Referrers, Result, ServiceError, TagPage,
    UploadStatus, Visible,
};
use crate::meta::{BadReference, References};
use crate::oci::{manifest, Algorithm, Digest, ErrorCode, Reference, RepoName, Tag};

#[async_trait]
impl Namespace for LocalRegistry {
    async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.meta.linked_blob(repo, digest).await? {
            return Ok(size);
        }
        // Manifests are content too; some clients fetch them through /blobs.
        if let Some(m) = self.meta.get_manifest(repo, digest).await? {
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
        let Some(size) = self.meta.linked_blob(repo, digest).await? else {
            if let Some(m) = self.meta.get_manifest(repo, digest).await? {
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

    async fn blob_redirect(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        // A manifest fetched through /blobs is answered from the metadata.
        if !self.content.redirects() || self.meta.linked_blob(repo, digest).await?.is_none() {
            return Ok(None);
        }
        let url = self.content.presigned_get(digest).await?;
        if url.is_some() {
            self.metrics.blob_redirects.inc();
        }
        Ok(url)
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Manifest> {
        match self.stored_manifest_by_ref(repo, reference).await? {
            Some(m) => Ok(m),
            None => Err(manifest_unknown(repo, reference)),
        }
    }

    async fn tags(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<TagPage> {
        if !self.meta.repo_exists(repo).await? {
            return Err(name_unknown(repo));
        }
        let (tags, more) = self.meta.tags(repo, last, n).await?;
        Ok(TagPage {
            tags,
            more,
            stale: false,
        })
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Referrers> {
        Ok(Referrers {
            manifests: self.meta.referrers(repo, subject).await?,
            stale: false,
        })
    }

    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)> {
        Ok(self.meta.catalog(last, n, visible).await?)
    }

    async fn upload_start(&self, repo: &RepoName) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        let ingest = self
            .content
            .begin_ingest(&id, repo.as_str(), Algorithm::Sha256)
            .await?;
        if let Ok(mut m) = self.uploads.lock() {
            m.insert(id.clone(), UploadSession::new(ingest));
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
            .append_locked(&mut guard, &mut slot.superseded(), id, range, body, true)
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
            self.append_locked(&mut guard, &mut slot.superseded(), id, range, body, false)
                .await?;
        }
        let ingest = guard.take().ok_or_else(|| {
            ServiceError::oci(
                ErrorCode::BlobUploadUnknown,
                format!("upload {id} has already finished"),
            )
        })?;
        let res = match ingest.finish(digest, None).await {
            Ok(done) => self.commit_upload(repo, done).await,
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

    async fn precheck_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        self.check_quota(repo, digest, size).await
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
        // Its size is known up front: refused before a byte is kept.
        if let Some(len) = len {
            self.check_quota(repo, digest, len).await?;
        }
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
        let res = pump(&mut ingest, body, &mut Superseded::never()).await;
        let failure = match res {
            Ok(_) => None,
            Err(PumpError::Superseded) => Some(ServiceError::Internal(
                "a one-shot upload was superseded".into(),
            )),
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
            Ok(done) => self.commit_upload(repo, done).await,
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
        // The repositories the caller may mount from: `from`, or without it
        // the readable repositories of the same project.
        let sources: Vec<String> = match from {
            Some(f) => may_read(f.as_str())
                .then(|| f.to_string())
                .into_iter()
                .collect(),
            None => {
                let project = repo.project();
                std::iter::once(project.to_string())
                    .chain(self.meta.repos_with_prefix(&format!("{project}/")).await?)
                    .filter(|n| n != repo.as_str() && may_read(n))
                    .collect()
            }
        };
        Ok(self.meta.mount(repo, digest, &sources).await?)
    }

    async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo, digest).await? {
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
        event: Option<PushEvent<'_>>,
    ) -> Result<PushedManifest> {
        let summary = decoded_manifest(content_type, &body)?;
        let digest = pushed_digest(reference, &body)?;
        let tags = push_tags(reference, extra_tags);
        let subject = summary.subject.as_ref().map(|s| s.digest.clone());
        let pushed = PushedManifest {
            digest,
            subject,
            tags,
            events_dropped: 0,
        };
        // The push's event goes into the manifest's own transaction.
        let queued = event.map(|build| build(&pushed));
        let outcome = self
            .meta
            .put_manifest_queued(
                repo,
                &pushed.digest,
                body,
                &summary,
                &pushed.tags,
                References::Required,
                queued.as_ref(),
            )
            .await?;
        match outcome {
            Ok(dropped) => {
                self.metrics.manifests_pushed.inc();
                Ok(PushedManifest {
                    events_dropped: dropped,
                    ..pushed
                })
            }
            Err(bad) => Err(bad_reference(repo, bad)),
        }
    }

    async fn manifest_delete(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let removed = match reference {
            Reference::Digest(d) => self.meta.delete_manifest(repo, d).await?,
            Reference::Tag(t) => self.meta.delete_tag(repo, t).await?,
        };
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

/// The manifest's summary, or MANIFEST_INVALID saying why it is not one.
fn decoded_manifest(content_type: &str, body: &[u8]) -> Result<manifest::ManifestSummary> {
    manifest::decode(content_type, body).map_err(|e| match e {
        manifest::ManifestError::Invalid(m) => ServiceError::oci(ErrorCode::ManifestInvalid, m),
        manifest::ManifestError::Unsupported(m) => ServiceError::oci(ErrorCode::ManifestInvalid, m),
    })
}

/// The pushed manifest's digest: the URL's, which the body must match, or
/// the body's sha256 when pushed by tag.
fn pushed_digest(reference: &Reference, body: &[u8]) -> Result<Digest> {
    match reference {
        Reference::Digest(d) => {
            let actual = Digest::of(d.algorithm(), body);
            if &actual != d {
                return Err(ServiceError::with_detail(
                    ErrorCode::DigestInvalid,
                    format!("manifest content has digest {actual}, not {d} as in the URL"),
                    serde_json::json!({"expected": d.to_string(), "actual": actual.to_string()}),
                ));
            }
            Ok(actual)
        }
        Reference::Tag(_) => Ok(Digest::sha256_of(body)),
    }
}

/// The tags a push sets: the URL's tag, then the extra ones, each once.
fn push_tags(reference: &Reference, extra_tags: &[Tag]) -> Vec<Tag> {
    let mut tags: Vec<Tag> = Vec::new();
    if let Reference::Tag(t) = reference {
        tags.push(t.clone());
    }
    for t in extra_tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    tags
}

/// The error for a manifest whose references are not in `repo`.
fn bad_reference(repo: &RepoName, bad: BadReference) -> ServiceError {
    match bad {
        BadReference::Blob(b) => ServiceError::with_detail(
            ErrorCode::ManifestBlobUnknown,
            format!("the manifest references blob {b}, which has not been pushed to {repo}; push the blob first"),
            serde_json::json!({"digest": b.to_string()}),
        ),
        // distribution's code for a missing index child too: the child is
        // content the manifest needs, like a layer (MANIFEST_UNKNOWN would
        // say the index itself is unknown).
        BadReference::Manifest(m) => ServiceError::with_detail(
            ErrorCode::ManifestBlobUnknown,
            format!("the index references manifest {m}, which is not in {repo}; push the child manifests first"),
            serde_json::json!({"digest": m.to_string()}),
        ),
        BadReference::Size {
            digest: d,
            declared,
            actual,
        } => ServiceError::with_detail(
            ErrorCode::ManifestInvalid,
            format!("the descriptor of {d} declares {declared} bytes, but {d} in {repo} has {actual}; fix the size in the manifest"),
            serde_json::json!({"digest": d.to_string(), "declared": declared, "actual": actual}),
        ),
    }
}
