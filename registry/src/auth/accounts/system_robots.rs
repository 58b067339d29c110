//! System robot accounts, as Harbor 2.x has them: created by system
//! administrators, named `robot$NAME`, pulling from the projects they name (or
//! every project) and belonging to none, so one credential (an edge's) reads
//! every project it is meant to. They never push.

use super::rules::{check_user_name, random_secret};
use super::{AccountError, Accounts, Robot, RobotProjects, ROBOT_PREFIX};
use crate::auth::store::new_instance_id;
use crate::meta::now;

impl Accounts {
    /// Creates system robot `robot$<name>` pulling from `projects`; returns it
    /// and its secret (shown once, stored only as a hash).
    pub async fn create_system_robot(
        &self,
        name: &str,
        projects: RobotProjects,
        expires_at: Option<u64>,
    ) -> Result<(Robot, String), AccountError> {
        check_user_name(name)?;
        if let RobotProjects::Only(names) = &projects {
            if names.is_empty() {
                return Err(AccountError::Invalid(
                    "projects: name at least one project, or \"*\" for every project".into(),
                ));
            }
            if let Some(missing) = names.iter().find(|p| self.project(p).is_none()) {
                return Err(AccountError::no_project(missing));
            }
        }
        let full = format!("{ROBOT_PREFIX}{name}");
        let secret = random_secret(32);
        let r = Robot {
            name: full,
            id: new_instance_id(),
            project: String::new(),
            hash: self.hash(&secret).await?,
            push: false,
            expires_at,
            revoked: false,
            created: now(),
            system: Some(projects),
        };
        let _changing = self.changing.lock().await;
        self.store.create_robot(&r).await?;
        self.write().robots.insert(r.name.clone(), r.clone());
        self.credentials_changed();
        Ok((r, secret))
    }

    /// The system robots, revoked ones included, by name.
    pub fn system_robots(&self) -> Vec<Robot> {
        let mut v: Vec<Robot> = self
            .read()
            .robots
            .values()
            .filter(|r| r.system.is_some())
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Revokes a system robot, named in full (`robot$edge`) or by its short name.
    pub async fn revoke_system_robot(&self, name: &str) -> Result<Robot, AccountError> {
        let full = if name.starts_with(ROBOT_PREFIX) {
            name.to_string()
        } else {
            format!("{ROBOT_PREFIX}{name}")
        };
        let system = self
            .read()
            .robots
            .get(&full)
            .is_some_and(|r| r.system.is_some());
        if !system {
            return Err(AccountError::NotFound(format!("no system robot {full}")));
        }
        let _changing = self.changing.lock().await;
        // System robots are stored under no project.
        let r = self.store.revoke_robot("", &full).await?;
        self.write().robots.insert(r.name.clone(), r.clone());
        self.credentials_changed();
        Ok(r)
    }
}
