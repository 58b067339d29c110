//! Registry metadata in one redb file, changed only in transactions.
//!
//! Table tree (keys → values):
//!
//! ```text
//! blobs            digest                      → (size, recorded_at)        the CAS index
//! repo_blobs       (repo, digest)              → linked_at                  what a repository may serve
//! manifests        (repo, digest)              → (media_type, pushed_at)    manifests in a repository
//! manifest_bytes   digest                      → bytes                      manifest content, shared
//! manifest_refs    digest                      → JSON ManifestSummary       children, blobs, subject
//! tags             (repo, tag)                 → digest
//! referrers        (repo, subject, referrer)   → ()
//! repos            repo                        → created_at
//! schema           "registry"                  → u64                        format version (SCHEMA_VERSION)
//! ```
//!
//! The format is versioned: `open` refuses a database written by a newer berth,
//! and brings an older one up to `SCHEMA_VERSION` (each step in `migrate`).
//! Other modules keep their own tables in the same file and version them likewise
//! (the controller's `ctl_meta`).
//!
//! Everything above this module speaks in domain types; nothing outside it
//! knows about redb. Each method is one transaction. The methods are the
//! crate's: `LocalRegistry` is the door to them for everyone else (and GC
//! the one other user, through `LocalRegistry::gc_parts`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, TableDefinition};

use crate::oci::{Descriptor, Digest, ManifestSummary, RepoName, Tag};

pub(crate) const BLOBS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("blobs");
pub(crate) const REPO_BLOBS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("repo_blobs");
pub(crate) const MANIFESTS: TableDefinition<(&str, &str), (&str, u64)> =
    TableDefinition::new("manifests");
pub(crate) const MANIFEST_BYTES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("manifest_bytes");
pub(crate) const MANIFEST_REFS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("manifest_refs");
pub(crate) const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
pub(crate) const REFERRERS: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("referrers");
pub(crate) const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("schema");

/// The registry's metadata format. 1: the first release (which wrote no version);
/// 2: credentials sealed at rest, files private (the data itself is unchanged).
pub const SCHEMA_VERSION: u64 = 2;

/// Sorts after every character allowed in digests, tags and name components.
pub(crate) const HIGH: &str = "\u{10ffff}";

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Db(String),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self { MetaError::Db(e.to_string()) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A manifest as stored: its content and media type.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: bytes::Bytes,
}

/// Why a manifest push was refused by the reference check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReference {
    /// A config or layer that is not linked to the repository.
    Blob(Digest),
    /// An index child that is not in the repository.
    Manifest(Digest),
    /// A blob or child manifest that is present, with another size than its
    /// descriptor declares.
    Size {
        digest: Digest,
        declared: u64,
        actual: u64,
    },
}

/// What a manifest's references must be when it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum References {
    /// A push: every blob and index child it references is in the repository.
    Required,
    /// A pull-through cache: they arrive on demand (an index's children for
    /// other platforms perhaps never), so nothing is checked.
    OnDemand,
}

/// Outcome of asking to link an uploaded blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    Linked,
    /// The CAS has no record of this blob: place the bytes and record them
    /// (`place_record_and_link`).
    NotInStore,
}

#[derive(Clone)]
pub struct Meta {
    /// Shared by every clone, so that `reopen` reaches them all.
    db: Arc<RwLock<Arc<Database>>>,
    path: PathBuf,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meta")
    }
}

impl Meta {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            crate::private::private_dir(parent)
                .map_err(|e| MetaError::Db(format!("{}: {e}", parent.display())))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => MetaError::Db(format!(
                "{} is in use by another berth process; stop it first or use another --data-dir",
                path.display()
            )),
            other => MetaError::Db(format!("{}: {other}", path.display())),
        })?;
        crate::private::private_file(path)
            .map_err(|e| MetaError::Db(format!("{}: {e}", path.display())))?;
        let meta = Meta {
            db: Arc::new(RwLock::new(Arc::new(db))),
            path: path.to_path_buf(),
        };
        meta.create_tables()?;
        Ok(meta)
    }

    fn db(&self) -> Arc<Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The underlying database, for modules that keep their own tables in the
    /// same file (accounts, the controller, the edge cache). After `reopen`
    /// this is the new one: ask again rather than keep it.
    pub(crate) fn database(&self) -> Arc<Database> {
        self.db()
    }

    /// Opens a new, empty database at the path it was opened from in place of the current one,
    /// for every clone of this `Meta`: what the edge cache does when its
    /// directory was removed under it (the old file is gone but still open,
    /// and nothing written to it would survive a restart). Transactions
    /// already begun finish on the old file.
    pub(crate) fn reopen(&self) -> Result<()> {
        let fresh = Meta::open(&self.path)?;
        let db = fresh.db();
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = db;
        Ok(())
    }

    fn create_tables(&self) -> Result<()> {
        let tx = self.db().begin_write()?;
        tx.open_table(BLOBS)?;
        tx.open_table(REPO_BLOBS)?;
        tx.open_table(MANIFESTS)?;
        tx.open_table(MANIFEST_BYTES)?;
        tx.open_table(MANIFEST_REFS)?;
        tx.open_table(TAGS)?;
        tx.open_table(REFERRERS)?;
        tx.open_table(REPOS)?;
        {
            let mut schema = tx.open_table(SCHEMA)?;
            let found = schema.get("registry")?.map(|v| v.value());
            // A database without a version was written by the first release, or is new.
            let found = found.unwrap_or(1);
            if found > SCHEMA_VERSION {
                return Err(MetaError::Db(format!(
                    "this data directory was written by a newer berth (metadata format {found}; \
                     this berth reads formats up to {SCHEMA_VERSION}): run the newer berth, or \
                     restore a backup taken before the upgrade"
                )));
            }
            if found < SCHEMA_VERSION {
                tracing::info!(
                    from = found,
                    to = SCHEMA_VERSION,
                    "upgrading the metadata format"
                );
            }
            schema.insert("registry", SCHEMA_VERSION)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction> {
        Ok(self.db().begin_write()?)
    }

    // ---- blobs ----

    /// Size of `digest` if it is linked to `repo`.
    pub(crate) fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let tx = self.db().begin_read()?;
        let key = digest.to_string();
        if tx
            .open_table(REPO_BLOBS)?
            .get((repo.as_str(), key.as_str()))?
            .is_none()
        {
            return Ok(None);
        }
        Ok(tx
            .open_table(BLOBS)?
            .get(key.as_str())?
            .map(|v| v.value().0))
    }

    /// Size of `digest` if the CAS has it at all (no access check: internal use).
    pub(crate) fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let tx = self.db().begin_read()?;
        Ok(tx
            .open_table(BLOBS)?
            .get(digest.to_string().as_str())?
            .map(|v| v.value().0))
    }

    /// Links a blob the CAS already records; see `LinkOutcome`.
    pub(crate) fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<LinkOutcome> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let known = tx.open_table(BLOBS)?.get(key.as_str())?.is_some();
        if !known {
            return Ok(LinkOutcome::NotInStore);
        }
        let t = now();
        tx.open_table(REPO_BLOBS)?
            .insert((repo.as_str(), key.as_str()), t)?;
        ensure_repo(&tx, repo, t)?;
        tx.commit()?;
        Ok(LinkOutcome::Linked)
    }

    /// Records a blob whose bytes were just placed in the store, and links
    /// it. True when the record is new (the CAS had no record of the blob).
    pub(crate) fn record_and_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<bool> {
        self.place_record_and_link(repo, digest, size, || Ok::<(), MetaError>(()))
    }

    /// Records and links a blob while `place` puts its bytes into the store,
    /// all under one write transaction. GC decides that an object without a
    /// record is garbage under this same lock, so it can never delete bytes
    /// that an upload has placed but not yet recorded. True when the record
    /// is new.
    pub(crate) fn place_record_and_link<E: std::fmt::Display>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        place: impl FnOnce() -> std::result::Result<(), E>,
    ) -> Result<bool> {
        let tx = self.db().begin_write()?;
        place().map_err(|e| MetaError::Db(format!("placing blob {digest} in the store: {e}")))?;
        let key = digest.to_string();
        let t = now();
        let new = {
            let mut blobs = tx.open_table(BLOBS)?;
            let existing = blobs.get(key.as_str())?.map(|v| v.value());
            if existing.is_none() {
                blobs.insert(key.as_str(), (size, t))?;
            }
            existing.is_none()
        };
        tx.open_table(REPO_BLOBS)?
            .insert((repo.as_str(), key.as_str()), t)?;
        ensure_repo(&tx, repo, t)?;
        tx.commit()?;
        Ok(new)
    }

    /// Links `digest` into `to` if it is linked to any repository that `may_read` allows
    /// (`from` is tried first). Returns the size when mounted.
    pub(crate) fn mount(
        &self,
        to: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        same_project_fallback: bool,
        may_read: &dyn Fn(&str) -> bool,
    ) -> Result<Option<u64>> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let Some(size) = tx
            .open_table(BLOBS)?
            .get(key.as_str())?
            .map(|v| v.value().0)
        else {
            return Ok(None);
        };
        let mut source_ok = false;
        {
            let links = tx.open_table(REPO_BLOBS)?;
            if let Some(from) = from {
                source_ok =
                    may_read(from.as_str()) && links.get((from.as_str(), key.as_str()))?.is_some();
            }
            if !source_ok && same_project_fallback {
                let project = to.project();
                let repos = tx.open_table(REPOS)?;
                let prefix = format!("{project}/");
                let candidates = std::iter::once(project.to_string()).chain(
                    repos
                        .range(prefix.as_str()..)?
                        .map_while(|r| r.ok().map(|(k, _)| k.value().to_string()))
                        .take_while(|k| k.starts_with(&prefix)),
                );
                for repo in candidates {
                    if repo != to.as_str()
                        && links.get((repo.as_str(), key.as_str()))?.is_some()
                        && may_read(&repo)
                    {
                        source_ok = true;
                        break;
                    }
                }
            }
        }
        if !source_ok {
            return Ok(None);
        }
        let t = now();
        tx.open_table(REPO_BLOBS)?
            .insert((to.as_str(), key.as_str()), t)?;
        ensure_repo(&tx, to, t)?;
        tx.commit()?;
        Ok(Some(size))
    }

    pub(crate) fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let removed = tx
            .open_table(REPO_BLOBS)?
            .remove((repo.as_str(), digest.to_string().as_str()))?
            .is_some();
        tx.commit()?;
        Ok(removed)
    }

    // ---- manifests ----

    /// Stores a manifest and its tags in one transaction: its content, what
    /// it references, its tags, and its entry in its subject's referrers.
    /// With `References::Required` (a push) everything it references must
    /// be in the repository first.
    pub(crate) fn put_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: &[u8],
        summary: &ManifestSummary,
        tags: &[Tag],
        references: References,
    ) -> Result<std::result::Result<(), BadReference>> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let t = now();
        let linked = match references {
            References::Required => match check_references(&tx, repo, summary)? {
                Ok(linked) => linked,
                Err(bad) => return Ok(Err(bad)),
            },
            References::OnDemand => Vec::new(),
        };
        {
            // Referencing a blob refreshes its link: GC's grace window runs from here.
            let mut links = tx.open_table(REPO_BLOBS)?;
            for b in linked {
                links.insert((repo.as_str(), b.as_str()), t)?;
            }
        }
        tx.open_table(MANIFEST_BYTES)?.insert(key.as_str(), bytes)?;
        let refs = serde_json::to_vec(summary).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        tx.open_table(MANIFEST_REFS)?
            .insert(key.as_str(), refs.as_slice())?;
        tx.open_table(MANIFESTS)?.insert(
            (repo.as_str(), key.as_str()),
            (summary.media_type.as_str(), t),
        )?;
        {
            let mut tt = tx.open_table(TAGS)?;
            for tag in tags {
                tt.insert((repo.as_str(), tag.as_str()), key.as_str())?;
            }
        }
        if let Some(subject) = &summary.subject {
            tx.open_table(REFERRERS)?.insert(
                (
                    repo.as_str(),
                    subject.digest.to_string().as_str(),
                    key.as_str(),
                ),
                (),
            )?;
        }
        ensure_repo(&tx, repo, t)?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// Removes a blob's record and every link to it, and calls `delete`
    /// (which removes its bytes) under the same write lock, so that a commit
    /// of the same digest cannot record it in between and lose its bytes.
    /// Returns the size it had, or None when the CAS had no record of it.
    pub(crate) fn forget_blob<E: std::fmt::Display>(
        &self,
        digest: &Digest,
        delete: impl FnOnce() -> std::result::Result<(), E>,
    ) -> Result<Option<u64>> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let Some(size) = tx
            .open_table(BLOBS)?
            .remove(key.as_str())?
            .map(|v| v.value().0)
        else {
            return Ok(None);
        };
        {
            let mut links = tx.open_table(REPO_BLOBS)?;
            let doomed: Vec<String> = links
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(k, _)| k.value().1 == key)
                .map(|(k, _)| k.value().0.to_string())
                .collect();
            for r in doomed {
                links.remove((r.as_str(), key.as_str()))?;
            }
        }
        delete()
            .map_err(|e| MetaError::Db(format!("deleting blob {digest} from the store: {e}")))?;
        tx.commit()?;
        Ok(Some(size))
    }

    /// Every recorded blob with its size.
    pub(crate) fn all_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(BLOBS)?;
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            if let Ok(d) = k.value().parse() {
                out.push((d, v.value().0));
            }
        }
        Ok(out)
    }

    /// Every tag of every repository, with its digest (listing what a cache holds).
    pub(crate) fn all_tags(&self) -> Result<Vec<(String, String, String)>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(TAGS)?;
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            out.push((
                k.value().0.to_string(),
                k.value().1.to_string(),
                v.value().to_string(),
            ));
        }
        Ok(out)
    }

    /// The digest a tag points to.
    pub(crate) fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let tx = self.db().begin_read()?;
        let v = tx
            .open_table(TAGS)?
            .get((repo.as_str(), tag.as_str()))?
            .map(|v| v.value().to_string());
        v.map(|s| {
            s.parse()
                .map_err(|e: crate::oci::DigestError| MetaError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    pub(crate) fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        let tx = self.db().begin_read()?;
        let key = digest.to_string();
        let Some(media_type) = tx
            .open_table(MANIFESTS)?
            .get((repo.as_str(), key.as_str()))?
            .map(|v| v.value().0.to_string())
        else {
            return Ok(None);
        };
        let bytes = tx
            .open_table(MANIFEST_BYTES)?
            .get(key.as_str())?
            .map(|v| bytes::Bytes::copy_from_slice(v.value()))
            .ok_or_else(|| MetaError::Corrupt(format!("manifest {key} has no content")))?;
        Ok(Some(StoredManifest {
            digest: digest.clone(),
            media_type,
            bytes,
        }))
    }

    pub(crate) fn manifest_summary(&self, digest: &Digest) -> Result<Option<ManifestSummary>> {
        let tx = self.db().begin_read()?;
        let v = tx
            .open_table(MANIFEST_REFS)?
            .get(digest.to_string().as_str())?;
        v.map(|v| serde_json::from_slice(v.value()).map_err(|e| MetaError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Removes a manifest from a repository with its tags and its referrer entry.
    pub(crate) fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let removed = tx
            .open_table(MANIFESTS)?
            .remove((repo.as_str(), key.as_str()))?
            .is_some();
        if removed {
            let mut tags = tx.open_table(TAGS)?;
            let doomed: Vec<String> = tags
                .range((repo.as_str(), "")..(repo.as_str(), HIGH))?
                .filter_map(|r| r.ok())
                .filter(|(_, v)| v.value() == key)
                .map(|(k, _)| k.value().1.to_string())
                .collect();
            for t in doomed {
                tags.remove((repo.as_str(), t.as_str()))?;
            }
            let summary: Option<ManifestSummary> = tx
                .open_table(MANIFEST_REFS)?
                .get(key.as_str())?
                .and_then(|v| serde_json::from_slice(v.value()).ok());
            if let Some(subject) = summary.and_then(|s| s.subject) {
                tx.open_table(REFERRERS)?.remove((
                    repo.as_str(),
                    subject.digest.to_string().as_str(),
                    key.as_str(),
                ))?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    pub(crate) fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let removed = tx
            .open_table(TAGS)?
            .remove((repo.as_str(), tag.as_str()))?
            .is_some();
        tx.commit()?;
        Ok(removed)
    }

    // ---- listings ----

    pub(crate) fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        let tx = self.db().begin_read()?;
        Ok(tx.open_table(REPOS)?.get(repo.as_str())?.is_some())
    }

    /// Tags of a repository in lexical order, after `last`, at most `n`; and whether more follow.
    pub(crate) fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(TAGS)?;
        let start = last.unwrap_or("");
        let mut out = Vec::new();
        let mut more = false;
        for r in t.range((repo.as_str(), start)..(repo.as_str(), HIGH))? {
            let (k, _) = r?;
            let tag = k.value().1;
            if last.is_some() && tag == start {
                continue;
            }
            if out.len() == n {
                more = true;
                break;
            }
            out.push(tag.to_string());
        }
        Ok((out, more))
    }

    /// Tags with their digests (admin listings).
    pub(crate) fn tags_with_digests(&self, repo: &RepoName) -> Result<Vec<(String, String)>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(TAGS)?;
        let mut out = Vec::new();
        for r in t.range((repo.as_str(), "")..(repo.as_str(), HIGH))? {
            let (k, v) = r?;
            out.push((k.value().1.to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    /// Repositories after `last` that `visible` admits, at most `n`; and whether more follow.
    pub(crate) fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<String>, bool)> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(REPOS)?;
        let mut out = Vec::new();
        let mut more = false;
        for r in t.range(last.unwrap_or("")..)? {
            let (k, _) = r?;
            let name = k.value();
            if Some(name) == last || !visible(name) {
                continue;
            }
            if out.len() == n {
                more = true;
                break;
            }
            out.push(name.to_string());
        }
        Ok((out, more))
    }

    /// Repositories whose name starts with `prefix` (a project's repositories).
    pub(crate) fn repos_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(REPOS)?;
        let mut out = Vec::new();
        for r in t.range(prefix..)? {
            let (k, _) = r?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// The media type of a manifest `repo` holds, or None.
    pub(crate) fn linked_manifest_type(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        let tx = self.db().begin_read()?;
        let key = digest.to_string();
        let v = tx
            .open_table(MANIFESTS)?
            .get((repo.as_str(), key.as_str()))?
            .map(|v| v.value().0.to_string());
        Ok(v)
    }

    /// The indexes in `repo` that list `child` among their manifests.
    pub(crate) fn indexes_containing(
        &self,
        repo: &RepoName,
        child: &Digest,
    ) -> Result<Vec<Digest>> {
        let tx = self.db().begin_read()?;
        let manifests = tx.open_table(MANIFESTS)?;
        let summaries = tx.open_table(MANIFEST_REFS)?;
        let mut out = Vec::new();
        for r in manifests.range((repo.as_str(), "")..(repo.as_str(), HIGH))? {
            let (k, v) = r?;
            if crate::oci::media::manifest_kind(v.value().0)
                != Some(crate::oci::media::ManifestKind::Index)
            {
                continue;
            }
            let digest = k.value().1.to_string();
            let Some(summary) = summaries
                .get(digest.as_str())?
                .and_then(|v| serde_json::from_slice::<ManifestSummary>(v.value()).ok())
            else {
                continue;
            };
            if summary.manifests.iter().any(|m| &m.digest == child) {
                out.push(
                    digest
                        .parse()
                        .map_err(|e: crate::oci::DigestError| MetaError::Corrupt(e.to_string()))?,
                );
            }
        }
        Ok(out)
    }

    /// Manifests in `repo` whose subject is `subject`, as descriptors.
    pub(crate) fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>> {
        let tx = self.db().begin_read()?;
        let refs = tx.open_table(REFERRERS)?;
        let manifests = tx.open_table(MANIFESTS)?;
        let bytes = tx.open_table(MANIFEST_BYTES)?;
        let summaries = tx.open_table(MANIFEST_REFS)?;
        let s = subject.to_string();
        let mut out = Vec::new();
        for r in refs.range((repo.as_str(), s.as_str(), "")..(repo.as_str(), s.as_str(), HIGH))? {
            let (k, _) = r?;
            let referrer = k.value().2.to_string();
            let Some(mt) = manifests
                .get((repo.as_str(), referrer.as_str()))?
                .map(|v| v.value().0.to_string())
            else {
                continue;
            };
            let size = bytes
                .get(referrer.as_str())?
                .map(|v| v.value().len() as u64)
                .unwrap_or(0);
            let summary: Option<ManifestSummary> = summaries
                .get(referrer.as_str())?
                .and_then(|v| serde_json::from_slice(v.value()).ok());
            let digest = referrer
                .parse()
                .map_err(|e: crate::oci::DigestError| MetaError::Corrupt(e.to_string()))?;
            out.push(Descriptor {
                media_type: mt,
                digest,
                size,
                artifact_type: summary.as_ref().and_then(|s| s.artifact_type.clone()),
                annotations: summary.and_then(|s| s.annotations),
                platform: None,
                urls: None,
            });
        }
        Ok(out)
    }

    /// Removes a whole repository's metadata (admin delete); blobs go at the next GC.
    pub(crate) fn delete_repo(&self, repo: &RepoName) -> Result<()> {
        let tx = self.db().begin_write()?;
        let r = repo.as_str();
        remove_prefix2(&mut tx.open_table(REPO_BLOBS)?, r)?;
        {
            let mut t = tx.open_table(MANIFESTS)?;
            let keys: Vec<String> = t
                .range((r, "")..(r, HIGH))?
                .filter_map(|x| x.ok().map(|(k, _)| k.value().1.to_string()))
                .collect();
            for k in keys {
                t.remove((r, k.as_str()))?;
            }
        }
        {
            let mut t = tx.open_table(TAGS)?;
            let keys: Vec<String> = t
                .range((r, "")..(r, HIGH))?
                .filter_map(|x| x.ok().map(|(k, _)| k.value().1.to_string()))
                .collect();
            for k in keys {
                t.remove((r, k.as_str()))?;
            }
        }
        {
            let mut t = tx.open_table(REFERRERS)?;
            let keys: Vec<(String, String)> = t
                .range((r, "", "")..(r, HIGH, HIGH))?
                .filter_map(|x| {
                    x.ok()
                        .map(|(k, _)| (k.value().1.to_string(), k.value().2.to_string()))
                })
                .collect();
            for (a, b) in keys {
                t.remove((r, a.as_str(), b.as_str()))?;
            }
        }
        tx.open_table(REPOS)?.remove(r)?;
        tx.commit()?;
        Ok(())
    }
}

fn remove_prefix2(t: &mut redb::Table<(&str, &str), u64>, r: &str) -> Result<()> {
    let keys: Vec<String> = t
        .range((r, "")..(r, HIGH))?
        .filter_map(|x| x.ok().map(|(k, _)| k.value().1.to_string()))
        .collect();
    for k in keys {
        t.remove((r, k.as_str()))?;
    }
    Ok(())
}

/// The reference check of a manifest push: every config and layer is linked
/// to `repo` with the size its descriptor declares, except non-distributable
/// layers with URLs (see `Descriptor::fetched_from_urls`), which may be
/// absent; every index child is a manifest in `repo`, with its size. Returns
/// the digests of the linked blobs the manifest references.
fn check_references(
    tx: &redb::WriteTransaction,
    repo: &RepoName,
    summary: &ManifestSummary,
) -> Result<std::result::Result<Vec<String>, BadReference>> {
    let links = tx.open_table(REPO_BLOBS)?;
    let blobs = tx.open_table(BLOBS)?;
    let mut linked = Vec::with_capacity(summary.blobs.len());
    for b in &summary.blobs {
        let bk = b.digest.to_string();
        let size = match links.get((repo.as_str(), bk.as_str()))? {
            Some(_) => blobs.get(bk.as_str())?.map(|v| v.value().0),
            None => None,
        };
        match size {
            Some(actual) if actual != b.size => {
                return Ok(Err(BadReference::Size {
                    digest: b.digest.clone(),
                    declared: b.size,
                    actual,
                }))
            }
            Some(_) => linked.push(bk),
            None if b.fetched_from_urls() => {}
            None => return Ok(Err(BadReference::Blob(b.digest.clone()))),
        }
    }
    let manifests = tx.open_table(MANIFESTS)?;
    let contents = tx.open_table(MANIFEST_BYTES)?;
    for m in &summary.manifests {
        let mk = m.digest.to_string();
        if manifests.get((repo.as_str(), mk.as_str()))?.is_none() {
            return Ok(Err(BadReference::Manifest(m.digest.clone())));
        }
        let actual = contents
            .get(mk.as_str())?
            .map(|v| v.value().len() as u64)
            .ok_or_else(|| MetaError::Corrupt(format!("manifest {mk} has no content")))?;
        if actual != m.size {
            return Ok(Err(BadReference::Size {
                digest: m.digest.clone(),
                declared: m.size,
                actual,
            }));
        }
    }
    Ok(Ok(linked))
}

fn ensure_repo(tx: &redb::WriteTransaction, repo: &RepoName, t: u64) -> Result<()> {
    let mut repos = tx.open_table(REPOS)?;
    if repos.get(repo.as_str())?.is_none() {
        repos.insert(repo.as_str(), t)?;
    }
    Ok(())
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    #[test]
    fn a_newer_format_is_refused_and_an_older_one_upgraded() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("berth.redb");
        {
            let meta = Meta::open(&path).expect("new database");
            let tx = meta.db().begin_write().expect("tx");
            tx.open_table(SCHEMA)
                .expect("t")
                .insert("registry", SCHEMA_VERSION + 1)
                .expect("insert");
            tx.commit().expect("commit");
        }
        let err = Meta::open(&path).expect_err("newer format");
        let msg = err.to_string();
        assert!(msg.contains("written by a newer berth"), "{msg}");
        {
            // As the first release left it: no version at all.
            let db = Database::create(&path).expect("db");
            let tx = db.begin_write().expect("tx");
            tx.delete_table(SCHEMA).expect("drop");
            tx.commit().expect("commit");
        }
        let meta = Meta::open(&path).expect("older format opens");
        let tx = meta.db().begin_read().expect("tx");
        let v = tx
            .open_table(SCHEMA)
            .expect("t")
            .get("registry")
            .expect("get");
        assert_eq!(v.map(|v| v.value()), Some(SCHEMA_VERSION));
    }
}
