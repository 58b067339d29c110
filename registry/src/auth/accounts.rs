//! Accounts, projects, memberships, robots and the audit log, in redb.
//!
//! Tables (keys → values, JSON values unless noted):
//!
//! ```text
//! acct_users      name                 → User    (id, bcrypt hash, admin, must_reset)
//! acct_projects   name                 → Project (public)
//! acct_members    (project, user)      → role    (&str: guest, developer, maintainer, project-admin)
//! acct_robots     name                 → Robot   (id, project, bcrypt hash of the secret, push, expiry, revoked)
//! audit           sequence (u64)       → AuditEvent
//! ```
//!
//! Every user and robot has an instance `id`, random, given at creation: tokens
//! and cached logins name it, so an account deleted and created again under the
//! same name is a different account. Records from before ids existed get one
//! when the database is opened.
//!
//! The whole model is small, so it is also held in memory: access decisions
//! read the snapshot (no I/O, no bcrypt); every change is written to redb in
//! one transaction first and then applied to the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::policy::{Role, Who};
use super::Subject;
use crate::meta::now;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("acct_users");
const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("acct_projects");
const MEMBERS: TableDefinition<(&str, &str), &str> = TableDefinition::new("acct_members");
const ROBOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("acct_robots");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

pub const ROBOT_PREFIX: &str = "robot$";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// This account's instance id (empty only in records written before ids existed).
    #[serde(default)]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    hash: String,
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
    #[serde(skip_serializing_if = "String::is_empty", default)]
    hash: String,
    pub push: bool,
    pub expires_at: Option<u64>,
    pub revoked: bool,
    pub created: u64,
}

/// One audited action.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    #[serde(default)]
    pub id: u64,
    pub time: u64,
    pub actor: String,
    pub client: Option<String>,
    pub action: String,
    pub project: Option<String>,
    pub target: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub project: Option<String>,
    pub action: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: Option<usize>,
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

fn db<E: std::fmt::Display>(e: E) -> AccountError {
    AccountError::Db(e.to_string())
}

/// Why a login failed. Messages are safe to show the client: unknown account
/// and wrong password read the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    BadCredentials,
    MustReset(String),
    Expired(String),
    /// The right secret of a revoked robot (told only to whoever holds the secret).
    Revoked(String),
}

/// The password rule: 8 to 20 characters, at least one letter and one digit.
/// The message states every check `check_password_rule` makes.
pub const PASSWORD_RULE: &str =
    "a password has 8 to 20 characters (at most 72 bytes in UTF-8), with at least one letter (of any script) and at least one digit 0-9, and no control characters";

pub fn check_password_rule(p: &str) -> Result<(), AccountError> {
    let n = p.chars().count();
    let ok = (8..=20).contains(&n)
        && p.len() <= 72
        && p.chars().any(|c| c.is_alphabetic())
        && p.chars().any(|c| c.is_ascii_digit())
        && !p.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "password refused: {PASSWORD_RULE}"
        )))
    }
}

/// Project names: lower-case letters and digits in groups joined by single hyphens, 2 to 63 characters.
pub fn check_project_name(n: &str) -> Result<(), AccountError> {
    let ok = (2..=63).contains(&n.len())
        && n.split('-').all(|g| {
            !g.is_empty()
                && g.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "invalid project name {n:?}: use 2 to 63 lower-case letters and digits, in groups joined by single hyphens (e.g. my-team-2)"
        )))
    }
}

pub fn check_user_name(n: &str) -> Result<(), AccountError> {
    let ok = (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "invalid account name {n:?}: use 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

#[derive(Default)]
struct Snapshot {
    users: HashMap<String, User>,
    projects: BTreeMap<String, Project>,
    members: HashMap<(String, String), Role>,
    robots: HashMap<String, Robot>,
}

pub struct Accounts {
    db: Arc<Database>,
    snap: RwLock<Snapshot>,
    cost: u32,
    /// Bumped whenever a password or robot secret changes or an account or robot
    /// goes away, so credentials verified before (the login cache) are verified again.
    credentials: AtomicU64,
    /// A hash at this installation's cost, so unknown names take as long as known ones.
    dummy: std::sync::OnceLock<String>,
    /// Projects someone lost access to (a member removed or lowered, the
    /// project deleted), for whoever must revoke what they were handed.
    access_removed: tokio::sync::broadcast::Sender<String>,
    /// bcrypt verifications run (logins that missed the cache, old-password checks).
    checks: prometheus_client::metrics::counter::Counter,
}

/// A new random instance id for an account or robot.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, AccountError> {
    serde_json::to_vec(v).map_err(db)
}

fn random_secret(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let mut s: String = (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    // Always satisfy the password rule.
    s.replace_range(0..2, &format!("a{}", rng.gen_range(2..10)));
    s
}

impl Accounts {
    pub fn open(database: Arc<Database>, bcrypt_cost: u32) -> Result<Self, AccountError> {
        let tx = database.begin_write().map_err(db_err)?;
        for t in [USERS, PROJECTS, ROBOTS] {
            tx.open_table(t).map_err(db)?;
        }
        tx.open_table(MEMBERS).map_err(db)?;
        tx.open_table(AUDIT).map_err(db)?;
        tx.commit().map_err(db)?;
        let mut snap = Snapshot::default();
        let rtx = database.begin_read().map_err(db)?;
        for r in rtx.open_table(USERS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            snap.users.insert(
                k.value().to_string(),
                serde_json::from_slice(v.value()).map_err(db)?,
            );
        }
        for r in rtx.open_table(PROJECTS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            snap.projects.insert(
                k.value().to_string(),
                serde_json::from_slice(v.value()).map_err(db)?,
            );
        }
        for r in rtx.open_table(MEMBERS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            let (p, u) = k.value();
            if let Ok(role) = v.value().parse() {
                snap.members.insert((p.to_string(), u.to_string()), role);
            }
        }
        for r in rtx.open_table(ROBOTS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            snap.robots.insert(
                k.value().to_string(),
                serde_json::from_slice(v.value()).map_err(db)?,
            );
        }
        let a = Self {
            db: database,
            snap: RwLock::new(snap),
            cost: bcrypt_cost,
            credentials: AtomicU64::new(0),
            dummy: std::sync::OnceLock::new(),
            access_removed: tokio::sync::broadcast::channel(64).0,
            checks: Default::default(),
        };
        a.assign_missing_ids()?;
        Ok(a)
    }

    /// Gives records written before instance ids existed their id, in one transaction.
    fn assign_missing_ids(&self) -> Result<(), AccountError> {
        let users: Vec<User> = self
            .read()
            .users
            .values()
            .filter(|u| u.id.is_empty())
            .cloned()
            .collect();
        let robots: Vec<Robot> = self
            .read()
            .robots
            .values()
            .filter(|r| r.id.is_empty())
            .cloned()
            .collect();
        if users.is_empty() && robots.is_empty() {
            return Ok(());
        }
        let users: Vec<User> = users
            .into_iter()
            .map(|u| User { id: new_id(), ..u })
            .collect();
        let robots: Vec<Robot> = robots
            .into_iter()
            .map(|r| Robot { id: new_id(), ..r })
            .collect();
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(USERS).map_err(db)?;
            for u in &users {
                t.insert(u.name.as_str(), to_json(u)?.as_slice())
                    .map_err(db)?;
            }
            let mut t = tx.open_table(ROBOTS).map_err(db)?;
            for r in &robots {
                t.insert(r.name.as_str(), to_json(r)?.as_slice())
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        tracing::info!(
            users = users.len(),
            robots = robots.len(),
            "gave accounts their instance ids"
        );
        let mut snap = self.write();
        for u in users {
            snap.users.insert(u.name.clone(), u);
        }
        for r in robots {
            snap.robots.insert(r.name.clone(), r);
        }
        Ok(())
    }

    /// Counts every bcrypt verification (for `/metrics`); clones share the count.
    pub fn password_checks(&self) -> prometheus_client::metrics::counter::Counter {
        self.checks.clone()
    }

    /// bcrypt::verify, counted.
    fn bcrypt_verify(&self, secret: &str, hash: &str) -> bool {
        self.checks.inc();
        bcrypt::verify(secret, hash).unwrap_or(false)
    }

    /// What an unknown name's secret is checked against: same cost as real hashes, so
    /// the answer's timing does not tell which names exist.
    fn dummy_hash(&self) -> &str {
        self.dummy.get_or_init(|| {
            bcrypt::hash("berth: no such account", self.cost)
                .unwrap_or_else(|_| DUMMY_HASH.to_string())
        })
    }

    /// Changes whenever any stored credential changes; see `credentials`.
    pub fn credentials_epoch(&self) -> u64 {
        self.credentials.load(Ordering::Acquire)
    }

    fn credentials_changed(&self) {
        self.credentials.fetch_add(1, Ordering::AcqRel);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snap.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        self.snap.write().unwrap_or_else(|p| p.into_inner())
    }

    fn hash(&self, secret: &str) -> Result<String, AccountError> {
        bcrypt::hash(secret, self.cost).map_err(db)
    }

    /// First start: create `admin`. With `password` given (BERTH_ADMIN_PASSWORD) it is
    /// used as chosen; otherwise a random one is generated, written to
    /// `<data_dir>/admin-password` (0600) and must be reset at first login.
    /// Returns the generated password, if one was generated.
    pub fn bootstrap_admin(
        &self,
        data_dir: &Path,
        password: Option<&str>,
    ) -> Result<Option<String>, AccountError> {
        if !self.read().users.is_empty() {
            return Ok(None);
        }
        let (pw, generated) = match password {
            Some(p) => {
                check_password_rule(p)
                    .map_err(|e| AccountError::Invalid(format!("BERTH_ADMIN_PASSWORD: {e}")))?;
                (p.to_string(), false)
            }
            None => (random_secret(16), true),
        };
        let user = User {
            name: "admin".into(),
            id: new_id(),
            hash: self.hash(&pw)?,
            admin: true,
            must_reset: generated,
            created: now(),
        };
        self.put_user(&user)?;
        if generated {
            let path = data_dir.join("admin-password");
            write_private(&path, &format!("{pw}\n")).map_err(db)?;
            return Ok(Some(pw));
        }
        Ok(None)
    }

    fn put_user(&self, u: &User) -> Result<(), AccountError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(USERS)
            .map_err(db)?
            .insert(u.name.as_str(), to_json(u)?.as_slice())
            .map_err(db)?;
        tx.commit().map_err(db)?;
        self.write().users.insert(u.name.clone(), u.clone());
        self.credentials_changed();
        Ok(())
    }

    // ---- login ----

    /// Verifies a password or robot secret. Runs bcrypt: call off the async runtime.
    pub fn verify(&self, name: &str, secret: &str) -> Result<Subject, LoginError> {
        if name.starts_with(ROBOT_PREFIX) {
            let robot = self.read().robots.get(name).cloned();
            let Some(r) = robot else {
                // Same cost as a real check, so timing does not tell names apart.
                self.bcrypt_verify(secret, self.dummy_hash());
                return Err(LoginError::BadCredentials);
            };
            if !self.bcrypt_verify(secret, &r.hash) {
                return Err(LoginError::BadCredentials);
            }
            if r.revoked {
                return Err(LoginError::Revoked(format!(
                    "robot account {name} has been revoked; a maintainer of {} can create a new one",
                    r.project
                )));
            }
            if r.expires_at.is_some_and(|e| e <= now()) {
                return Err(LoginError::Expired(format!(
                    "robot account {name} has expired; create a new one"
                )));
            }
            return Ok(robot_subject(&r));
        }
        let user = self.read().users.get(name).cloned();
        let Some(u) = user else {
            self.bcrypt_verify(secret, self.dummy_hash());
            return Err(LoginError::BadCredentials);
        };
        if !self.bcrypt_verify(secret, &u.hash) {
            return Err(LoginError::BadCredentials);
        }
        if u.must_reset {
            return Err(LoginError::MustReset(format!(
                "the password of {name} is an initial password and must be reset before use: run `berth passwd {name}` or PUT /api/v1/users/{name}/password with {{\"old_password\", \"new_password\"}}"
            )));
        }
        Ok(user_subject(&u))
    }

    /// A subject established earlier (a cached login, a token) as its account is
    /// now: None when that account instance is gone (deleted, even if its name was
    /// taken again), revoked, expired or must reset its password. The admin flag
    /// comes from the account, never from what the subject claimed.
    pub fn current(&self, s: &Subject) -> Option<Subject> {
        let Some(name) = &s.name else {
            return Some(Subject::default());
        };
        let id = s.account_id.as_deref()?;
        let snap = self.read();
        if s.robot {
            let r = snap.robots.get(name).filter(|r| r.id == id)?;
            let usable = !r.revoked && r.expires_at.is_none_or(|e| e > now());
            usable.then(|| robot_subject(r))
        } else {
            let u = snap.users.get(name).filter(|u| u.id == id)?;
            (!u.must_reset).then(|| user_subject(u))
        }
    }

    /// The decision input for `subject` on `project`, from the current accounts: a
    /// subject whose account instance is gone decides as anonymous.
    pub fn who(&self, s: &Subject, project: &str) -> Who {
        let (Some(name), Some(id)) = (&s.name, &s.account_id) else {
            return Who::Anonymous;
        };
        let snap = self.read();
        if s.robot {
            return match snap.robots.get(name).filter(|r| &r.id == id) {
                Some(r) => Who::Robot {
                    project: r.project.clone(),
                    push: r.push,
                },
                None => Who::Anonymous,
            };
        }
        match snap.users.get(name).filter(|u| &u.id == id) {
            Some(u) if u.admin => Who::Admin,
            Some(_) => Who::Member(
                snap.members
                    .get(&(project.to_string(), name.clone()))
                    .copied(),
            ),
            None => Who::Anonymous,
        }
    }

    pub fn project_public(&self, project: &str) -> Option<bool> {
        self.read().projects.get(project).map(|p| p.public)
    }

    pub fn is_admin(&self, name: &str) -> bool {
        self.read().users.get(name).is_some_and(|u| u.admin)
    }

    // ---- users ----

    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        admin: bool,
    ) -> Result<User, AccountError> {
        check_user_name(name)?;
        check_password_rule(password)?;
        if self.read().users.contains_key(name) {
            return Err(AccountError::Conflict(format!(
                "account {name} already exists"
            )));
        }
        let u = User {
            name: name.to_string(),
            id: new_id(),
            hash: self.hash(password)?,
            admin,
            must_reset: true,
            created: now(),
        };
        self.put_user(&u)?;
        Ok(u)
    }

    pub fn users(&self) -> Vec<User> {
        let mut v: Vec<User> = self.read().users.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.read().users.get(name).cloned()
    }

    pub fn delete_user(&self, name: &str) -> Result<(), AccountError> {
        if !self.read().users.contains_key(name) {
            return Err(AccountError::NotFound(format!("no account named {name}")));
        }
        let admins = self.read().users.values().filter(|u| u.admin).count();
        if self.is_admin(name) && admins <= 1 {
            return Err(AccountError::Conflict(
                "cannot delete the last administrator".into(),
            ));
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(USERS).map_err(db)?.remove(name).map_err(db)?;
        let memberships: Vec<(String, String)> = self
            .read()
            .members
            .keys()
            .filter(|(_, u)| u == name)
            .cloned()
            .collect();
        {
            let mut m = tx.open_table(MEMBERS).map_err(db)?;
            for (p, u) in &memberships {
                m.remove((p.as_str(), u.as_str())).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        let mut snap = self.write();
        snap.users.remove(name);
        for k in memberships {
            snap.members.remove(&k);
        }
        drop(snap);
        self.credentials_changed();
        Ok(())
    }

    /// Self-service change: the old password must match (an initial password counts).
    /// Runs bcrypt twice.
    pub fn change_password(&self, name: &str, old: &str, new: &str) -> Result<(), AccountError> {
        let Some(mut u) = self.user(name) else {
            self.bcrypt_verify(old, self.dummy_hash());
            return Err(AccountError::Forbidden(
                "account name or old password is wrong".into(),
            ));
        };
        if !self.bcrypt_verify(old, &u.hash) {
            return Err(AccountError::Forbidden(
                "account name or old password is wrong".into(),
            ));
        }
        check_password_rule(new)?;
        if new == old {
            return Err(AccountError::Invalid(
                "the new password must differ from the old one".into(),
            ));
        }
        u.hash = self.hash(new)?;
        u.must_reset = false;
        self.put_user(&u)
    }

    /// An administrator sets a new initial password; the owner must reset it.
    pub fn admin_set_password(&self, name: &str, new: &str) -> Result<(), AccountError> {
        let mut u = self
            .user(name)
            .ok_or_else(|| AccountError::NotFound(format!("no account named {name}")))?;
        check_password_rule(new)?;
        u.hash = self.hash(new)?;
        u.must_reset = true;
        self.put_user(&u)
    }

    // ---- projects ----

    pub fn create_project(&self, name: &str, public: bool) -> Result<Project, AccountError> {
        self.create_project_with(name, public, None)
    }

    /// Creates a project, a proxy-cache project when `proxy` is given.
    pub fn create_project_with(
        &self,
        name: &str,
        public: bool,
        proxy: Option<ProxyUpstream>,
    ) -> Result<Project, AccountError> {
        check_project_name(name)?;
        if self.read().projects.contains_key(name) {
            return Err(AccountError::Conflict(format!(
                "project {name} already exists"
            )));
        }
        let p = Project {
            name: name.to_string(),
            public,
            created: now(),
            require_signature: None,
            proxy,
        };
        self.put_project(&p)?;
        Ok(p)
    }

    fn put_project(&self, p: &Project) -> Result<(), AccountError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(PROJECTS)
            .map_err(db)?
            .insert(p.name.as_str(), to_json(p)?.as_slice())
            .map_err(db)?;
        tx.commit().map_err(db)?;
        self.write().projects.insert(p.name.clone(), p.clone());
        Ok(())
    }

    pub fn project(&self, name: &str) -> Option<Project> {
        self.read().projects.get(name).cloned()
    }

    pub fn projects(&self) -> Vec<Project> {
        self.read().projects.values().cloned().collect()
    }

    pub fn set_public(&self, name: &str, public: bool) -> Result<Project, AccountError> {
        let mut p = self
            .project(name)
            .ok_or_else(|| AccountError::NotFound(format!("no project named {name}")))?;
        p.public = public;
        self.put_project(&p)?;
        Ok(p)
    }

    /// Sets or clears the project's signature policy (keys checked first).
    pub fn set_signature_policy(
        &self,
        name: &str,
        policy: Option<crate::signature::RequireSignature>,
    ) -> Result<Project, AccountError> {
        let mut p = self
            .project(name)
            .ok_or_else(|| AccountError::NotFound(format!("no project named {name}")))?;
        if let Some(policy) = &policy {
            policy.validate().map_err(AccountError::Invalid)?;
        }
        p.require_signature = policy;
        self.put_project(&p)?;
        Ok(p)
    }

    /// Removes the project, its memberships and robots (its repositories are the caller's business).
    pub fn delete_project(&self, name: &str) -> Result<(), AccountError> {
        if self.project(name).is_none() {
            return Err(AccountError::NotFound(format!("no project named {name}")));
        }
        let members: Vec<(String, String)> = self
            .read()
            .members
            .keys()
            .filter(|(p, _)| p == name)
            .cloned()
            .collect();
        let robots: Vec<String> = self
            .read()
            .robots
            .values()
            .filter(|r| r.project == name)
            .map(|r| r.name.clone())
            .collect();
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(PROJECTS)
            .map_err(db)?
            .remove(name)
            .map_err(db)?;
        {
            let mut m = tx.open_table(MEMBERS).map_err(db)?;
            for (p, u) in &members {
                m.remove((p.as_str(), u.as_str())).map_err(db)?;
            }
            let mut r = tx.open_table(ROBOTS).map_err(db)?;
            for n in &robots {
                r.remove(n.as_str()).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        let mut snap = self.write();
        snap.projects.remove(name);
        for k in members {
            snap.members.remove(&k);
        }
        for n in robots {
            snap.robots.remove(&n);
        }
        drop(snap);
        self.credentials_changed();
        let _ = self.access_removed.send(name.to_string());
        Ok(())
    }

    /// Names of projects someone lost access to, as it happens.
    pub fn access_removed(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.access_removed.subscribe()
    }

    // ---- members ----

    pub fn set_member(&self, project: &str, user: &str, role: Role) -> Result<(), AccountError> {
        if self.project(project).is_none() {
            return Err(AccountError::NotFound(format!(
                "no project named {project}"
            )));
        }
        if self.user(user).is_none() {
            return Err(AccountError::NotFound(format!("no account named {user}")));
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(MEMBERS)
            .map_err(db)?
            .insert((project, user), role.as_str())
            .map_err(db)?;
        tx.commit().map_err(db)?;
        let before = self
            .write()
            .members
            .insert((project.to_string(), user.to_string()), role);
        if before.is_some_and(|b| b != role) {
            // A changed role may have lost the right to export.
            let _ = self.access_removed.send(project.to_string());
        }
        Ok(())
    }

    pub fn remove_member(&self, project: &str, user: &str) -> Result<(), AccountError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let removed = tx
            .open_table(MEMBERS)
            .map_err(db)?
            .remove((project, user))
            .map_err(db)?
            .is_some();
        tx.commit().map_err(db)?;
        if !removed {
            return Err(AccountError::NotFound(format!(
                "{user} is not a member of {project}"
            )));
        }
        self.write()
            .members
            .remove(&(project.to_string(), user.to_string()));
        let _ = self.access_removed.send(project.to_string());
        Ok(())
    }

    pub fn members(&self, project: &str) -> Vec<(String, Role)> {
        let mut v: Vec<(String, Role)> = self
            .read()
            .members
            .iter()
            .filter(|((p, _), _)| p == project)
            .map(|((_, u), r)| (u.clone(), *r))
            .collect();
        v.sort();
        v
    }

    pub fn role(&self, project: &str, user: &str) -> Option<Role> {
        self.read()
            .members
            .get(&(project.to_string(), user.to_string()))
            .copied()
    }

    // ---- robots ----

    /// Creates `robot$<project>+<name>` and returns it with its secret (shown once).
    pub fn create_robot(
        &self,
        project: &str,
        name: &str,
        push: bool,
        expires_at: Option<u64>,
    ) -> Result<(Robot, String), AccountError> {
        if self.project(project).is_none() {
            return Err(AccountError::NotFound(format!(
                "no project named {project}"
            )));
        }
        check_user_name(name)?;
        let full = format!("{ROBOT_PREFIX}{project}+{name}");
        if self.read().robots.get(&full).is_some_and(|r| !r.revoked) {
            return Err(AccountError::Conflict(format!(
                "robot {full} already exists; revoke it first"
            )));
        }
        let secret = random_secret(32);
        let r = Robot {
            name: full.clone(),
            id: new_id(),
            project: project.to_string(),
            hash: self.hash(&secret)?,
            push,
            expires_at,
            revoked: false,
            created: now(),
        };
        self.put_robot(&r)?;
        Ok((r, secret))
    }

    fn put_robot(&self, r: &Robot) -> Result<(), AccountError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(ROBOTS)
            .map_err(db)?
            .insert(r.name.as_str(), to_json(r)?.as_slice())
            .map_err(db)?;
        tx.commit().map_err(db)?;
        self.write().robots.insert(r.name.clone(), r.clone());
        self.credentials_changed();
        Ok(())
    }

    pub fn robots(&self, project: &str) -> Vec<Robot> {
        let mut v: Vec<Robot> = self
            .read()
            .robots
            .values()
            .filter(|r| r.project == project)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn revoke_robot(&self, project: &str, name: &str) -> Result<(), AccountError> {
        let full = if name.starts_with(ROBOT_PREFIX) {
            name.to_string()
        } else {
            format!("{ROBOT_PREFIX}{project}+{name}")
        };
        let mut r = self
            .read()
            .robots
            .get(&full)
            .filter(|r| r.project == project)
            .cloned()
            .ok_or_else(|| {
                AccountError::NotFound(format!("no robot {full} in project {project}"))
            })?;
        r.revoked = true;
        self.put_robot(&r)
    }

    // ---- audit ----

    pub fn audit(&self, mut e: AuditEvent) -> Result<(), AccountError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(AUDIT).map_err(db)?;
            let next = t
                .last()
                .map_err(db)?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1);
            e.id = next;
            t.insert(next, to_json(&e)?.as_slice()).map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(())
    }

    /// Newest first.
    pub fn audit_query(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, AccountError> {
        let limit = q.limit.unwrap_or(100).min(10_000);
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(AUDIT).map_err(db)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db)?.rev() {
            let (_, v) = r.map_err(db)?;
            let Ok(e) = serde_json::from_slice::<AuditEvent>(v.value()) else {
                continue;
            };
            if q.actor.as_ref().is_some_and(|a| a != &e.actor)
                || q.project
                    .as_ref()
                    .is_some_and(|p| Some(p) != e.project.as_ref())
                || q.action.as_ref().is_some_and(|a| a != &e.action)
                || q.since.is_some_and(|s| e.time < s)
                || q.until.is_some_and(|u| e.time > u)
            {
                continue;
            }
            out.push(e);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

fn user_subject(u: &User) -> Subject {
    Subject {
        name: Some(u.name.clone()),
        account_id: Some(u.id.clone()),
        admin: u.admin,
        robot: false,
        token_grants: None,
    }
}

fn robot_subject(r: &Robot) -> Subject {
    Subject {
        name: Some(r.name.clone()),
        account_id: Some(r.id.clone()),
        admin: false,
        robot: true,
        token_grants: None,
    }
}

fn db_err(e: redb::TransactionError) -> AccountError {
    AccountError::Db(e.to_string())
}

/// A valid bcrypt hash (cost 10) of a random string, for when hashing fails.
const DUMMY_HASH: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rule_edges() {
        for ok in ["abcdefg1", "a1234567890123456789", "pässwört1", "ÄÖÜäöüß1"] {
            assert!(check_password_rule(ok).is_ok(), "{ok}");
        }
        for bad in [
            "abcdef1",               // 7
            "a12345678901234567890", // 21
            "abcdefgh",              // letters only
            "12345678",              // digits only
            "",
            "abc\u{0}defg1",
            "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀1", // 20 chars, 77 bytes
        ] {
            assert!(check_password_rule(bad).is_err(), "{bad:?}");
        }
        let msg = check_password_rule("short")
            .expect_err("refused")
            .to_string();
        assert!(msg.contains("8 to 20 characters"), "{msg}");
    }

    #[test]
    fn losing_access_to_a_project_is_announced() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Arc::new(Database::create(dir.path().join("a.redb")).expect("db"));
        let a = Accounts::open(db, 4).expect("open");
        let mut removed = a.access_removed();
        a.create_user("ann", "initial123", false).expect("user");
        a.create_project("team", false).expect("project");
        a.set_member("team", "ann", Role::Maintainer)
            .expect("member");
        assert!(removed.try_recv().is_err(), "joining takes nothing away");
        a.set_member("team", "ann", Role::Developer)
            .expect("lowered");
        assert_eq!(removed.try_recv().ok().as_deref(), Some("team"));
        a.remove_member("team", "ann").expect("removed");
        assert_eq!(removed.try_recv().ok().as_deref(), Some("team"));
        a.delete_project("team").expect("deleted");
        assert_eq!(removed.try_recv().ok().as_deref(), Some("team"));
    }

    #[test]
    fn unknown_names_cost_the_same_as_known_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Arc::new(Database::create(dir.path().join("a.redb")).expect("db"));
        for cost in [4, 5] {
            let a = Accounts::open(db.clone(), cost).expect("open");
            a.create_user(&format!("u{cost}"), "initial123", false)
                .expect("user");
            let real = a.read().users[&format!("u{cost}")].hash.clone();
            let prefix = |h: &str| h.get(..7).map(str::to_string);
            assert_eq!(prefix(a.dummy_hash()), prefix(&real), "cost {cost}");
            assert!(matches!(
                a.verify("nobody", "whatever1"),
                Err(LoginError::BadCredentials)
            ));
        }
    }

    #[test]
    fn project_names() {
        for ok in ["ab", "my-team-2", "a1", &"a".repeat(63)] {
            assert!(check_project_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "-ab",
            "ab-",
            "a--b",
            "A1",
            "a_b",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(check_project_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accounts_round_trip_through_redb() {
        let dir = tempfile::tempdir().expect("tmp");
        let dbp = dir.path().join("a.redb");
        {
            let db = Arc::new(Database::create(&dbp).expect("db"));
            let a = Accounts::open(db, 4).expect("open");
            assert!(a
                .bootstrap_admin(dir.path(), Some("admin12345"))
                .expect("boot")
                .is_none());
            a.create_user("alice", "initial123", false).expect("user");
            assert!(matches!(
                a.verify("alice", "initial123"),
                Err(LoginError::MustReset(_))
            ));
            a.change_password("alice", "initial123", "changed123")
                .expect("reset");
            assert!(a.verify("alice", "changed123").is_ok());
            assert!(matches!(
                a.verify("alice", "wrong1234"),
                Err(LoginError::BadCredentials)
            ));
            a.create_project("team-a", false).expect("project");
            a.set_member("team-a", "alice", Role::Developer)
                .expect("member");
            let (robot, secret) = a.create_robot("team-a", "ci", true, None).expect("robot");
            assert_eq!(robot.name, "robot$team-a+ci");
            assert!(a.verify(&robot.name, &secret).expect("robot login").robot);
        }
        let db = Arc::new(Database::create(&dbp).expect("db"));
        let a = Accounts::open(db, 4).expect("reopen");
        assert_eq!(a.role("team-a", "alice"), Some(Role::Developer));
        assert_eq!(a.project_public("team-a"), Some(false));
        assert!(a.verify("admin", "admin12345").expect("admin").admin);
        a.revoke_robot("team-a", "ci").expect("revoke");
        assert_eq!(a.robots("team-a").len(), 1);
        assert!(a.robots("team-a")[0].revoked);
    }

    #[test]
    fn records_without_an_instance_id_get_one_when_opened() {
        let dir = tempfile::tempdir().expect("tmp");
        let dbp = dir.path().join("a.redb");
        {
            // Written as berth wrote them before instance ids existed.
            let db = Database::create(&dbp).expect("db");
            let tx = db.begin_write().expect("tx");
            let hash = bcrypt::hash("oldpass123", 4).expect("hash");
            let user = serde_json::json!({"name": "old", "hash": hash, "admin": true, "must_reset": false, "created": 1});
            let robot = serde_json::json!({"name": "robot$p+ci", "project": "p", "hash": hash, "push": true, "expires_at": null, "revoked": false, "created": 1});
            tx.open_table(USERS)
                .expect("users")
                .insert("old", serde_json::to_vec(&user).expect("json").as_slice())
                .expect("insert");
            tx.open_table(ROBOTS)
                .expect("robots")
                .insert(
                    "robot$p+ci",
                    serde_json::to_vec(&robot).expect("json").as_slice(),
                )
                .expect("insert");
            tx.commit().expect("commit");
        }
        let db = Arc::new(Database::create(&dbp).expect("db"));
        let a = Accounts::open(db, 4).expect("open");
        let user_id = a.user("old").expect("user").id;
        let robot_id = a.read().robots["robot$p+ci"].id.clone();
        assert!(!user_id.is_empty() && !robot_id.is_empty());
        let s = a.verify("old", "oldpass123").expect("login");
        assert_eq!(s.account_id.as_deref(), Some(user_id.as_str()));
        assert!(s.admin);
        drop(a);
        // Written back: the ids stay what they were given.
        let db = Arc::new(Database::create(&dbp).expect("db"));
        let a = Accounts::open(db, 4).expect("reopen");
        assert_eq!(a.user("old").expect("user").id, user_id);
        assert_eq!(a.read().robots["robot$p+ci"].id, robot_id);
    }

    #[test]
    fn a_name_taken_again_is_another_account() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Arc::new(Database::create(dir.path().join("a.redb")).expect("db"));
        let a = Accounts::open(db, 4).expect("open");
        a.bootstrap_admin(dir.path(), Some("admin12345"))
            .expect("boot");
        a.create_user("boss", "initial123", true).expect("boss");
        a.change_password("boss", "initial123", "bosspass1")
            .expect("reset");
        let old = a.verify("boss", "bosspass1").expect("login");
        assert!(old.admin);
        assert_eq!(a.who(&old, "p"), Who::Admin);
        a.delete_user("boss").expect("delete");
        a.create_user("boss", "initial123", false)
            .expect("boss again");
        a.change_password("boss", "initial123", "bosspass2")
            .expect("reset");
        // The old subject (a token, a cached login) is not the new boss.
        assert!(a.current(&old).is_none());
        assert_eq!(a.who(&old, "p"), Who::Anonymous);
        let new = a.verify("boss", "bosspass2").expect("login");
        assert_ne!(new.account_id, old.account_id);
        assert!(!a.current(&new).expect("current").admin);
        // Whatever a subject claims, the admin flag is the account's.
        let claimed = Subject { admin: true, ..new };
        assert!(!a.current(&claimed).expect("current").admin);
        assert_eq!(a.who(&claimed, "p"), Who::Member(None));
    }
}
