//! A project's controller records when the registry deletes the project:
//! what it holds (to refuse a delete without `force`), and the purge of a
//! forced delete — every app, version, resource, binding, EIP address and
//! publication in one transaction. Publications are dropped the way a
//! force-unpublish drops them: a tombstone per node names what was there, so
//! the sweep takes the node's objects and pins off now if it answers, or when
//! it comes back.
//!
//! Owns: the purge's transaction. Must not touch: the node (see
//! `reconcile::forced`).

use std::collections::{BTreeMap, BTreeSet};

use redb::ReadableTable;

use crate::model::Publication;
use crate::resources::ResourceKind;

use super::eips::free;
use super::forced::FORCED;
use super::{
    decode, encode, RedbControllerStore, Result, APPS, BINDINGS, PUBLICATIONS, RESOURCES,
    RESOURCE_PUBS, VERSIONS,
};
use crate::store::{ForcedRemoval, ProjectHoldings, ProjectPurge};

impl RedbControllerStore {
    pub fn project_holdings(&self, project: &str) -> Result<ProjectHoldings> {
        let txn = self.db.begin_read()?;
        holdings(&txn.open_table(APPS)?, &txn.open_table(RESOURCES)?, project)
    }

    /// Drops everything `project` holds; tombstones take its nodes back to nothing.
    pub fn purge_project(&self, project: &str, now: u64) -> Result<ProjectPurge> {
        let txn = self.db.begin_write()?;
        let holdings = holdings(&txn.open_table(APPS)?, &txn.open_table(RESOURCES)?, project)?;
        let mut per_node: BTreeMap<String, Node> = BTreeMap::new();
        drop_app_publications(&txn, project, now, &mut per_node)?;
        drop_resource_publications(&txn, project, &mut per_node)?;
        let tombstones = tombstone_nodes(&txn, project, now, per_node)?;
        remove_rows(&txn, project)?;
        txn.commit()?;
        Ok(ProjectPurge {
            holdings,
            tombstones,
        })
    }
}

// node -> (an app of the project published there, resources there)
type Node = (Option<String>, Vec<(ResourceKind, String)>);

/// Removes the project's app publications, each leaving a tombstone per (app, node).
fn drop_app_publications(
    txn: &redb::WriteTransaction,
    project: &str,
    now: u64,
    per_node: &mut BTreeMap<String, Node>,
) -> Result<()> {
    let mut pubs = txn.open_table(PUBLICATIONS)?;
    let mut found = Vec::new();
    for item in pubs.iter()? {
        let (k, v) = item?;
        if k.value().0 == project {
            found.push(decode::<Publication>("ctl_publications", v.value())?);
        }
    }
    for p in found {
        pubs.remove((project, p.app.as_str(), p.node.as_str()))?;
        let mut t = txn.open_table(FORCED)?;
        let e = per_node.entry(p.node.clone()).or_default();
        // Each app's objects on the node: a tombstone per (app, node),
        // kept with what an earlier force-unpublish left there.
        let earlier: Option<ForcedRemoval> =
            match t.get((project, p.app.as_str(), p.node.as_str()))? {
                Some(g) => Some(decode("ctl_forced", g.value())?),
                None => None,
            };
        let mut f = ForcedRemoval {
            project: project.into(),
            app: p.app.clone(),
            node: p.node.clone(),
            pins: p
                .pinned
                .iter()
                .cloned()
                .chain(p.images_by_digest())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            resources: Vec::new(),
            at: now,
        };
        if let Some(e) = earlier {
            let pins: BTreeSet<String> = f.pins.drain(..).chain(e.pins).collect();
            f.pins = pins.into_iter().collect();
            f.resources = e.resources;
        }
        t.insert(
            (project, p.app.as_str(), p.node.as_str()),
            encode(&f).as_slice(),
        )?;
        e.0.get_or_insert(p.app.clone());
    }
    Ok(())
}

/// Removes the project's resource publications (freeing EIP claims), noting each per node.
fn drop_resource_publications(
    txn: &redb::WriteTransaction,
    project: &str,
    per_node: &mut BTreeMap<String, Node>,
) -> Result<()> {
    let mut t = txn.open_table(RESOURCE_PUBS)?;
    let mut found = Vec::new();
    for item in t.iter()? {
        let (k, _) = item?;
        let (p, kind, name, node) = k.value();
        if p == project {
            found.push((kind.to_string(), name.to_string(), node.to_string()));
        }
    }
    for (kind, name, node) in found {
        t.remove((project, kind.as_str(), name.as_str(), node.as_str()))?;
        if let Some(k) = ResourceKind::parse(&kind) {
            if k == ResourceKind::Eips {
                free(txn, project, &name, &node)?;
            }
            per_node.entry(node).or_default().1.push((k, name));
        }
    }
    Ok(())
}

/// Puts each node's resources on a tombstone there; returns all the project's tombstones.
fn tombstone_nodes(
    txn: &redb::WriteTransaction,
    project: &str,
    now: u64,
    per_node: BTreeMap<String, Node>,
) -> Result<Vec<ForcedRemoval>> {
    let mut tombstones = Vec::new();
    let mut t = txn.open_table(FORCED)?;
    for (node, (app, resources)) in per_node {
        // The resources ride on a tombstone of the node: one of the
        // project's apps there, or (none published there) the first
        // resource's name, whose app selector matches nothing else of
        // a project that is going anyway.
        let Some(app) = app.or_else(|| resources.first().map(|r| r.1.clone())) else {
            continue;
        };
        let mut f: ForcedRemoval = match t.get((project, app.as_str(), node.as_str()))? {
            Some(g) => decode("ctl_forced", g.value())?,
            None => ForcedRemoval {
                project: project.into(),
                app: app.clone(),
                node: node.clone(),
                pins: Vec::new(),
                resources: Vec::new(),
                at: now,
            },
        };
        f.resources.extend(resources);
        t.insert(
            (project, app.as_str(), node.as_str()),
            encode(&f).as_slice(),
        )?;
    }
    for item in t.iter()? {
        let (k, v) = item?;
        if k.value().0 == project {
            tombstones.push(decode("ctl_forced", v.value())?);
        }
    }
    Ok(tombstones)
}

fn holdings(
    apps: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    resources: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    project: &str,
) -> Result<ProjectHoldings> {
    let mut h = ProjectHoldings::default();
    for item in apps.iter()? {
        let (k, _) = item?;
        let (p, a) = k.value();
        if p == project {
            h.apps.push(a.to_string());
        }
    }
    for item in resources.iter()? {
        let (k, _) = item?;
        let (p, kind, name) = k.value();
        if let Some(kind) = ResourceKind::parse(kind).filter(|_| p == project) {
            h.resources.push((kind, name.to_string()));
        }
    }
    Ok(h)
}

/// The project's apps, versions, resources and bindings.
fn remove_rows(txn: &redb::WriteTransaction, project: &str) -> Result<()> {
    let mut apps = txn.open_table(APPS)?;
    let mut names = Vec::new();
    for item in apps.iter()? {
        let (k, _) = item?;
        let (p, a) = k.value();
        if p == project {
            names.push(a.to_string());
        }
    }
    let mut versions = txn.open_table(VERSIONS)?;
    for a in &names {
        apps.remove((project, a.as_str()))?;
        versions.retain_in(
            (project, a.as_str(), 0u32)..=(project, a.as_str(), u32::MAX),
            |_, _| false,
        )?;
    }
    txn.open_table(RESOURCES)?
        .retain(|(p, _, _), _| p != project)?;
    txn.open_table(BINDINGS)?
        .retain(|(p, _, _, _), _| p != project)?;
    Ok(())
}
