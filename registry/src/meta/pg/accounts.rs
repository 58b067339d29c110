//! The `AccountStore` on PostgreSQL: users, projects, memberships, robots
//! (and, in `accounts_audit.rs`, the audit log) that every replica shares.
//!
//! Tables (`ACCOUNT_MIGRATIONS`, component "accounts"); records keep their
//! JSON form, as in the embedded file, with the columns the checks read
//! beside them:
//!
//! ```text
//! acct_users     name PK, admin, record jsonb (User: id, bcrypt hash, must_reset)
//! acct_projects  name PK, record jsonb (Project)
//! acct_members   (project → acct_projects, account → acct_users) PK, role; cascades
//! acct_robots    name PK, project ("" for a system robot), record jsonb (Robot)
//! acct_audit     id bigserial PK, time, actor, action, project, outcome, record jsonb
//! auth_throttle_pairs, auth_throttle_accounts   the login throttle (`throttle.rs`)
//! auth_token_keys                               token signing keys and when each was made (`token_keys.rs`)
//! console_sessions                              console sessions (`sessions.rs`)
//! ```
//!
//! Writes are serialised, as the `AccountStore` contract says, by one
//! transaction-scoped advisory lock (`ACCOUNTS_LOCK`, global to the
//! accounts) taken first in every write transaction: its checks (the last
//! administrator, a name taken, the first account) then read everything
//! committed before and nothing can commit between check and write, on any
//! replica. Every write also announces itself on the `berth_accounts`
//! channel (`pg_notify`, sent when the transaction commits) so replicas
//! reload (`AccountFeed`). `load` reads one REPEATABLE READ snapshot.
//! Audit appends take no lock: the sequence gives increasing ids.

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};
use tokio_postgres::IsolationLevel;

use super::{Migrations, Pool};
use crate::auth::policy::Role;
use crate::auth::store::{
    role_changed, AccountError, AccountRecords, AccountStore, AuditEvent, AuditQuery, Credential,
    IfRole, Project, ProjectChange, Robot, User,
};

/// The accounts' schema.
pub const ACCOUNT_MIGRATIONS: Migrations = Migrations {
    component: "accounts",
    steps: &[
        r#"
        CREATE TABLE acct_users (
            name text PRIMARY KEY,
            admin boolean NOT NULL,
            record jsonb NOT NULL
        );
        CREATE TABLE acct_projects (
            name text PRIMARY KEY,
            record jsonb NOT NULL
        );
        CREATE TABLE acct_members (
            project text NOT NULL REFERENCES acct_projects (name) ON DELETE CASCADE,
            account text NOT NULL REFERENCES acct_users (name) ON DELETE CASCADE,
            role text NOT NULL,
            PRIMARY KEY (project, account)
        );
        CREATE INDEX acct_members_account ON acct_members (account);
        CREATE TABLE acct_robots (
            name text PRIMARY KEY,
            project text NOT NULL,
            record jsonb NOT NULL
        );
        CREATE INDEX acct_robots_project ON acct_robots (project);
        CREATE TABLE acct_audit (
            id bigserial PRIMARY KEY,
            time bigint NOT NULL,
            actor text NOT NULL,
            action text NOT NULL,
            project text,
            outcome text NOT NULL,
            record jsonb NOT NULL
        );
        CREATE INDEX acct_audit_time ON acct_audit (time);
    "#,
        r#"
        CREATE TABLE auth_throttle_pairs (
            account text NOT NULL,
            source text NOT NULL,
            failures integer NOT NULL,
            last_failure double precision NOT NULL,
            wait_until double precision NOT NULL,
            PRIMARY KEY (account, source)
        );
        CREATE INDEX auth_throttle_pairs_last ON auth_throttle_pairs (last_failure);
        CREATE TABLE auth_throttle_accounts (
            account text PRIMARY KEY,
            failures double precision[] NOT NULL,
            next_slot double precision NOT NULL,
            known_good text[] NOT NULL,
            last_active double precision NOT NULL
        );
        CREATE INDEX auth_throttle_accounts_last ON auth_throttle_accounts (last_active);
        CREATE TABLE auth_token_keys (
            id bigserial PRIMARY KEY,
            secret bytea NOT NULL,
            signs_from double precision NOT NULL
        );
    "#,
        // Console sessions every replica honours (`sessions.rs`), keyed by a
        // hash of the id; an account's go with it.
        r#"
        CREATE TABLE console_sessions (
            key text PRIMARY KEY,
            account text NOT NULL REFERENCES acct_users (name) ON DELETE CASCADE,
            account_id text NOT NULL,
            created_ms bigint NOT NULL,
            last_seen_ms bigint NOT NULL
        );
        CREATE INDEX console_sessions_account ON console_sessions (account, last_seen_ms);
        CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_ms);
    "#,
        // When each token key was made (shown to administrators).
        r#"
        ALTER TABLE auth_token_keys ADD COLUMN created double precision;
    "#,
    ],
};

/// The advisory lock every account write holds ("acct" in ASCII).
const ACCOUNTS_LOCK: i64 = 0x6163_6374;

/// The channel every account write notifies.
pub const ACCOUNTS_CHANNEL: &str = "berth_accounts";

pub(super) type Res<T> = std::result::Result<T, AccountError>;

/// A driver error as an `AccountError` naming what was being done, with
/// the server's message (`tokio_postgres` shows only "db error" otherwise).
pub(super) fn pg(what: &'static str) -> impl Fn(tokio_postgres::Error) -> AccountError {
    move |e| AccountError::Db(format!("{what}: {}", super::describe(&e)))
}

fn json<T: Serialize>(v: &T) -> Res<String> {
    serde_json::to_string(v).map_err(|e| AccountError::Db(e.to_string()))
}

fn from_json<T: DeserializeOwned>(s: &str) -> Res<T> {
    serde_json::from_str(s).map_err(|e| AccountError::Db(format!("a stored record: {e}")))
}

/// Accounts kept in a PostgreSQL database (migrated with `ACCOUNT_MIGRATIONS`).
#[derive(Clone)]
pub struct PgAccounts {
    pool: Pool,
}

type Tx<'a> = deadpool_postgres::Transaction<'a>;

impl PgAccounts {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub(super) async fn conn(&self) -> Res<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| AccountError::Db(format!("connecting to PostgreSQL: {e}")))
    }
}

/// A write transaction: the accounts' lock held, the change announced.
async fn begin(conn: &mut deadpool_postgres::Object) -> Res<Tx<'_>> {
    let tx = conn
        .transaction()
        .await
        .map_err(pg("starting an account change"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ACCOUNTS_LOCK])
        .await
        .map_err(pg("locking the accounts"))?;
    tx.execute("SELECT pg_notify($1, '')", &[&ACCOUNTS_CHANNEL])
        .await
        .map_err(pg("announcing an account change"))?;
    Ok(tx)
}

async fn commit(tx: Tx<'_>) -> Res<()> {
    tx.commit()
        .await
        .map_err(pg("committing an account change"))
}

/// The record of `name` in `table` (one of ours), decoded.
async fn get<T: DeserializeOwned>(tx: &Tx<'_>, table: &str, name: &str) -> Res<Option<T>> {
    let sql = format!("SELECT record::text FROM {table} WHERE name = $1");
    let row = tx
        .query_opt(&sql, &[&name])
        .await
        .map_err(pg("reading an account record"))?;
    row.map(|r| from_json(r.get::<_, &str>(0))).transpose()
}

async fn put_user(tx: &Tx<'_>, u: &User) -> Res<()> {
    tx.execute(
        "INSERT INTO acct_users (name, admin, record) VALUES ($1, $2, $3::text::jsonb)
         ON CONFLICT (name) DO UPDATE SET admin = EXCLUDED.admin, record = EXCLUDED.record",
        &[&u.name, &u.admin, &json(u)?],
    )
    .await
    .map_err(pg("storing an account"))?;
    Ok(())
}

async fn put_project(tx: &Tx<'_>, p: &Project) -> Res<()> {
    tx.execute(
        "INSERT INTO acct_projects (name, record) VALUES ($1, $2::text::jsonb)
         ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
        &[&p.name, &json(p)?],
    )
    .await
    .map_err(pg("storing a project"))?;
    Ok(())
}

async fn put_robot(tx: &Tx<'_>, r: &Robot) -> Res<()> {
    tx.execute(
        "INSERT INTO acct_robots (name, project, record) VALUES ($1, $2, $3::text::jsonb)
         ON CONFLICT (name) DO UPDATE SET project = EXCLUDED.project, record = EXCLUDED.record",
        &[&r.name, &r.project, &json(r)?],
    )
    .await
    .map_err(pg("storing a robot"))?;
    Ok(())
}

async fn role_of(tx: &Tx<'_>, project: &str, user: &str) -> Res<Option<Role>> {
    let row = tx
        .query_opt(
            "SELECT role FROM acct_members WHERE project = $1 AND account = $2",
            &[&project, &user],
        )
        .await
        .map_err(pg("reading a membership"))?;
    Ok(row.and_then(|r| r.get::<_, &str>(0).parse().ok()))
}

impl PgAccounts {
    async fn load_now(&self) -> Res<AccountRecords> {
        let mut conn = self.conn().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg("starting to read the accounts"))?;
        let records = |sql: &'static str| {
            let tx = &tx;
            async move {
                let rows = tx
                    .query(sql, &[])
                    .await
                    .map_err(pg("reading the accounts"))?;
                Ok::<_, AccountError>(rows)
            }
        };
        let mut out = AccountRecords::default();
        for r in records("SELECT record::text FROM acct_users ORDER BY name").await? {
            out.users.push(from_json(r.get::<_, &str>(0))?);
        }
        for r in records("SELECT record::text FROM acct_projects ORDER BY name").await? {
            out.projects.push(from_json(r.get::<_, &str>(0))?);
        }
        for r in records("SELECT project, account, role FROM acct_members").await? {
            // A role this berth does not know grants nothing.
            if let Ok(role) = r.get::<_, &str>(2).parse() {
                out.members.push((r.get(0), r.get(1), role));
            }
        }
        for r in records("SELECT record::text FROM acct_robots ORDER BY name").await? {
            out.robots.push(from_json(r.get::<_, &str>(0))?);
        }
        tx.commit().await.map_err(pg("reading the accounts"))?;
        Ok(out)
    }
}

#[async_trait]
impl AccountStore for PgAccounts {
    async fn load(&self) -> Res<AccountRecords> {
        self.load_now().await
    }

    async fn credential(&self, name: &str) -> Res<Option<Credential>> {
        let robot = name.starts_with(crate::auth::accounts::ROBOT_PREFIX);
        let table = if robot { "acct_robots" } else { "acct_users" };
        let conn = self.conn().await?;
        let sql = format!("SELECT record::text FROM {table} WHERE name = $1");
        let row = conn
            .query_opt(&sql, &[&name])
            .await
            .map_err(pg("reading an account record"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text = row.get::<_, &str>(0);
        Ok(Some(if robot {
            Credential::Robot(from_json(text)?)
        } else {
            Credential::User(from_json(text)?)
        }))
    }

    async fn create_user(&self, user: &User) -> Res<()> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        if get::<User>(&tx, "acct_users", &user.name).await?.is_some() {
            return Err(AccountError::Conflict(format!(
                "account {} already exists",
                user.name
            )));
        }
        put_user(&tx, user).await?;
        commit(tx).await
    }

    async fn create_first_user(&self, user: &User) -> Res<bool> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // Under the accounts' lock: of replicas starting together, one
        // finds the table empty; the others find its account.
        let any = tx
            .query_one("SELECT EXISTS (SELECT 1 FROM acct_users)", &[])
            .await
            .map_err(pg("counting accounts"))?;
        if any.get::<_, bool>(0) {
            return Ok(false);
        }
        put_user(&tx, user).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn set_password(
        &self,
        name: &str,
        replacing: Option<&str>,
        hash: &str,
        must_reset: bool,
    ) -> Res<User> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let mut u: User = get(&tx, "acct_users", name)
            .await?
            .ok_or_else(|| AccountError::no_account(name))?;
        if replacing.is_some_and(|old| old != u.hash) {
            return Err(AccountError::Forbidden(
                "account name or old password is wrong".into(),
            ));
        }
        u.hash = hash.to_string();
        u.must_reset = must_reset;
        put_user(&tx, &u).await?;
        commit(tx).await?;
        Ok(u)
    }

    async fn delete_user(&self, name: &str) -> Res<()> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let u: User = get(&tx, "acct_users", name)
            .await?
            .ok_or_else(|| AccountError::no_account(name))?;
        if u.admin {
            let admins = tx
                .query_one("SELECT count(*) FROM acct_users WHERE admin", &[])
                .await
                .map_err(pg("counting administrators"))?;
            if admins.get::<_, i64>(0) <= 1 {
                return Err(AccountError::Conflict(
                    "cannot delete the last administrator".into(),
                ));
            }
        }
        // Its memberships go with it (ON DELETE CASCADE).
        tx.execute("DELETE FROM acct_users WHERE name = $1", &[&name])
            .await
            .map_err(pg("deleting an account"))?;
        commit(tx).await
    }

    async fn create_project(&self, project: &Project) -> Res<()> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        if get::<Project>(&tx, "acct_projects", &project.name)
            .await?
            .is_some()
        {
            return Err(AccountError::Conflict(format!(
                "project {} already exists",
                project.name
            )));
        }
        put_project(&tx, project).await?;
        commit(tx).await
    }

    async fn update_project(&self, name: &str, change: &ProjectChange) -> Res<Project> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let mut p: Project = get(&tx, "acct_projects", name)
            .await?
            .ok_or_else(|| AccountError::no_project(name))?;
        if let Some(public) = change.public {
            p.public = public;
        }
        if let Some(policy) = &change.require_signature {
            p.require_signature = policy.clone();
        }
        put_project(&tx, &p).await?;
        commit(tx).await?;
        Ok(p)
    }

    async fn reseal_proxy_passwords(
        &self,
        sealer: std::sync::Arc<dyn crate::sealing::Sealer>,
    ) -> Res<crate::sealing::ResealCount> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let rows = tx
            .query(
                "SELECT record::text FROM acct_projects WHERE record ? 'proxy' FOR UPDATE",
                &[],
            )
            .await
            .map_err(pg("reading the proxy projects"))?;
        let mut count = crate::sealing::ResealCount::default();
        for r in rows {
            let mut p: Project = from_json(r.get::<_, &str>(0))?;
            let place = crate::auth::store::proxy_password_place(&p.name);
            let Some(sealed) = p.proxy.as_mut().and_then(|u| u.password_sealed.as_mut()) else {
                continue;
            };
            if let Some(new) = count.one(sealer.as_ref(), &place, sealed) {
                *sealed = new;
                put_project(&tx, &p).await?;
            }
        }
        commit(tx).await?;
        Ok(count)
    }

    async fn delete_project(&self, name: &str) -> Res<()> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // Memberships cascade; robots are the project's by column (a
        // system robot's is empty, and a project name never is).
        let removed = tx
            .execute("DELETE FROM acct_projects WHERE name = $1", &[&name])
            .await
            .map_err(pg("deleting a project"))?;
        if removed == 0 {
            return Err(AccountError::no_project(name));
        }
        tx.execute("DELETE FROM acct_robots WHERE project = $1", &[&name])
            .await
            .map_err(pg("deleting a project's robots"))?;
        commit(tx).await
    }

    async fn set_member(
        &self,
        project: &str,
        user: &str,
        role: Role,
        expect: IfRole,
    ) -> Res<Option<Role>> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        if get::<Project>(&tx, "acct_projects", project)
            .await?
            .is_none()
        {
            return Err(AccountError::no_project(project));
        }
        if get::<User>(&tx, "acct_users", user).await?.is_none() {
            return Err(AccountError::no_account(user));
        }
        let before = role_of(&tx, project, user).await?;
        if !expect.admits(before) {
            return Err(role_changed(project, user));
        }
        tx.execute(
            "INSERT INTO acct_members (project, account, role) VALUES ($1, $2, $3)
             ON CONFLICT (project, account) DO UPDATE SET role = EXCLUDED.role",
            &[&project, &user, &role.as_str()],
        )
        .await
        .map_err(pg("storing a membership"))?;
        commit(tx).await?;
        Ok(before)
    }

    async fn remove_member(&self, project: &str, user: &str, expect: IfRole) -> Res<Role> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let Some(before) = role_of(&tx, project, user).await? else {
            return Err(AccountError::NotFound(format!(
                "{user} is not a member of {project}"
            )));
        };
        if !expect.admits(Some(before)) {
            return Err(role_changed(project, user));
        }
        tx.execute(
            "DELETE FROM acct_members WHERE project = $1 AND account = $2",
            &[&project, &user],
        )
        .await
        .map_err(pg("removing a membership"))?;
        commit(tx).await?;
        Ok(before)
    }

    async fn create_robot(&self, robot: &Robot) -> Res<()> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // A system robot belongs to no project.
        if robot.system.is_none()
            && get::<Project>(&tx, "acct_projects", &robot.project)
                .await?
                .is_none()
        {
            return Err(AccountError::no_project(&robot.project));
        }
        let old: Option<Robot> = get(&tx, "acct_robots", &robot.name).await?;
        if old.is_some_and(|old| !old.revoked) {
            return Err(AccountError::Conflict(format!(
                "robot {} already exists; revoke it first",
                robot.name
            )));
        }
        put_robot(&tx, robot).await?;
        commit(tx).await
    }

    async fn revoke_robot(&self, project: &str, name: &str) -> Res<Robot> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let mut r: Robot = get(&tx, "acct_robots", name)
            .await?
            .filter(|r: &Robot| r.project == project)
            .ok_or_else(|| {
                AccountError::NotFound(format!("no robot {name} in project {project}"))
            })?;
        r.revoked = true;
        put_robot(&tx, &r).await?;
        commit(tx).await?;
        Ok(r)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Res<u64> {
        super::accounts_audit::append(self, event).await
    }

    async fn audit_events(&self, query: &AuditQuery) -> Res<Vec<AuditEvent>> {
        super::accounts_audit::query(self, query).await
    }

    async fn audit_page(&self, after: u64, limit: usize) -> Res<Vec<AuditEvent>> {
        super::accounts_audit::page(self, after, limit).await
    }
}
