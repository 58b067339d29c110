//! Force-unpublish of a node gone for good: the app's publication on it, and
//! the records of the resources only it used there, are dropped in one
//! transaction without waiting for the node; what was on the node is kept
//! as a tombstone so that, when the node comes back, its objects are removed
//! and its pins released (reconciled to nothing, not to its old state).
//! The publication's change to `removed` is recorded in the same transaction.
//!
//! ```text
//! ctl_forced   (project, app, node) -> ForcedRemoval
//! ```

use std::collections::BTreeSet;

use redb::{ReadableTable, TableDefinition};

use crate::model::{Publication, PublicationKey};
use crate::resources::{ResourceDesired, ResourceKind};
use crate::store::ForcedRemoval;

use super::resource_publications::{get_rp, key};
use super::resource_rules::{apps_by_node, resources_of_app, serves};
use super::resources::not_found_resource;
use super::{
    decode, encode, RedbControllerStore, Result, StoreError, PUBLICATIONS, RESOURCES, RESOURCE_PUBS,
};

pub(super) const FORCED: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("ctl_forced");
const T: &str = "ctl_forced";

impl RedbControllerStore {
    /// Drops `app`'s publications on `nodes` now (and the records of the
    /// resources no other app published there uses), leaving tombstones.
    pub fn force_unpublish(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<ForcedRemoval>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        for node in nodes.iter().collect::<BTreeSet<_>>() {
            let p: Publication = {
                let pubs = txn.open_table(PUBLICATIONS)?;
                let found = pubs.get((project, app, node.as_str()))?;
                match found {
                    Some(g) => decode("ctl_publications", g.value())?,
                    None => {
                        return Err(StoreError::NotFound(format!(
                            "{project}/{app} is not published on {node}"
                        )))
                    }
                }
            };
            txn.open_table(PUBLICATIONS)?
                .remove((project, app, node.as_str()))?;
            super::publication_events::record(&txn, crate::store::changes::force_removed(&p))?;
            let mut pins: BTreeSet<String> = p.pinned.iter().cloned().collect();
            pins.extend(p.images_by_digest());
            let resources = drop_resources_alone(&txn, project, app, &p, node)?;
            let f = ForcedRemoval {
                project: project.into(),
                app: app.into(),
                node: node.clone(),
                pins: pins.into_iter().collect(),
                resources,
                at: now,
            };
            txn.open_table(FORCED)?
                .insert((project, app, node.as_str()), encode(&f).as_slice())?;
            out.push(f);
        }
        txn.commit()?;
        Ok(out)
    }

    pub fn list_forced(&self) -> Result<Vec<ForcedRemoval>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(FORCED)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            out.push(decode(T, item?.1.value())?);
        }
        Ok(out)
    }

    /// The node is reconciled to nothing: the tombstone goes.
    pub fn forget_forced(&self, k: &PublicationKey) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(FORCED)?
            .remove((k.project.as_str(), k.app.as_str(), k.node.as_str()))?;
        txn.commit()?;
        Ok(())
    }
}

/// The records, on `node`, of the resources travelling with `app` that no
/// other app published there uses: dropped (EIP addresses freed).
fn drop_resources_alone(
    txn: &redb::WriteTransaction,
    project: &str,
    app: &str,
    p: &Publication,
    node: &str,
) -> Result<Vec<(ResourceKind, String)>> {
    let spec = match txn
        .open_table(super::VERSIONS)?
        .get((project, app, p.version))?
    {
        Some(g) => decode::<crate::model::TemplateVersion>("ctl_app_versions", g.value())?.spec,
        None => return Ok(Vec::new()),
    };
    let others: Vec<_> = apps_by_node(txn, project)?
        .remove(node)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.app != app)
        .collect();
    let resources = txn.open_table(RESOURCES)?;
    let mut dropped = Vec::new();
    let mut t = txn.open_table(RESOURCE_PUBS)?;
    for (kind, name) in resources_of_app(&resources, project, app, &spec)? {
        let r = match resources.get((project, kind.as_str(), name.as_str()))? {
            Some(g) => decode::<crate::resources::Resource>("ctl_resources", g.value())?,
            None => return Err(not_found_resource(kind, project, &name)),
        };
        let mut used = false;
        for o in &others {
            used |= serves(&resources, &r, &o.app, &o.spec)?;
        }
        let k = key(project, kind, &name, node);
        let here = get_rp(&t, &k)?.is_some_and(|rp| rp.desired == ResourceDesired::Published);
        if used || !here {
            continue;
        }
        super::resource_publications::remove_rp(txn, &mut t, &k, |_| {
            format!(
                "force-unpublished from node {node} with app {app}; its objects are removed \
                 when the node is reachable"
            )
        })?;
        if kind == ResourceKind::Eips {
            super::eips::free(txn, project, &name, node)?;
        }
        dropped.push((kind, name));
    }
    Ok(dropped)
}
