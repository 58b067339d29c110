//! Resources that travel with apps: created and changed only when what they
//! refer to exists and fits, deleted only when nothing uses them (each refusal
//! names its rule); a change marks the publications using it to apply again.

use std::collections::BTreeSet;

use redb::ReadableTable;

use crate::clock::now_secs;

use crate::model::{Desired, Publication, PublicationState, TemplateVersion, ValidationError};
use crate::resources::{
    Binding, BindingState, LoadBalancerSpec, PublicationRef, Resource, ResourceKind, ResourceSpec,
    ServiceType,
};

use super::{
    decode, encode, RedbControllerStore, Result, StoreError, APPS, BINDINGS, PUBLICATIONS,
    RESOURCES, VERSIONS,
};

impl RedbControllerStore {
    /// Creates a resource after checking, in the same transaction, what it refers
    /// to: a load balancer's app, an EIP's load balancer, a route's load
    /// balancer (which must be ClusterIP and have the port).
    /// A load balancer, EIP or route that serves a published app follows it
    /// to its nodes: the records made are returned, to trigger.
    pub fn create_resource(&self, r: &Resource) -> Result<Vec<PublicationRef>> {
        crate::resources::validate(r.kind, &r.name, &r.spec)?;
        let txn = self.db.begin_write()?;
        let followed;
        {
            let mut t = txn.open_table(RESOURCES)?;
            let key = (r.project.as_str(), r.kind.as_str(), r.name.as_str());
            if t.get(key)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "{} {}/{} already exists; PUT to change it",
                    r.kind.singular(),
                    r.project,
                    r.name
                )));
            }
            check_references(&txn, &t, r)?;
            t.insert(key, encode(r).as_slice())?;
            followed = super::resource_rules::follow_apps(&txn, &t, r, crate::clock::now_secs())?;
        }
        txn.commit()?;
        Ok(followed.into_iter().map(PublicationRef::Resource).collect())
    }

    /// Replaces a resource's spec (same rules as create, plus: a volume's
    /// capacity is immutable; a load balancer with routes stays ClusterIP).
    /// Returns the publications that must apply again (their app uses it),
    /// and those of the nodes a load balancer, EIP or route now follows an
    /// app to; a load balancer's new selector takes the routes and EIPs in
    /// front of it along.
    pub fn update_resource(&self, r: &Resource) -> Result<Vec<PublicationRef>> {
        crate::resources::validate(r.kind, &r.name, &r.spec)?;
        let txn = self.db.begin_write()?;
        let keys;
        {
            let mut t = txn.open_table(RESOURCES)?;
            let key = (r.project.as_str(), r.kind.as_str(), r.name.as_str());
            let current: Resource = match t.get(key)? {
                Some(g) => decode("ctl_resources", g.value())?,
                None => return Err(not_found_resource(r.kind, &r.project, &r.name)),
            };
            let mut selector_moved = false;
            match (&current.spec, &r.spec) {
                (ResourceSpec::Volume(a), ResourceSpec::Volume(b)) if a.capacity != b.capacity => {
                    return Err(StoreError::Conflict(format!(
                        "rule: a volume's capacity cannot change; {}/{} stays {} (create a new \
                         volume for {})",
                        r.project, r.name, a.capacity, b.capacity
                    )));
                }
                (ResourceSpec::Volume(a), ResourceSpec::Volume(b))
                    if a.storage_class != b.storage_class =>
                {
                    return Err(StoreError::Conflict(format!(
                        "rule: a volume's storage class cannot change; {}/{} stays {}",
                        r.project, r.name, a.storage_class
                    )));
                }
                (ResourceSpec::LoadBalancer(a), ResourceSpec::LoadBalancer(b)) => {
                    if b.service_type == ServiceType::LoadBalancer {
                        let routes = referrers(&t, &r.project, ResourceKind::Routes, &r.name)?;
                        if !routes.is_empty() {
                            return Err(StoreError::Conflict(format!(
                                "rule: a route needs a ClusterIP load balancer; {} is used by \
                                 route {}, so it cannot become LoadBalancer",
                                r.name,
                                routes.join(", ")
                            )));
                        }
                    }
                    selector_moved = a.app_selector() != b.app_selector();
                }
                _ => {}
            }
            check_references(&txn, &t, r)?;
            let mut updated = r.clone();
            updated.created_at = current.created_at;
            t.insert(key, encode(&updated).as_slice())?;
            let mut changed = reapply_users(&txn, &t, r)?;
            // Pointed at another load balancer or app: it follows the apps it
            // serves now (and comes off the nodes where it serves none, by
            // its own reconcile).
            let followed = super::resource_rules::follow_apps(&txn, &t, r, now_secs())?;
            changed.extend(followed.into_iter().map(PublicationRef::Resource));
            if selector_moved {
                changed.extend(dependents_follow(&txn, &t, r)?);
            }
            keys = changed;
        }
        txn.commit()?;
        Ok(keys)
    }

    pub fn get_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Resource>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(RESOURCES)?;
        let v = t.get((project, kind.as_str(), name))?;
        v.map(|g| decode("ctl_resources", g.value())).transpose()
    }

    pub fn list_resources(&self, project: &str, kind: ResourceKind) -> Result<Vec<Resource>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(RESOURCES)?;
        list_kind(&t, project, kind)
    }

    /// Deletes a resource. Refused (naming the rule) while a published app uses
    /// it, while a volume is bound to a node and not released, and while a load
    /// balancer has EIPs or routes or its app is published.
    pub fn delete_resource(&self, project: &str, kind: ResourceKind, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut bindings = txn.open_table(BINDINGS)?;
            let (bound, released) = binding_nodes(&bindings, project, kind, name)?;
            if !bound.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "rule: a {} can only be deleted after it is released; {project}/{name} is \
                     still bound on {} (POST .../volumes/{name}/release)",
                    kind.singular(),
                    bound.join(", ")
                )));
            }
            let users = users_in_txn(&txn, project, kind, name)?;
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "rule: a resource in use cannot be deleted; {} {project}/{name} is used by \
                     published {}",
                    kind.singular(),
                    users.join(", ")
                )));
            }
            let mut t = txn.open_table(RESOURCES)?;
            let current: Resource = match t.get((project, kind.as_str(), name))? {
                Some(g) => decode("ctl_resources", g.value())?,
                None => return Err(not_found_resource(kind, project, name)),
            };
            refuse_while_published(&txn, &t, &current, project, kind, name)?;
            t.remove((project, kind.as_str(), name))?;
            for node in released {
                bindings.remove((project, node.as_str(), kind.as_str(), name))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Publications (as `app@node`) whose version uses the resource.
    pub fn resource_users(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<String>> {
        let txn = self.db.begin_write()?;
        let users = users_in_txn(&txn, project, kind, name)?;
        txn.abort()?;
        Ok(users)
    }
}

/// Nodes resource `name` is bound on, and nodes it was released from.
fn binding_nodes(
    bindings: &impl ReadableTable<
        (&'static str, &'static str, &'static str, &'static str),
        &'static [u8],
    >,
    project: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut bound = Vec::new();
    let mut released = Vec::new();
    for item in bindings.iter()? {
        let (k, v) = item?;
        let (p, node, kd, n) = k.value();
        if p == project && kd == kind.as_str() && n == name {
            let b: Binding = decode("ctl_bindings", v.value())?;
            match b.state {
                BindingState::Bound => bound.push(node.to_string()),
                BindingState::Released => released.push(node.to_string()),
            }
        }
    }
    Ok((bound, released))
}

/// A load balancer goes only when no EIP or route refers to it; any resource
/// only when it is published nowhere.
fn refuse_while_published(
    txn: &redb::WriteTransaction,
    t: &ResourceTable<'_>,
    current: &Resource,
    project: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<()> {
    if let ResourceSpec::LoadBalancer(_) = &current.spec {
        let mut refs = referrers(t, project, ResourceKind::Eips, name)?;
        refs.extend(referrers(t, project, ResourceKind::Routes, name)?);
        if !refs.is_empty() {
            return Err(StoreError::Conflict(format!(
                "rule: a load balancer in use cannot be deleted; {name} is used by {}",
                refs.join(", ")
            )));
        }
    }
    let nodes = super::resource_publications::published_on(txn, project, kind, name)?;
    if !nodes.is_empty() {
        return Err(StoreError::Conflict(format!(
            "rule: a resource is deleted only when it is published nowhere; {} {name} is \
             published on {} (POST /api/v1/projects/{project}/{kind}/{name}/unpublish first)",
            kind.singular(),
            nodes.join(", ")
        )));
    }
    Ok(())
}

pub(super) type ResourceTable<'t> =
    redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>;

pub(super) fn list_kind(
    t: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    project: &str,
    kind: ResourceKind,
) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    for item in t.range((project, kind.as_str(), "")..)? {
        let (k, v) = item?;
        let (p, kd, _) = k.value();
        if p != project || kd != kind.as_str() {
            break;
        }
        out.push(decode("ctl_resources", v.value())?);
    }
    Ok(out)
}

/// EIPs or routes (`kind`) that point at load balancer `lb`.
fn referrers(
    t: &ResourceTable<'_>,
    project: &str,
    kind: ResourceKind,
    lb: &str,
) -> Result<Vec<String>> {
    Ok(list_kind(t, project, kind)?
        .into_iter()
        .filter(|r| match &r.spec {
            ResourceSpec::Eip(e) => e.load_balancer() == Some(lb),
            ResourceSpec::Route(rt) => rt.load_balancer == lb,
            _ => false,
        })
        .map(|r| format!("{} {}", kind.singular(), r.name))
        .collect())
}

/// A load balancer's selector moved to other apps: the routes and EIPs in
/// front of it follow it too — their records apply again (and come off, by
/// their own reconciles, the nodes where they serve no app any more), and
/// they go on the nodes where the load balancer now follows an app.
fn dependents_follow(
    txn: &redb::WriteTransaction,
    t: &ResourceTable<'_>,
    lb: &Resource,
) -> Result<Vec<PublicationRef>> {
    let now = now_secs();
    let mut out = Vec::new();
    for kind in [ResourceKind::Routes, ResourceKind::Eips] {
        for r in list_kind(t, &lb.project, kind)? {
            let in_front = match &r.spec {
                ResourceSpec::Eip(e) => e.load_balancer() == Some(lb.name.as_str()),
                ResourceSpec::Route(rt) => rt.load_balancer == lb.name,
                _ => false,
            };
            if !in_front {
                continue;
            }
            out.extend(super::resource_publications::unapply(txn, &r, now)?);
            let followed = super::resource_rules::follow_apps(txn, t, &r, now)?;
            out.extend(followed.into_iter().map(PublicationRef::Resource));
        }
    }
    Ok(out)
}

pub(super) fn load_balancer(
    t: &ResourceTable<'_>,
    project: &str,
    name: &str,
) -> Result<Option<LoadBalancerSpec>> {
    let v = t.get((project, ResourceKind::LoadBalancers.as_str(), name))?;
    let r: Option<Resource> = v.map(|g| decode("ctl_resources", g.value())).transpose()?;
    Ok(r.and_then(|r| match r.spec {
        ResourceSpec::LoadBalancer(lb) => Some(lb),
        _ => None,
    }))
}

/// What a resource refers to must exist (and a route's load balancer must fit).
fn check_references(
    txn: &redb::WriteTransaction,
    t: &ResourceTable<'_>,
    r: &Resource,
) -> Result<()> {
    match &r.spec {
        ResourceSpec::LoadBalancer(lb) => {
            if let Some(app) = lb.owner_app() {
                let apps = txn.open_table(APPS)?;
                if apps.get((r.project.as_str(), app))?.is_none() {
                    return Err(ValidationError::one(
                        "app",
                        format!("no app {}/{app}; create it first", r.project),
                    )
                    .into());
                }
            }
        }
        ResourceSpec::Eip(e) => {
            if let Some(lb) = e.load_balancer() {
                if load_balancer(t, &r.project, lb)?.is_none() {
                    return Err(ValidationError::one(
                        "load_balancer",
                        format!("no load balancer {}/{lb}", r.project),
                    )
                    .into());
                }
            }
            super::eips::check_eip_rules(txn, t, &r.project, &r.name, e)?;
        }
        ResourceSpec::Route(rt) => {
            let Some(lb) = load_balancer(t, &r.project, &rt.load_balancer)? else {
                return Err(ValidationError::one(
                    "load_balancer",
                    format!("no load balancer {}/{}", r.project, rt.load_balancer),
                )
                .into());
            };
            if lb.service_type != ServiceType::ClusterIP {
                return Err(StoreError::Conflict(format!(
                    "rule: a route needs a ClusterIP load balancer; {} is LoadBalancer",
                    rt.load_balancer
                )));
            }
            if !lb.ports.iter().any(|p| p.port == rt.port) {
                return Err(ValidationError::one(
                    "port",
                    format!(
                        "load balancer {} has no port {} (it has {})",
                        rt.load_balancer,
                        rt.port,
                        lb.ports
                            .iter()
                            .map(|p| p.port.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// After a resource changed: publications whose objects include it apply
/// again. Marks them (applied = false) and returns their keys to trigger.
fn reapply_users(
    txn: &redb::WriteTransaction,
    t: &ResourceTable<'_>,
    r: &Resource,
) -> Result<Vec<PublicationRef>> {
    let mut apps: BTreeSet<String> = BTreeSet::new();
    for on_node in super::resource_rules::apps_by_node(txn, &r.project)?.into_values() {
        for a in on_node {
            if super::resource_rules::serves(t, r, &a.app, &a.spec)? {
                apps.insert(a.app);
            }
        }
    }
    let mut pubs = txn.open_table(PUBLICATIONS)?;
    let mut changed = Vec::new();
    for item in pubs.range((r.project.as_str(), "", "")..)? {
        let (k, v) = item?;
        let (p, app, _) = k.value();
        if p != r.project {
            break;
        }
        if !apps.contains(app) {
            continue;
        }
        let publication: Publication = decode("ctl_publications", v.value())?;
        if publication.desired == Desired::Published && publication.applied {
            changed.push(publication);
        }
    }
    let now = crate::clock::now_secs();
    let mut keys = Vec::new();
    for mut p in changed {
        p.applied = false;
        p.revision += 1;
        p.resources_generation += 1;
        p.record(
            PublicationState::Deploying,
            format!("{} {} changed; applying again", r.kind.singular(), r.name),
            now,
        );
        pubs.insert(
            (p.project.as_str(), p.app.as_str(), p.node.as_str()),
            encode(&p).as_slice(),
        )?;
        keys.push(PublicationRef::App(p.key()));
    }
    keys.extend(super::resource_publications::unapply(txn, r, now)?);
    Ok(keys)
}

/// Published apps (`app@node`) whose current version refers to the resource.
fn users_in_txn(
    txn: &redb::WriteTransaction,
    project: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<Vec<String>> {
    let pubs = txn.open_table(PUBLICATIONS)?;
    let versions = txn.open_table(VERSIONS)?;
    let mut users = Vec::new();
    for item in pubs.range((project, "", "")..)? {
        let (k, v) = item?;
        let (p, app, node) = k.value();
        if p != project {
            break;
        }
        let publication: Publication = decode("ctl_publications", v.value())?;
        if let Some(g) = versions.get((p, app, publication.version))? {
            let tv: TemplateVersion = decode("ctl_app_versions", g.value())?;
            if crate::resources::spec_uses(&tv.spec, kind, name) {
                users.push(format!("{app}@{node}"));
            }
        }
    }
    Ok(users)
}

pub(super) fn not_found_resource(kind: ResourceKind, project: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!("no {} {project}/{name}", kind.singular()))
}
