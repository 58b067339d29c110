//! The account-backed `Access`: credentials (Basic, through a cache so bcrypt
//! runs once per login; or Bearer tokens), the failed-login throttle (see
//! `throttle`), the token endpoint's grants, and the challenge clients follow.
//!
//! A Basic login takes, in order: the pair's attempt lock (one check per account
//! and address at a time), the throttle (429 while the pair waits, before any
//! cache lookup or bcrypt, so a cache hit cannot serve as a free guess), the
//! credential cache, then bcrypt. Bearer tokens are not logins: the throttle
//! never applies to them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::accounts::Accounts;
use super::audit::{Outcome, RefusalBudget};
use super::policy::{decide, Decision};
use super::throttle::{AttemptLocks, LocalThrottle, LoginThrottle, ThrottleConfig};
use super::token::TokenKey;
use super::{Access, Action, Refusal, RequestInfo, Subject};
use crate::oci::RepoName;
use crate::service::metrics::Metrics;

mod audit_queue;
mod login;
mod tokens;
mod verified;

use audit_queue::AuditQueue;
pub use tokens::TokenResponse;
use verified::VerifiedTokens;

#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub realm: String,
    pub service: String,
    pub token_ttl: Duration,
    pub cache_ttl: Duration,
    pub throttle: ThrottleConfig,
    pub anonymous_direct: bool,
}

/// Longer names cannot be accounts (users have at most 64 bytes, robots about 140):
/// refused before they reach the throttle's table or bcrypt.
const MAX_NAME_BYTES: usize = 256;

pub struct RegistryAccess {
    pub accounts: Arc<Accounts>,
    key: TokenKey,
    cfg: AccessConfig,
    /// HMAC(key, name \0 secret) → subject, when it was verified, and the accounts'
    /// credential epoch then (a changed password or secret invalidates it). No plaintext is kept.
    cache: Mutex<HashMap<[u8; 32], (Subject, Instant, u64)>>,
    /// Bearer tokens whose signature was checked: what each says.
    verified: VerifiedTokens,
    throttle: Arc<dyn LoginThrottle>,
    attempts: AttemptLocks,
    refusals: RefusalBudget,
    metrics: Arc<Metrics>,
    audit_queue: AuditQueue,
}

impl RegistryAccess {
    pub fn new(
        accounts: Arc<Accounts>,
        key: TokenKey,
        cfg: AccessConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.register(|r| {
            r.register(
                "password_checks",
                "bcrypt verifications of passwords and robot secrets",
                accounts.password_checks(),
            )
        });
        let throttle = Arc::new(LocalThrottle::new(cfg.throttle));
        Self {
            accounts,
            key,
            cfg,
            cache: Mutex::new(HashMap::new()),
            verified: VerifiedTokens::default(),
            throttle,
            attempts: AttemptLocks::default(),
            refusals: RefusalBudget::default(),
            metrics,
            audit_queue: AuditQueue::default(),
        }
    }

    /// Counts failed logins in `throttle` (one shared by replicas) instead
    /// of this process's table.
    pub fn with_throttle(mut self, throttle: Arc<dyn LoginThrottle>) -> Self {
        self.throttle = throttle;
        self
    }

    pub fn config(&self) -> &AccessConfig {
        &self.cfg
    }

    pub fn challenge(&self, scope: Option<&str>, insufficient: bool) -> String {
        let mut c = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.cfg.realm, self.cfg.service
        );
        if let Some(s) = scope {
            c.push_str(&format!(",scope=\"{s}\""));
        }
        if insufficient {
            c.push_str(",error=\"insufficient_scope\"");
        }
        c
    }

    fn unauthorized(
        &self,
        message: impl Into<String>,
        scope: Option<String>,
        insufficient: bool,
    ) -> Refusal {
        Refusal::Unauthorized {
            message: message.into(),
            challenge: Some(self.challenge(scope.as_deref(), insufficient)),
        }
    }

    /// The live decision for `subject` (ignoring any token grant).
    pub fn decision(&self, subject: &Subject, repo: &str, action: Action) -> Decision {
        let project = repo.split('/').next().unwrap_or(repo);
        let who = self.accounts.who(subject, project);
        decide(&who, project, self.accounts.project_public(project), action)
    }

    fn refuse(
        &self,
        subject: &Subject,
        repo: &RepoName,
        action: Action,
        decision: Decision,
    ) -> Refusal {
        let scope = format!("repository:{}:{}", repo, scope_actions(action));
        let project = repo.project();
        match decision {
            Decision::Allow => self.unauthorized(
                format!("the token does not grant {} on {repo}; request a token with that scope", action.as_str()),
                Some(scope),
                true,
            ),
            Decision::Challenge => self.unauthorized(
                format!("authentication required to {} {repo}", action.as_str()),
                Some(scope),
                false,
            ),
            Decision::Deny => Refusal::Denied(format!(
                "{} may not {} in project {project}; ask a maintainer of {project} for a role that allows it",
                subject.display(),
                action.as_str()
            )),
            Decision::Hide if action == Action::Push => Refusal::Denied(format!(
                "project {project} does not exist or you are not a member of it; an administrator creates projects with `berth project create {project}`"
            )),
            Decision::Hide => Refusal::Hidden(format!("repository {repo} is not known to this registry, or you have no access to it")),
            Decision::NoProject if action == Action::Push => Refusal::Denied(format!(
                "project {project} does not exist; create it with `berth project create {project}` or POST /api/v1/projects"
            )),
            Decision::NoProject => Refusal::Hidden(format!("repository {repo} is not known to this registry (no project {project})")),
        }
    }
}

fn scope_actions(action: Action) -> &'static str {
    match action {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    }
}

#[async_trait]
impl Access for RegistryAccess {
    async fn check(
        &self,
        req: &RequestInfo<'_>,
        scope: Option<(&RepoName, Action)>,
    ) -> Result<Subject, Refusal> {
        let subject = self.identify(req).await?;
        let Some((repo, action)) = scope else {
            if subject.name.is_none() {
                return Err(self.unauthorized(
                    "authentication required; log in with docker/podman login",
                    None,
                    false,
                ));
            }
            return Ok(subject);
        };
        if let Some(grants) = &subject.token_grants {
            let granted = grants
                .iter()
                .any(|(name, actions)| name == repo.as_str() && actions.contains(&action));
            if granted {
                return Ok(subject);
            }
            let live = Subject {
                token_grants: None,
                ..subject.clone()
            };
            let decision = self.decision(&live, repo.as_str(), action);
            return Err(self.refuse(&live, repo, action, decision));
        }
        let decision = self.decision(&subject, repo.as_str(), action);
        match decision {
            Decision::Allow if subject.name.is_none() && !self.cfg.anonymous_direct => {
                Err(self.refuse(&subject, repo, action, Decision::Challenge))
            }
            Decision::Allow => Ok(subject),
            d => Err(self.refuse(&subject, repo, action, d)),
        }
    }

    async fn identify(&self, req: &RequestInfo<'_>) -> Result<Subject, Refusal> {
        RegistryAccess::identify(self, req).await
    }

    fn may_pull(&self, subject: &Subject, repo: &str) -> bool {
        let live = Subject {
            token_grants: None,
            ..subject.clone()
        };
        self.decision(&live, repo, Action::Pull) == Decision::Allow
    }

    fn record(
        &self,
        subject: &Subject,
        peer: Option<IpAddr>,
        action: &str,
        repo: &RepoName,
        target: &str,
    ) {
        self.audit(
            subject.display(),
            peer,
            action,
            Some(repo.project()),
            target,
            Outcome::OK,
        );
    }
}
