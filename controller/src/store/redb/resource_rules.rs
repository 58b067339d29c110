//! The rules of resources on nodes, read inside the caller's transaction:
//! which apps a resource serves (and so where it may be published), which
//! resources travel with an app, whether a record may be applied now, and
//! what an unpublish from a node must wait for.
//!
//! The rules: a resource is on a node only beside an app it serves (a config
//! map, secret or volume the app's template uses; a load balancer whose
//! selector binds the app; an EIP or route on such a load balancer, or an EIP
//! whose selector binds the app); a route or EIP only where its load balancer
//! is; a load balancer a published route or EIP uses there, and a config map,
//! secret or volume a published app uses there, stay until those go. An EIP
//! with only a static container IP serves no app: it goes on the nodes named.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, WriteTransaction};

use crate::model::{AppSpec, Desired, Publication, TemplateVersion, ValidationError};
use crate::resources::{
    spec_resources, spec_uses, EipTarget, Resource, ResourceDesired, ResourceKind,
    ResourcePublication, ResourcePublicationKey, ResourceSpec,
};

use super::resource_publications::{get_rp, key, PubTable};
use super::resources::{list_kind, load_balancer, not_found_resource, ResourceTable};
use super::{
    decode, Result, StoreError, APPS, NODES, PUBLICATIONS, RESOURCES, RESOURCE_PUBS, VERSIONS,
};

/// An app wanted on a node, with its template version's spec.
pub(super) struct AppOnNode {
    pub app: String,
    pub spec: AppSpec,
    pub applied: bool,
}

/// Apps wanted (published) in `project`, by node.
pub(super) fn apps_by_node(
    txn: &WriteTransaction,
    project: &str,
) -> Result<BTreeMap<String, Vec<AppOnNode>>> {
    let pubs = txn.open_table(PUBLICATIONS)?;
    let versions = txn.open_table(VERSIONS)?;
    let mut out: BTreeMap<String, Vec<AppOnNode>> = BTreeMap::new();
    for item in pubs.range((project, "", "")..)? {
        let (k, v) = item?;
        let (p, app, node) = k.value();
        if p != project {
            break;
        }
        let publication: Publication = decode("ctl_publications", v.value())?;
        if publication.desired != Desired::Published {
            continue;
        }
        if let Some(g) = versions.get((p, app, publication.version))? {
            let tv: TemplateVersion = decode("ctl_app_versions", g.value())?;
            out.entry(node.to_string()).or_default().push(AppOnNode {
                app: app.to_string(),
                spec: tv.spec,
                applied: publication.applied,
            });
        }
    }
    Ok(out)
}

/// Apps wanted (published) in `project` on `node`: one lookup per app of
/// the project, not a read of every publication (the rules that run on
/// every apply must not cost the size of the fleet).
pub(super) fn apps_on_node(
    txn: &WriteTransaction,
    project: &str,
    node: &str,
) -> Result<Vec<AppOnNode>> {
    let apps = txn.open_table(APPS)?;
    let pubs = txn.open_table(PUBLICATIONS)?;
    let versions = txn.open_table(VERSIONS)?;
    let mut out = Vec::new();
    for item in apps.range((project, "")..)? {
        let (k, _) = item?;
        let (p, app) = k.value();
        if p != project {
            break;
        }
        let Some(g) = pubs.get((project, app, node))? else {
            continue;
        };
        let publication: Publication = decode("ctl_publications", g.value())?;
        if publication.desired != Desired::Published {
            continue;
        }
        if let Some(g) = versions.get((project, app, publication.version))? {
            let tv: TemplateVersion = decode("ctl_app_versions", g.value())?;
            out.push(AppOnNode {
                app: app.to_string(),
                spec: tv.spec,
                applied: publication.applied,
            });
        }
    }
    Ok(out)
}

/// Whether resource `r` serves `app` (whose template is `spec`).
pub(super) fn serves(
    t: &ResourceTable<'_>,
    r: &Resource,
    app: &str,
    spec: &AppSpec,
) -> Result<bool> {
    let lb_name = match &r.spec {
        ResourceSpec::LoadBalancer(lb) => return Ok(lb.binds(app, &spec.labels)),
        ResourceSpec::Eip(e) => match e.target() {
            Some(EipTarget::LoadBalancer(lb)) => lb,
            Some(EipTarget::Selector(_)) => return Ok(e.binds(app, &spec.labels)),
            _ => return Ok(false),
        },
        ResourceSpec::Route(rt) => rt.load_balancer.as_str(),
        _ => return Ok(spec_uses(spec, r.kind, &r.name)),
    };
    Ok(load_balancer(t, &r.project, lb_name)?.is_some_and(|lb| lb.binds(app, &spec.labels)))
}

/// The apps `r` serves on each node where it serves one: (app, applied there).
pub(super) fn served_apps(
    txn: &WriteTransaction,
    t: &ResourceTable<'_>,
    r: &Resource,
) -> Result<BTreeMap<String, Vec<(String, bool)>>> {
    let mut out: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for (node, apps) in apps_by_node(txn, &r.project)? {
        for a in apps {
            if serves(t, r, &a.app, &a.spec)? {
                out.entry(node.clone())
                    .or_default()
                    .push((a.app, a.applied));
            }
        }
    }
    Ok(out)
}

/// The resources that travel with `app` (template `spec`): those the template
/// uses, the load balancers binding it, and the EIPs and routes on those.
pub(super) fn resources_of_app(
    t: &ResourceTable<'_>,
    project: &str,
    app: &str,
    spec: &AppSpec,
) -> Result<Vec<(ResourceKind, String)>> {
    let mut out = Vec::new();
    for (kind, name) in spec_resources(spec) {
        if t.get((project, kind.as_str(), name.as_str()))?.is_some() {
            out.push((kind, name));
        }
    }
    let mut lbs = BTreeSet::new();
    for r in list_kind(t, project, ResourceKind::LoadBalancers)? {
        if let ResourceSpec::LoadBalancer(lb) = &r.spec {
            if lb.binds(app, &spec.labels) {
                lbs.insert(r.name.clone());
                out.push((r.kind, r.name));
            }
        }
    }
    for kind in [ResourceKind::Eips, ResourceKind::Routes] {
        for r in list_kind(t, project, kind)? {
            let on = match &r.spec {
                ResourceSpec::Eip(e) if e.binds(app, &spec.labels) => {
                    out.push((r.kind, r.name));
                    continue;
                }
                ResourceSpec::Eip(e) => e.load_balancer(),
                ResourceSpec::Route(rt) => Some(rt.load_balancer.as_str()),
                _ => continue,
            };
            if on.is_some_and(|o| lbs.contains(o)) {
                out.push((r.kind, r.name));
            }
        }
    }
    Ok(out)
}

pub(super) fn readiness(
    txn: &WriteTransaction,
    k: &ResourcePublicationKey,
) -> Result<Option<String>> {
    let resources = txn.open_table(RESOURCES)?;
    let r: Resource = match resources.get((k.project.as_str(), k.kind.as_str(), k.name.as_str()))? {
        Some(g) => decode("ctl_resources", g.value())?,
        None => return Err(not_found_resource(k.kind, &k.project, &k.name)),
    };
    let served = served_apps(txn, &resources, &r)?
        .remove(&k.node)
        .unwrap_or_default();
    if let Some((app, _)) = served.iter().find(|(_, applied)| !applied) {
        return Ok(Some(format!(
            "applied with app {app}, which is on its way to {}",
            k.node
        )));
    }
    if !k.kind.is_network() || unattached_eip(&r) {
        return Ok(None);
    }
    if served.is_empty() {
        return Err(StoreError::Conflict(format!(
            "rule: a {} is on a node only beside an app it serves; none is published on {}",
            k.kind.singular(),
            k.node
        )));
    }
    let lb = match &r.spec {
        ResourceSpec::Eip(e) => match e.load_balancer() {
            Some(lb) => lb,
            None => return Ok(None),
        },
        ResourceSpec::Route(rt) => rt.load_balancer.as_str(),
        _ => return Ok(None),
    };
    let t = txn.open_table(RESOURCE_PUBS)?;
    let lb_rp = get_rp(
        &t,
        &key(&k.project, ResourceKind::LoadBalancers, lb, &k.node),
    )?;
    Ok(match lb_rp {
        Some(p) if p.applied => None,
        _ => Some(format!(
            "waiting for load balancer {lb} to be applied on {}",
            k.node
        )),
    })
}

/// A load balancer, EIP or route created — or changed — while an app it
/// serves is published follows that app: published on those nodes where it
/// has no record yet (an EIP or route only where its load balancer is),
/// without a second publish. A static EIP that would
/// follow it to more than one node, or to a node while its address is held
/// on another, is refused (its address is on one node at a time).
pub(super) fn follow_apps(
    txn: &WriteTransaction,
    t: &ResourceTable<'_>,
    r: &Resource,
    now: u64,
) -> Result<Vec<ResourcePublicationKey>> {
    if !r.kind.is_network() || unattached_eip(r) {
        return Ok(Vec::new());
    }
    let served: Vec<(String, String)> = served_apps(txn, t, r)?
        .into_iter()
        .filter_map(|(node, apps)| apps.first().map(|(a, _)| (node, a.clone())))
        .collect();
    let lb = match &r.spec {
        ResourceSpec::Eip(e) => e.load_balancer(),
        ResourceSpec::Route(rt) => Some(rt.load_balancer.as_str()),
        _ => None,
    };
    let mut pubs = txn.open_table(RESOURCE_PUBS)?;
    let mut targets = Vec::new();
    for (node, app) in served {
        if get_rp(&pubs, &key(&r.project, r.kind, &r.name, &node))?.is_some() {
            // Already there (or on its way off): its own record decides.
            continue;
        }
        if let Some(lb) = lb {
            let lb_here = get_rp(
                &pubs,
                &key(&r.project, ResourceKind::LoadBalancers, lb, &node),
            )?
            .is_some_and(|p| p.desired == ResourceDesired::Published);
            if !lb_here {
                continue;
            }
        }
        targets.push((node, app));
    }
    if let ResourceSpec::Eip(e) = &r.spec {
        let on: Vec<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
        let apps: BTreeSet<&str> = targets.iter().map(|(_, a)| a.as_str()).collect();
        let how = format!(
            "following app {}, published there",
            apps.into_iter().collect::<Vec<_>>().join(", ")
        );
        super::eips::refuse_static_spread(&r.project, &r.name, e, &on, &how)?;
    }
    let mut out = Vec::new();
    for (node, app) in targets {
        if let ResourceSpec::Eip(e) = &r.spec {
            match super::eips::claim(txn, &r.project, &r.name, e, &node) {
                Ok(_) => {}
                // A static address held elsewhere is a refusal, not a skip.
                Err(err) if e.address.is_some() => return Err(err),
                // A pool without a free address: the EIP waits for a publish.
                Err(_) => continue,
            }
        }
        let k = key(&r.project, r.kind, &r.name, &node);
        let rp =
            ResourcePublication::with_app(&k, format!("follows app {app}, published there"), now);
        super::resource_publications::put_rp(txn, &mut pubs, &rp)?;
        out.push(k);
    }
    Ok(out)
}

/// An EIP with only a static container IP: it serves no app, so it goes on
/// the nodes named, beside nothing.
pub(super) fn unattached_eip(r: &Resource) -> bool {
    matches!(&r.spec, ResourceSpec::Eip(e) if matches!(e.target(), Some(EipTarget::ContainerIp(_))))
}

/// The rules of an unpublish from one node.
pub(super) fn refuse_unpublish(
    txn: &WriteTransaction,
    resources: &ResourceTable<'_>,
    t: &PubTable<'_>,
    r: &Resource,
    node: &str,
) -> Result<()> {
    if let ResourceSpec::LoadBalancer(_) = &r.spec {
        let mut users = Vec::new();
        for kind in [ResourceKind::Eips, ResourceKind::Routes] {
            for other in list_kind(resources, &r.project, kind)? {
                let on = match &other.spec {
                    ResourceSpec::Eip(e) => e.load_balancer(),
                    ResourceSpec::Route(rt) => Some(rt.load_balancer.as_str()),
                    _ => continue,
                };
                let published = get_rp(t, &key(&r.project, kind, &other.name, node))?
                    .is_some_and(|p| p.desired == ResourceDesired::Published);
                if on == Some(r.name.as_str()) && published {
                    users.push(format!("{} {}", kind.singular(), other.name));
                }
            }
        }
        if !users.is_empty() {
            return Err(StoreError::Conflict(format!(
                "rule: a load balancer a published route or EIP uses cannot be unpublished from \
                 that node; unpublish {} from {node} first",
                users.join(", ")
            )));
        }
        return Ok(());
    }
    if r.kind.is_network() {
        return Ok(());
    }
    let users: Vec<String> = served_apps(txn, resources, r)?
        .remove(node)
        .unwrap_or_default()
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    if !users.is_empty() {
        return Err(StoreError::Conflict(format!(
            "rule: a {} a published app uses cannot be unpublished from its node; unpublish {} \
             from {node} first (with cascade to take it along)",
            r.kind.singular(),
            users.join(", ")
        )));
    }
    Ok(())
}

pub(super) fn check_nodes_exist(txn: &WriteTransaction, nodes: &[String]) -> Result<()> {
    if nodes.is_empty() {
        return Err(ValidationError::one("nodes", "name at least one node").into());
    }
    let t = txn.open_table(NODES)?;
    let mut unknown = Vec::new();
    for n in nodes {
        if t.get(n.as_str())?.is_none() {
            unknown.push(n.as_str());
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::one("nodes", format!("no node named {}", unknown.join(", "))).into())
    }
}
