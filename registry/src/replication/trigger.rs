//! What starts executions besides an administrator: pushes into a
//! repository a push policy selects (`on_push`; pushes that land while an
//! execution of the policy runs start one more when it ends), and the
//! clock (`schedule`: checked every few seconds against each policy's
//! cron expression; times missed while the registry was down are not
//! made up, the next one is awaited).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::schedule::Schedule;
use super::{glob, Replications};
use crate::meta::{Direction, ReplicationPolicy, ReplicationTrigger};
use crate::webhooks::{EventKind, ProjectEvent};

const TICK: Duration = Duration::from_secs(10);

/// Whether a push of `repo` with `tags` concerns `p`.
pub fn push_concerns(p: &ReplicationPolicy, repo: &str, tags: &[String]) -> bool {
    p.trigger == ReplicationTrigger::OnPush
        && p.direction == Direction::Push
        && glob::matches(&p.repositories, repo)
        && tags.iter().any(|t| glob::matches(&p.tags, t))
}

/// Whether `expr` names a time after `prev` and not after `now` (unix seconds).
pub fn due(expr: &str, prev: u64, now: u64) -> bool {
    Schedule::parse(expr)
        .ok()
        .and_then(|s| s.next_after(prev))
        .is_some_and(|t| t <= now)
}

impl Replications {
    /// Sees each event the registry emits; a push may start executions.
    pub fn observe(self: &Arc<Self>, e: &ProjectEvent) {
        if e.kind != EventKind::Push {
            return;
        }
        let repo = e.data["repository"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let tags: Vec<String> = e.data["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if tags.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(policies) = this.list().await else {
                return;
            };
            for p in policies.iter().filter(|p| push_concerns(p, &repo, &tags)) {
                this.start_or_queue(&p.name, "on_push").await;
            }
        });
    }

    /// Starts an execution, or when one is running, one more after it.
    pub(super) async fn start_or_queue(self: &Arc<Self>, policy: &str, trigger: &str) {
        match self.run(policy, trigger).await {
            Ok(e) => tracing::info!(%policy, id = e.id, %trigger, "replication execution started"),
            Err(super::ReplicationError::Conflict(_)) => {
                self.again
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(policy.to_string());
            }
            Err(e) => tracing::warn!(%policy, error = %e, "cannot start a replication execution"),
        }
    }

    /// Starts scheduled executions when their time comes, until `stop`.
    pub async fn schedule(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut last: HashMap<String, u64> = HashMap::new();
        let started = crate::meta::now();
        let duties = self.local.duties();
        let mut holding = false;
        loop {
            // Replicas on one database: one of them fires the schedules, and
            // the one that takes the duty over resumes what its holder left.
            let now_holding = duties.hold(crate::duties::Duty::Replication).await;
            if now_holding && !holding {
                self.resume_interrupted().await;
            }
            holding = now_holding;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            if !holding {
                continue;
            }
            let now = crate::meta::now();
            let Ok(policies) = self.list().await else {
                continue;
            };
            for p in policies {
                let ReplicationTrigger::Schedule(expr) = &p.trigger else {
                    continue;
                };
                let prev = *last.get(&p.name).unwrap_or(&started);
                if due(expr, prev, now) {
                    self.start_or_queue(&p.name, "schedule").await;
                }
                last.insert(p.name.clone(), now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::RemoteRegistry;

    fn policy(trigger: ReplicationTrigger, direction: Direction) -> ReplicationPolicy {
        ReplicationPolicy {
            name: "p".into(),
            direction,
            remote: RemoteRegistry {
                url: "https://dr.example".into(),
                username: String::new(),
                password_sealed: None,
            },
            repositories: "team-a/**".into(),
            tags: "v*".into(),
            dest_project: String::new(),
            trigger,
            bandwidth: None,
            bandwidth_text: String::new(),
            deletes: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn pushes_start_on_push_push_policies_whose_filters_match() {
        let p = policy(ReplicationTrigger::OnPush, Direction::Push);
        let v1 = vec!["v1".to_string()];
        assert!(push_concerns(&p, "team-a/app", &v1));
        assert!(!push_concerns(&p, "team-b/app", &v1));
        assert!(!push_concerns(&p, "team-a/app", &["latest".to_string()]));
        assert!(!push_concerns(&p, "team-a/app", &[]));
        let manual = policy(ReplicationTrigger::Manual, Direction::Push);
        assert!(!push_concerns(&manual, "team-a/app", &v1));
        let pull = policy(ReplicationTrigger::OnPush, Direction::Pull);
        assert!(!push_concerns(&pull, "team-a/app", &v1));
    }

    #[test]
    fn a_schedule_is_due_once_its_time_passed() {
        // 2026-03-02 10:07:30 UTC.
        let t = 1_772_446_050;
        assert!(!due("*/30 * * * *", t, t + 60));
        assert!(due("*/30 * * * *", t, t + 23 * 60));
        assert!(due("* * * * *", t, t + 30));
        assert!(!due("not cron", t, t + 3600));
    }
}
