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
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::accounts::{Accounts, AuditEvent, LoginError};
use super::audit::{Outcome, RefusalBudget};
use super::policy::{decide, Decision};
use super::throttle::{AttemptLocks, LocalThrottle, LoginThrottle, ThrottleConfig, Wait};
use super::token::{parse_scope, Claims, Grant, TokenKey};
use super::{Access, Action, Refusal, RequestInfo, Subject};
use crate::meta::now;
use crate::oci::RepoName;
use crate::service::metrics::Metrics;

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
    throttle: Arc<dyn LoginThrottle>,
    attempts: AttemptLocks,
    refusals: RefusalBudget,
    metrics: Arc<Metrics>,
    audit_queue: AuditQueue,
}

/// Audit events on their way to the store. One task writes them, in order,
/// each time with everything that queued while the last write ran: one
/// append (one durable commit on redb) for a burst such as a publish to a
/// fleet's thousand nodes, not one each, and never dropped.
#[derive(Default)]
struct AuditQueue {
    tx: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<AuditEvent>>,
}

/// Events written in one append at most.
const AUDIT_BATCH: usize = 256;

impl AuditQueue {
    /// Queues `events` for the writer (started on first use); `Err` gives
    /// them back when it cannot take them (its runtime is gone).
    fn push(
        &self,
        accounts: &Arc<Accounts>,
        events: Vec<AuditEvent>,
    ) -> Result<(), Vec<AuditEvent>> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(write_audit_batches(accounts.clone(), rx));
            tx
        });
        let mut events = events.into_iter();
        while let Some(e) = events.next() {
            if let Err(back) = tx.send(e) {
                return Err(std::iter::once(back.0).chain(events).collect());
            }
        }
        Ok(())
    }
}

/// The audit writer: appends what has queued, in batches, until every
/// sender is gone. A batch that fails is written again one by one, so one
/// event the store refuses does not take the others with it.
async fn write_audit_batches(
    accounts: Arc<Accounts>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<AuditEvent>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, AUDIT_BATCH).await > 0 {
        if accounts.audit_batch(&batch).await.is_err() {
            for e in batch.drain(..) {
                if let Err(err) = accounts.audit(e).await {
                    tracing::error!(error = %err, "cannot write audit event");
                }
            }
        }
        batch.clear();
    }
}

/// What the token endpoint answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
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

    fn cache_key(&self, name: &str, secret: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"berth credential cache")
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
        mac.update(self.key.sign_input_salt());
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Records an audited action. Refused ones go through the refusal budget
    /// (`audit` module): a flood of them is counted, not recorded one by one.
    pub fn audit(
        &self,
        actor: &str,
        peer: Option<IpAddr>,
        action: &str,
        project: Option<&str>,
        target: &str,
        outcome: Outcome<'_>,
    ) {
        let mut events = Vec::new();
        if let Outcome::Refused(_) = outcome {
            let admission = self.refusals.admit(peer, Instant::now());
            for (addr, n) in admission.suppressed {
                events.push(AuditEvent {
                    id: 0,
                    time: now(),
                    actor: "-".into(),
                    client: addr.map(|a| a.to_string()),
                    action: "refused.suppressed".into(),
                    project: None,
                    target: String::new(),
                    outcome: "refused".into(),
                    detail: Some(format!(
                        "{n} more refused calls from {} within a minute, not recorded one by one",
                        addr.map_or_else(|| "other addresses".to_string(), |a| a.to_string())
                    )),
                });
            }
            if !admission.record {
                self.write_audit(events);
                return;
            }
        }
        events.push(AuditEvent {
            id: 0,
            time: now(),
            actor: actor.to_string(),
            client: peer.map(|p| p.to_string()),
            action: action.to_string(),
            project: project.map(str::to_string),
            target: target.to_string(),
            outcome: outcome.word().to_string(),
            detail: outcome.detail().map(str::to_string),
        });
        self.write_audit(events);
    }

    fn write_audit(&self, events: Vec<AuditEvent>) {
        if events.is_empty() {
            return;
        }
        // Audit writes are durable transactions; keep them off the request's critical path
        // but never drop them.
        let Err(events) = self.audit_queue.push(&self.accounts, events) else {
            return;
        };
        let accounts = self.accounts.clone();
        tokio::spawn(async move {
            for e in events {
                if let Err(err) = accounts.audit(e).await {
                    tracing::error!(error = %err, "cannot write audit event");
                }
            }
        });
    }

    /// Refuses (429) while the throttle holds back attempts on `name` from `peer`.
    /// Everything that checks a secret asks this first, holding `attempt`'s guard.
    pub async fn check_throttle(&self, name: &str, peer: Option<IpAddr>) -> Result<(), Refusal> {
        let res = self.throttle.check(name, peer).await;
        let now = Instant::now();
        let Err(wait) = res else { return Ok(()) };
        self.metrics.logins_throttled.inc();
        let retry_after = wait.retry_after(now);
        let message = match wait {
            Wait::Pair(_) => format!(
                "too many failed logins for {name} from this address; try again in {retry_after} s"
            ),
            Wait::Account(_) => format!(
                "too many failed logins for {name} from many addresses; addresses that failed share one attempt every {} s; try again in {retry_after} s",
                self.cfg.throttle.attacked_interval.as_secs().max(1)
            ),
        };
        tracing::debug!(account = name, client = ?peer, retry_after, "login attempt throttled");
        Err(Refusal::TooMany {
            message,
            retry_after,
        })
    }

    /// Waits until no other secret check of `name` from `peer` runs; hold the
    /// guard across `check_throttle`, the check, and `record_*`.
    pub async fn attempt(&self, name: &str, peer: Option<IpAddr>) -> super::throttle::AttemptGuard {
        self.attempts.acquire(name, peer).await
    }

    /// Counts a wrong secret for `name` from `peer` (a failed login, a wrong old password).
    pub async fn record_failure(&self, name: &str, peer: Option<IpAddr>) {
        self.throttle.fail(name, peer).await;
    }

    /// `name` proved its secret from `peer`: that pair's failures are forgotten.
    pub async fn record_success(&self, name: &str, peer: Option<IpAddr>) {
        self.throttle.succeed(name, peer).await;
    }

    /// A login remembered for (name, secret), as its account is now.
    fn cached(&self, key: &[u8; 32], epoch: u64) -> Option<Subject> {
        let (s, at, verified) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()?;
        if at.elapsed() >= self.cfg.cache_ttl || verified != epoch {
            return None;
        }
        self.accounts.current(&s)
    }

    /// Verifies name and secret: attempt lock and throttle first, then the cache, then bcrypt.
    pub async fn login(
        &self,
        name: &str,
        secret: &str,
        peer: Option<IpAddr>,
    ) -> Result<Subject, Refusal> {
        self.sign_in(name, secret, peer)
            .await
            .map_err(|(refusal, _)| refusal)
    }

    /// `login`, telling also whether the secret was right but is an initial
    /// password that must be reset first (the console then asks for a new one).
    pub async fn sign_in(
        &self,
        name: &str,
        secret: &str,
        peer: Option<IpAddr>,
    ) -> Result<Subject, (Refusal, bool)> {
        if name.len() > MAX_NAME_BYTES {
            return Err((
                self.unauthorized("invalid account name or password", None, false),
                false,
            ));
        }
        let _attempt = self.attempt(name, peer).await;
        self.check_throttle(name, peer)
            .await
            .map_err(|r| (r, false))?;
        let ck = self.cache_key(name, secret);
        // Read before verifying: a change while bcrypt runs makes the entry stale.
        let mut epoch = self.accounts.credentials_epoch();
        if let Some(s) = self.cached(&ck, epoch) {
            self.record_success(name, peer).await;
            return Ok(s);
        }
        let generation = self.accounts.generation();
        let mut res = self.verify(name, secret).await;
        // Another replica may have just made this secret good (behind a
        // balancer, the next request often lands here): check again on the
        // store's record before counting a guess.
        if matches!(res, Err(LoginError::BadCredentials))
            && self.accounts.refresh_for(name, generation).await
        {
            epoch = self.accounts.credentials_epoch();
            res = self.verify(name, secret).await;
        }
        match res {
            Ok(s) => {
                self.record_success(name, peer).await;
                let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if c.len() > 10_000 {
                    let ttl = self.cfg.cache_ttl;
                    c.retain(|_, (_, at, v)| at.elapsed() < ttl && *v == epoch);
                }
                c.insert(ck, (s.clone(), Instant::now(), epoch));
                Ok(s)
            }
            Err(e) => {
                // Only a wrong secret is a guess. An initial password that must be reset,
                // an expired or revoked robot, proved the secret right: counting those would
                // slow down a client that retries them for nothing.
                if e == LoginError::BadCredentials {
                    self.record_failure(name, peer).await;
                }
                self.metrics.login_failures.inc();
                let must_reset = matches!(e, LoginError::MustReset(_));
                let (why, message) = match e {
                    LoginError::BadCredentials => (
                        "wrong password or no such account",
                        "invalid account name or password".to_string(),
                    ),
                    LoginError::MustReset(m) => ("password reset required", m),
                    LoginError::Expired(m) => ("expired", m),
                    LoginError::Revoked(m) => ("revoked", m),
                };
                self.audit(name, peer, "login", None, name, Outcome::Refused(why));
                Err((self.unauthorized(message, None, false), must_reset))
            }
        }
    }

    /// bcrypt off the async runtime.
    async fn verify(&self, name: &str, secret: &str) -> Result<Subject, LoginError> {
        let accounts = self.accounts.clone();
        let (n, sec) = (name.to_string(), secret.to_string());
        tokio::task::spawn_blocking(move || accounts.verify(&n, &sec))
            .await
            .unwrap_or(Err(LoginError::BadCredentials))
    }

    /// The subject behind a request's Authorization header (anonymous without one).
    pub async fn identify(&self, req: &RequestInfo<'_>) -> Result<Subject, Refusal> {
        let Some(h) = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(Subject::default());
        };
        let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| self.unauthorized("malformed Basic credentials", None, false))?;
                let (name, secret) = decoded
                    .split_once(':')
                    .ok_or_else(|| self.unauthorized("malformed Basic credentials", None, false))?;
                if name.is_empty() && secret.is_empty() {
                    // `Basic Og==`: what clients (the OCI conformance suite among them)
                    // send when they have no credentials. Anonymous, not a failed login.
                    return Ok(Subject::default());
                }
                self.login(name, secret, req.peer).await
            }
            "bearer" => {
                let claims = self
                    .key
                    .verify(value.trim(), &self.cfg.service, now())
                    .map_err(|e| {
                        self.unauthorized(format!("bearer token refused: {e}"), None, false)
                    })?;
                let claimed = Subject {
                    name: (!claims.sub.is_empty()).then(|| claims.sub.clone()),
                    account_id: (!claims.aid.is_empty()).then(|| claims.aid.clone()),
                    admin: false,
                    robot: claims.robot,
                    token_grants: None,
                };
                // The account as it is now: the same instance, still usable; its admin
                // flag is the account's, whatever the token says.
                let generation = self.accounts.generation();
                let mut current = self.accounts.current(&claimed);
                if current.is_none() {
                    // Issued by another replica for an account this one may not know yet.
                    if let Some(name) = &claimed.name {
                        if self.accounts.refresh_for(name, generation).await {
                            current = self.accounts.current(&claimed);
                        }
                    }
                }
                let Some(current) = current else {
                    return Err(self.unauthorized(
                        "the token's account is no longer valid; log in again",
                        None,
                        false,
                    ));
                };
                Ok(Subject {
                    token_grants: Some(
                        claims
                            .access
                            .into_iter()
                            .map(|g| (g.name, g.actions))
                            .collect(),
                    ),
                    ..current
                })
            }
            _ => Err(self.unauthorized(
                format!("unsupported authorization scheme {scheme:?}; use Basic or Bearer"),
                None,
                false,
            )),
        }
    }

    /// The live decision for `subject` (ignoring any token grant).
    pub fn decision(&self, subject: &Subject, repo: &str, action: Action) -> Decision {
        let project = repo.split('/').next().unwrap_or(repo);
        let who = self.accounts.who(subject, project);
        decide(&who, project, self.accounts.project_public(project), action)
    }

    /// A bearer token that names `subject` and grants no repository scope, valid
    /// for `ttl`: what the console sends, in-process, to the admin and
    /// controller APIs for a signed-in session (each request re-checks the
    /// account as it is now, as for any bearer token).
    pub fn session_token(&self, subject: &Subject, ttl: Duration) -> String {
        let iat = now();
        self.key.sign(&Claims {
            sub: subject.name.clone().unwrap_or_default(),
            aid: subject.account_id.clone().unwrap_or_default(),
            aud: self.cfg.service.clone(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            admin: subject.admin,
            robot: subject.robot,
            access: Vec::new(),
        })
    }

    /// Issues a token for the scopes asked, granting only what is allowed.
    pub async fn issue_token(
        &self,
        req: &RequestInfo<'_>,
        scope: &str,
        service: Option<&str>,
    ) -> Result<TokenResponse, Refusal> {
        if let Some(s) = service {
            if s != self.cfg.service {
                return Err(Refusal::Denied(format!(
                    "this token endpoint issues tokens for service {:?}, not {s:?}",
                    self.cfg.service
                )));
            }
        }
        let subject = self.identify(req).await?;
        let subject = Subject {
            token_grants: None,
            ..subject
        };
        let mut access = Vec::new();
        for (name, actions) in parse_scope(scope) {
            let granted: Vec<Action> = actions
                .into_iter()
                .filter(|a| self.decision(&subject, &name, *a) == Decision::Allow)
                .collect();
            access.push(Grant {
                kind: "repository".into(),
                name,
                actions: granted,
            });
        }
        let iat = now();
        let ttl = self.cfg.token_ttl.as_secs().max(1);
        let claims = Claims {
            sub: subject.name.clone().unwrap_or_default(),
            aid: subject.account_id.clone().unwrap_or_default(),
            aud: self.cfg.service.clone(),
            iat,
            exp: iat + ttl,
            admin: subject.admin,
            robot: subject.robot,
            access,
        };
        let token = self.key.sign(&claims);
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: ttl,
            issued_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        })
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

impl TokenKey {
    /// Bytes mixed into the credential-cache MAC so cache keys differ per installation.
    fn sign_input_salt(&self) -> &[u8] {
        b"berth"
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
