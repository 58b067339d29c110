//! Runs projects' retention rules: gathers what the plan needs (tags with
//! their push times, pull times including edges', immutable-tag rules, the
//! GC roots publications and edge prefetches hold), decides with the pure
//! `meta::retention::plan`, and unless it is a dry run deletes the tags it
//! lets go. Manifests are left to GC. Each run goes to the audit log and
//! `/metrics`. Owns when runs happen (on demand, on `[gc]
//! retention_schedule`), not the rules themselves (the metadata keeps them).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::access::RegistryAccess;
use crate::auth::audit::Outcome;
use crate::gc_runner::{Schedule, Trigger};
use crate::meta::retention::{plan, PlanInputs, RetentionPolicy, TagDecision, TagFacts};
use crate::meta::{self, MetaError};
use crate::oci::RepoName;
use crate::service::metrics::Metrics;
use crate::service::LocalRegistry;

/// What one run decided and did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RetentionRun {
    pub project: String,
    pub dry_run: bool,
    /// Tags that go (in a dry run: would go), each with why.
    pub delete: Vec<TagDecision>,
    /// Tags rules cover that stay, each with why (a rule keeps it, a
    /// publication deploys it, an immutable rule protects it).
    pub keep: Vec<TagDecision>,
    /// Tags deleted (0 in a dry run); fewer than `delete` when some moved
    /// or went meanwhile.
    pub deleted: u64,
}

#[derive(Default)]
struct RetentionMetrics {
    runs: Counter,
    tags_deleted: Counter,
    failures: Counter,
}

pub struct RetentionRunner {
    registry: Arc<LocalRegistry>,
    access: Option<Arc<RegistryAccess>>,
    metrics: RetentionMetrics,
}

impl RetentionRunner {
    pub fn new(
        registry: Arc<LocalRegistry>,
        access: Option<Arc<RegistryAccess>>,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let m = RetentionMetrics::default();
        metrics.register(|r| {
            r.register(
                "retention_runs",
                "Retention runs (dry runs included)",
                m.runs.clone(),
            );
            r.register(
                "retention_tags_deleted",
                "Tags deleted by retention rules",
                m.tags_deleted.clone(),
            );
            r.register(
                "retention_failed_runs",
                "Retention runs that failed",
                m.failures.clone(),
            );
        });
        Arc::new(Self {
            registry,
            access,
            metrics: m,
        })
    }

    /// Applies `project`'s rules (none: nothing is covered, nothing goes).
    /// `caller` is who asked and from where (none for the schedule).
    pub async fn run(
        &self,
        project: &str,
        trigger: Trigger,
        caller: Option<(&str, Option<IpAddr>)>,
        dry_run: bool,
    ) -> Result<RetentionRun, MetaError> {
        let res = self.apply(project, dry_run).await;
        self.metrics.runs.inc();
        let actor = caller.map(|(a, _)| a).unwrap_or("retention-schedule");
        let peer = caller.and_then(|(_, p)| p);
        let action = if dry_run {
            "retention.dry-run"
        } else {
            "retention"
        };
        match &res {
            Ok(r) => {
                self.metrics.tags_deleted.inc_by(r.deleted);
                let target = format!(
                    "{project} ({}): {} tags {}, {} kept",
                    trigger.as_str(),
                    if dry_run {
                        r.delete.len() as u64
                    } else {
                        r.deleted
                    },
                    if dry_run { "would go" } else { "deleted" },
                    r.keep.len()
                );
                tracing::info!(
                    project,
                    dry_run,
                    deleted = r.deleted,
                    "retention run finished"
                );
                if let Some(a) = &self.access {
                    a.audit(actor, peer, action, Some(project), &target, Outcome::OK);
                }
            }
            Err(e) => {
                self.metrics.failures.inc();
                tracing::error!(project, error = %e, "retention run failed");
                if let Some(a) = &self.access {
                    let e = e.to_string();
                    a.audit(
                        actor,
                        peer,
                        action,
                        Some(project),
                        project,
                        Outcome::Failed(&e),
                    );
                }
            }
        }
        res
    }

    async fn apply(&self, project: &str, dry_run: bool) -> Result<RetentionRun, MetaError> {
        let meta = self.registry.meta();
        let policy = meta.retention_policy(project).await?.unwrap_or_default();
        let immutable: Vec<String> = meta
            .immutable_rules(project)
            .await?
            .into_iter()
            .map(|r| r.pattern)
            .collect();
        let mut roots = BTreeSet::new();
        for h in self.registry.gc_roots() {
            roots.extend(h.roots().await);
        }
        let tags = self.facts(project, &policy).await?;
        let decided = plan(
            &PlanInputs {
                project,
                policy: &policy,
                immutable: &immutable,
                roots: &roots,
                now: meta::now(),
            },
            &tags,
        );
        let mut deleted = 0;
        if !dry_run {
            for d in &decided.delete {
                let Ok(repo) = d.repository.parse::<RepoName>() else {
                    continue;
                };
                if meta
                    .retention_untag(&repo, &d.tag, &d.digest, d.overrides_immutable)
                    .await?
                {
                    deleted += 1;
                }
            }
        }
        Ok(RetentionRun {
            project: project.to_string(),
            dry_run,
            delete: decided.delete,
            keep: decided.keep,
            deleted,
        })
    }

    /// Every tag of the project's repositories with its push and last pull.
    async fn facts(
        &self,
        project: &str,
        policy: &RetentionPolicy,
    ) -> Result<Vec<TagFacts>, MetaError> {
        let meta = self.registry.meta();
        let mut out = Vec::new();
        if policy.rules.is_empty() {
            return Ok(out);
        }
        for name in meta.repos_with_prefix(&format!("{project}/")).await? {
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            let pulls: BTreeMap<String, u64> = meta
                .pulls(&repo)
                .await?
                .into_iter()
                .map(|p| (p.digest, p.last_pulled_at))
                .collect();
            for t in meta.tag_records(&repo).await? {
                out.push(TagFacts {
                    repository: name.clone(),
                    last_pulled_at: pulls.get(&t.digest).copied(),
                    tag: t.tag,
                    digest: t.digest,
                    pushed_at: t.pushed_at,
                });
            }
        }
        Ok(out)
    }

    /// Runs every project's rules on `schedule` until `stop`.
    pub fn spawn_schedule(
        self: &Arc<Self>,
        schedule: Schedule,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let me = self.clone();
        schedule.spawn("retention", stop, move || {
            let me = me.clone();
            async move {
                // Replicas on one database: the schedule fires on one of them.
                let duty = crate::duties::Duty::RetentionSchedule;
                if !me.registry.duties().hold(duty).await {
                    return;
                }
                let projects = match me.registry.meta().retention_policies().await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the retention rules");
                        return;
                    }
                };
                for (project, _) in projects {
                    // A failure is logged and audited by `run`; the next project still runs.
                    let _ = me.run(&project, Trigger::Schedule, None, false).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentStore;
    use crate::meta::retention::RetentionRule;
    use crate::meta::References;
    use crate::oci::Digest;

    /// What a controller's publications hold, as `GcRoots`.
    struct Published(Vec<(String, String)>);

    #[async_trait::async_trait]
    impl crate::service::GcRoots for Published {
        async fn roots(&self) -> Vec<(String, String)> {
            self.0.clone()
        }
    }

    /// A run keeps what the registry's GC roots hold (a publication's
    /// image, an edge's prefetch pin), saying so, and deletes the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_keeps_what_publications_and_edge_pins_hold() {
        let dir = tempfile::tempdir().expect("tmp");
        let meta = crate::meta::RedbMeta::open(&dir.path().join("berth.redb")).expect("meta");
        let content = ContentStore::local(&dir.path().join("store"), &dir.path().join("uploads"))
            .expect("content");
        let metrics = Arc::new(Metrics::new());
        let registry = Arc::new(LocalRegistry::embedded(meta, content, metrics.clone()));
        let m = registry.meta();
        let repo: RepoName = "team/app".parse().expect("name");
        let mut digests = Vec::new();
        for tag in ["a", "b", "c"] {
            let body = bytes::Bytes::from(format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
                crate::oci::media::OCI_MANIFEST,
                Digest::sha256_of(tag.as_bytes())
            ));
            let summary = crate::oci::manifest::decode(crate::oci::media::OCI_MANIFEST, &body)
                .expect("manifest");
            let d = Digest::sha256_of(&body);
            m.put_manifest(
                &repo,
                &d,
                body,
                &summary,
                &[tag.parse().expect("tag")],
                References::OnDemand,
            )
            .await
            .expect("put")
            .expect("accepted");
            digests.push(d.to_string());
        }
        registry.add_gc_roots(Arc::new(Published(vec![(
            "team/app".into(),
            digests[1].clone(),
        )])));
        let policy = RetentionPolicy {
            rules: vec![RetentionRule {
                repositories: "*".into(),
                tags: "*".into(),
                keep_last: Some(0),
                pulled_within_days: None,
                untagged_hours: None,
                include_immutable: true,
            }],
        };
        m.retention_policy_set("team", Some(&policy))
            .await
            .expect("rules");
        let runner = RetentionRunner::new(registry.clone(), None, &metrics);
        let done = runner
            .run("team", Trigger::Api, None, false)
            .await
            .expect("run");
        let tags = |d: &[TagDecision]| d.iter().map(|d| d.tag.clone()).collect::<Vec<_>>();
        assert_eq!(tags(&done.delete), ["a", "c"]);
        assert_eq!(tags(&done.keep), ["b"]);
        assert_eq!(
            done.keep[0].reason,
            "kept: deployed by a publication or pinned by an edge prefetch"
        );
        assert_eq!(done.deleted, 2);
        let left = m.tag_records(&repo).await.expect("tags");
        assert_eq!(
            left.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }
}
