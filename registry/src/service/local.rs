//! `LocalRegistry`: the registry's namespace over the one content store and
//! the metadata database, and the only door to either.
//!
//! Its fields are private. What others need is a named call here: the one
//! commit of verified content (`commit_verified`, used by uploads and by a
//! pull-through cache's fills alike), manifest caching (recorded like a
//! push, referrers included), eviction, listing what is held, resolving an
//! image reference, repository and tag deletion, start-up recovery, and a
//! pull-through cache's bookkeeping in the same backend (`cache_book`). The metadata is a `MetaStore` (any backend); GC reaches it and
//! the content through `gc_parts`, and nothing else does. The `Namespace` implementation is in `namespace.rs`, upload
//! sessions in `uploads.rs`; opening from the configuration in `app.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use super::metrics::Metrics;
use super::uploads::UploadSlot;
use super::{FinishedIngest, Ingest, IngestData, Manifest, Result, ServiceError};
use crate::content::{ContentError, ContentStore};
use crate::meta::quota::{ImmutableRule, ProjectQuota, QuotaExceeded, QuotaSetting, Recount};
use crate::meta::{LinkOutcome, MetaError, MetaStore, RedbMeta, References, StoreStep};
use crate::oci::{manifest, Algorithm, Descriptor, Digest, ErrorCode, ImageRef, Reference};
use crate::oci::{RepoName, Tag};

/// The registry's own namespace over the content store and metadata.
pub struct LocalRegistry {
    pub(super) meta: Arc<dyn MetaStore>,
    /// A pull-through cache's bookkeeping, in the same backend.
    book: Arc<dyn crate::meta::CacheBook>,
    /// The embedded database when the metadata is in one (`reopen_database`).
    pub(super) embedded: Option<RedbMeta>,
    pub(super) content: ContentStore,
    pub(super) uploads: Mutex<HashMap<String, UploadSlot>>,
    pub(super) metrics: Arc<Metrics>,
    /// Holders of references GC must respect besides tags (the controller).
    gc_roots: RwLock<Vec<Arc<dyn GcRoots>>>,
    /// Which background duties this process holds (`set_duties`; all of
    /// them by default, as the one process over an embedded database).
    duties: std::sync::OnceLock<Arc<dyn crate::duties::Duties>>,
    /// Fault injection for tests: fail a commit after its rename, before its
    /// metadata transaction commits, as a crash would.
    #[cfg(test)]
    pub(super) crash_before_record: std::sync::atomic::AtomicBool,
}

/// Something outside the registry's metadata that holds manifests alive:
/// `(repository, manifest digest)` pairs that GC treats like tags.
#[async_trait::async_trait]
pub trait GcRoots: Send + Sync {
    async fn roots(&self) -> Vec<(String, String)>;
}

/// What `commit_verified` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub size: u64,
    /// The store had no record of the blob: this commit added its bytes
    /// (otherwise the copy was dropped, or put back bytes that had gone).
    pub new_blob: bool,
}

/// What start-up recovery found (`recover_at_start`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Blobs a crash left placed but unrecorded, now recorded.
    pub recorded: usize,
    /// Ingests that never acknowledged a byte, discarded.
    pub discarded: usize,
    /// Blob files no record counts, deleted.
    pub swept: usize,
}

/// An image reference resolved against what the registry holds.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub digest: Digest,
    pub media_type: String,
    /// The config and layers it references (none for an index).
    pub blobs: Vec<Descriptor>,
}

/// A tag as a cache holds it.
#[derive(Debug, Clone)]
pub struct CachedImage {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    /// Bytes of the config and layers of the tagged manifest that are recorded here.
    pub recorded_bytes: u64,
}

impl LocalRegistry {
    /// A registry over any metadata backend (`book`: the same backend's
    /// cache bookkeeping).
    pub fn new(
        meta: Arc<dyn MetaStore>,
        book: Arc<dyn crate::meta::CacheBook>,
        content: ContentStore,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            meta,
            book,
            embedded: None,
            content,
            uploads: Mutex::new(HashMap::new()),
            metrics,
            gc_roots: RwLock::new(Vec::new()),
            duties: std::sync::OnceLock::new(),
            #[cfg(test)]
            crash_before_record: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A registry over the embedded metadata database, which also keeps a
    /// pull-through cache's bookkeeping (`cache_book`).
    pub fn embedded(meta: RedbMeta, content: ContentStore, metrics: Arc<Metrics>) -> Self {
        let mut registry = Self::new(
            Arc::new(meta.clone()),
            Arc::new(meta.clone()),
            content,
            metrics,
        );
        registry.embedded = Some(meta);
        registry
    }

    /// The metadata and content for GC (`gc.rs`), and for nothing else.
    pub(crate) fn gc_parts(&self) -> (&dyn MetaStore, &ContentStore, &Metrics) {
        (self.meta.as_ref(), &self.content, &self.metrics)
    }

    /// Who decides which background duties this process runs (replicas on
    /// one shared database); set once, before the background tasks start.
    pub fn set_duties(&self, duties: Arc<dyn crate::duties::Duties>) {
        let _ = self.duties.set(duties);
    }

    /// The background duties this process may hold.
    pub fn duties(&self) -> Arc<dyn crate::duties::Duties> {
        self.duties
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(crate::duties::Solo))
    }

    /// Adds a holder of references that GC treats like tags.
    pub fn add_gc_roots(&self, roots: Arc<dyn GcRoots>) {
        if let Ok(mut r) = self.gc_roots.write() {
            r.push(roots);
        }
    }

    pub(crate) fn gc_roots(&self) -> Vec<Arc<dyn GcRoots>> {
        self.gc_roots.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The metadata store, for modules that keep records through its
    /// interface (webhooks).
    pub fn meta(&self) -> Arc<dyn MetaStore> {
        self.meta.clone()
    }

    /// What a pull-through cache keeps beside the metadata (tag clocks, LRU
    /// order, pins, prefetch jobs), in the same backend; it follows
    /// `reopen_database`.
    pub fn cache_book(&self) -> Arc<dyn crate::meta::CacheBook> {
        self.book.clone()
    }

    /// Opens a new, empty database in place of the current one (its file
    /// was removed under a running cache; see `RedbMeta::reopen`).
    pub fn reopen_database(&self) -> Result<()> {
        let embedded = self.embedded.as_ref().ok_or_else(no_embedded_database)?;
        Ok(embedded.reopen()?)
    }

    // ---- start-up ----

    /// At start-up, while no other process uses the data directory: records
    /// the blobs of commits a crash caught between placing and recording,
    /// discards ingests that never acknowledged a byte, and, with
    /// `sweep_unrecorded` (a cache on the local backend), deletes blob files
    /// that no record counts (an eviction cut off between its record and its
    /// bytes, or a crash in an older version's two-step commit).
    pub async fn recover_at_start(&self, sweep_unrecorded: bool) -> Result<Recovery> {
        let recorded = self.recover_placed_uploads().await?;
        let discarded = self.content.discard_unacknowledged_ingests()?;
        let swept = if sweep_unrecorded {
            let known: HashSet<Digest> = self
                .meta
                .blob_records()
                .await?
                .into_iter()
                .map(|r| r.digest)
                .collect();
            self.content
                .remove_local_blobs_now(|d| !known.contains(d))?
        } else {
            0
        };
        Ok(Recovery {
            recorded,
            discarded,
            swept,
        })
    }

    /// Records the blobs of ingests whose data a crash left placed in the
    /// store but unrecorded (see `commit_verified`), links each to the
    /// ingest's repository, and removes those ingests. Returns how many.
    pub(super) async fn recover_placed_uploads(&self) -> Result<usize> {
        let placed = self.content.placed_ingests()?;
        for p in &placed {
            match p.owner.parse::<RepoName>() {
                Ok(repo) => match self.meta.record_and_link(&repo, &p.digest, p.size).await {
                    Ok(_) => {
                        tracing::info!(upload = %p.id, %repo, digest = %p.digest, "recorded the blob of an upload finished just before a crash");
                    }
                    // Its client never heard of success; the bytes are GC's.
                    Err(MetaError::Quota(q)) => {
                        tracing::warn!(upload = %p.id, %repo, digest = %p.digest, refused = %q, "an upload finished just before a crash is over its project's quota; its blob is left to GC");
                    }
                    Err(e) => return Err(e.into()),
                },
                Err(e) => {
                    tracing::warn!(upload = %p.id, owner = %p.owner, error = %e, "an upload placed before a crash names no repository; its blob is left to GC");
                }
            }
            self.content.abort_ingest_now(&p.id);
        }
        Ok(placed.len())
    }

    // ---- committing content ----

    /// The ingest `id` for `repo`: resumed from its acknowledged offset if it
    /// exists (a fill interrupted by a restart), else begun.
    pub async fn open_ingest(&self, id: &str, repo: &RepoName, alg: Algorithm) -> Result<Ingest> {
        match self.content.resume_ingest(id).await {
            Ok(i) => Ok(i),
            Err(ContentError::IngestNotFound(_)) => {
                Ok(self.content.begin_ingest(id, repo.as_str(), alg).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether ingests live in a bucket other processes share (S3), where
    /// any of them may continue an upload.
    pub fn uploads_shared(&self) -> bool {
        self.content.uploads_in_bucket()
    }

    /// The data of ingest `id` as written so far, for readers that follow
    /// it while it is written; None once it is gone (committed or discarded).
    pub fn ingest_data(&self, id: &str) -> std::io::Result<Option<IngestData>> {
        self.content.ingest_data(id)
    }

    /// Discards an ingest and its bytes. Unknown ids are fine.
    pub async fn discard_ingest(&self, id: &str) -> Result<()> {
        Ok(self.content.abort_ingest(id).await?)
    }

    /// Commits a verified ingest into `repo`: if the store already has the
    /// blob it is linked and the new copy dropped, otherwise its bytes are
    /// placed and recorded (on the local backend in one metadata
    /// transaction, so GC never sees one without the other). Uploads and a
    /// pull-through cache's fills both commit here.
    ///
    /// The order is what makes a crash at any point harmless: the bytes are
    /// placed (fsynced, verified, renamed), then one transaction records and
    /// links the blob, and only then is the ingest's directory removed.
    /// Before the commit the session is still there to resume (or, once its
    /// data was renamed away, its directory says which blob it became, and
    /// start-up records it: `recover_at_start`); after it, the blob is recorded.
    pub async fn commit_verified(
        &self,
        repo: &RepoName,
        done: FinishedIngest,
    ) -> Result<Committed> {
        let size = done.size;
        let id = done.id.clone();
        let new_blob = match self.link_or_place(repo, done).await {
            Ok(new) => new,
            Err(e) if e.code() == Some(ErrorCode::Denied) => {
                // Over the project's quota: nothing of this upload is kept.
                self.content.abort_ingest(&id).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // The blob is recorded: a directory that will not go away is litter
        // for the upload TTL to sweep, not a failed commit.
        if let Err(e) = self.content.abort_ingest(&id).await {
            tracing::warn!(upload = %id, error = %e, "cannot remove a finished upload's directory");
        }
        Ok(Committed { size, new_blob })
    }

    /// Links the blob of a verified ingest if the store has it, else places
    /// and records it; true when the record is new.
    async fn link_or_place(&self, repo: &RepoName, done: FinishedIngest) -> Result<bool> {
        let linked = self.meta.link_blob(repo, &done.digest).await? == LinkOutcome::Linked;
        // Recorded but its bytes gone (removed behind the registry's back):
        // this copy puts them back.
        if linked && self.content.stat(&done.digest).await?.is_some() {
            return Ok(false);
        }
        self.place_and_record(repo, done).await
    }

    /// Places a verified ingest's bytes and records them; true when the record is new.
    async fn place_and_record(&self, repo: &RepoName, done: FinishedIngest) -> Result<bool> {
        let (d, size) = (done.digest.clone(), done.size);
        if !self.content.places_by_rename() {
            // Placing is not under the write lock here: check first, so a
            // refused blob is not left in the store for GC (the record
            // checks again, atomically).
            self.check_quota(repo, &d, size).await?;
            self.content.place(done).await?;
            return Ok(self.meta.record_and_link(repo, &d, size).await?);
        }
        self.content.mark_placing(&done).await?;
        let content = self.content.clone();
        #[cfg(test)]
        let crash = self
            .crash_before_record
            .load(std::sync::atomic::Ordering::SeqCst);
        let place: StoreStep = Box::pin(async move {
            content.place_now(done).map_err(|e| e.to_string())?;
            #[cfg(test)]
            if crash {
                // The process "dies" here: the transaction is dropped uncommitted.
                return Err("simulated crash between placing and recording".to_string());
            }
            Ok(())
        });
        Ok(self
            .meta
            .place_record_and_link(repo, &d, size, place)
            .await?)
    }

    // ---- what a pull-through cache needs besides the namespace ----

    /// Records a manifest fetched from an upstream like a pushed one (its
    /// tag, and its entry in its subject's referrers), except that nothing
    /// it references need be here: blobs arrive on demand, and an index's
    /// children for other platforms perhaps never.
    pub async fn cache_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        media_type: &str,
        bytes: Bytes,
        tag: Option<&Tag>,
    ) -> Result<()> {
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(ServiceError::oci(
                ErrorCode::DigestInvalid,
                format!("manifest content has digest {actual}, not {digest}"),
            ));
        }
        let summary = manifest::decode(media_type, &bytes)
            .map_err(|e| ServiceError::oci(ErrorCode::ManifestInvalid, e.to_string()))?;
        let tags: Vec<Tag> = tag.cloned().into_iter().collect();
        self.meta
            .put_manifest(repo, digest, bytes, &summary, &tags, References::OnDemand)
            .await?
            .map_err(|bad| {
                ServiceError::Internal(format!("a cached manifest was checked: {bad:?}"))
            })
    }

    /// Size of `digest` if the store records it, for whichever repository
    /// (no access check: a pull-through cache asks its upstream before it
    /// links the blob to another repository with `link_recorded_blob`).
    pub async fn recorded_blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.meta.blob_size(digest).await?)
    }

    /// Links a recorded blob to `repo`; its size, or None when the store
    /// has no record of it.
    pub async fn link_recorded_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        match self.meta.link_blob(repo, digest).await? {
            LinkOutcome::Linked => Ok(self.meta.blob_size(digest).await?),
            LinkOutcome::NotInStore => Ok(None),
        }
    }

    /// Size of the blob's bytes in the store, whatever the records say.
    pub async fn stored_blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.content.stat(digest).await?)
    }

    /// Removes a blob from every repository and the store (a cache's
    /// eviction). Readers that already opened it keep reading. Returns the
    /// size it had, or None when it was not recorded.
    pub async fn evict_blob(&self, digest: &Digest) -> Result<Option<u64>> {
        let (content, d) = (self.content.clone(), digest.clone());
        let delete: StoreStep =
            Box::pin(async move { content.delete(&d).await.map_err(|e| e.to_string()) });
        Ok(self.meta.forget_blob(digest, delete).await?)
    }

    /// Every recorded blob with its size.
    pub async fn recorded_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let records = self.meta.blob_records().await?;
        Ok(records.into_iter().map(|r| (r.digest, r.size)).collect())
    }

    /// Every tag of every repository, with how much of its image is here.
    pub async fn cached_images(&self) -> Result<Vec<CachedImage>> {
        let sizes: HashMap<Digest, u64> = self.recorded_blobs().await?.into_iter().collect();
        let mut out = Vec::new();
        for t in self.meta.all_tags().await? {
            let recorded_bytes = match t.digest.parse::<Digest>() {
                Ok(d) => self
                    .meta
                    .manifest_summary(&d)
                    .await?
                    .map(|s| s.blobs.iter().filter_map(|b| sizes.get(&b.digest)).sum())
                    .unwrap_or(0),
                Err(_) => 0,
            };
            out.push(CachedImage {
                repo: t.repo,
                tag: t.tag,
                digest: t.digest,
                recorded_bytes,
            });
        }
        Ok(out)
    }

    // ---- references, repositories and tags ----

    /// The manifest `image` names in its repository, or None.
    pub async fn resolve_image(&self, image: &ImageRef) -> Result<Option<ResolvedImage>> {
        let Some(m) = self
            .stored_manifest_by_ref(&image.repo, &image.reference)
            .await?
        else {
            return Ok(None);
        };
        let blobs = self
            .meta
            .manifest_summary(&m.digest)
            .await?
            .map(|s| s.blobs)
            .unwrap_or_default();
        Ok(Some(ResolvedImage {
            digest: m.digest,
            media_type: m.media_type,
            blobs,
        }))
    }

    pub(super) async fn stored_manifest_by_ref(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Manifest>> {
        let stored = match reference {
            Reference::Digest(d) => self.meta.get_manifest(repo, d).await?,
            Reference::Tag(t) => self.meta.manifest_by_tag(repo, t).await?,
        };
        Ok(stored.map(|m| Manifest {
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.bytes,
            stale: false,
        }))
    }

    /// The repositories of a project: the one named like it, then those under it.
    pub async fn project_repositories(&self, project: &RepoName) -> Result<Vec<String>> {
        let mut repos = self.meta.repos_with_prefix(&format!("{project}/")).await?;
        if self.meta.repo_exists(project).await? {
            repos.insert(0, project.to_string());
        }
        Ok(repos)
    }

    /// A repository's tags with their digests.
    pub async fn tags_with_digests(&self, repo: &RepoName) -> Result<Vec<(String, String)>> {
        Ok(self.meta.tags_with_digests(repo).await?)
    }

    /// Removes a repository's manifests, tags and links; its blobs go at the
    /// next GC. False when there was no such repository.
    pub async fn delete_repository(&self, repo: &RepoName) -> Result<bool> {
        Ok(self.meta.delete_repo(repo).await?)
    }

    // ---- quotas and immutable tags ----

    /// Refuses adding `digest` of `size` to `repo`'s project when it would
    /// take the project over its limit (a check ahead of the bytes: the
    /// write that records them checks again, atomically).
    pub(super) async fn check_quota(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let project = repo.project();
        let q = self.meta.quota(project).await?;
        let Some(limit) = q.limit() else {
            return Ok(());
        };
        if q.usage.saturating_add(size) <= limit || self.meta.project_holds(project, digest).await?
        {
            return Ok(());
        }
        Err(MetaError::Quota(QuotaExceeded {
            project: project.to_string(),
            limit,
            usage: q.usage,
            adding: size,
        })
        .into())
    }

    /// A project's usage and limits.
    pub async fn quota(&self, project: &str) -> Result<ProjectQuota> {
        Ok(self.meta.quota(project).await?)
    }

    /// Sets or removes a project's own limit (see `MetaStore::set_quota`).
    pub async fn set_quota(&self, project: &str, setting: Option<QuotaSetting>) -> Result<()> {
        Ok(self.meta.set_quota(Some(project), setting).await?)
    }

    /// Sets the registry-wide default limit (from the configuration, at start).
    pub async fn set_default_quota(&self, limit: Option<u64>) -> Result<()> {
        let setting = limit.map(QuotaSetting::Bytes);
        Ok(self.meta.set_quota(None, setting).await?)
    }

    /// Recounts a project's usage from what it holds.
    pub async fn recount_usage(&self, project: &str) -> Result<Recount> {
        Ok(self.meta.recount_usage(project).await?)
    }

    pub async fn immutable_rules(&self, project: &str) -> Result<Vec<ImmutableRule>> {
        Ok(self.meta.immutable_rules(project).await?)
    }

    /// Adds an immutable-tag rule; false when the project had it.
    pub async fn add_immutable_rule(&self, project: &str, pattern: &str) -> Result<bool> {
        Ok(self.meta.immutable_rule_add(project, pattern).await?)
    }

    /// Removes an immutable-tag rule; false when there was none.
    pub async fn remove_immutable_rule(&self, project: &str, pattern: &str) -> Result<bool> {
        Ok(self.meta.immutable_rule_remove(project, pattern).await?)
    }

    /// Drops a deleted project's limit and rules.
    pub async fn forget_project(&self, project: &str) -> Result<()> {
        Ok(self.meta.forget_project(project).await?)
    }

    /// Removes a tag; its manifest stays. False when there was no such tag.
    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        Ok(self.meta.delete_tag(repo, tag).await?)
    }
}

fn no_embedded_database() -> ServiceError {
    ServiceError::Internal("the metadata backend keeps no embedded database".into())
}
