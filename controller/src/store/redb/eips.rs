//! EIP addresses held per cluster: a static address or one allocated from
//! the cluster's `eip_pool`, claimed for an (EIP, node) in the transaction
//! that publishes it there and freed in the one that forgets it there, so
//! two publishes can never hold the same address.
//!
//! The rules: an address is unique within its cluster; a static address is
//! on one node at a time; one EIP maps to one container instance (a
//! selector may not bind an app with more than one replica).

use std::collections::BTreeSet;
use std::net::IpAddr;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde_json::Value;

use crate::model::AppSpec;
use crate::resources::{EipPool, EipSpec, Resource, ResourceKind, ResourceSpec};
use crate::store::EipClaim;

use super::resources::{list_kind, ResourceTable};
use super::{decode, encode, RedbControllerStore, Result, StoreError, CLUSTERS, NODES, RESOURCES};

/// (cluster, address) -> EipClaim
pub(super) const EIP_ADDRESSES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("ctl_eip_addresses");
const T: &str = "ctl_eip_addresses";

/// A field of a stored JSON record without opening its sealed parts.
fn field(bytes: &[u8], name: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get(name)?.as_str().map(str::to_string)
}

fn all_claims(txn: &WriteTransaction) -> Result<Vec<(String, String, EipClaim)>> {
    let t = txn.open_table(EIP_ADDRESSES)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let (cluster, address) = k.value();
        out.push((
            cluster.to_string(),
            address.to_string(),
            decode(T, v.value())?,
        ));
    }
    Ok(out)
}

/// Holds an address for EIP `name` on `node` (the static one, or the lowest
/// free one of the cluster's pool); the one it holds already if any.
pub(super) fn claim(
    txn: &WriteTransaction,
    project: &str,
    name: &str,
    e: &EipSpec,
    node: &str,
) -> Result<String> {
    let cluster = txn
        .open_table(NODES)?
        .get(node)?
        .and_then(|g| field(g.value(), "cluster"))
        .ok_or_else(|| StoreError::NotFound(format!("no node named {node}")))?;
    let claims = all_claims(txn)?;
    let mine = |c: &EipClaim| c.project == project && c.eip == name;
    if let Some((_, a, _)) = claims.iter().find(|(_, _, c)| mine(c) && c.node == node) {
        return Ok(a.clone());
    }
    let address = match &e.address {
        Some(a) => {
            if let Some((_, _, c)) = claims.iter().find(|(_, _, c)| mine(c)) {
                return Err(StoreError::Conflict(format!(
                    "rule: a static EIP address is on one node at a time; {a} ({project}/{name}) \
                     is on {} (unpublish it there first, or use \"pool\": true for one address \
                     per node)",
                    c.node
                )));
            }
            if let Some((_, _, c)) = claims.iter().find(|(cl, ad, _)| *cl == cluster && ad == a) {
                return Err(StoreError::Conflict(format!(
                    "rule: an address is unique within its cluster; {a} is held in cluster \
                     {cluster} by EIP {}/{} on {}",
                    c.project, c.eip, c.node
                )));
            }
            a.clone()
        }
        None => allocate(txn, &cluster, &claims)?,
    };
    let c = EipClaim {
        project: project.into(),
        eip: name.into(),
        node: node.into(),
        pool: e.address.is_none(),
    };
    txn.open_table(EIP_ADDRESSES)?
        .insert((cluster.as_str(), address.as_str()), encode(&c).as_slice())?;
    Ok(address)
}

/// A static EIP that would go on more than one node at once (an app
/// published to several nodes, or followed there): refused, naming the EIP,
/// its address, the nodes and what would take it there. Silently placing it
/// on one of them would leave the app unreachable on the others.
pub(super) fn refuse_static_spread(
    project: &str,
    name: &str,
    e: &EipSpec,
    nodes: &[&str],
    how: &str,
) -> Result<()> {
    match &e.address {
        Some(a) if nodes.len() > 1 => Err(StoreError::Conflict(format!(
            "rule: a static EIP address is on one node at a time; EIP {project}/{name} \
             ({a}) would go on {} {how} (publish it to one node, or use \"pool\": true for \
             one address per node)",
            nodes.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn allocate(
    txn: &WriteTransaction,
    cluster: &str,
    claims: &[(String, String, EipClaim)],
) -> Result<String> {
    let pool = txn
        .open_table(CLUSTERS)?
        .get(cluster)?
        .and_then(|g| field(g.value(), "eip_pool"))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            StoreError::Conflict(format!(
                "rule: a pool EIP takes its address from its cluster's eip_pool; cluster \
                 {cluster} has none (PATCH /api/v1/clusters/{cluster} {{\"eip_pool\": \
                 \"10.0.0.0/28\"}})"
            ))
        })?;
    let pool = EipPool::parse(&pool).map_err(|m| StoreError::Corrupt {
        table: "ctl_clusters",
        message: m,
    })?;
    let used: BTreeSet<IpAddr> = claims
        .iter()
        .filter(|(c, _, _)| c == cluster)
        .filter_map(|(_, a, _)| a.parse().ok())
        .collect();
    pool.next_free(&used).map(|a| a.to_string()).ok_or_else(|| {
        StoreError::Conflict(format!(
            "rule: an address is unique within its cluster; every address of cluster \
             {cluster}'s eip_pool is held (unpublish an EIP there, or widen the pool)"
        ))
    })
}

/// Frees what EIP `name` holds on `node` (nothing when it holds nothing).
pub(super) fn free(txn: &WriteTransaction, project: &str, name: &str, node: &str) -> Result<()> {
    let held: Vec<(String, String)> = all_claims(txn)?
        .into_iter()
        .filter(|(_, _, c)| c.project == project && c.eip == name && c.node == node)
        .map(|(cl, a, _)| (cl, a))
        .collect();
    let mut t = txn.open_table(EIP_ADDRESSES)?;
    for (cl, a) in held {
        t.remove((cl.as_str(), a.as_str()))?;
    }
    Ok(())
}

/// A pool may change only to one that still holds every address allocated
/// from it.
pub(super) fn check_pool_change(txn: &WriteTransaction, cluster: &str, pool: &str) -> Result<()> {
    let new = if pool.is_empty() {
        None
    } else {
        Some(EipPool::parse(pool).map_err(|m| crate::model::ValidationError::one("eip_pool", m))?)
    };
    let outside: Vec<String> = all_claims(txn)?
        .into_iter()
        .filter(|(c, _, claim)| c == cluster && claim.pool)
        .filter(|(_, a, _)| {
            let a: Option<IpAddr> = a.parse().ok();
            !matches!((&new, a), (Some(p), Some(a)) if p.contains(a))
        })
        .map(|(_, a, c)| format!("{a} ({}/{} on {})", c.project, c.eip, c.node))
        .collect();
    if outside.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "rule: a cluster's eip_pool keeps the addresses allocated from it; {} would fall \
             outside (unpublish those EIPs first)",
            outside.join(", ")
        )))
    }
}

/// The replica count of a template (a Deployment or StatefulSet without one runs one).
fn replicas(spec: &AppSpec) -> u32 {
    spec.replicas.unwrap_or(1)
}

fn one_instance_refusal(eip: &str, app: &str, n: u32) -> StoreError {
    StoreError::Conflict(format!(
        "rule: one EIP maps to one container instance; EIP {eip}'s selector binds app {app}, \
         which runs {n} replicas (one address cannot reach {n} containers: bind an app with \
         one replica, or use a load balancer)"
    ))
}

/// At creation or change of an EIP: a static address no other EIP has, and
/// a selector binding no app with more than one replica.
pub(super) fn check_eip_rules(
    txn: &WriteTransaction,
    t: &ResourceTable<'_>,
    project: &str,
    name: &str,
    e: &EipSpec,
) -> Result<()> {
    if let Some(a) = &e.address {
        for item in t.iter()? {
            let (_, v) = item?;
            let other: Resource = decode("ctl_resources", v.value())?;
            let same = matches!(&other.spec, ResourceSpec::Eip(o) if o.address.as_ref() == Some(a));
            if same && !(other.project == project && other.name == name) {
                return Err(StoreError::Conflict(format!(
                    "rule: an address is unique; {a} is the static address of EIP {}/{}",
                    other.project, other.name
                )));
            }
        }
    }
    if e.selector.is_empty() {
        return Ok(());
    }
    for (app, tv) in super::apps::apps_with_latest(txn, project)? {
        let n = replicas(&tv.spec);
        if e.binds(&app.name, &tv.spec.labels) && n > 1 {
            return Err(one_instance_refusal(name, &app.name, n));
        }
    }
    Ok(())
}

/// When an app's template changes: no EIP selector may bind it with more
/// than one replica.
pub(super) fn check_app_replicas(
    txn: &WriteTransaction,
    project: &str,
    app: &str,
    spec: &AppSpec,
) -> Result<()> {
    let n = replicas(spec);
    if n <= 1 {
        return Ok(());
    }
    let t = txn.open_table(RESOURCES)?;
    for r in list_kind(&t, project, ResourceKind::Eips)? {
        if let ResourceSpec::Eip(e) = &r.spec {
            if e.binds(app, &spec.labels) {
                return Err(one_instance_refusal(&r.name, app, n));
            }
        }
    }
    Ok(())
}

impl RedbControllerStore {
    /// The address EIP `name` holds on `node`, if it holds one.
    pub fn eip_address(&self, project: &str, name: &str, node: &str) -> Result<Option<String>> {
        let txn = self.db.begin_write()?;
        let found = all_claims(&txn)?
            .into_iter()
            .find(|(_, _, c)| c.project == project && c.eip == name && c.node == node)
            .map(|(_, a, _)| a);
        txn.abort()?;
        Ok(found)
    }

    /// Every address held, as (cluster, address, claim).
    pub fn list_eip_claims(&self) -> Result<Vec<(String, String, EipClaim)>> {
        let txn = self.db.begin_write()?;
        let all = all_claims(&txn)?;
        txn.abort()?;
        Ok(all)
    }
}
