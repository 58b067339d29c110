//! Resources published per node: publish and unpublish requests with their
//! rules (each refusal names it) and the records an app publish makes for the
//! resources that travel with it.
//!
//! The rules themselves are in `resource_rules`; the reconciler's reads and
//! compare-and-swap writes in `resource_reconcile`.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, WriteTransaction};

use crate::model::AppSpec;
use crate::resources::{
    Resource, ResourceDesired, ResourceKind, ResourcePublication, ResourcePublicationKey,
    ResourceSpec, ResourceState,
};

use super::resource_rules::{
    check_nodes_exist, refuse_unpublish, resources_of_app, served_apps, unattached_eip,
};
use super::resources::not_found_resource;
use super::{decode, encode, RedbControllerStore, Result, StoreError, RESOURCES, RESOURCE_PUBS};

pub(super) const T: &str = "ctl_resource_publications";

pub(super) type PubTable<'t> =
    redb::Table<'t, (&'static str, &'static str, &'static str, &'static str), &'static [u8]>;

pub(super) fn get_rp(
    t: &impl ReadableTable<(&'static str, &'static str, &'static str, &'static str), &'static [u8]>,
    k: &ResourcePublicationKey,
) -> Result<Option<ResourcePublication>> {
    let v = t.get((
        k.project.as_str(),
        k.kind.as_str(),
        k.name.as_str(),
        k.node.as_str(),
    ))?;
    v.map(|g| decode(T, g.value())).transpose()
}

/// Writes `rp` and, in the same transaction, records the change it makes
/// to the resource's publication (`changes::resource_stored`) in the outbox
/// of publication changes.
pub(super) fn put_rp(
    txn: &WriteTransaction,
    t: &mut PubTable<'_>,
    rp: &ResourcePublication,
) -> Result<()> {
    let before = get_rp(t, &rp.key())?;
    put_rp_quiet(t, rp)?;
    if let Some(c) = crate::store::changes::resource_stored(before.as_ref(), rp) {
        super::publication_events::record(txn, c)?;
    }
    Ok(())
}

/// Drops the record of `k`, recording its removal (for the reason
/// `detail`) in the same transaction; what it dropped.
pub(super) fn remove_rp(
    txn: &WriteTransaction,
    t: &mut PubTable<'_>,
    k: &ResourcePublicationKey,
    detail: impl FnOnce(&ResourcePublication) -> String,
) -> Result<Option<ResourcePublication>> {
    let Some(rp) = get_rp(t, k)? else {
        return Ok(None);
    };
    t.remove((
        k.project.as_str(),
        k.kind.as_str(),
        k.name.as_str(),
        k.node.as_str(),
    ))?;
    let why = detail(&rp);
    super::publication_events::record(txn, crate::store::changes::resource_removed(&rp, why))?;
    Ok(Some(rp))
}

/// Writes `rp` without recording a change (the upgrade backfill).
pub(super) fn put_rp_quiet(t: &mut PubTable<'_>, rp: &ResourcePublication) -> Result<()> {
    t.insert(
        (
            rp.project.as_str(),
            rp.kind.as_str(),
            rp.name.as_str(),
            rp.node.as_str(),
        ),
        encode(rp).as_slice(),
    )?;
    Ok(())
}

/// Every record of one resource, by node.
pub(super) fn of_resource(
    t: &PubTable<'_>,
    project: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<BTreeMap<String, ResourcePublication>> {
    let mut out = BTreeMap::new();
    for item in t.range((project, kind.as_str(), name, "")..)? {
        let (k, v) = item?;
        let (p, kd, n, node) = k.value();
        if p != project || kd != kind.as_str() || n != name {
            break;
        }
        out.insert(node.to_string(), decode(T, v.value())?);
    }
    Ok(out)
}

pub(super) fn key(
    project: &str,
    kind: ResourceKind,
    name: &str,
    node: &str,
) -> ResourcePublicationKey {
    ResourcePublicationKey {
        project: project.into(),
        kind,
        name: name.into(),
        node: node.into(),
    }
}

/// Records `app`'s resources as published on `nodes` with it (inside the
/// app publish's transaction). Those already published there stay as they
/// are, but for their revision.
pub(super) fn publish_with_app(
    txn: &WriteTransaction,
    project: &str,
    app: &str,
    spec: &AppSpec,
    nodes: &BTreeSet<&String>,
    now: u64,
) -> Result<()> {
    let resources = txn.open_table(RESOURCES)?;
    let items = resources_of_app(&resources, project, app, spec)?;
    let mut t = txn.open_table(RESOURCE_PUBS)?;
    let detail = format!("published with app {app}");
    let mut eips = BTreeMap::new();
    for (kind, name) in items.iter().filter(|(k, _)| *k == ResourceKind::Eips) {
        let g = resources.get((project, kind.as_str(), name.as_str()))?;
        let r: Option<Resource> = g.map(|g| decode("ctl_resources", g.value())).transpose()?;
        if let Some(ResourceSpec::Eip(e)) = r.map(|r| r.spec) {
            let on: Vec<&str> = nodes.iter().map(|n| n.as_str()).collect();
            super::eips::refuse_static_spread(project, name, &e, &on, &format!("with app {app}"))?;
            eips.insert(name.clone(), e);
        }
    }
    for node in nodes {
        for (kind, name) in &items {
            if let Some(e) = eips.get(name).filter(|_| *kind == ResourceKind::Eips) {
                super::eips::claim(txn, project, name, e, node)?;
            }
            let k = key(project, *kind, name, node);
            match get_rp(&t, &k)? {
                // Carried again: touched, so that a concurrent take-down of
                // what an earlier version left (a compare-and-swap on this
                // revision, see `resources_ctl::take_down`) fails.
                Some(mut rp) if rp.desired == ResourceDesired::Published => {
                    rp.revision += 1;
                    put_rp(txn, &mut t, &rp)?;
                }
                Some(mut rp) => {
                    rp.request_publish(detail.clone(), now);
                    rp.with_apps = true;
                    put_rp(txn, &mut t, &rp)?;
                }
                None => put_rp(
                    txn,
                    &mut t,
                    &ResourcePublication::with_app(&k, detail.clone(), now),
                )?,
            }
        }
    }
    Ok(())
}

/// After a resource changed: its records on nodes apply again.
pub(super) fn unapply(
    txn: &WriteTransaction,
    r: &Resource,
    now: u64,
) -> Result<Vec<crate::resources::PublicationRef>> {
    let mut t = txn.open_table(RESOURCE_PUBS)?;
    let mut out = Vec::new();
    for rp in of_resource(&t, &r.project, r.kind, &r.name)?.into_values() {
        if rp.desired == ResourceDesired::Published {
            let mut rp = rp;
            rp.applied = false;
            rp.revision += 1;
            rp.set(
                ResourceState::Pending,
                format!("{} {} changed; applying again", r.kind.singular(), r.name),
                now,
            );
            put_rp(txn, &mut t, &rp)?;
            out.push(rp.key().into());
        }
    }
    Ok(out)
}

/// The nodes a publish goes to: those named (which must exist), else every
/// node where an app the resource serves is published; refused, naming the
/// rule, where no app it serves is published.
fn publish_nodes(
    txn: &WriteTransaction,
    r: &Resource,
    served: &BTreeMap<String, Vec<(String, bool)>>,
    nodes: Option<Vec<String>>,
    kind: ResourceKind,
    name: &str,
) -> Result<Vec<String>> {
    let unattached = unattached_eip(r);
    if unattached && nodes.is_none() {
        return Err(StoreError::Conflict(format!(
            "rule: an EIP with a static container IP serves no app, so it has no default \
             nodes; name the node ({{\"nodes\": [...]}}) to publish {name} on"
        )));
    }
    let nodes = match nodes {
        Some(n) => {
            check_nodes_exist(txn, &n)?;
            n
        }
        None => served.keys().cloned().collect(),
    };
    let missing: Vec<String> = nodes
        .iter()
        .filter(|n| !served.contains_key(*n))
        .cloned()
        .collect();
    if !unattached && (nodes.is_empty() || !missing.is_empty()) {
        let where_ = if nodes.is_empty() {
            "any node".to_string()
        } else {
            joined(&missing)
        };
        return Err(StoreError::Conflict(format!(
            "rule: a {} is published only where an app it serves is published; none is \
             published on {where_} (publish the app there first)",
            kind.singular()
        )));
    }
    Ok(nodes)
}

/// Refuses a publish of an EIP or route on nodes where its load balancer is
/// not published.
fn check_load_balancer_published(
    t: &PubTable<'_>,
    project: &str,
    kind: ResourceKind,
    r: &Resource,
    nodes: &[String],
) -> Result<()> {
    let lb_name = match &r.spec {
        ResourceSpec::Eip(e) => e.load_balancer(),
        ResourceSpec::Route(rt) => Some(rt.load_balancer.as_str()),
        _ => None,
    };
    if let Some(lb) = lb_name {
        let lb_pubs = of_resource(t, project, ResourceKind::LoadBalancers, lb)?;
        let without: Vec<String> = nodes
            .iter()
            .filter(|n| {
                !lb_pubs
                    .get(*n)
                    .is_some_and(|p| p.desired == ResourceDesired::Published)
            })
            .cloned()
            .collect();
        if !without.is_empty() {
            return Err(StoreError::Conflict(format!(
                "rule: a {} is published only where its load balancer is published; \
                 publish load balancer {lb} on {} first",
                kind.singular(),
                joined(&without)
            )));
        }
    }
    Ok(())
}

/// Names the nodes in words.
fn joined(nodes: &[String]) -> String {
    nodes.join(", ")
}

impl RedbControllerStore {
    /// Records a publish of a resource on `nodes` (default: every node where
    /// an app it serves is published), in one transaction, after its rules.
    pub fn publish_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        nodes: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<ResourcePublication>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let resources = txn.open_table(RESOURCES)?;
            let r: Resource = match resources.get((project, kind.as_str(), name))? {
                Some(g) => decode("ctl_resources", g.value())?,
                None => return Err(not_found_resource(kind, project, name)),
            };
            let served = served_apps(&txn, &resources, &r)?;
            let nodes = publish_nodes(&txn, &r, &served, nodes, kind, name)?;
            let mut t = txn.open_table(RESOURCE_PUBS)?;
            check_load_balancer_published(&t, project, kind, &r, &nodes)?;
            let unique: BTreeSet<String> = nodes.into_iter().collect();
            for node in unique {
                if let ResourceSpec::Eip(e) = &r.spec {
                    super::eips::claim(&txn, project, name, e, &node)?;
                }
                let k = key(project, kind, name, &node);
                let mut rp = match get_rp(&t, &k)? {
                    Some(mut rp) => {
                        rp.request_publish("publish requested", now);
                        rp
                    }
                    None => ResourcePublication::new(&k, "publish requested", now),
                };
                rp.with_apps = false;
                put_rp(&txn, &mut t, &rp)?;
                out.push(rp);
            }
        }
        txn.commit()?;
        Ok(out)
    }

    /// Records an unpublish of a resource from `nodes` (default: every node it
    /// is published on), in one transaction, after its rules.
    pub fn unpublish_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        nodes: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<ResourcePublication>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let resources = txn.open_table(RESOURCES)?;
            let r: Resource = match resources.get((project, kind.as_str(), name))? {
                Some(g) => decode("ctl_resources", g.value())?,
                None => return Err(not_found_resource(kind, project, name)),
            };
            let mut t = txn.open_table(RESOURCE_PUBS)?;
            let current = of_resource(&t, project, kind, name)?;
            let nodes: BTreeSet<String> = match nodes {
                Some(n) => n.into_iter().collect(),
                None => current
                    .iter()
                    .filter(|(_, p)| p.desired == ResourceDesired::Published)
                    .map(|(n, _)| n.clone())
                    .collect(),
            };
            let missing: Vec<String> = nodes
                .iter()
                .filter(|n| !current.contains_key(*n))
                .cloned()
                .collect();
            if nodes.is_empty() || !missing.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "{} {project}/{name} is not published on {}",
                    kind.singular(),
                    if nodes.is_empty() {
                        "any node".to_string()
                    } else {
                        joined(&missing)
                    }
                )));
            }
            for node in &nodes {
                refuse_unpublish(&txn, &resources, &t, &r, node)?;
            }
            for node in nodes {
                if let Some(mut rp) = current.get(&node).cloned() {
                    rp.request_removal("unpublish requested", now);
                    put_rp(&txn, &mut t, &rp)?;
                    out.push(rp);
                }
            }
        }
        txn.commit()?;
        Ok(out)
    }
}

/// Nodes a resource is published on (any record), for the delete rule.
pub(super) fn published_on(
    txn: &WriteTransaction,
    project: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<Vec<String>> {
    let t = txn.open_table(RESOURCE_PUBS)?;
    Ok(of_resource(&t, project, kind, name)?.into_keys().collect())
}
