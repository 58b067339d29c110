//! Registry metadata: what each repository holds (blob links, manifests,
//! tags, referrers), the record of every blob in the content store, pull
//! counts (`listing.rs`), GC's history (`history.rs`), each project's usage,
//! storage limit and immutable-tag rules (`quota.rs`), the projects' webhook
//! endpoints with their outbox and delivery log, and the replication policies
//! with their executions.
//!
//! `MetaStore` is the interface; `RedbMeta` (in `redb/`) the embedded
//! implementation, one redb file, the default; `pg::PgMeta` the same on
//! PostgreSQL, shared by replicas. The same backend keeps the accounts
//! (`auth::store::AccountStore`, through `RedbMeta::accounts`), so that
//! redb is touched here only and a server database implements both
//! interfaces over one connection pool. The interface carries no database
//! types and suits an async driver; `conformance.rs` is the suite every
//! implementation runs. Each operation is one transaction: what a caller needs to happen
//! atomically (a push's reference check and record, a blob's placing and
//! record, GC's re-checks) is one operation here, never composed by callers.
//!
//! Content-store work that must happen under the metadata's write lock
//! (placing a blob while recording it, deleting one while forgetting it) is
//! handed in as a `StoreStep`: the implementation runs it inside the
//! transaction, and does not commit if it fails.
//!
//! Everything above this module speaks in domain types; nothing outside it
//! knows about redb. `LocalRegistry` is the door to it for everyone else.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;

use crate::oci::{Descriptor, Digest, ManifestSummary, RepoName, Tag};
use crate::sealing::ResealReport;

mod cache;
#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
mod conformance_replication;
mod history;
mod listing;
mod mark;
mod outbox;
pub mod pg;
pub mod quota;
pub(crate) mod read_cache;
mod redb;
mod replication;
pub mod retention;

pub use self::cache::{CacheBook, TagClockOwner};
pub use self::history::GcRun;
pub use self::listing::{PullCount, TagRecord};
pub use self::mark::{kept_in_sweep, mark};
pub use self::outbox::{
    Attempt, AttemptNext, Delivery, DeliveryStatus, NewDelivery, OutboxEvent, PreviousSecret,
    QueuedEvent, SealedSecret, Webhook,
};
pub use self::redb::{RedbAccounts, RedbMeta, SCHEMA_VERSION};
pub use self::replication::{
    BlobProgress, BlobStatus, Direction, Execution, ExecutionStatus, ImageProgress, ItemStatus,
    RemoteRegistry, ReplicationPolicy, ReplicationTrigger,
};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Db(String),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// A `StoreStep` failed; nothing was recorded.
    #[error("{0}")]
    Store(String),
    /// A write that would take a project over its storage limit; nothing
    /// was recorded (and a `StoreStep` not run).
    #[error("{0}")]
    Quota(quota::QuotaExceeded),
    /// A change to a tag an immutable-tag rule protects; nothing was changed.
    #[error("{0}")]
    Immutable(quota::ImmutableTag),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Content-store work run under the metadata's write lock; its error
/// message says what failed.
pub type StoreStep = BoxFuture<'static, std::result::Result<(), String>>;

/// Deletes an unrecorded blob's bytes under the write lock (GC's store
/// sweep); the step decides itself whether the object is old enough.
pub type DeleteStep = Arc<dyn Fn(Digest) -> StoreStep + Send + Sync>;

/// Which repository names a caller may see.
pub type Visible<'a> = &'a (dyn Fn(&str) -> bool + Send + Sync);

/// A manifest as stored: its content and media type.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// A blob as the CAS index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    pub digest: Digest,
    pub size: u64,
    /// Unix seconds when it was first recorded.
    pub recorded_at: u64,
}

/// A tag with the manifest it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    pub repo: String,
    pub tag: String,
    pub digest: String,
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

/// One repository as GC's mark reads it, from one consistent snapshot.
#[derive(Debug, Clone, Default)]
pub struct RepoGcView {
    /// Manifest digest → (pushed at, what it references).
    pub manifests: BTreeMap<Digest, (u64, Option<ManifestSummary>)>,
    /// Digests that tags point to.
    pub tagged: BTreeSet<Digest>,
    /// Linked blob digest → linked at.
    pub links: BTreeMap<Digest, u64>,
}

/// Something GC found dead in a snapshot, with the timestamp it saw: the
/// sweep removes it only if that timestamp is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub digest: Digest,
    pub at: u64,
}

/// One repository's part of a sweep of several (`MetaStore::gc_sweep_repos`):
/// what GC saw dead in its snapshot.
#[derive(Debug, Clone)]
pub struct RepoSweep {
    pub repo: RepoName,
    /// Dead manifests, parents and subjects first.
    pub manifests: Vec<Seen>,
    /// Dead links.
    pub links: Vec<Seen>,
}

/// What a sweep removed from one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoSwept {
    pub manifests: Vec<Digest>,
    pub links: u64,
}

/// The registry's metadata. Every operation is atomic; writes are
/// serialised with each other (one writer at a time).
///
/// Every write that links a blob to a repository or adds a manifest to one
/// (`link_blob`, `record_and_link`, `place_record_and_link`, `mount`,
/// `put_manifest`) counts it in the project's usage if the project did not
/// hold that digest yet, and fails with `MetaError::Quota`, writing
/// nothing, when that would take the project over its limit. Every write
/// that removes the project's last link or manifest of a digest
/// (`unlink_blob`, `forget_blob`, `delete_manifest`, `delete_repo`, GC's
/// sweeps) takes it out of the usage. A push that moves a tag, and a
/// deletion of a tag, of a manifest a tag points to or of a repository
/// with tags, fail with `MetaError::Immutable` when a rule of the project
/// protects one of those tags.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    // ---- blobs ----

    /// Size of `digest` if it is linked to `repo`.
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    /// Size of `digest` if the CAS records it at all (no access check).
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Links a blob the CAS already records, refreshing the link's time.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<LinkOutcome>;
    /// Records a blob whose bytes are in the store (unless recorded; the
    /// first record's size and time stay) and links it to `repo`. True
    /// when the record is new.
    async fn record_and_link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<bool>;
    /// As `record_and_link`, running `place` (which puts the bytes into the
    /// store) under the same write lock first: GC decides that an object
    /// without a record is garbage under this lock, so it never deletes
    /// bytes placed but not yet recorded. Nothing is recorded if `place` fails.
    async fn place_record_and_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        place: StoreStep,
    ) -> Result<bool>;
    /// Links `digest` into `to` if the CAS records it and it is linked to
    /// one of `sources` (the repositories the caller may read). Its size
    /// when mounted.
    async fn mount(
        &self,
        to: &RepoName,
        digest: &Digest,
        sources: &[String],
    ) -> Result<Option<u64>>;
    /// Removes a blob's link from `repo`; false when there was none.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Removes a blob's record and every link to it and runs `delete`
    /// (which removes its bytes) under the same write lock, so a commit of
    /// the same digest cannot record it in between and lose its bytes.
    /// The size it had, or None (and `delete` not run) when not recorded.
    async fn forget_blob(&self, digest: &Digest, delete: StoreStep) -> Result<Option<u64>>;
    /// Every blob record, in digest order.
    async fn blob_records(&self) -> Result<Vec<BlobRecord>>;
    /// Blob records in digest order after `after`, at most `limit` (GC
    /// pages through them instead of holding them all).
    async fn blob_records_page(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>>;

    // ---- manifests and tags ----

    /// Stores a manifest in one transaction: its content, what it
    /// references, its tags, its entry in its subject's referrers, and its
    /// repository. With `References::Required` (a push) every blob and
    /// index child must be in the repository with the declared size first,
    /// else nothing is written; the links of the blobs it references are
    /// refreshed (GC's grace window runs from here).
    async fn put_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: Bytes,
        summary: &ManifestSummary,
        tags: &[Tag],
        references: References,
    ) -> Result<std::result::Result<(), BadReference>> {
        let stored = self
            .put_manifest_queued(repo, digest, bytes, summary, tags, references, None)
            .await?;
        Ok(stored.map(|_| ()))
    }
    /// `put_manifest`, also queuing `event` (a push's) for its project's
    /// endpoints that take it (`outbox_push`'s rules) in the same
    /// transaction: stored with the manifest, or not at all. How many
    /// older events the queues' caps dropped.
    #[allow(clippy::too_many_arguments)]
    async fn put_manifest_queued(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: Bytes,
        summary: &ManifestSummary,
        tags: &[Tag],
        references: References,
        event: Option<&OutboxEvent>,
    ) -> Result<std::result::Result<u64, BadReference>>;
    async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>>;
    /// What a manifest references, whichever repository holds it.
    async fn manifest_summary(&self, digest: &Digest) -> Result<Option<ManifestSummary>>;
    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>>;
    /// The manifest `tag` points to in `repo`: what a GET by tag asks, in one
    /// read where the backend can.
    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<StoredManifest>> {
        match self.resolve_tag(repo, tag).await? {
            Some(digest) => self.get_manifest(repo, &digest).await,
            None => Ok(None),
        }
    }
    /// Removes a manifest from a repository with its tags and its referrer
    /// entry; false when it was not there. Its content stays (so
    /// `manifest_summary` still answers) until GC's sweep finds no
    /// repository holding it.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Removes a tag (its manifest stays); false when there was none.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    /// The media type of a manifest `repo` holds, or None.
    async fn linked_manifest_type(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<String>>;
    /// The indexes in `repo` that list `child` among their manifests, in
    /// digest order.
    async fn indexes_containing(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>>;
    /// Manifests in `repo` whose subject is `subject`, as descriptors, in
    /// digest order.
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>>;

    // ---- repositories and listings ----

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool>;
    /// Tags of a repository in lexical order, after `last`, at most `n`;
    /// and whether more follow.
    async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)>;
    /// A repository's tags with their digests, in tag order.
    async fn tags_with_digests(&self, repo: &RepoName) -> Result<Vec<(String, String)>>;
    /// Every tag of every repository, by repository and tag.
    async fn all_tags(&self) -> Result<Vec<TagEntry>>;
    /// Repositories after `last` that `visible` admits, in lexical order,
    /// at most `n`; and whether more follow.
    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)>;
    /// Repositories whose name starts with `prefix`, in lexical order.
    async fn repos_with_prefix(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes a repository's manifests, tags, referrers and links; false
    /// when there was no such repository. Its blobs go at the next GC.
    async fn delete_repo(&self, repo: &RepoName) -> Result<bool>;

    // ---- garbage collection (see gc.rs) ----

    /// The metadata's clock, Unix seconds: the clock the times it records
    /// (link, record and push times) are read from, and so the one GC
    /// measures its grace window by (`seen_at` and `cutoff` come from
    /// here). The embedded store's is this machine's (`now()`); a store
    /// shared by replicas answers with the database's, so that a replica
    /// whose clock runs behind or ahead neither collects another's fresh
    /// upload early nor keeps garbage late.
    ///
    /// It is also a fence: a write that read the clock before this reading
    /// has committed by the time it returns, so a snapshot taken after it
    /// sees every write stamped earlier, and a write it does not see is
    /// stamped no earlier. GC's sweeps rely on that to keep what a push
    /// still in flight while GC read its snapshots references (a push
    /// stamped 100 that commits after a snapshot taken at 101 would
    /// otherwise be neither in the snapshot nor "pushed since").
    async fn clock(&self) -> Result<u64>;

    /// One repository as GC's mark needs it, from one snapshot (no lock).
    async fn gc_view(&self, repo: &RepoName) -> Result<RepoGcView>;
    /// Removes, in one transaction, each manifest of `dead` (in order) that
    /// is still in `repo` with the push time GC saw, that no tag points
    /// to, and that no manifest in `repo` pushed at or after `seen_at`
    /// lists as a child; with its referrer entry, and its content when no
    /// repository holds it any more. The digests removed.
    async fn gc_sweep_manifests(
        &self,
        repo: &RepoName,
        dead: &[Seen],
        seen_at: u64,
    ) -> Result<Vec<Digest>>;
    /// Removes, in one transaction, each link of `dead` still in `repo`
    /// with the link time GC saw, unless a manifest in `repo` pushed at or
    /// after `seen_at` references the blob. How many were removed.
    async fn gc_sweep_links(&self, repo: &RepoName, dead: &[Seen], seen_at: u64) -> Result<u64>;
    /// Sweeps several small repositories in one transaction (fewer, not
    /// longer, waits for the writer: GC bounds the records per call). In
    /// each, in order: its manifests as `gc_sweep_manifests` removes them,
    /// then its links as `gc_sweep_links` does, except the links of blobs
    /// that a manifest of its `manifests` the sweep kept references (pushed
    /// or tagged since, or reached by one that was). What went, per sweep.
    async fn gc_sweep_repos(&self, sweeps: &[RepoSweep], seen_at: u64) -> Result<Vec<RepoSwept>>;
    /// Drops, in one transaction, the record of each blob of `candidates`
    /// recorded at or before `cutoff` that no repository links. The
    /// records dropped, with their sizes, in the order of `candidates`.
    async fn gc_drop_blobs(&self, candidates: &[Digest], cutoff: u64) -> Result<Vec<BlobRecord>>;
    /// Runs `delete` for each of `digests` that has no record (one
    /// recorded meanwhile is skipped), so that no write records one of them
    /// while its bytes go: under the write lock, or (redb) with the digests
    /// claimed so that only a write of the same digest waits. How many it
    /// ran for.
    async fn delete_unrecorded(&self, digests: &[Digest], delete: DeleteStep) -> Result<u64>;
    /// Those of `digests` the CAS has no record of, in their order (GC's
    /// scan for objects nothing recorded).
    async fn unrecorded(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for d in digests {
            if self.blob_size(d).await?.is_none() {
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    // ---- quotas and immutable tags (see quota.rs) ----

    /// A project's usage, its own limit setting and the registry default.
    async fn quota(&self, project: &str) -> Result<quota::ProjectQuota>;
    /// Whether `project` holds `digest` (so pushing it again adds nothing).
    async fn project_holds(&self, project: &str, digest: &Digest) -> Result<bool>;
    /// Sets (`Some`) or removes (`None`) the limit of `project`, or with
    /// `project` None the registry default (where `Unlimited` removes it).
    async fn set_quota(
        &self,
        project: Option<&str>,
        setting: Option<quota::QuotaSetting>,
    ) -> Result<()>;
    /// Rebuilds a project's usage from its links and manifests, in one
    /// transaction; the counter before and after.
    async fn recount_usage(&self, project: &str) -> Result<quota::Recount>;
    /// A project's immutable-tag rules, by pattern.
    async fn immutable_rules(&self, project: &str) -> Result<Vec<quota::ImmutableRule>>;
    /// Adds a rule; false when the project had it already.
    async fn immutable_rule_add(&self, project: &str, pattern: &str) -> Result<bool>;
    /// Removes a rule; false when there was none.
    async fn immutable_rule_remove(&self, project: &str, pattern: &str) -> Result<bool>;
    /// Drops a deleted project's limit, immutable-tag and retention rules
    /// (its repositories are deleted first) and recounts what is left of
    /// its usage.
    async fn forget_project(&self, project: &str) -> Result<()>;
    // ---- the image list (see listing.rs) ----

    /// Adds pull counts (to the count, keeping the later last-pull time),
    /// in one transaction. Counts for manifests a repository no longer
    /// holds are kept too (harmless; they go with the repository).
    async fn pulls_record(&self, counts: &[PullCount]) -> Result<()>;
    /// The pull counts of every manifest of `repo` pulled at least once, in
    /// digest order.
    async fn pulls(&self, repo: &RepoName) -> Result<Vec<PullCount>>;
    /// A repository's tags in tag order, with their manifests' media types
    /// and push times.
    async fn tag_records(&self, repo: &RepoName) -> Result<Vec<TagRecord>>;

    // ---- retention (see retention.rs) ----

    /// A project's retention rules, if it has any.
    async fn retention_policy(&self, project: &str) -> Result<Option<retention::RetentionPolicy>>;
    /// Every project's retention rules, by project.
    async fn retention_policies(&self) -> Result<Vec<(String, retention::RetentionPolicy)>>;
    /// Sets (`Some`) or removes (`None`) a project's retention rules.
    async fn retention_policy_set(
        &self,
        project: &str,
        policy: Option<&retention::RetentionPolicy>,
    ) -> Result<()>;
    /// Removes `tag` from `repo` if it still points to `digest` (false, and
    /// nothing changes, when it moved or is gone). Refused with
    /// `MetaError::Immutable` when a rule protects the tag, unless
    /// `override_immutable` (a retention rule with `include_immutable`).
    async fn retention_untag(
        &self,
        repo: &RepoName,
        tag: &str,
        digest: &str,
        override_immutable: bool,
    ) -> Result<bool>;

    // ---- GC's history ----

    /// Records a finished GC run under the next id (the id given is
    /// ignored) and keeps only the newest `keep` runs. The id it got.
    async fn gc_run_record(&self, run: &GcRun, keep: usize) -> Result<u64>;
    /// The recorded GC runs, newest first, at most `limit`.
    async fn gc_runs(&self, limit: usize) -> Result<Vec<GcRun>>;

    // ---- webhooks (see outbox.rs) ----

    /// Creates or replaces an endpoint (by id); a replaced endpoint keeps
    /// its queue, its log and its sequence numbers.
    async fn webhook_put(&self, webhook: &Webhook) -> Result<()>;
    async fn webhook_get(&self, id: &str) -> Result<Option<Webhook>>;
    /// The endpoints of `project`, or of every project, by id.
    async fn webhooks(&self, project: Option<&str>) -> Result<Vec<Webhook>>;
    /// Removes an endpoint with its queue and delivery log; false when
    /// there was none.
    async fn webhook_delete(&self, id: &str) -> Result<bool>;
    /// Sets an endpoint's secrets (only them) if its secret is still
    /// `current`: a rotation. False, and nothing written, when the endpoint
    /// is gone or its secret changed meanwhile.
    async fn webhook_rotate(
        &self,
        id: &str,
        current: &SealedSecret,
        secret: &SealedSecret,
        previous: Option<&PreviousSecret>,
    ) -> Result<bool>;
    /// Drops an endpoint's previous secret if its overlap ends at `until`
    /// (a later rotation's is kept); whether it dropped one.
    async fn webhook_drop_previous(&self, id: &str, until: u64) -> Result<bool>;
    /// Appends each event to its endpoint's queue (and a pending entry to
    /// its log), in one transaction, in the order given. A queue longer
    /// than `cap` loses its oldest events (logged as dropped); the log
    /// keeps the last `cap + log_keep` entries. Events for endpoints that
    /// do not exist are ignored. How many events were dropped.
    async fn outbox_push(&self, events: &[NewDelivery], cap: u64, log_keep: u64) -> Result<u64>;
    /// The oldest undelivered event of each endpoint that has one, by
    /// endpoint id.
    async fn outbox_heads(&self) -> Result<Vec<QueuedEvent>>;
    /// Records an attempt to deliver event `seq` of `webhook`, if it is
    /// still the head of its queue (else false, and nothing changes):
    /// delivered or given up, it leaves the queue; else it waits.
    async fn outbox_attempt(&self, webhook: &str, seq: u64, attempt: &Attempt) -> Result<bool>;
    /// An endpoint's delivery log, newest first, at most `limit`.
    async fn webhook_deliveries(&self, webhook: &str, limit: usize) -> Result<Vec<Delivery>>;

    // ---- replication (see replication.rs) ----

    /// Creates or replaces a policy (by name).
    async fn replication_put(&self, policy: &ReplicationPolicy) -> Result<()>;
    async fn replication_get(&self, name: &str) -> Result<Option<ReplicationPolicy>>;
    /// Every policy, by name.
    async fn replications(&self) -> Result<Vec<ReplicationPolicy>>;
    /// Removes a policy with its executions; false when there was none.
    async fn replication_delete(&self, name: &str) -> Result<bool>;
    /// Records a new execution of `execution.policy` under the next id (the
    /// id given is ignored); the id. The policy need not be saved.
    async fn execution_create(&self, execution: &Execution) -> Result<u64>;
    /// Replaces an execution (by policy and id).
    async fn execution_put(&self, execution: &Execution) -> Result<()>;
    async fn execution_get(&self, policy: &str, id: u64) -> Result<Option<Execution>>;
    /// The executions of `policy`, or of every saved policy (by name), newest
    /// first, at most `limit` (per policy).
    async fn executions(&self, policy: Option<&str>, limit: usize) -> Result<Vec<Execution>>;

    // ---- sealing-key rotation ----

    /// Seals every webhook's secret and every replication policy's remote
    /// password again with `sealer`'s current key, in one transaction;
    /// the counts by kind (`WEBHOOK_SECRETS`, `REPLICATION_PASSWORDS`). A
    /// value no configured key opens stays as it is, counted as failed.
    async fn reseal(&self, sealer: Arc<dyn crate::sealing::Sealer>) -> Result<ResealReport>;
}

/// The kinds of sealed values `MetaStore::reseal` counts.
pub const WEBHOOK_SECRETS: &str = "webhook_secrets";
pub const REPLICATION_PASSWORDS: &str = "replication_passwords";

/// Where a webhook's secret is sealed (its associated data).
pub fn webhook_secret_place(id: &str) -> String {
    format!("webhook/{id}/secret")
}

/// Where a webhook's previous secret is sealed during a rotation's overlap.
pub fn webhook_previous_secret_place(id: &str) -> String {
    format!("webhook/{id}/previous-secret")
}
