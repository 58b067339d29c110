//! The embedded `AccountStore`: accounts, projects, memberships and robots
//! in the registry's redb file (the audit log is in `audit.rs`).
//!
//! Tables (keys → values, JSON values unless noted), unchanged since the
//! first release:
//!
//! ```text
//! acct_users      name                 → User    (id, bcrypt hash, admin, must_reset)
//! acct_projects   name                 → Project (public, signature policy)
//! acct_members    (project, user)      → role    (&str: guest, developer, maintainer, project-admin)
//! acct_robots     name                 → Robot   (id, project, bcrypt hash of the secret, push, expiry, revoked)
//! audit           sequence (u64)       → AuditEvent
//! ```
//!
//! Opening (`RedbMeta::accounts`) creates the tables and gives records
//! written before instance ids existed their id. Each operation is one
//! redb transaction, its checks read inside it; writes run on the blocking
//! pool.

use ::redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};

use super::RedbMeta;
use crate::auth::policy::Role;
use crate::auth::store::{
    new_instance_id, role_changed, AccountError, AccountRecords, AccountStore, AuditEvent,
    AuditQuery, IfRole, Project, ProjectChange, Robot, User,
};

pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("acct_users");
pub(super) const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("acct_projects");
pub(super) const MEMBERS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("acct_members");
pub(super) const ROBOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("acct_robots");
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

pub(super) type Res<T> = std::result::Result<T, AccountError>;

pub(super) fn db<E: std::fmt::Display>(e: E) -> AccountError {
    AccountError::Db(e.to_string())
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Res<Vec<u8>> {
    serde_json::to_vec(v).map_err(db)
}

fn from_json<T: DeserializeOwned>(b: &[u8]) -> Res<T> {
    serde_json::from_slice(b).map_err(db)
}

/// The account tables of a `RedbMeta`, created and brought up to date.
#[derive(Clone, Debug)]
pub struct RedbAccounts {
    pub(super) meta: RedbMeta,
}

impl RedbMeta {
    /// The accounts kept in this file: creates their tables, and gives
    /// records from before instance ids existed their id.
    pub fn accounts(&self) -> Res<RedbAccounts> {
        let tx = self.db().begin_write().map_err(db)?;
        for t in [USERS, PROJECTS, ROBOTS] {
            tx.open_table(t).map_err(db)?;
        }
        tx.open_table(MEMBERS).map_err(db)?;
        tx.open_table(AUDIT).map_err(db)?;
        let (users, robots) = assign_missing_ids(&tx)?;
        tx.commit().map_err(db)?;
        if users + robots > 0 {
            tracing::info!(users, robots, "gave accounts their instance ids");
        }
        Ok(RedbAccounts { meta: self.clone() })
    }
}

/// Gives each user and robot without an instance id one; how many of each.
fn assign_missing_ids(tx: &WriteTransaction) -> Res<(usize, usize)> {
    fn fill<T: Serialize + DeserializeOwned>(
        tx: &WriteTransaction,
        table: TableDefinition<&str, &[u8]>,
        id: impl Fn(&mut T) -> &mut String,
    ) -> Res<usize> {
        let mut t = tx.open_table(table).map_err(db)?;
        let mut missing = Vec::new();
        for r in t.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            let mut rec: T = from_json(v.value())?;
            if id(&mut rec).is_empty() {
                *id(&mut rec) = new_instance_id();
                missing.push((k.value().to_string(), to_json(&rec)?));
            }
        }
        for (k, v) in &missing {
            t.insert(k.as_str(), v.as_slice()).map_err(db)?;
        }
        Ok(missing.len())
    }
    let users = fill::<User>(tx, USERS, |u| &mut u.id)?;
    let robots = fill::<Robot>(tx, ROBOTS, |r| &mut r.id)?;
    Ok((users, robots))
}

fn get<T: DeserializeOwned>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Res<Option<T>> {
    let t = tx.open_table(table).map_err(db)?;
    let v = t.get(key).map_err(db)?;
    v.map(|v| from_json(v.value())).transpose()
}

fn put<T: Serialize>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Res<()> {
    tx.open_table(table)
        .map_err(db)?
        .insert(key, to_json(value)?.as_slice())
        .map_err(db)?;
    Ok(())
}

fn role_of(tx: &WriteTransaction, project: &str, user: &str) -> Res<Option<Role>> {
    let t = tx.open_table(MEMBERS).map_err(db)?;
    let v = t.get((project, user)).map_err(db)?;
    Ok(v.and_then(|v| v.value().parse().ok()))
}

/// Removes every key of `MEMBERS` for which `hit(project, user)` holds.
fn remove_members(tx: &WriteTransaction, hit: impl Fn(&str, &str) -> bool) -> Res<()> {
    let mut t = tx.open_table(MEMBERS).map_err(db)?;
    t.retain(|(p, u), _| !hit(p, u)).map_err(db)
}

impl RedbAccounts {
    /// Runs `f` in one write transaction on the blocking pool, committing
    /// when it succeeds.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Res<T> + Send + 'static,
    ) -> Res<T> {
        let database = self.meta.db();
        tokio::task::spawn_blocking(move || {
            let tx = database.begin_write().map_err(db)?;
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
        .map_err(|e| AccountError::Db(format!("account write task: {e}")))?
    }

    fn load_now(&self) -> Res<AccountRecords> {
        let tx = self.meta.db().begin_read().map_err(db)?;
        let mut out = AccountRecords::default();
        for r in tx.open_table(USERS).map_err(db)?.iter().map_err(db)? {
            out.users.push(from_json(r.map_err(db)?.1.value())?);
        }
        for r in tx.open_table(PROJECTS).map_err(db)?.iter().map_err(db)? {
            out.projects.push(from_json(r.map_err(db)?.1.value())?);
        }
        for r in tx.open_table(MEMBERS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            let (p, u) = k.value();
            // A role this berth does not know grants nothing.
            if let Ok(role) = v.value().parse() {
                out.members.push((p.to_string(), u.to_string(), role));
            }
        }
        for r in tx.open_table(ROBOTS).map_err(db)?.iter().map_err(db)? {
            out.robots.push(from_json(r.map_err(db)?.1.value())?);
        }
        Ok(out)
    }
}

fn is_last_admin(tx: &WriteTransaction, user: &User) -> Res<bool> {
    if !user.admin {
        return Ok(false);
    }
    let t = tx.open_table(USERS).map_err(db)?;
    let mut admins = 0;
    for r in t.iter().map_err(db)? {
        let (_, v) = r.map_err(db)?;
        if from_json::<User>(v.value())?.admin {
            admins += 1;
        }
    }
    Ok(admins <= 1)
}

#[async_trait]
impl AccountStore for RedbAccounts {
    async fn load(&self) -> Res<AccountRecords> {
        self.load_now()
    }

    async fn create_user(&self, user: &User) -> Res<()> {
        let user = user.clone();
        self.write(move |tx| {
            if get::<User>(tx, USERS, &user.name)?.is_some() {
                return Err(AccountError::Conflict(format!(
                    "account {} already exists",
                    user.name
                )));
            }
            put(tx, USERS, &user.name, &user)
        })
        .await
    }

    async fn create_first_user(&self, user: &User) -> Res<bool> {
        let user = user.clone();
        self.write(move |tx| {
            if !tx.open_table(USERS).map_err(db)?.is_empty().map_err(db)? {
                return Ok(false);
            }
            put(tx, USERS, &user.name, &user)?;
            Ok(true)
        })
        .await
    }

    async fn set_password(
        &self,
        name: &str,
        replacing: Option<&str>,
        hash: &str,
        must_reset: bool,
    ) -> Res<User> {
        let (name, replacing, hash) = (
            name.to_string(),
            replacing.map(str::to_string),
            hash.to_string(),
        );
        self.write(move |tx| {
            let mut u: User =
                get(tx, USERS, &name)?.ok_or_else(|| AccountError::no_account(&name))?;
            if replacing.as_ref().is_some_and(|old| old != &u.hash) {
                return Err(AccountError::Forbidden(
                    "account name or old password is wrong".into(),
                ));
            }
            u.hash = hash;
            u.must_reset = must_reset;
            put(tx, USERS, &name, &u)?;
            Ok(u)
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Res<()> {
        let name = name.to_string();
        self.write(move |tx| {
            let u: User = get(tx, USERS, &name)?.ok_or_else(|| AccountError::no_account(&name))?;
            if is_last_admin(tx, &u)? {
                return Err(AccountError::Conflict(
                    "cannot delete the last administrator".into(),
                ));
            }
            tx.open_table(USERS)
                .map_err(db)?
                .remove(name.as_str())
                .map_err(db)?;
            remove_members(tx, |_, u| u == name)
        })
        .await
    }

    async fn create_project(&self, project: &Project) -> Res<()> {
        let p = project.clone();
        self.write(move |tx| {
            if get::<Project>(tx, PROJECTS, &p.name)?.is_some() {
                return Err(AccountError::Conflict(format!(
                    "project {} already exists",
                    p.name
                )));
            }
            put(tx, PROJECTS, &p.name, &p)
        })
        .await
    }

    async fn update_project(&self, name: &str, change: &ProjectChange) -> Res<Project> {
        let (name, change) = (name.to_string(), change.clone());
        self.write(move |tx| {
            let mut p: Project =
                get(tx, PROJECTS, &name)?.ok_or_else(|| AccountError::no_project(&name))?;
            if let Some(public) = change.public {
                p.public = public;
            }
            if let Some(policy) = change.require_signature {
                p.require_signature = policy;
            }
            put(tx, PROJECTS, &name, &p)?;
            Ok(p)
        })
        .await
    }

    async fn reseal_proxy_passwords(
        &self,
        sealer: std::sync::Arc<dyn crate::sealing::Sealer>,
    ) -> Res<crate::sealing::ResealCount> {
        self.write(move |tx| {
            let mut count = crate::sealing::ResealCount::default();
            let mut changed = Vec::new();
            for r in tx.open_table(PROJECTS).map_err(db)?.iter().map_err(db)? {
                let mut p: Project = from_json(r.map_err(db)?.1.value())?;
                let place = crate::auth::store::proxy_password_place(&p.name);
                let Some(sealed) = p.proxy.as_mut().and_then(|u| u.password_sealed.as_mut()) else {
                    continue;
                };
                if let Some(new) = count.one(sealer.as_ref(), &place, sealed) {
                    *sealed = new;
                    changed.push(p);
                }
            }
            for p in changed {
                put(tx, PROJECTS, &p.name, &p)?;
            }
            Ok(count)
        })
        .await
    }

    async fn delete_project(&self, name: &str) -> Res<()> {
        let name = name.to_string();
        self.write(move |tx| {
            let removed = tx
                .open_table(PROJECTS)
                .map_err(db)?
                .remove(name.as_str())
                .map_err(db)?
                .is_some();
            if !removed {
                return Err(AccountError::no_project(&name));
            }
            remove_members(tx, |p, _| p == name)?;
            let mut robots = tx.open_table(ROBOTS).map_err(db)?;
            let mut err = None;
            robots
                .retain(|_, v| match from_json::<Robot>(v) {
                    Ok(r) => r.project != name,
                    Err(e) => {
                        err.get_or_insert(e);
                        true
                    }
                })
                .map_err(db)?;
            err.map_or(Ok(()), Err)
        })
        .await
    }

    async fn set_member(
        &self,
        project: &str,
        user: &str,
        role: Role,
        expect: IfRole,
    ) -> Res<Option<Role>> {
        let (project, user) = (project.to_string(), user.to_string());
        self.write(move |tx| {
            if get::<Project>(tx, PROJECTS, &project)?.is_none() {
                return Err(AccountError::no_project(&project));
            }
            if get::<User>(tx, USERS, &user)?.is_none() {
                return Err(AccountError::no_account(&user));
            }
            let before = role_of(tx, &project, &user)?;
            if !expect.admits(before) {
                return Err(role_changed(&project, &user));
            }
            tx.open_table(MEMBERS)
                .map_err(db)?
                .insert((project.as_str(), user.as_str()), role.as_str())
                .map_err(db)?;
            Ok(before)
        })
        .await
    }

    async fn remove_member(&self, project: &str, user: &str, expect: IfRole) -> Res<Role> {
        let (project, user) = (project.to_string(), user.to_string());
        self.write(move |tx| {
            let Some(before) = role_of(tx, &project, &user)? else {
                return Err(AccountError::NotFound(format!(
                    "{user} is not a member of {project}"
                )));
            };
            if !expect.admits(Some(before)) {
                return Err(role_changed(&project, &user));
            }
            tx.open_table(MEMBERS)
                .map_err(db)?
                .remove((project.as_str(), user.as_str()))
                .map_err(db)?;
            Ok(before)
        })
        .await
    }

    async fn create_robot(&self, robot: &Robot) -> Res<()> {
        let r = robot.clone();
        self.write(move |tx| {
            // A system robot belongs to no project.
            if r.system.is_none() && get::<Project>(tx, PROJECTS, &r.project)?.is_none() {
                return Err(AccountError::no_project(&r.project));
            }
            if get::<Robot>(tx, ROBOTS, &r.name)?.is_some_and(|old| !old.revoked) {
                return Err(AccountError::Conflict(format!(
                    "robot {} already exists; revoke it first",
                    r.name
                )));
            }
            put(tx, ROBOTS, &r.name, &r)
        })
        .await
    }

    async fn revoke_robot(&self, project: &str, name: &str) -> Res<Robot> {
        let (project, name) = (project.to_string(), name.to_string());
        self.write(move |tx| {
            let mut r: Robot = get(tx, ROBOTS, &name)?
                .filter(|r: &Robot| r.project == project)
                .ok_or_else(|| {
                    AccountError::NotFound(format!("no robot {name} in project {project}"))
                })?;
            r.revoked = true;
            put(tx, ROBOTS, &name, &r)?;
            Ok(r)
        })
        .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Res<u64> {
        let e = event.clone();
        self.write(move |tx| super::audit::append(tx, e)).await
    }

    async fn append_audits(&self, events: &[AuditEvent]) -> Res<()> {
        let events = events.to_vec();
        self.write(move |tx| {
            for e in events {
                super::audit::append(tx, e)?;
            }
            Ok(())
        })
        .await
    }

    async fn audit_events(&self, query: &AuditQuery) -> Res<Vec<AuditEvent>> {
        super::audit::query(&self.meta.db(), query)
    }

    async fn audit_page(&self, after: u64, limit: usize) -> Res<Vec<AuditEvent>> {
        super::audit::page(&self.meta.db(), after, limit)
    }
}
