//! Apps and their template versions: created together, a new version only
//! when the spec changed, deleted (with every version) once unpublished.

use redb::{ReadableTable, WriteTransaction};

use crate::model::{summarize_change, App, AppSpec, TemplateVersion, ValidationError};
use crate::resources::{spec_uses, ResourceKind, ResourceSpec};

use super::resources::list_kind;
use super::{
    decode, encode, RedbControllerStore, Result, StoreError, APPS, PUBLICATIONS, RESOURCES,
    VERSIONS,
};

impl RedbControllerStore {
    /// Creates an app with its first template version, in one transaction.
    pub fn create_app(
        &self,
        project: &str,
        name: &str,
        spec: &AppSpec,
        author: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<(App, TemplateVersion)> {
        let mut check = Vec::new();
        if let Err(m) = crate::model::validate_dns_label(project) {
            check.push(format!("project: {m}"));
        }
        if let Err(m) = crate::model::validate_dns_label(name) {
            check.push(format!("name: {m}"));
        }
        if let Err(e) = spec.validate() {
            check.extend(e.problems);
        }
        if !check.is_empty() {
            return Err(ValidationError { problems: check }.into());
        }
        let app = App {
            project: project.into(),
            name: name.into(),
            kind: spec.kind,
            latest_version: 1,
            created_at: now,
            created_by: author.into(),
        };
        let version = TemplateVersion {
            version: 1,
            spec: spec.clone(),
            author: author.into(),
            created_at: now,
            summary: message
                .filter(|m| !m.trim().is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| summarize_change(None, spec)),
        };
        let txn = self.db.begin_write()?;
        refuse_volumes_of_other_apps(&txn, project, name, spec)?;
        super::eips::check_app_replicas(&txn, project, name, spec)?;
        {
            let mut apps = txn.open_table(APPS)?;
            if apps.get((project, name))?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "app {project}/{name} already exists; PUT to it to make a new version"
                )));
            }
            apps.insert((project, name), encode(&app).as_slice())?;
            let mut versions = txn.open_table(VERSIONS)?;
            versions.insert((project, name, 1u32), encode(&version).as_slice())?;
        }
        txn.commit()?;
        Ok((app, version))
    }

    pub fn get_app(&self, project: &str, name: &str) -> Result<Option<App>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(APPS)?;
        let v = t.get((project, name))?;
        v.map(|g| decode("ctl_apps", g.value())).transpose()
    }

    pub fn list_apps(&self, project: &str) -> Result<Vec<App>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(APPS)?;
        let mut out = Vec::new();
        for item in t.range((project, "")..)? {
            let (k, v) = item?;
            if k.value().0 != project {
                break;
            }
            out.push(decode("ctl_apps", v.value())?);
        }
        Ok(out)
    }

    /// Adds a template version. The same spec as the latest version adds nothing
    /// and returns the latest (`false`).
    pub fn add_version(
        &self,
        project: &str,
        name: &str,
        spec: &AppSpec,
        author: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<(TemplateVersion, bool)> {
        spec.validate()?;
        let txn = self.db.begin_write()?;
        let result = add_version_in(&txn, project, name, spec, author, message, now)?;
        if result.1 {
            txn.commit()?;
        }
        Ok(result)
    }

    pub fn get_version(
        &self,
        project: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<TemplateVersion>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(VERSIONS)?;
        let v = t.get((project, name, version))?;
        v.map(|g| decode("ctl_app_versions", g.value())).transpose()
    }

    pub fn list_versions(&self, project: &str, name: &str) -> Result<Vec<TemplateVersion>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(VERSIONS)?;
        let mut out = Vec::new();
        for item in t.range((project, name, 0u32)..=(project, name, u32::MAX))? {
            let (_, v) = item?;
            out.push(decode("ctl_app_versions", v.value())?);
        }
        Ok(out)
    }

    /// Deletes an app and all its versions; refused while it is published anywhere.
    pub fn delete_app(&self, project: &str, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let pubs = txn.open_table(PUBLICATIONS)?;
            let mut nodes = Vec::new();
            for item in pubs.range((project, name, "")..)? {
                let (k, _) = item?;
                let (p, a, n) = k.value();
                if p != project || a != name {
                    break;
                }
                nodes.push(n.to_string());
            }
            if !nodes.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "app {project}/{name} is still published on {}; unpublish it first",
                    nodes.join(", ")
                )));
            }
            let resources = txn.open_table(RESOURCES)?;
            let lbs: Vec<String> = list_kind(&resources, project, ResourceKind::LoadBalancers)?
                .into_iter()
                .filter(|r| matches!(&r.spec, ResourceSpec::LoadBalancer(lb) if lb.owner_app() == Some(name)))
                .map(|r| r.name)
                .collect();
            if !lbs.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "rule: an app with load balancers cannot be deleted; delete load balancer {} \
                     first",
                    lbs.join(", ")
                )));
            }
            let mut apps = txn.open_table(APPS)?;
            if apps.remove((project, name))?.is_none() {
                return Err(not_found_app(project, name));
            }
            let mut versions = txn.open_table(VERSIONS)?;
            let keys: Vec<u32> = versions
                .range((project, name, 0u32)..=(project, name, u32::MAX))?
                .map(|item| item.map(|(k, _)| k.value().2))
                .collect::<Result<_, _>>()?;
            for v in keys {
                versions.remove((project, name, v))?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Adds a template version inside `txn` (the spec is validated by the
/// caller). The same spec as the latest version adds nothing (`false`).
pub(super) fn add_version_in(
    txn: &WriteTransaction,
    project: &str,
    name: &str,
    spec: &AppSpec,
    author: &str,
    message: Option<&str>,
    now: u64,
) -> Result<(TemplateVersion, bool)> {
    let found = txn
        .open_table(APPS)?
        .get((project, name))?
        .map(|g| g.value().to_vec());
    let mut app: App = match found {
        Some(bytes) => decode("ctl_apps", &bytes)?,
        None => return Err(not_found_app(project, name)),
    };
    if app.kind != spec.kind {
        return Err(StoreError::Conflict(format!(
            "app {project}/{name} is a {}; its kind cannot change to {}. Create a new app \
             (or unpublish and delete this one first)",
            app.kind, spec.kind
        )));
    }
    let latest = latest_version(txn, &app)?;
    if latest.spec == *spec {
        return Ok((latest, false));
    }
    refuse_volumes_of_other_apps(txn, project, name, spec)?;
    super::eips::check_app_replicas(txn, project, name, spec)?;
    let version = TemplateVersion {
        version: app.latest_version + 1,
        spec: spec.clone(),
        author: author.into(),
        created_at: now,
        summary: message
            .filter(|m| !m.trim().is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| summarize_change(Some(&latest.spec), spec)),
    };
    app.latest_version = version.version;
    let mut versions = txn.open_table(VERSIONS)?;
    versions.insert(
        (project, name, version.version),
        encode(&version).as_slice(),
    )?;
    txn.open_table(APPS)?
        .insert((project, name), encode(&app).as_slice())?;
    Ok((version, true))
}

/// The latest template version of `app`.
pub(super) fn latest_version(txn: &WriteTransaction, app: &App) -> Result<TemplateVersion> {
    let versions = txn.open_table(VERSIONS)?;
    let v = versions.get((app.project.as_str(), app.name.as_str(), app.latest_version))?;
    match v {
        Some(g) => decode("ctl_app_versions", g.value()),
        None => Err(StoreError::Corrupt {
            table: "ctl_app_versions",
            message: format!(
                "{}/{} version {} is missing",
                app.project, app.name, app.latest_version
            ),
        }),
    }
}

/// Every app of `project` with its latest template version.
pub(super) fn apps_with_latest(
    txn: &WriteTransaction,
    project: &str,
) -> Result<Vec<(App, TemplateVersion)>> {
    let apps = txn.open_table(APPS)?;
    let mut out = Vec::new();
    for item in apps.range((project, "")..)? {
        let (k, v) = item?;
        if k.value().0 != project {
            break;
        }
        let app: App = decode("ctl_apps", v.value())?;
        let tv = latest_version(txn, &app)?;
        out.push((app, tv));
    }
    Ok(out)
}

/// The rule of local volumes: one app at a time. A volume another app's
/// template names is refused until it is released and unbound there.
fn refuse_volumes_of_other_apps(
    txn: &WriteTransaction,
    project: &str,
    app: &str,
    spec: &AppSpec,
) -> Result<()> {
    let wanted: Vec<String> = crate::resources::spec_resources(spec)
        .into_iter()
        .filter(|(k, _)| *k == ResourceKind::Volumes)
        .map(|(_, n)| n)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    for (other, tv) in apps_with_latest(txn, project)? {
        if other.name == app {
            continue;
        }
        for v in &wanted {
            if spec_uses(&tv.spec, ResourceKind::Volumes, v) {
                return Err(StoreError::Conflict(format!(
                    "rule: a local volume belongs to one app; volume {v} is in the template of \
                     app {} (release it there with \"confirm\", then unbind it: POST \
                     /api/v1/projects/{project}/volumes/{v}/unbind)",
                    other.name
                )));
            }
        }
    }
    Ok(())
}

pub(super) fn not_found_app(project: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!("no app {project}/{name}"))
}
