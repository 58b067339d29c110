//! Accounts as access decisions and logins see them: users, projects,
//! memberships and robots held in memory, kept in an `AccountStore`.
//!
//! Every user and robot has an instance `id`, random, given at creation: tokens
//! and cached logins name it, so an account deleted and created again under the
//! same name is a different account.
//!
//! The whole model is small, so it is held in memory: access decisions read
//! the snapshot (no I/O, no bcrypt). Every change (`changes.rs`) is one
//! store operation, its checks inside, and then applied to the snapshot,
//! one change at a time so that both see them in the same order. bcrypt
//! (hashing, verifying, the dummy hash unknown names are checked against)
//! and the password rule (`rules.rs`) are here, never in a store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::policy::{Role, Who};
use super::Subject;
use crate::meta::now;

mod changes;
mod follow;
mod rules;
mod system_robots;
#[cfg(test)]
mod tests;

pub use self::follow::Backstop;
pub use self::rules::{check_password_rule, check_project_name, check_user_name, PASSWORD_RULE};
pub use super::store::{
    proxy_password_place, AccountError, AccountRecords, AccountStore, AuditEvent, AuditQuery,
    Credential, IfRole, Project, ProjectChange, ProxyUpstream, Robot, RobotProjects, StoreSignal,
    User,
};

pub const ROBOT_PREFIX: &str = "robot$";

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

#[derive(Default)]
struct Snapshot {
    users: HashMap<String, User>,
    projects: BTreeMap<String, Project>,
    members: HashMap<(String, String), Role>,
    robots: HashMap<String, Robot>,
}

impl From<AccountRecords> for Snapshot {
    fn from(r: AccountRecords) -> Self {
        Snapshot {
            users: r.users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            projects: r
                .projects
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            members: r
                .members
                .into_iter()
                .map(|(p, u, role)| ((p, u), role))
                .collect(),
            robots: r.robots.into_iter().map(|r| (r.name.clone(), r)).collect(),
        }
    }
}

/// A write lock on the snapshot that moves `generation` on while still held,
/// so whoever read the generation before the change sees it has moved.
struct SnapshotWrite<'a> {
    guard: std::sync::RwLockWriteGuard<'a, Snapshot>,
    generation: &'a AtomicU64,
}

impl std::ops::Deref for SnapshotWrite<'_> {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.guard
    }
}

impl std::ops::DerefMut for SnapshotWrite<'_> {
    fn deref_mut(&mut self) -> &mut Snapshot {
        &mut self.guard
    }
}

impl Drop for SnapshotWrite<'_> {
    fn drop(&mut self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

pub struct Accounts {
    store: Arc<dyn AccountStore>,
    snap: RwLock<Snapshot>,
    /// Held from a change's store operation until the snapshot has it.
    changing: tokio::sync::Mutex<()>,
    cost: u32,
    /// Bumped whenever a password or robot secret changes or an account or robot
    /// goes away, so credentials verified before (the login cache) are verified again.
    credentials: AtomicU64,
    /// A hash at this installation's cost, so unknown names take as long as known ones.
    dummy: Arc<std::sync::OnceLock<String>>,
    /// Set by `follow`: other replicas write the store too, so the snapshot
    /// may lag behind it (see `refresh_for`).
    shared: AtomicBool,
    /// See `generation()`.
    generation: AtomicU64,
    /// Projects someone lost access to (a member removed or lowered, the
    /// project deleted), for whoever must revoke what they were handed.
    access_removed: tokio::sync::broadcast::Sender<String>,
    /// bcrypt verifications run (logins that missed the cache, old-password checks).
    checks: prometheus_client::metrics::counter::Counter,
    /// `<data_dir>/admin-password`, the generated initial password of `admin`:
    /// removed once that password is changed (it would no longer be true, and
    /// a password on disk is one more thing to leak).
    initial_password_file: std::sync::OnceLock<std::path::PathBuf>,
}

impl Accounts {
    /// Loads the accounts `store` keeps; secrets are hashed at `bcrypt_cost`.
    pub async fn open(
        store: Arc<dyn AccountStore>,
        bcrypt_cost: u32,
    ) -> Result<Self, AccountError> {
        let records = store.load().await?;
        Ok(Self {
            store,
            snap: RwLock::new(records.into()),
            changing: tokio::sync::Mutex::new(()),
            cost: bcrypt_cost,
            credentials: AtomicU64::new(0),
            dummy: Default::default(),
            shared: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            access_removed: tokio::sync::broadcast::channel(64).0,
            checks: Default::default(),
            initial_password_file: Default::default(),
        })
    }

    /// Counts every bcrypt verification (for `/metrics`); clones share the count.
    pub fn password_checks(&self) -> prometheus_client::metrics::counter::Counter {
        self.checks.clone()
    }

    /// bcrypt::verify, counted. Blocks: call off the async runtime.
    fn bcrypt_verify(&self, secret: &str, hash: &str) -> bool {
        self.checks.inc();
        bcrypt::verify(secret, hash).unwrap_or(false)
    }

    /// What an unknown name's secret is checked against: same cost as real hashes, so
    /// the answer's timing does not tell which names exist.
    fn dummy_hash(&self) -> &str {
        dummy_hash(&self.dummy, self.cost)
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
    /// The snapshot to change; `generation` moves on when the change is done.
    fn write(&self) -> SnapshotWrite<'_> {
        SnapshotWrite {
            guard: self.snap.write().unwrap_or_else(|p| p.into_inner()),
            generation: &self.generation,
        }
    }

    /// Moves on with every change of the snapshot (local or reloaded).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
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
                let who = match r.system {
                    Some(_) => "a system administrator".to_string(),
                    None => format!("a maintainer of {}", r.project),
                };
                return Err(LoginError::Revoked(format!(
                    "robot account {name} has been revoked; {who} can create a new one"
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
        self.current_of(s.name.as_deref(), s.account_id.as_deref(), s.robot)
    }

    /// `current` for a subject given by its parts: `name` (None: anonymous),
    /// the account instance `id`, and whether it is a robot.
    pub fn current_of(&self, name: Option<&str>, id: Option<&str>, robot: bool) -> Option<Subject> {
        let Some(name) = name else {
            return Some(Subject::default());
        };
        let id = id?;
        let snap = self.read();
        if robot {
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
                // A system robot pulls from the projects it covers, as
                // their own pull robot would; elsewhere as a robot of none.
                Some(r) => match &r.system {
                    None => Who::Robot {
                        project: r.project.clone(),
                        push: r.push,
                    },
                    Some(covered) => Who::Robot {
                        project: if system_robot_reads(r, covered, snap.projects.get(project)) {
                            project.to_string()
                        } else {
                            String::new()
                        },
                        push: false,
                    },
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

    // ---- reading ----

    pub fn users(&self) -> Vec<User> {
        let mut v: Vec<User> = self.read().users.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.read().users.get(name).cloned()
    }

    pub fn project(&self, name: &str) -> Option<Project> {
        self.read().projects.get(name).cloned()
    }

    /// `f` of `name`'s record, read in place: what a request needs of its
    /// project without a copy of all of it. None without such a project.
    pub fn with_project<R>(&self, name: &str, f: impl FnOnce(&Project) -> R) -> Option<R> {
        self.read().projects.get(name).map(f)
    }

    pub fn projects(&self) -> Vec<Project> {
        self.read().projects.values().cloned().collect()
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

    /// Names of projects someone lost access to, as it happens.
    pub fn access_removed(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.access_removed.subscribe()
    }

    // ---- audit ----

    pub async fn audit(&self, e: AuditEvent) -> Result<(), AccountError> {
        self.store.append_audit(&e).await.map(|_| ())
    }

    /// Several events in order, in one append where the store can.
    pub async fn audit_batch(&self, events: &[AuditEvent]) -> Result<(), AccountError> {
        self.store.append_audits(events).await
    }

    /// Newest first.
    pub async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, AccountError> {
        self.store.audit_events(q).await
    }
}

/// Whether system robot `r` reads `project`. A project it names must be the
/// one it was given: a project deleted and created again under that name
/// (created after the robot) is not. `*` covers projects created later too.
fn system_robot_reads(r: &Robot, covered: &RobotProjects, project: Option<&Project>) -> bool {
    let Some(p) = project else { return false };
    match covered {
        RobotProjects::All => true,
        RobotProjects::Only(_) => covered.covers(&p.name) && p.created <= r.created,
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

fn dummy_hash(cell: &std::sync::OnceLock<String>, cost: u32) -> &str {
    cell.get_or_init(|| {
        bcrypt::hash("berth: no such account", cost).unwrap_or_else(|_| DUMMY_HASH.to_string())
    })
}

/// A valid bcrypt hash (cost 10) of a random string, for when hashing fails.
const DUMMY_HASH: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
