//! What apps leave behind on a node: the config maps and secrets only apps
//! carried there (`with_apps` on their records) and that no app published
//! there uses any more, and the marking of those an app unpublish without
//! cascade leaves there on purpose (they stay until unpublished on their own).

use std::collections::BTreeSet;

use redb::WriteTransaction;

use crate::model::AppSpec;
use crate::resources::{spec_resources, ResourceDesired, ResourceKind, ResourcePublication};

use super::resource_publications::{get_rp, key, put_rp};
use super::resource_rules::apps_on_node;
use super::resources::list_kind;
use super::{RedbControllerStore, Result, RESOURCES, RESOURCE_PUBS};

/// An app unpublish without cascade leaves `app`'s config maps and secrets on
/// `node` on purpose: from then on they stay until unpublished on their own.
pub(super) fn keep_left_behind(
    txn: &WriteTransaction,
    project: &str,
    spec: &AppSpec,
    node: &str,
) -> Result<()> {
    let mut t = txn.open_table(RESOURCE_PUBS)?;
    for (kind, name) in spec_resources(spec) {
        if let Some(mut rp) = get_rp(&t, &key(project, kind, &name, node))? {
            if rp.with_apps {
                rp.with_apps = false;
                rp.revision += 1;
                put_rp(txn, &mut t, &rp)?;
            }
        }
    }
    Ok(())
}

impl RedbControllerStore {
    /// Config maps and secrets on `node` that only apps carried there and
    /// that no app published there uses any more (a new version dropped
    /// them): they go. Volumes stay, with their data, until released.
    pub fn config_left_behind(
        &self,
        project: &str,
        node: &str,
    ) -> Result<Vec<ResourcePublication>> {
        // Every apply asks; most nodes have no config map or secret an app
        // carried there: a read transaction says so without taking the
        // writers' lock (which the reconcilers' commits wait on).
        if !self.has_resource_records_on(
            project,
            node,
            &[ResourceKind::ConfigMaps, ResourceKind::Secrets],
        )? {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let resources = txn.open_table(RESOURCES)?;
            let t = txn.open_table(RESOURCE_PUBS)?;
            // The project's config maps and secrets on this node that only
            // apps carried: one lookup per resource, not a scan of every node.
            let mut carried = Vec::new();
            for kind in [ResourceKind::ConfigMaps, ResourceKind::Secrets] {
                for r in list_kind(&resources, project, kind)? {
                    if let Some(rp) = get_rp(&t, &key(project, kind, &r.name, node))? {
                        if rp.with_apps && rp.desired == ResourceDesired::Published {
                            carried.push(rp);
                        }
                    }
                }
            }
            if !carried.is_empty() {
                let mut used = BTreeSet::new();
                for a in apps_on_node(&txn, project, node)? {
                    used.extend(spec_resources(&a.spec));
                }
                out = carried
                    .into_iter()
                    .filter(|rp| !used.contains(&(rp.kind, rp.name.clone())))
                    .collect();
            }
        }
        txn.abort()?;
        Ok(out)
    }

    /// Whether any resource of `kinds` in `project` has a record on `node`,
    /// in a read transaction: the cheap first question of the rules that
    /// every apply asks (`config_left_behind`, `network_left_alone`).
    pub(super) fn has_resource_records_on(
        &self,
        project: &str,
        node: &str,
        kinds: &[ResourceKind],
    ) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let resources = txn.open_table(RESOURCES)?;
        let t = txn.open_table(RESOURCE_PUBS)?;
        for kind in kinds {
            for r in list_kind(&resources, project, *kind)? {
                if get_rp(&t, &key(project, *kind, &r.name, node))?.is_some() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
