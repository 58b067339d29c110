//! An execution from start to end: the plan (which tags of which
//! repositories the filters select, which of them the destination lacks or
//! has at another digest, and with `deletes` which tags it has that the
//! source no longer has), then each image copied (`copy.rs`) and each
//! deletion made, every step recorded as it happens. An execution a stop
//! interrupted is still `running` in the metadata: at start it carries on
//! from its record (the plan made, the images done, the uploads in flight).

use std::sync::Arc;
use std::time::Duration;

use super::copy::{with_retries, Copier, Progress};
use super::limit::Limiter;
use super::sides::{Dest, Fault, LocalSide, RemoteSide, Source};
use super::{glob, ReplicationError, Replications, Result};
use crate::meta::{
    Direction, Execution, ExecutionStatus, ImageProgress, ItemStatus, ReplicationPolicy,
};
use crate::oci::RepoName;
use crate::proxy::upstream::{ProjectUpstream, Upstream};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `repo` at the destination: `dest_project` in place of its first component.
pub fn dest_name(dest_project: &str, repo: &str) -> String {
    if dest_project.is_empty() {
        return repo.to_string();
    }
    let rest = repo.split_once('/').map_or(repo, |(_, r)| r);
    format!("{dest_project}/{rest}")
}

fn name(s: &str) -> std::result::Result<RepoName, Fault> {
    s.parse()
        .map_err(|e| Fault::Permanent(format!("repository {s:?}: {e}")))
}

impl Replications {
    /// Starts an execution of `policy` now, in the background.
    pub async fn run(self: &Arc<Self>, policy: &str, trigger: &str) -> Result<Execution> {
        let p = self.get(policy).await?;
        if !self.claim(policy) {
            return Err(ReplicationError::Conflict(format!(
                "an execution of {policy} is running; wait for it to end"
            )));
        }
        let mut e = Execution {
            policy: p.name.clone(),
            id: 0,
            trigger: trigger.to_string(),
            status: ExecutionStatus::Running,
            started_at: crate::meta::now(),
            finished_at: None,
            images: Vec::new(),
            blobs: Vec::new(),
            error: None,
        };
        match self.meta.execution_create(&e).await {
            Ok(id) => e.id = id,
            Err(err) => {
                self.release(policy);
                return Err(err.into());
            }
        }
        self.spawn(p, e.clone());
        Ok(e)
    }

    /// Carries on with the executions a stop (or a crash) interrupted.
    pub async fn resume_interrupted(self: &Arc<Self>) {
        let latest = match self.meta.executions(None, 1).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read replication executions");
                return;
            }
        };
        for e in latest {
            if e.status != ExecutionStatus::Running {
                continue;
            }
            let Ok(p) = self.get(&e.policy).await else {
                continue;
            };
            if self.claim(&p.name) {
                tracing::info!(policy = %p.name, id = e.id, "resuming an interrupted replication execution");
                self.spawn(p, e);
            }
        }
    }

    fn claim(&self, policy: &str) -> bool {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.insert(policy.to_string())
    }

    fn release(&self, policy: &str) {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.remove(policy);
    }

    fn spawn(self: &Arc<Self>, p: ReplicationPolicy, e: Execution) {
        let this = self.clone();
        tokio::spawn(async move {
            let name = p.name.clone();
            this.execute(p, e).await;
            this.release(&name);
            let again = this
                .again
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            if again {
                this.start_or_queue(&name, "on_push").await;
            }
        });
    }

    async fn execute(&self, p: ReplicationPolicy, e: Execution) {
        let exec = Arc::new(tokio::sync::Mutex::new(e));
        self.live_insert(&p.name, exec.clone());
        let progress = Progress::new(exec, self.meta.clone(), self.metrics.clone());
        let outcome = self.steps(&p, &progress).await;
        progress
            .update(|e| {
                e.finished_at = Some(crate::meta::now());
                match &outcome {
                    Ok(()) => e.status = ExecutionStatus::Succeeded,
                    Err(why) => {
                        e.status = ExecutionStatus::Failed;
                        e.error = Some(why.clone());
                    }
                }
            })
            .await;
        self.live_remove(&p.name);
        let e = progress.exec.lock().await.clone();
        let target = format!("{}#{}", e.policy, e.id);
        match &outcome {
            Ok(()) => {
                self.metrics.executions_succeeded.inc();
                tracing::info!(policy = %e.policy, id = e.id, "replication execution succeeded");
            }
            Err(why) => {
                self.metrics.executions_failed.inc();
                tracing::warn!(policy = %e.policy, id = e.id, error = %why, "replication execution failed");
            }
        }
        if let Some(audit) = self.audit.get() {
            audit(&target, outcome.as_ref().err().map(String::as_str));
        }
    }

    /// The remote of `p`, reached as the outbound policy allows.
    fn connect(&self, p: &ReplicationPolicy) -> std::result::Result<Upstream, String> {
        let creds = self.credentials(p).map_err(|e| e.to_string())?;
        Upstream::for_project(ProjectUpstream {
            project: "",
            url: &p.remote.url,
            creds,
            connect_timeout: CONNECT_TIMEOUT,
            allow_private: self.allow_private,
            private_setting: super::PRIVATE_SETTING,
        })
    }

    /// A pull lands only in an ordinary project that exists here.
    fn may_land(
        &self,
        p: &ReplicationPolicy,
        item: &ImageProgress,
    ) -> std::result::Result<(), Fault> {
        match (p.direction, self.landing.get()) {
            (Direction::Pull, Some(landing)) => {
                let project = item.dest.split('/').next().unwrap_or_default();
                landing(project).map_err(Fault::Permanent)
            }
            _ => Ok(()),
        }
    }

    async fn steps(
        &self,
        p: &ReplicationPolicy,
        progress: &Progress,
    ) -> std::result::Result<(), String> {
        let local = LocalSide(self.local.clone());
        let remote = RemoteSide(Arc::new(self.connect(p)?));
        let (src, dst): (&dyn Source, &dyn Dest) = match p.direction {
            Direction::Push => (&local, &remote),
            Direction::Pull => (&remote, &local),
        };
        if progress.exec.lock().await.images.is_empty() {
            let images = plan(p, src, dst).await.map_err(|f| f.words().to_string())?;
            progress.update(|e| e.images = images).await;
        }
        let limiter = Limiter::new(p.bandwidth);
        let copier = Copier {
            src,
            dst,
            limiter: &limiter,
            progress,
        };
        let images = progress.exec.lock().await.images.clone();
        let (mut failed, mut first) = (0, None);
        for (i, item) in images.iter().enumerate() {
            if !matches!(item.status, ItemStatus::Pending | ItemStatus::Failed) {
                continue;
            }
            let result = match self.may_land(p, item) {
                Ok(()) => one(&copier, dst, item).await,
                Err(f) => Err(f),
            };
            if let Err(f) = &result {
                failed += 1;
                first.get_or_insert_with(|| format!("{}: {}", item.source, f.words()));
            }
            progress
                .update(|e| {
                    let it = &mut e.images[i];
                    match result {
                        Ok(status) => {
                            it.status = status;
                            it.error = None;
                        }
                        Err(f) => {
                            it.status = ItemStatus::Failed;
                            it.error = Some(f.words().to_string());
                        }
                    }
                })
                .await;
        }
        match first {
            None => Ok(()),
            Some(why) => Err(format!("{failed} of {} images failed; {why}", images.len())),
        }
    }
}

/// Copies (or, for a deletion, deletes) one planned item.
async fn one(
    copier: &Copier<'_>,
    dst: &dyn Dest,
    item: &ImageProgress,
) -> std::result::Result<ItemStatus, Fault> {
    let (dst_repo, dst_tag) = split(&item.dest)?;
    if item.delete {
        with_retries("deleting a tag", || dst.delete_tag(&dst_repo, &dst_tag)).await?;
        return Ok(ItemStatus::Deleted);
    }
    let (src_repo, _) = split(&item.source)?;
    let Some(top) = with_retries("reading the manifest at the source", || {
        copier.src.manifest(&src_repo, &item.digest)
    })
    .await?
    else {
        return Err(Fault::Permanent(format!(
            "{} is no longer at the source",
            item.digest
        )));
    };
    copier.image(&src_repo, &dst_repo, &dst_tag, &top).await?;
    Ok(ItemStatus::Copied)
}

fn split(s: &str) -> std::result::Result<(RepoName, String), Fault> {
    let (repo, tag) = s
        .rsplit_once(':')
        .ok_or_else(|| Fault::Permanent(format!("{s:?} is not repository:tag")))?;
    Ok((name(repo)?, tag.to_string()))
}

/// Which images the execution copies, and which tags it deletes.
async fn plan(
    p: &ReplicationPolicy,
    src: &dyn Source,
    dst: &dyn Dest,
) -> std::result::Result<Vec<ImageProgress>, Fault> {
    let repos = with_retries("listing repositories at the source", || src.repositories()).await?;
    let mut items = Vec::new();
    for repo in repos.iter().filter(|r| glob::matches(&p.repositories, r)) {
        let src_repo = name(repo)?;
        let dst_repo = name(&dest_name(&p.dest_project, repo))?;
        let tags: Vec<String> = with_retries("listing tags at the source", || src.tags(&src_repo))
            .await?
            .into_iter()
            .filter(|t| glob::matches(&p.tags, t))
            .collect();
        for tag in &tags {
            let Some(m) = with_retries("reading a manifest at the source", || {
                src.manifest(&src_repo, tag)
            })
            .await?
            else {
                continue;
            };
            let there = with_retries("looking up a tag at the destination", || {
                dst.manifest_digest(&dst_repo, tag)
            })
            .await?;
            items.push(ImageProgress {
                source: format!("{repo}:{tag}"),
                dest: format!("{dst_repo}:{tag}"),
                digest: m.digest.to_string(),
                status: if there.as_ref() == Some(&m.digest) {
                    ItemStatus::UpToDate
                } else {
                    ItemStatus::Pending
                },
                error: None,
                delete: false,
            });
        }
        if p.deletes {
            let at_dest =
                with_retries("listing tags at the destination", || dst.tags(&dst_repo)).await?;
            for t in at_dest {
                if glob::matches(&p.tags, &t) && !tags.contains(&t) {
                    items.push(ImageProgress {
                        source: format!("{repo}:{t}"),
                        dest: format!("{dst_repo}:{t}"),
                        digest: String::new(),
                        status: ItemStatus::Pending,
                        error: None,
                        delete: true,
                    });
                }
            }
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_names() {
        assert_eq!(dest_name("", "team-a/app"), "team-a/app");
        assert_eq!(dest_name("dr", "team-a/app"), "dr/app");
        assert_eq!(dest_name("dr", "team-a/tools/cli"), "dr/tools/cli");
        assert_eq!(dest_name("dr", "alpine"), "dr/alpine");
    }
}
