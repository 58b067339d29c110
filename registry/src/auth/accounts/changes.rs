//! Changes to accounts: each is one `AccountStore` operation (its checks
//! inside), then applied to the in-memory snapshot while `changing` is held.
//! Secrets are hashed and old passwords verified here, on the blocking
//! pool, before the store is asked; the store sees only hashes.

use std::path::Path;

use super::rules::{check_password_rule, check_project_name, check_user_name, random_secret};
use super::ROBOT_PREFIX;
use super::{
    db, AccountError, Accounts, IfRole, Project, ProjectChange, ProxyUpstream, Robot, User,
};
use crate::auth::policy::Role;
use crate::auth::store::new_instance_id;
use crate::meta::now;

/// Runs bcrypt work on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AccountError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AccountError::Db(format!("password hashing task: {e}")))
}

impl Accounts {
    /// bcrypt of `secret` at this installation's cost.
    pub(super) async fn hash(&self, secret: &str) -> Result<String, AccountError> {
        let (secret, cost) = (secret.to_string(), self.cost);
        off_runtime(move || bcrypt::hash(secret, cost).map_err(db)).await?
    }

    /// Whether `secret` matches `hash` (None: an unknown name, checked
    /// against the dummy hash so it takes as long), counted.
    async fn verify_secret(&self, secret: &str, hash: Option<&str>) -> Result<bool, AccountError> {
        let (hash, secret) = (hash.map(str::to_string), secret.to_string());
        let (dummy, cost) = (self.dummy.clone(), self.cost);
        self.checks.inc();
        off_runtime(move || match hash {
            Some(h) => bcrypt::verify(secret, &h).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(secret, super::dummy_hash(&dummy, cost));
                false
            }
        })
        .await
    }

    /// First start: create `admin`. With `password` given (BERTH_ADMIN_PASSWORD) it is
    /// used as chosen; otherwise a random one is generated, written to
    /// `<data_dir>/admin-password` (0600) and must be reset at first login.
    /// Returns the generated password, if one was generated.
    pub async fn bootstrap_admin(
        &self,
        data_dir: &Path,
        password: Option<&str>,
    ) -> Result<Option<String>, AccountError> {
        let file = data_dir.join("admin-password");
        let _ = self.initial_password_file.set(file.clone());
        if !self.read().users.is_empty() {
            // Reset by a version that left the file behind, or the account is gone.
            if self.user("admin").is_none_or(|u| !u.must_reset) {
                self.forget_initial_password("admin");
            }
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
            id: new_instance_id(),
            hash: self.hash(&pw).await?,
            admin: true,
            must_reset: generated,
            created: now(),
        };
        let _changing = self.changing.lock().await;
        if !self.store.create_first_user(&user).await? {
            return Ok(None);
        }
        self.write().users.insert(user.name.clone(), user);
        self.credentials_changed();
        if generated {
            write_private(&file, &format!("{pw}\n")).map_err(db)?;
            return Ok(Some(pw));
        }
        Ok(None)
    }

    // ---- users ----

    pub async fn create_user(
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
            id: new_instance_id(),
            hash: self.hash(password).await?,
            admin,
            must_reset: true,
            created: now(),
        };
        let _changing = self.changing.lock().await;
        self.store.create_user(&u).await?;
        self.write().users.insert(u.name.clone(), u.clone());
        self.credentials_changed();
        Ok(u)
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), AccountError> {
        let _changing = self.changing.lock().await;
        self.store.delete_user(name).await?;
        let mut snap = self.write();
        snap.users.remove(name);
        snap.members.retain(|(_, u), _| u != name);
        drop(snap);
        self.credentials_changed();
        self.forget_initial_password(name);
        Ok(())
    }

    /// Self-service change: the old password must match (an initial password counts),
    /// and still be the password when the new one is stored. Runs bcrypt twice.
    pub async fn change_password(
        &self,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<(), AccountError> {
        let wrong = || AccountError::Forbidden("account name or old password is wrong".into());
        let user = self.user(name);
        let hash = user.as_ref().map(|u| u.hash.as_str());
        if !self.verify_secret(old, hash).await? || user.is_none() {
            return Err(wrong());
        }
        check_password_rule(new)?;
        if new == old {
            return Err(AccountError::Invalid(
                "the new password must differ from the old one".into(),
            ));
        }
        let new_hash = self.hash(new).await?;
        self.store_password(name, hash, &new_hash, false).await
    }

    /// An administrator sets a new initial password; the owner must reset it.
    pub async fn admin_set_password(&self, name: &str, new: &str) -> Result<(), AccountError> {
        if self.user(name).is_none() {
            return Err(AccountError::no_account(name));
        }
        check_password_rule(new)?;
        let new_hash = self.hash(new).await?;
        self.store_password(name, None, &new_hash, true).await
    }

    async fn store_password(
        &self,
        name: &str,
        replacing: Option<&str>,
        hash: &str,
        must_reset: bool,
    ) -> Result<(), AccountError> {
        let _changing = self.changing.lock().await;
        let u = self
            .store
            .set_password(name, replacing, hash, must_reset)
            .await?;
        self.write().users.insert(u.name.clone(), u);
        self.credentials_changed();
        self.forget_initial_password(name);
        Ok(())
    }

    /// Removes the initial password file once `name` (if `admin`) no longer has that password.
    fn forget_initial_password(&self, name: &str) {
        let Some(path) = self.initial_password_file.get().filter(|_| name == "admin") else {
            return;
        };
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(
                file = %path.display(),
                "removed the initial admin password file: the password it held was changed"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove the initial admin password file")
            }
        }
    }

    // ---- projects ----

    pub async fn create_project(&self, name: &str, public: bool) -> Result<Project, AccountError> {
        self.create_project_with(name, public, None).await
    }

    /// Creates a project, a proxy-cache project when `proxy` is given.
    pub async fn create_project_with(
        &self,
        name: &str,
        public: bool,
        proxy: Option<ProxyUpstream>,
    ) -> Result<Project, AccountError> {
        check_project_name(name)?;
        let p = Project {
            name: name.to_string(),
            public,
            created: now(),
            require_signature: None,
            proxy,
        };
        let _changing = self.changing.lock().await;
        self.store.create_project(&p).await?;
        self.write().projects.insert(p.name.clone(), p.clone());
        Ok(p)
    }

    /// Changes a project's visibility and/or signature policy (its keys
    /// checked first), in one step.
    pub async fn update_project(
        &self,
        name: &str,
        change: &ProjectChange,
    ) -> Result<Project, AccountError> {
        if let Some(Some(policy)) = &change.require_signature {
            policy.validate().map_err(AccountError::Invalid)?;
        }
        let _changing = self.changing.lock().await;
        let p = self.store.update_project(name, change).await?;
        self.write().projects.insert(p.name.clone(), p.clone());
        Ok(p)
    }

    /// Seals every proxy project's upstream password again with `sealer`'s
    /// current key (`AccountStore::reseal_proxy_passwords`), the projects
    /// here updated with what was stored.
    pub async fn reseal_proxy_passwords(
        &self,
        sealer: std::sync::Arc<dyn crate::sealing::Sealer>,
    ) -> Result<crate::sealing::ResealCount, AccountError> {
        let count = {
            let _changing = self.changing.lock().await;
            self.store.reseal_proxy_passwords(sealer).await?
        };
        if count.resealed > 0 {
            self.reload().await?;
        }
        Ok(count)
    }

    /// Removes the project, its memberships and robots (its repositories are the caller's business).
    pub async fn delete_project(&self, name: &str) -> Result<(), AccountError> {
        let _changing = self.changing.lock().await;
        self.store.delete_project(name).await?;
        let mut snap = self.write();
        snap.projects.remove(name);
        snap.members.retain(|(p, _), _| p != name);
        snap.robots.retain(|_, r| r.project != name);
        drop(snap);
        self.credentials_changed();
        let _ = self.access_removed.send(name.to_string());
        Ok(())
    }

    // ---- members ----

    /// Gives `user` `role` in `project` if its role there is what `expect`
    /// says (what the caller's permission was decided on).
    pub async fn set_member(
        &self,
        project: &str,
        user: &str,
        role: Role,
        expect: IfRole,
    ) -> Result<(), AccountError> {
        let _changing = self.changing.lock().await;
        let before = self.store.set_member(project, user, role, expect).await?;
        self.write()
            .members
            .insert((project.to_string(), user.to_string()), role);
        if before.is_some_and(|b| b != role) {
            // A changed role may have lost the right to export.
            let _ = self.access_removed.send(project.to_string());
        }
        Ok(())
    }

    /// Takes `user` out of `project` if its role there is what `expect` says.
    pub async fn remove_member(
        &self,
        project: &str,
        user: &str,
        expect: IfRole,
    ) -> Result<(), AccountError> {
        let _changing = self.changing.lock().await;
        self.store.remove_member(project, user, expect).await?;
        self.write()
            .members
            .remove(&(project.to_string(), user.to_string()));
        let _ = self.access_removed.send(project.to_string());
        Ok(())
    }

    // ---- robots ----

    /// Creates `robot$<project>+<name>` and returns it with its secret (shown once).
    pub async fn create_robot(
        &self,
        project: &str,
        name: &str,
        push: bool,
        expires_at: Option<u64>,
    ) -> Result<(Robot, String), AccountError> {
        if self.project(project).is_none() {
            return Err(AccountError::no_project(project));
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
            name: full,
            id: new_instance_id(),
            project: project.to_string(),
            hash: self.hash(&secret).await?,
            push,
            expires_at,
            revoked: false,
            created: now(),
            system: None,
        };
        let _changing = self.changing.lock().await;
        self.store.create_robot(&r).await?;
        self.write().robots.insert(r.name.clone(), r.clone());
        self.credentials_changed();
        Ok((r, secret))
    }

    /// Revokes a robot of `project`, named in full or by its short name.
    pub async fn revoke_robot(&self, project: &str, name: &str) -> Result<(), AccountError> {
        let full = if name.starts_with(ROBOT_PREFIX) {
            name.to_string()
        } else {
            format!("{ROBOT_PREFIX}{project}+{name}")
        };
        let _changing = self.changing.lock().await;
        let r = self.store.revoke_robot(project, &full).await?;
        self.write().robots.insert(r.name.clone(), r);
        self.credentials_changed();
        Ok(())
    }
}

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
