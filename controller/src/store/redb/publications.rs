//! Publications: publish and unpublish requests (one transaction for all the
//! nodes named), reads, and the reconciler's compare-and-swap writes.

use std::collections::{BTreeMap, BTreeSet};

use redb::ReadableTable;

use crate::model::{App, AppSpec, Publication, PublicationKey, TemplateVersion, ValidationError};

use super::apps::not_found_app;
use super::publication_events::{record, record_requested, record_stored};
use super::{
    decode, encode, RedbControllerStore, Result, StoreError, APPS, NODES, PUBLICATIONS, RESOURCES,
    VERSIONS,
};
use crate::store::changes as events;

/// The rule of a publish: every config map, secret and volume the template
/// names exists (a deleted volume is named, with the way out).
fn refuse_missing_resources(
    txn: &redb::WriteTransaction,
    project: &str,
    app: &str,
    tv: &TemplateVersion,
) -> Result<()> {
    let resources = txn.open_table(RESOURCES)?;
    for (kind, name) in crate::resources::spec_resources(&tv.spec) {
        if resources
            .get((project, kind.as_str(), name.as_str()))?
            .is_none()
        {
            let way_out = if kind == crate::resources::ResourceKind::Volumes {
                format!(
                    "create it again, or unbind it (POST /api/v1/projects/{project}/volumes/\
                     {name}/unbind) to take it out of the template and publish the new version"
                )
            } else {
                format!(
                    "create it (POST /api/v1/projects/{project}/{kind}) or publish a version \
                     without it"
                )
            };
            return Err(StoreError::Conflict(format!(
                "rule: a template names only resources that exist; {project}/{app} version {} \
                 names {} {name}, which does not exist: {way_out}",
                tv.version,
                kind.singular()
            )));
        }
    }
    Ok(())
}

impl RedbControllerStore {
    /// Records a publish of `version` (latest when `None`) on `nodes`, in one
    /// transaction: new publications start resolving, existing ones start over.
    pub fn publish(
        &self,
        project: &str,
        app: &str,
        version: Option<u32>,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<Publication>> {
        if nodes.is_empty() {
            return Err(ValidationError::one("nodes", "name at least one node").into());
        }
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let apps = txn.open_table(APPS)?;
            let app_rec: App = match apps.get((project, app))? {
                Some(g) => decode("ctl_apps", g.value())?,
                None => return Err(not_found_app(project, app)),
            };
            let version = version.unwrap_or(app_rec.latest_version);
            let versions = txn.open_table(VERSIONS)?;
            let tv: TemplateVersion = match versions.get((project, app, version))? {
                Some(g) => decode("ctl_app_versions", g.value())?,
                None => {
                    return Err(StoreError::NotFound(format!(
                        "app {project}/{app} has no version {version} (latest is {})",
                        app_rec.latest_version
                    )))
                }
            };
            refuse_missing_resources(&txn, project, app, &tv)?;
            let node_table = txn.open_table(NODES)?;
            let mut unknown = Vec::new();
            for n in nodes {
                if node_table.get(n.as_str())?.is_none() {
                    unknown.push(n.as_str());
                }
            }
            if !unknown.is_empty() {
                return Err(ValidationError::one(
                    "nodes",
                    format!("no node named {}", unknown.join(", ")),
                )
                .into());
            }
            drop(node_table);
            let mut pubs = txn.open_table(PUBLICATIONS)?;
            let unique: BTreeSet<&String> = nodes.iter().collect();
            for n in unique {
                let existing: Option<Publication> = pubs
                    .get((project, app, n.as_str()))?
                    .map(|g| decode("ctl_publications", g.value()))
                    .transpose()?;
                let p = match existing {
                    Some(mut p) => {
                        p.restart_publish(version, now);
                        p.revision += 1;
                        p
                    }
                    None => Publication::new(project, app, n, version, now),
                };
                pubs.insert((project, app, n.as_str()), encode(&p).as_slice())?;
                record_requested(&txn, &p)?;
                out.push(p);
            }
            let unique: BTreeSet<&String> = nodes.iter().collect();
            super::resource_publications::publish_with_app(
                &txn, project, app, &tv.spec, &unique, now,
            )?;
        }
        txn.commit()?;
        Ok(out)
    }

    /// Marks publications for removal, in one transaction.
    pub fn unpublish(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        cascade: bool,
        now: u64,
    ) -> Result<Vec<Publication>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let mut pubs = txn.open_table(PUBLICATIONS)?;
            let unique: BTreeSet<&String> = nodes.iter().collect();
            let mut missing = Vec::new();
            for n in unique {
                let existing: Option<Publication> = pubs
                    .get((project, app, n.as_str()))?
                    .map(|g| decode("ctl_publications", g.value()))
                    .transpose()?;
                match existing {
                    Some(mut p) => {
                        if !cascade {
                            let tv: Option<TemplateVersion> = txn
                                .open_table(VERSIONS)?
                                .get((project, app, p.version))?
                                .map(|g| decode("ctl_app_versions", g.value()))
                                .transpose()?;
                            if let Some(tv) = tv {
                                super::left_behind::keep_left_behind(&txn, project, &tv.spec, n)?;
                            }
                        }
                        p.request_removal(cascade, now);
                        p.revision += 1;
                        pubs.insert((project, app, n.as_str()), encode(&p).as_slice())?;
                        record_requested(&txn, &p)?;
                        out.push(p);
                    }
                    None => missing.push(n.as_str()),
                }
            }
            if !missing.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "{project}/{app} is not published on {}",
                    missing.join(", ")
                )));
            }
        }
        txn.commit()?;
        Ok(out)
    }

    pub fn get_publication(&self, key: &PublicationKey) -> Result<Option<Publication>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PUBLICATIONS)?;
        let v = t.get((key.project.as_str(), key.app.as_str(), key.node.as_str()))?;
        v.map(|g| decode("ctl_publications", g.value())).transpose()
    }

    pub fn list_publications(&self) -> Result<Vec<Publication>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PUBLICATIONS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(decode("ctl_publications", v.value())?);
        }
        Ok(out)
    }

    pub fn list_app_publications(&self, project: &str, app: &str) -> Result<Vec<Publication>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PUBLICATIONS)?;
        let mut out = Vec::new();
        for item in t.range((project, app, "")..)? {
            let (k, v) = item?;
            let (p, a, _) = k.value();
            if p != project || a != app {
                break;
            }
            out.push(decode("ctl_publications", v.value())?);
        }
        Ok(out)
    }

    /// Writes `p` if nobody changed it since it was read (same `revision`); bumps
    /// the revision on success. `false`: it changed or is gone; read it again.
    pub fn update_publication(&self, p: &mut Publication) -> Result<bool> {
        Ok(self.replace_publication(p)?.is_some())
    }

    /// `update_publication`, answering with what `p` replaced (`None`: it
    /// changed or is gone, nothing written).
    pub fn replace_publication(&self, p: &mut Publication) -> Result<Option<Publication>> {
        let txn = self.db.begin_write()?;
        let replaced = self.replace_in(&txn, p)?;
        if replaced.is_some() {
            txn.commit()?;
        }
        Ok(replaced)
    }

    /// The compare-and-swap write of `p` inside `txn` (with the change it
    /// records); `None`: it changed or is gone, nothing written.
    pub(super) fn replace_in(
        &self,
        txn: &redb::WriteTransaction,
        p: &mut Publication,
    ) -> Result<Option<Publication>> {
        let replaced;
        {
            let mut t = txn.open_table(PUBLICATIONS)?;
            let key = (p.project.as_str(), p.app.as_str(), p.node.as_str());
            let current: Option<Publication> = t
                .get(key)?
                .map(|g| decode("ctl_publications", g.value()))
                .transpose()?;
            match current {
                Some(c) if c.revision == p.revision => replaced = c,
                _ => return Ok(None),
            }
            p.revision += 1;
            t.insert(key, encode(&*p).as_slice())?;
        }
        record_stored(txn, &replaced, p)?;
        Ok(Some(replaced))
    }

    /// Deletes the publication if it is still at `revision`.
    pub fn delete_publication(&self, key: &PublicationKey, revision: u64) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(PUBLICATIONS)?;
            let k = (key.project.as_str(), key.app.as_str(), key.node.as_str());
            let current: Option<Publication> = t
                .get(k)?
                .map(|g| decode("ctl_publications", g.value()))
                .transpose()?;
            let gone = match current {
                Some(c) if c.revision == revision => c,
                _ => return Ok(false),
            };
            t.remove(k)?;
            drop(t);
            record(&txn, events::removed(&gone))?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Images pinned on `node` by publications other than `except`.
    pub fn pinned_by_others(
        &self,
        node: &str,
        except: &PublicationKey,
    ) -> Result<BTreeSet<String>> {
        // One lookup per app, not a read of every publication of the fleet.
        let txn = self.db.begin_read()?;
        let apps = txn.open_table(APPS)?;
        let pubs = txn.open_table(PUBLICATIONS)?;
        let mut out = BTreeSet::new();
        for item in apps.iter()? {
            let (k, _) = item?;
            let (project, app) = k.value();
            let key = (project, app, node);
            if key
                == (
                    except.project.as_str(),
                    except.app.as_str(),
                    except.node.as_str(),
                )
            {
                continue;
            }
            if let Some(g) = pubs.get(key)? {
                let p: Publication = decode("ctl_publications", g.value())?;
                out.extend(p.pinned.iter().cloned());
                out.extend(p.images_by_digest());
            }
        }
        Ok(out)
    }

    /// Every publication in `project` on `node` with the spec of its version, by app.
    pub fn published_specs_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeMap<String, (Publication, AppSpec)>> {
        let txn = self.db.begin_read()?;
        let pubs = txn.open_table(PUBLICATIONS)?;
        let versions = txn.open_table(VERSIONS)?;
        let mut out = BTreeMap::new();
        for item in pubs.range((project, "", "")..)? {
            let (k, v) = item?;
            let (p, app, n) = k.value();
            if p != project {
                break;
            }
            if n != node {
                continue;
            }
            let publication: Publication = decode("ctl_publications", v.value())?;
            if let Some(g) = versions.get((p, app, publication.version))? {
                let tv: TemplateVersion = decode("ctl_app_versions", g.value())?;
                out.insert(app.to_string(), (publication, tv.spec));
            }
        }
        Ok(out)
    }
}
