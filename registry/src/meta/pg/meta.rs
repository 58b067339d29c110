//! `PgMeta`'s `MetaStore`: each operation is implemented in the module of
//! its area (`blobs.rs`, `manifests.rs`, `listings.rs` with pull counts,
//! `gc.rs` with GC's history, `usage.rs` with quotas and immutable tags,
//! `retention.rs`, `webhooks.rs`, `replication.rs`); this file maps the
//! trait's calls onto them. `db.rs` says how writes are serialised across
//! replicas.

use async_trait::async_trait;
use bytes::Bytes;

use super::db::PgMeta;
use crate::meta::quota::{ImmutableRule, ProjectQuota, QuotaSetting, Recount};
use crate::meta::retention::RetentionPolicy;
use crate::meta::{
    Attempt, BadReference, BlobRecord, DeleteStep, Delivery, Execution, GcRun, LinkOutcome,
    MetaStore, NewDelivery, OutboxEvent, PreviousSecret, PullCount, QueuedEvent, References,
    ReplicationPolicy, RepoGcView, RepoSweep, RepoSwept, Result, SealedSecret, Seen, StoreStep,
    StoredManifest, TagEntry, TagRecord, Visible, Webhook,
};
use crate::oci::{Descriptor, Digest, ManifestSummary, RepoName, Tag};

#[async_trait]
impl MetaStore for PgMeta {
    /// The database's clock: every replica's writes record times from it,
    /// under the write lock. Read under that lock too, so that every write
    /// stamped earlier has committed (the fence `MetaStore::clock` promises).
    async fn clock(&self) -> Result<u64> {
        self.fenced_clock_q().await
    }
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        self.linked_blob_q(repo, digest).await
    }
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.blob_size_q(digest).await
    }
    async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<LinkOutcome> {
        self.link_blob_q(repo, digest).await
    }
    async fn record_and_link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<bool> {
        self.record_and_link_q(repo, digest, size, None).await
    }
    async fn place_record_and_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        place: StoreStep,
    ) -> Result<bool> {
        self.record_and_link_q(repo, digest, size, Some(place))
            .await
    }
    async fn mount(
        &self,
        to: &RepoName,
        digest: &Digest,
        sources: &[String],
    ) -> Result<Option<u64>> {
        self.mount_q(to, digest, sources).await
    }
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.unlink_blob_q(repo, digest).await
    }
    async fn forget_blob(&self, digest: &Digest, delete: StoreStep) -> Result<Option<u64>> {
        self.forget_blob_q(digest, delete).await
    }
    async fn blob_records(&self) -> Result<Vec<BlobRecord>> {
        self.blob_records_q().await
    }
    async fn blob_records_page(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>> {
        self.blob_records_page_q(after, limit).await
    }
    async fn put_manifest_queued(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: Bytes,
        summary: &ManifestSummary,
        tags: &[Tag],
        references: References,
        event: Option<&OutboxEvent>,
    ) -> Result<std::result::Result<u64, BadReference>> {
        self.put_manifest_q(repo, digest, &bytes, summary, tags, references, event)
            .await
    }
    async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        self.get_manifest_q(repo, digest).await
    }
    async fn manifest_summary(&self, digest: &Digest) -> Result<Option<ManifestSummary>> {
        self.manifest_summary_q(digest).await
    }
    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        self.resolve_tag_q(repo, tag).await
    }
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.delete_manifest_q(repo, digest).await
    }
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        self.delete_tag_q(repo, tag).await
    }
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>> {
        self.referrers_q(repo, subject).await
    }
    async fn linked_manifest_type(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        self.linked_manifest_type_q(repo, digest).await
    }
    async fn indexes_containing(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>> {
        self.indexes_containing_q(repo, child).await
    }
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        self.repo_exists_q(repo).await
    }
    async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)> {
        self.tags_q(repo, last, n).await
    }
    async fn tags_with_digests(&self, repo: &RepoName) -> Result<Vec<(String, String)>> {
        self.tags_with_digests_q(repo).await
    }
    async fn all_tags(&self) -> Result<Vec<TagEntry>> {
        self.all_tags_q().await
    }
    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)> {
        self.catalog_q(last, n, visible).await
    }
    async fn repos_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        self.repos_with_prefix_q(prefix).await
    }
    async fn delete_repo(&self, repo: &RepoName) -> Result<bool> {
        self.delete_repo_q(repo).await
    }
    async fn gc_view(&self, repo: &RepoName) -> Result<RepoGcView> {
        self.gc_view_q(repo).await
    }
    async fn gc_sweep_manifests(
        &self,
        repo: &RepoName,
        dead: &[Seen],
        seen_at: u64,
    ) -> Result<Vec<Digest>> {
        self.gc_sweep_manifests_q(repo, dead, seen_at).await
    }
    async fn gc_sweep_links(&self, repo: &RepoName, dead: &[Seen], seen_at: u64) -> Result<u64> {
        self.gc_sweep_links_q(repo, dead, seen_at).await
    }
    async fn gc_sweep_repos(&self, sweeps: &[RepoSweep], seen_at: u64) -> Result<Vec<RepoSwept>> {
        self.gc_sweep_repos_q(sweeps, seen_at).await
    }
    async fn gc_drop_blobs(&self, candidates: &[Digest], cutoff: u64) -> Result<Vec<BlobRecord>> {
        self.gc_drop_blobs_q(candidates, cutoff).await
    }
    async fn delete_unrecorded(&self, digests: &[Digest], delete: DeleteStep) -> Result<u64> {
        self.delete_unrecorded_q(digests, &delete).await
    }
    async fn unrecorded(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.unrecorded_q(digests).await
    }
    async fn quota(&self, project: &str) -> Result<ProjectQuota> {
        self.quota_q(project).await
    }
    async fn project_holds(&self, project: &str, digest: &Digest) -> Result<bool> {
        self.project_holds_q(project, digest).await
    }
    async fn set_quota(&self, project: Option<&str>, setting: Option<QuotaSetting>) -> Result<()> {
        self.set_quota_q(project, setting).await
    }
    async fn recount_usage(&self, project: &str) -> Result<Recount> {
        self.recount_usage_q(project).await
    }
    async fn immutable_rules(&self, project: &str) -> Result<Vec<ImmutableRule>> {
        self.immutable_rules_q(project).await
    }
    async fn immutable_rule_add(&self, project: &str, pattern: &str) -> Result<bool> {
        self.immutable_rule_add_q(project, pattern).await
    }
    async fn immutable_rule_remove(&self, project: &str, pattern: &str) -> Result<bool> {
        self.immutable_rule_remove_q(project, pattern).await
    }
    async fn forget_project(&self, project: &str) -> Result<()> {
        self.forget_project_q(project).await
    }
    async fn pulls_record(&self, counts: &[PullCount]) -> Result<()> {
        self.pulls_record_q(counts).await
    }
    async fn pulls(&self, repo: &RepoName) -> Result<Vec<PullCount>> {
        self.pulls_q(repo).await
    }
    async fn tag_records(&self, repo: &RepoName) -> Result<Vec<TagRecord>> {
        self.tag_records_q(repo).await
    }
    async fn retention_policy(&self, project: &str) -> Result<Option<RetentionPolicy>> {
        self.retention_policy_q(project).await
    }
    async fn retention_policies(&self) -> Result<Vec<(String, RetentionPolicy)>> {
        self.retention_policies_q().await
    }
    async fn retention_policy_set(
        &self,
        project: &str,
        policy: Option<&RetentionPolicy>,
    ) -> Result<()> {
        self.retention_policy_set_q(project, policy).await
    }
    async fn retention_untag(
        &self,
        repo: &RepoName,
        tag: &str,
        digest: &str,
        override_immutable: bool,
    ) -> Result<bool> {
        self.retention_untag_q(repo, tag, digest, override_immutable)
            .await
    }
    async fn gc_run_record(&self, run: &GcRun, keep: usize) -> Result<u64> {
        self.gc_run_record_q(run, keep).await
    }
    async fn gc_runs(&self, limit: usize) -> Result<Vec<GcRun>> {
        self.gc_runs_q(limit).await
    }
    async fn webhook_put(&self, webhook: &Webhook) -> Result<()> {
        self.webhook_put_q(webhook).await
    }
    async fn webhook_get(&self, id: &str) -> Result<Option<Webhook>> {
        self.webhook_get_q(id).await
    }
    async fn webhooks(&self, project: Option<&str>) -> Result<Vec<Webhook>> {
        self.webhooks_q(project).await
    }
    async fn webhook_delete(&self, id: &str) -> Result<bool> {
        self.webhook_delete_q(id).await
    }
    async fn webhook_rotate(
        &self,
        id: &str,
        current: &SealedSecret,
        secret: &SealedSecret,
        previous: Option<&PreviousSecret>,
    ) -> Result<bool> {
        self.webhook_rotate_q(id, current, secret, previous).await
    }
    async fn webhook_drop_previous(&self, id: &str, until: u64) -> Result<bool> {
        self.webhook_drop_previous_q(id, until).await
    }
    async fn outbox_push(&self, events: &[NewDelivery], cap: u64, log_keep: u64) -> Result<u64> {
        self.outbox_push_q(events, cap, log_keep).await
    }
    async fn outbox_heads(&self) -> Result<Vec<QueuedEvent>> {
        self.outbox_heads_q().await
    }
    async fn outbox_attempt(&self, webhook: &str, seq: u64, attempt: &Attempt) -> Result<bool> {
        self.outbox_attempt_q(webhook, seq, attempt).await
    }
    async fn webhook_deliveries(&self, webhook: &str, limit: usize) -> Result<Vec<Delivery>> {
        self.webhook_deliveries_q(webhook, limit).await
    }
    async fn replication_put(&self, policy: &ReplicationPolicy) -> Result<()> {
        self.replication_put_q(policy).await
    }
    async fn replication_get(&self, name: &str) -> Result<Option<ReplicationPolicy>> {
        self.replication_get_q(name).await
    }
    async fn replications(&self) -> Result<Vec<ReplicationPolicy>> {
        self.replications_q().await
    }
    async fn reseal(
        &self,
        sealer: std::sync::Arc<dyn crate::sealing::Sealer>,
    ) -> Result<crate::sealing::ResealReport> {
        self.reseal_q(sealer.as_ref()).await
    }
    async fn replication_delete(&self, name: &str) -> Result<bool> {
        self.replication_delete_q(name).await
    }
    async fn execution_create(&self, execution: &Execution) -> Result<u64> {
        self.execution_create_q(execution).await
    }
    async fn execution_put(&self, execution: &Execution) -> Result<()> {
        self.execution_put_q(execution).await
    }
    async fn execution_get(&self, policy: &str, id: u64) -> Result<Option<Execution>> {
        self.execution_get_q(policy, id).await
    }
    async fn executions(&self, policy: Option<&str>, limit: usize) -> Result<Vec<Execution>> {
        self.executions_q(policy, limit).await
    }
}
