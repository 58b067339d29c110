//! `RedbMeta` as a `MetaStore`: reads run where they are called, writes on the
//! writer thread (`RedbMeta::write`); the operations are in the sibling modules.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::RedbMeta;
use crate::meta::quota::{ImmutableRule, ProjectQuota, QuotaSetting, Recount};
use crate::meta::retention::RetentionPolicy;
use crate::meta::{
    now, Attempt, BadReference, BlobRecord, DeleteStep, Delivery, Execution, GcRun, LinkOutcome,
    MetaStore, NewDelivery, OutboxEvent, PreviousSecret, PullCount, QueuedEvent, References,
    ReplicationPolicy, RepoGcView, RepoSweep, RepoSwept, Result, SealedSecret, Seen, StoreStep,
    StoredManifest, TagEntry, TagRecord, Visible, Webhook,
};
use crate::oci::{Descriptor, Digest, ManifestSummary, RepoName, Tag};

#[async_trait]
impl MetaStore for RedbMeta {
    /// This machine's clock, read on the writer after the writes queued
    /// before (the fence `MetaStore::clock` promises): writes stamp their
    /// times on the writer, one at a time, and commit before the next runs.
    async fn clock(&self) -> Result<u64> {
        self.write(|_| Ok(now())).await
    }
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        self.linked_blob_now(repo, digest)
    }
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.blob_size_now(digest)
    }
    async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<LinkOutcome> {
        let (r, d) = (repo.clone(), digest.clone());
        self.write(move |m| m.link_blob_now(&r, &d)).await
    }
    async fn record_and_link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<bool> {
        self.record_in_group(repo, digest, size, None).await
    }
    async fn place_record_and_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        place: StoreStep,
    ) -> Result<bool> {
        self.record_in_group(repo, digest, size, Some(place)).await
    }
    async fn mount(
        &self,
        to: &RepoName,
        digest: &Digest,
        sources: &[String],
    ) -> Result<Option<u64>> {
        let (t, d, s) = (to.clone(), digest.clone(), sources.to_vec());
        self.write(move |m| m.mount_now(&t, &d, &s)).await
    }
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (r, d) = (repo.clone(), digest.clone());
        self.write(move |m| m.unlink_blob_now(&r, &d)).await
    }
    async fn forget_blob(&self, digest: &Digest, delete: StoreStep) -> Result<Option<u64>> {
        let d = digest.clone();
        let handle = tokio::runtime::Handle::current();
        self.write(move |m| m.forget_blob_now(&d, &handle, delete))
            .await
    }
    async fn blob_records(&self) -> Result<Vec<BlobRecord>> {
        self.blob_records_now()
    }
    async fn blob_records_page(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>> {
        self.blob_records_page_now(after, limit)
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
        let (r, d, s, t) = (repo.clone(), digest.clone(), summary.clone(), tags.to_vec());
        let e = event.cloned();
        self.write(move |m| m.put_manifest_now(&r, &d, &bytes, &s, &t, references, e.as_ref()))
            .await
    }
    async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        self.get_manifest_now(repo, digest)
    }
    async fn manifest_summary(&self, digest: &Digest) -> Result<Option<ManifestSummary>> {
        self.manifest_summary_now(digest)
    }
    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        self.resolve_tag_now(repo, tag)
    }
    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<StoredManifest>> {
        self.manifest_by_tag_now(repo, tag)
    }
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (r, d) = (repo.clone(), digest.clone());
        self.write(move |m| m.delete_manifest_now(&r, &d)).await
    }
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let (r, t) = (repo.clone(), tag.clone());
        self.write(move |m| m.delete_tag_now(&r, &t)).await
    }
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Descriptor>> {
        self.referrers_now(repo, subject)
    }
    async fn linked_manifest_type(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        self.linked_manifest_type_now(repo, digest)
    }
    async fn indexes_containing(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>> {
        self.indexes_containing_now(repo, child)
    }

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        self.repo_exists_now(repo)
    }
    async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)> {
        self.tags_now(repo, last, n)
    }
    async fn tags_with_digests(&self, repo: &RepoName) -> Result<Vec<(String, String)>> {
        self.tags_with_digests_now(repo)
    }
    async fn all_tags(&self) -> Result<Vec<TagEntry>> {
        self.all_tags_now()
    }
    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)> {
        self.catalog_now(last, n, visible)
    }
    async fn repos_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        self.repos_with_prefix_now(prefix)
    }
    async fn delete_repo(&self, repo: &RepoName) -> Result<bool> {
        let r = repo.clone();
        self.write(move |m| m.delete_repo_now(&r)).await
    }

    async fn gc_view(&self, repo: &RepoName) -> Result<RepoGcView> {
        self.gc_view_now(repo)
    }
    async fn gc_sweep_manifests(
        &self,
        repo: &RepoName,
        dead: &[Seen],
        seen_at: u64,
    ) -> Result<Vec<Digest>> {
        let (r, d) = (repo.clone(), dead.to_vec());
        self.write(move |m| m.gc_sweep_manifests_now(&r, &d, seen_at))
            .await
    }
    async fn gc_sweep_links(&self, repo: &RepoName, dead: &[Seen], seen_at: u64) -> Result<u64> {
        let (r, d) = (repo.clone(), dead.to_vec());
        self.write(move |m| m.gc_sweep_links_now(&r, &d, seen_at))
            .await
    }
    async fn gc_sweep_repos(&self, sweeps: &[RepoSweep], seen_at: u64) -> Result<Vec<RepoSwept>> {
        let s = sweeps.to_vec();
        self.write(move |m| m.gc_sweep_repos_now(&s, seen_at)).await
    }
    async fn gc_drop_blobs(&self, candidates: &[Digest], cutoff: u64) -> Result<Vec<BlobRecord>> {
        let c = candidates.to_vec();
        self.write(move |m| m.gc_drop_blobs_now(&c, cutoff)).await
    }
    async fn delete_unrecorded(&self, digests: &[Digest], delete: DeleteStep) -> Result<u64> {
        self.delete_unrecorded_claimed(digests, delete).await
    }
    async fn unrecorded(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.unrecorded_now(digests)
    }

    async fn quota(&self, project: &str) -> Result<ProjectQuota> {
        self.quota_now(project)
    }
    async fn project_holds(&self, project: &str, digest: &Digest) -> Result<bool> {
        self.project_holds_now(project, digest)
    }
    async fn set_quota(&self, project: Option<&str>, setting: Option<QuotaSetting>) -> Result<()> {
        let p = project.map(str::to_string);
        self.write(move |m| m.set_quota_now(p.as_deref(), setting))
            .await
    }
    async fn recount_usage(&self, project: &str) -> Result<Recount> {
        let p = project.to_string();
        self.write(move |m| m.recount_usage_now(&p)).await
    }
    async fn immutable_rules(&self, project: &str) -> Result<Vec<ImmutableRule>> {
        self.immutable_rules_now(project)
    }
    async fn immutable_rule_add(&self, project: &str, pattern: &str) -> Result<bool> {
        let (p, t) = (project.to_string(), pattern.to_string());
        self.write(move |m| m.immutable_rule_add_now(&p, &t)).await
    }
    async fn immutable_rule_remove(&self, project: &str, pattern: &str) -> Result<bool> {
        let (p, t) = (project.to_string(), pattern.to_string());
        self.write(move |m| m.immutable_rule_remove_now(&p, &t))
            .await
    }
    async fn forget_project(&self, project: &str) -> Result<()> {
        let p = project.to_string();
        self.write(move |m| m.forget_project_now(&p)).await
    }

    async fn pulls_record(&self, counts: &[PullCount]) -> Result<()> {
        let c = counts.to_vec();
        self.write_elsewhere(move |m| m.pulls_record_now(&c)).await
    }
    async fn pulls(&self, repo: &RepoName) -> Result<Vec<PullCount>> {
        self.pulls_now(repo)
    }
    async fn tag_records(&self, repo: &RepoName) -> Result<Vec<TagRecord>> {
        self.tag_records_now(repo)
    }

    async fn retention_policy(&self, project: &str) -> Result<Option<RetentionPolicy>> {
        self.retention_policy_now(project)
    }
    async fn retention_policies(&self) -> Result<Vec<(String, RetentionPolicy)>> {
        self.retention_policies_now()
    }
    async fn retention_policy_set(
        &self,
        project: &str,
        policy: Option<&RetentionPolicy>,
    ) -> Result<()> {
        let (p, r) = (project.to_string(), policy.cloned());
        self.write(move |m| m.retention_policy_set_now(&p, r.as_ref()))
            .await
    }
    async fn retention_untag(
        &self,
        repo: &RepoName,
        tag: &str,
        digest: &str,
        override_immutable: bool,
    ) -> Result<bool> {
        let (r, t, d) = (repo.clone(), tag.to_string(), digest.to_string());
        self.write(move |m| m.retention_untag_now(&r, &t, &d, override_immutable))
            .await
    }

    async fn gc_run_record(&self, run: &GcRun, keep: usize) -> Result<u64> {
        let r = run.clone();
        self.write(move |m| m.gc_run_record_now(&r, keep)).await
    }
    async fn gc_runs(&self, limit: usize) -> Result<Vec<GcRun>> {
        self.gc_runs_now(limit)
    }

    async fn webhook_put(&self, webhook: &Webhook) -> Result<()> {
        let w = webhook.clone();
        self.write(move |m| m.webhook_put_now(&w)).await
    }
    async fn webhook_get(&self, id: &str) -> Result<Option<Webhook>> {
        self.webhook_get_now(id)
    }
    async fn webhooks(&self, project: Option<&str>) -> Result<Vec<Webhook>> {
        self.webhooks_now(project)
    }
    async fn webhook_delete(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |m| m.webhook_delete_now(&id)).await
    }
    async fn webhook_rotate(
        &self,
        id: &str,
        current: &SealedSecret,
        secret: &SealedSecret,
        previous: Option<&PreviousSecret>,
    ) -> Result<bool> {
        let (id, current, secret, previous) = (
            id.to_string(),
            current.clone(),
            secret.clone(),
            previous.cloned(),
        );
        self.write(move |m| {
            m.webhook_change_now(&id, |w| {
                if w.secret != current {
                    return false;
                }
                w.secret = secret;
                w.previous = previous;
                true
            })
        })
        .await
    }
    async fn webhook_drop_previous(&self, id: &str, until: u64) -> Result<bool> {
        let id = id.to_string();
        self.write(move |m| {
            m.webhook_change_now(&id, |w| {
                if w.previous.as_ref().is_none_or(|p| p.until != until) {
                    return false;
                }
                w.previous = None;
                true
            })
        })
        .await
    }
    async fn outbox_push(&self, events: &[NewDelivery], cap: u64, log_keep: u64) -> Result<u64> {
        let e = events.to_vec();
        self.write(move |m| m.outbox_push_now(&e, cap, log_keep))
            .await
    }
    async fn outbox_heads(&self) -> Result<Vec<QueuedEvent>> {
        self.outbox_heads_now()
    }
    async fn outbox_attempt(&self, webhook: &str, seq: u64, attempt: &Attempt) -> Result<bool> {
        let (w, a) = (webhook.to_string(), attempt.clone());
        self.write(move |m| m.outbox_attempt_now(&w, seq, &a)).await
    }
    async fn webhook_deliveries(&self, webhook: &str, limit: usize) -> Result<Vec<Delivery>> {
        self.webhook_deliveries_now(webhook, limit)
    }

    async fn replication_put(&self, policy: &ReplicationPolicy) -> Result<()> {
        let p = policy.clone();
        self.write(move |m| m.replication_put_now(&p)).await
    }
    async fn replication_get(&self, name: &str) -> Result<Option<ReplicationPolicy>> {
        self.replication_get_now(name)
    }
    async fn replications(&self) -> Result<Vec<ReplicationPolicy>> {
        self.replications_now()
    }
    async fn reseal(
        &self,
        sealer: Arc<dyn crate::sealing::Sealer>,
    ) -> Result<crate::sealing::ResealReport> {
        self.write(move |m| m.reseal_now(sealer.as_ref())).await
    }

    async fn replication_delete(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.write(move |m| m.replication_delete_now(&name)).await
    }
    async fn execution_create(&self, execution: &Execution) -> Result<u64> {
        let e = execution.clone();
        self.write(move |m| m.execution_create_now(&e)).await
    }
    async fn execution_put(&self, execution: &Execution) -> Result<()> {
        let e = execution.clone();
        self.write(move |m| m.execution_put_now(&e)).await
    }
    async fn execution_get(&self, policy: &str, id: u64) -> Result<Option<Execution>> {
        self.execution_get_now(policy, id)
    }
    async fn executions(&self, policy: Option<&str>, limit: usize) -> Result<Vec<Execution>> {
        self.executions_now(policy, limit)
    }
}
