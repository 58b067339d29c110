//! Where accounts are kept: the `AccountStore` interface and its records.
//!
//! Users, projects, memberships, robots and the audit log, as a backend
//! stores them. The interface carries no database types and suits an async
//! driver; `RedbMeta` (in `meta/redb/`) implements it over the embedded
//! file, and `conformance.rs` is the suite every implementation runs.
//!
//! Each operation is one transaction with its checks inside: a name already
//! taken, the last administrator, a project or account that must exist, a
//! membership whose role must still be the one the caller's permission was
//! decided on, a password hash that must still be the one the old password
//! was verified against. Callers never compose a check and a write.
//!
//! Secrets arrive here already hashed: bcrypt, the password rule and the
//! credential cache are `Accounts`' (above), never a backend's. Records keep
//! their JSON form (`serde`), which is also the embedded format on disk.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::policy::Role;

#[cfg(test)]
pub(crate) mod conformance;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// This account's instance id (empty only in records written before ids existed).
    #[serde(default)]
    pub id: String,
    /// The password's bcrypt hash.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub(crate) hash: String,
    pub admin: bool,
    pub must_reset: bool,
    pub created: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Project {
    pub name: String,
    pub public: bool,
    pub created: u64,
    /// Pulls of the project's images need a signature these keys verify
    /// (`signature`); absent in records written before policies existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signature: Option<crate::signature::RequireSignature>,
    /// A proxy-cache project: its repositories are another registry's, pulled
    /// through (`proxy::projects`); nothing can be pushed into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyUpstream>,
}

/// The upstream of a proxy-cache project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProxyUpstream {
    /// The registry pulled through, e.g. `https://registry-1.docker.io`.
    pub url: String,
    /// The upstream account; empty for anonymous pulls.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// The upstream password, sealed; never in an answer (`Project::shown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub password_sealed: Option<crate::sealing::SealedSecret>,
    /// What the project keeps at most, in bytes of its usage (least recently
    /// pulled images go first); None: `[proxy] capacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// Seconds after its last pull an image is evicted (0: never); None:
    /// `[proxy] expire_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after_secs: Option<u64>,
}

impl Project {
    /// The project as answers show it: no sealed credential, only whether
    /// there is one (`proxy.password_set`).
    pub fn shown(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(proxy) = v.get_mut("proxy").and_then(|p| p.as_object_mut()) {
            let set = proxy.remove("password_sealed").is_some();
            proxy.insert("password_set".into(), set.into());
        }
        v
    }
}

/// Where a proxy project's upstream password is sealed (its associated data).
pub fn proxy_password_place(project: &str) -> String {
    format!("project/{project}/proxy-password")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Robot {
    pub name: String,
    /// This robot's instance id (empty only in records written before ids existed).
    #[serde(default)]
    pub id: String,
    pub project: String,
    /// The secret's bcrypt hash.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub(crate) hash: String,
    pub push: bool,
    pub expires_at: Option<u64>,
    pub revoked: bool,
    pub created: u64,
    /// A system robot (`project` is then empty): the projects it may pull from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<RobotProjects>,
}

/// One account's stored record, as `AccountStore::credential` reads it.
#[derive(Debug, Clone)]
pub enum Credential {
    User(User),
    Robot(Robot),
}

/// The projects a system robot reads: every one, or those named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RobotProjects {
    All,
    Only(Vec<String>),
}

impl RobotProjects {
    pub fn covers(&self, project: &str) -> bool {
        match self {
            RobotProjects::All => true,
            RobotProjects::Only(names) => names.iter().any(|n| n == project),
        }
    }
}

/// One audited action.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Given by the store when the event is appended: increasing.
    #[serde(default)]
    pub id: u64,
    pub time: u64,
    pub actor: String,
    pub client: Option<String>,
    pub action: String,
    pub project: Option<String>,
    pub target: String,
    /// `ok`, `refused` or `failed` (see `auth::audit::Outcome`).
    pub outcome: String,
    /// Why it was refused or failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub project: Option<String>,
    pub action: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: Option<usize>,
    /// `ok`, `refused` or `failed`.
    pub outcome: Option<String>,
}

impl AuditQuery {
    /// The most events one query answers, and the default.
    pub const MAX: usize = 10_000;
    pub const DEFAULT: usize = 100;

    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(Self::DEFAULT).min(Self::MAX)
    }

    /// Whether `e` passes every filter given.
    pub fn admits(&self, e: &AuditEvent) -> bool {
        self.actor.as_ref().is_none_or(|a| a == &e.actor)
            && self
                .project
                .as_ref()
                .is_none_or(|p| Some(p) == e.project.as_ref())
            && self.action.as_ref().is_none_or(|a| a == &e.action)
            && self.since.is_none_or(|s| e.time >= s)
            && self.until.is_none_or(|u| e.time <= u)
            && self.outcome.as_ref().is_none_or(|o| o == &e.outcome)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("account database: {0}")]
    Db(String),
}

impl AccountError {
    pub(crate) fn no_project(name: &str) -> Self {
        AccountError::NotFound(format!("no project named {name}"))
    }
    pub(crate) fn no_account(name: &str) -> Self {
        AccountError::NotFound(format!("no account named {name}"))
    }
}

/// Everything but the audit log, from one snapshot: what `Accounts` holds
/// in memory for access decisions.
#[derive(Debug, Clone, Default)]
pub struct AccountRecords {
    pub users: Vec<User>,
    pub projects: Vec<Project>,
    /// (project, account, role)
    pub members: Vec<(String, String, Role)>,
    pub robots: Vec<Robot>,
}

/// What a project update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProjectChange {
    pub public: Option<bool>,
    /// `Some(None)` removes the policy.
    pub require_signature: Option<Option<crate::signature::RequireSignature>>,
}

/// The role a membership change requires the account to have in the
/// project when it runs (what the caller's permission was decided on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfRole {
    /// Whatever it is (an administrator's change).
    Any,
    /// Exactly this: `None` for not a member. Otherwise the change is
    /// refused with `Conflict`.
    Is(Option<Role>),
}

impl IfRole {
    pub fn admits(self, current: Option<Role>) -> bool {
        match self {
            IfRole::Any => true,
            IfRole::Is(r) => r == current,
        }
    }
}

/// Conflict for a membership that changed since the caller looked.
pub(crate) fn role_changed(project: &str, user: &str) -> AccountError {
    AccountError::Conflict(format!(
        "the membership of {user} in {project} changed meanwhile; look at it again and retry"
    ))
}

/// Accounts, projects, memberships, robots and the audit log. Every
/// operation is atomic, its checks included; writes are serialised with
/// each other.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Every user, project, membership and robot, from one snapshot.
    async fn load(&self) -> Result<AccountRecords, AccountError>;

    /// The account `name` as stored now: the robot of that name when it
    /// has the robot prefix, else the user. What a replica compares with its
    /// snapshot before it refuses a login another replica may just have
    /// made good. A shared store answers from one row, not a `load`.
    async fn credential(&self, name: &str) -> Result<Option<Credential>, AccountError> {
        let mut r = self.load().await?;
        Ok(if name.starts_with(super::accounts::ROBOT_PREFIX) {
            r.robots
                .drain(..)
                .find(|x| x.name == name)
                .map(Credential::Robot)
        } else {
            r.users
                .drain(..)
                .find(|x| x.name == name)
                .map(Credential::User)
        })
    }

    // ---- users ----

    /// Stores a new account; `Conflict` when the name is taken.
    async fn create_user(&self, user: &User) -> Result<(), AccountError>;
    /// Stores `user` only if there are no accounts at all (the first
    /// start's administrator); false when there were.
    async fn create_first_user(&self, user: &User) -> Result<bool, AccountError>;
    /// Replaces the password hash and `must_reset` of account `name`
    /// (`NotFound`). With `replacing`, only while the stored hash is still
    /// that one (`Forbidden` otherwise: the old password verified is no
    /// longer the password). The account as stored now.
    async fn set_password(
        &self,
        name: &str,
        replacing: Option<&str>,
        hash: &str,
        must_reset: bool,
    ) -> Result<User, AccountError>;
    /// Deletes an account and its memberships; `NotFound`, or `Conflict`
    /// for the last administrator.
    async fn delete_user(&self, name: &str) -> Result<(), AccountError>;

    // ---- projects ----

    /// Stores a new project; `Conflict` when the name is taken.
    async fn create_project(&self, project: &Project) -> Result<(), AccountError>;
    /// Changes a project's settings (`NotFound`); the project as stored now.
    async fn update_project(
        &self,
        name: &str,
        change: &ProjectChange,
    ) -> Result<Project, AccountError>;
    /// Deletes a project with its memberships and robots (`NotFound`).
    async fn delete_project(&self, name: &str) -> Result<(), AccountError>;
    /// Seals every proxy project's upstream password again with `sealer`'s
    /// current key, in one transaction. A password no configured key opens
    /// stays as it is, counted as failed.
    async fn reseal_proxy_passwords(
        &self,
        sealer: std::sync::Arc<dyn crate::sealing::Sealer>,
    ) -> Result<crate::sealing::ResealCount, AccountError>;

    // ---- members ----

    /// Gives `user` `role` in `project`, both of which must exist
    /// (`NotFound`), if its role there is what `expect` says (`Conflict`
    /// otherwise). The role it had.
    async fn set_member(
        &self,
        project: &str,
        user: &str,
        role: Role,
        expect: IfRole,
    ) -> Result<Option<Role>, AccountError>;
    /// Takes `user` out of `project` (`NotFound` when not a member) if its
    /// role is what `expect` says (`Conflict` otherwise). The role it had.
    async fn remove_member(
        &self,
        project: &str,
        user: &str,
        expect: IfRole,
    ) -> Result<Role, AccountError>;

    // ---- robots ----

    /// Stores a new robot: its project must exist (`NotFound`), and a robot
    /// of the same name must not, unless revoked (`Conflict`; a revoked one
    /// is replaced).
    async fn create_robot(&self, robot: &Robot) -> Result<(), AccountError>;
    /// Marks the robot `name` of `project` revoked (`NotFound` when there
    /// is none in that project); the robot as stored now.
    async fn revoke_robot(&self, project: &str, name: &str) -> Result<Robot, AccountError>;

    // ---- audit ----

    /// Appends an event, giving it the next id (which it returns).
    async fn append_audit(&self, event: &AuditEvent) -> Result<u64, AccountError>;
    /// Appends events in order, each with the next id. A backend that
    /// commits each write durably does them in one commit.
    async fn append_audits(&self, events: &[AuditEvent]) -> Result<(), AccountError> {
        for e in events {
            self.append_audit(e).await?;
        }
        Ok(())
    }
    /// Events that pass the query's filters, newest first, at most its limit.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, AccountError>;
    /// Every event with an id above `after`, oldest first, at most `limit`
    /// (a copy of the whole log pages through it; no filters, no cap).
    async fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, AccountError>;
}

/// What a shared store tells each `Accounts` about changes other replicas
/// made (`Accounts::follow`): the embedded store has none to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreSignal {
    /// Changes are announced from now on (a listening connection is up);
    /// what happened before may have been missed.
    Listening,
    /// Something changed.
    Changed,
    /// Announcements stopped (the connection dropped): poll until
    /// `Listening` again.
    Lost,
}

/// A new random instance id for an account or robot.
pub fn new_instance_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
