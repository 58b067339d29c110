//! Resources that travel with apps, in motion: what the reconciler applies
//! before and after a workload, what an unpublish with cascade takes away, and
//! releasing a volume from a node.
//!
//! Owns:
//! - the publish order: config maps, secrets, volumes before the workload;
//!   services (load balancers), EIPs, routes after it;
//! - the cascade plan: a resource used by another app published on the node is
//!   kept, and the answer says which and why; a volume is always kept (its
//!   data goes only by an explicit release);
//! - `ResourceError`, which `reconcile` and `api` turn into their own errors;
//! - what an app's new version leaves on its node (`left_behind`).
//!
//! Secret values are only opened here, to render the Secret object.
//!
//! Must not touch: redb (through `store`), HTTP (the collections are in
//! `api`), the publication state machine (`reconcile` calls in here at fixed
//! points, passing the store and the deployer).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::now_secs;
use crate::deploy::{DeployError, DeployTarget, Deployer, OwnerSelector};
use crate::model::{AppSpec, Desired, Node, Publication};
use crate::render;
use crate::resources::{
    spec_resources, spec_uses, EipTarget, LoadBalancerSpec, Resource, ResourceKind,
    ResourcePublicationKey, ResourceSpec,
};
use crate::secrets::SecretBox;
use crate::store::{ControllerStore, StoreError};

mod left_behind;
pub use self::left_behind::{left_behind, take_down, take_off_now};

/// What stops a resource step; the reconciler and the API turn it into theirs.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// A resource the app uses cannot be put on the node: it does not exist,
    /// or its secret values cannot be opened.
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

/// Renders a publication's resources; holds the key that opens secret values.
pub struct ResourceRenderer {
    secrets: Option<SecretBox>,
}

fn missing(kind: ResourceKind, p: &Publication, name: &str) -> ResourceError {
    ResourceError::Unusable(format!(
        "{} {}/{name} used by {} does not exist; create it (POST /api/v1/projects/{}/{})",
        kind.singular(),
        p.project,
        p.app,
        p.project,
        kind.as_str()
    ))
}

/// A resource's object an app's apply carries.
pub struct Carried {
    pub kind: ResourceKind,
    pub name: String,
    pub object: Value,
}

async fn load_balancer_of(
    store: &dyn ControllerStore,
    project: &str,
    name: &str,
) -> Result<LoadBalancerSpec, ResourceError> {
    let (p, n) = (project.to_string(), name.to_string());
    let r = store
        .get_resource(&p, ResourceKind::LoadBalancers, &n)
        .await?;
    match r.map(|r| r.spec) {
        Some(ResourceSpec::LoadBalancer(lb)) => Ok(lb),
        _ => Err(ResourceError::Unusable(format!(
            "load balancer {project}/{name} does not exist"
        ))),
    }
}

/// What an unpublish with cascade does on a node: resources to remove, and
/// those kept with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CascadePlan {
    pub remove: Vec<(ResourceKind, String)>,
    pub kept: Vec<String>,
}

/// Pure: which of `spec`'s resources go with `app` from `node`, given the other
/// apps published there (`others`: app -> spec).
pub fn cascade_plan(
    app: &str,
    node: &str,
    spec: &AppSpec,
    others: &BTreeMap<String, AppSpec>,
) -> CascadePlan {
    let mut plan = CascadePlan::default();
    for (kind, name) in spec_resources(spec) {
        if kind == ResourceKind::Volumes {
            // Data loss is explicit: a volume goes only by its own release.
            plan.kept.push(format!(
                "volume {name} kept on {node} with its data: release it on its own \
                 (maintainer role, \"confirm\": \"{name}\")"
            ));
            continue;
        }
        let users: Vec<&str> = others
            .iter()
            .filter(|(a, s)| a.as_str() != app && spec_uses(s, kind, &name))
            .map(|(a, _)| a.as_str())
            .collect();
        if users.is_empty() {
            plan.remove.push((kind, name));
        } else {
            plan.kept.push(format!(
                "{} {name} kept on {node}: still used by {}",
                kind.singular(),
                users.join(", ")
            ));
        }
    }
    plan
}

pub fn resource_selector(
    project: &str,
    node: &str,
    kind: ResourceKind,
    name: &str,
) -> OwnerSelector {
    OwnerSelector {
        namespace: project.into(),
        labels: render::resource_selector_labels(project, node, kind, name),
    }
}

impl ResourceRenderer {
    pub fn new(secrets: Option<SecretBox>) -> Self {
        ResourceRenderer { secrets }
    }

    /// The object of one resource on a node (an EIP or route names its load
    /// balancer's Service there, and goes with the one app it binds by name).
    pub async fn render_resource(
        &self,
        store: &dyn ControllerStore,
        r: &Resource,
        node: &Node,
    ) -> Result<Value, ResourceError> {
        let (project, name) = (r.project.as_str(), r.name.as_str());
        Ok(match &r.spec {
            ResourceSpec::ConfigMap(c) => render::render_config_map(project, name, &c.data, node),
            ResourceSpec::Secret(sec) => {
                let key = self.secrets.as_ref().ok_or_else(|| {
                    ResourceError::Unusable(
                        "secrets cannot be opened: no controller.secret_key is configured".into(),
                    )
                })?;
                let mut plain = BTreeMap::new();
                for (k, v) in &sec.data {
                    let value = key
                        .open(&format!("{project}/{name}/{k}"), v)
                        .map_err(|e| ResourceError::Unusable(e.to_string()))?;
                    plain.insert(k.clone(), value);
                }
                render::render_secret(project, name, &plain, node)
            }
            ResourceSpec::Volume(v) => render::render_volume_claim(project, name, v, node),
            ResourceSpec::LoadBalancer(lb) => render::render_service(project, name, lb, node),
            ResourceSpec::Eip(e) => {
                let (p, n, nd) = (project.to_string(), name.to_string(), node.name.clone());
                let held = store.eip_address(&p, &n, &nd).await?;
                let address = held.or_else(|| e.address.clone()).ok_or_else(|| {
                    ResourceError::Unusable(format!(
                        "EIP {project}/{name} holds no address on {} yet",
                        node.name
                    ))
                })?;
                let owner = match e.target() {
                    Some(EipTarget::LoadBalancer(lb)) => load_balancer_of(store, project, lb)
                        .await?
                        .owner_app()
                        .map(str::to_string),
                    Some(EipTarget::Selector(sel)) => sel.get("app").cloned(),
                    _ => None,
                };
                render::render_eip(project, name, e, &address, owner.as_deref(), node)
            }
            ResourceSpec::Route(rt) => {
                let lb = load_balancer_of(store, project, &rt.load_balancer).await?;
                render::render_route(project, name, rt, lb.owner_app(), node)
            }
        })
    }

    /// Config maps, secrets and volume claims the workload needs, in that order.
    pub async fn before_workload(
        &self,
        store: &dyn ControllerStore,
        p: &Publication,
        spec: &AppSpec,
        node: &Node,
    ) -> Result<Vec<Carried>, ResourceError> {
        let mut out = Vec::new();
        // spec_resources sorts by kind: config maps, secrets, volumes.
        for (kind, name) in spec_resources(spec) {
            let (proj, n) = (p.project.clone(), name.clone());
            let r = store
                .get_resource(&proj, kind, &n)
                .await?
                .ok_or_else(|| missing(kind, p, &name))?;
            let object = self.render_resource(store, &r, node).await?;
            out.push(Carried { kind, name, object });
        }
        Ok(out)
    }

    /// Services of the load balancers binding the app, then their EIPs, then
    /// routes: those published on the node.
    pub async fn after_workload(
        &self,
        store: &dyn ControllerStore,
        p: &Publication,
        spec: &AppSpec,
        node: &Node,
    ) -> Result<Vec<Carried>, ResourceError> {
        let (proj, nd) = (p.project.clone(), p.node.clone());
        let lbs = store
            .list_resources(&proj, ResourceKind::LoadBalancers)
            .await?;
        let eips = store.list_resources(&proj, ResourceKind::Eips).await?;
        let routes = store.list_resources(&proj, ResourceKind::Routes).await?;
        if lbs.is_empty() && eips.is_empty() && routes.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = store.resources_wanted_on_node(&proj, &nd).await?;
        let here = |r: &Resource| wanted.contains(&(r.kind, r.name.clone()));
        let mine: BTreeSet<String> = lbs
            .iter()
            .filter(|r| here(r))
            .filter(|r| {
                matches!(&r.spec, ResourceSpec::LoadBalancer(lb) if lb.binds(&p.app, &spec.labels))
            })
            .map(|r| r.name.clone())
            .collect();
        let mut out = Vec::new();
        for r in lbs.iter().filter(|r| mine.contains(&r.name)) {
            out.push(self.carry(store, r, node).await?);
        }
        for r in eips.iter().chain(routes.iter()).filter(|r| here(r)) {
            let on = match &r.spec {
                ResourceSpec::Eip(e) if e.binds(&p.app, &spec.labels) => {
                    out.push(self.carry(store, r, node).await?);
                    continue;
                }
                ResourceSpec::Eip(e) => e.load_balancer(),
                ResourceSpec::Route(rt) => Some(rt.load_balancer.as_str()),
                _ => continue,
            };
            if on.is_some_and(|o| mine.contains(o)) {
                out.push(self.carry(store, r, node).await?);
            }
        }
        Ok(out)
    }

    async fn carry(
        &self,
        store: &dyn ControllerStore,
        r: &Resource,
        node: &Node,
    ) -> Result<Carried, ResourceError> {
        Ok(Carried {
            kind: r.kind,
            name: r.name.clone(),
            object: self.render_resource(store, r, node).await?,
        })
    }

    /// After an apply: the app's volumes are bound on the node.
    pub async fn record_bindings(
        &self,
        store: &dyn ControllerStore,
        p: &Publication,
        spec: &AppSpec,
    ) -> Result<(), ResourceError> {
        for (kind, name) in spec_resources(spec) {
            if kind == ResourceKind::Volumes {
                let (proj, node) = (p.project.clone(), p.node.clone());
                store.bind(&proj, &node, kind, &name, now_secs()).await?;
            }
        }
        Ok(())
    }

    /// With cascade: removes the resources only this app used on the node
    /// (volumes stay, with their data, until released); returns in words what was kept and why.
    /// Network resources no app left there is served by go either way. Each
    /// goes by compare-and-swap on its record (`take_off_now`).
    pub async fn on_unpublish(
        &self,
        store: &dyn ControllerStore,
        deployer: &dyn Deployer,
        p: &Publication,
        cascade: bool,
        target: &DeployTarget,
    ) -> Result<String, ResourceError> {
        let (proj, node) = (p.project.clone(), p.node.clone());
        let alone = store.network_left_alone(&proj, &node).await?;
        let why = format!("went with app {}", p.app);
        take_off_now(store, deployer, target, alone, &why).await?;
        if !cascade {
            return Ok(String::new());
        }
        let plan = plan_for(store, p).await?;
        let mut records = Vec::new();
        for (kind, name) in &plan.remove {
            let k = ResourcePublicationKey {
                project: p.project.clone(),
                kind: *kind,
                name: name.clone(),
                node: p.node.clone(),
            };
            match store.get_resource_publication(&k).await? {
                Some(rp) => records.push(rp),
                // No record to guard: nothing else wants it there.
                None => {
                    deployer
                        .remove(target, &resource_selector(&p.project, &p.node, *kind, name))
                        .await?
                }
            }
        }
        let why = format!("went with app {} (cascade)", p.app);
        take_off_now(store, deployer, target, records, &why).await?;
        Ok(plan.kept.join("; "))
    }
}

async fn plan_for(store: &dyn ControllerStore, p: &Publication) -> Result<CascadePlan, StoreError> {
    let (proj, node) = (p.project.clone(), p.node.clone());
    let on_node = store.published_specs_on_node(&proj, &node).await?;
    let Some((_, spec)) = on_node.get(&p.app).cloned() else {
        return Ok(CascadePlan::default());
    };
    let others: BTreeMap<String, AppSpec> = on_node
        .into_iter()
        .filter(|(a, (pp, _))| *a != p.app && pp.desired == Desired::Published)
        .map(|(a, (_, s))| (a, s))
        .collect();
    Ok(cascade_plan(&p.app, &p.node, &spec, &others))
}

/// The cascade plans of an unpublish request, for its answer.
pub async fn preview_cascade(
    store: &dyn ControllerStore,
    pubs: &[Publication],
) -> Result<Vec<String>, StoreError> {
    let mut kept = Vec::new();
    for p in pubs {
        kept.extend(plan_for(store, p).await?.kept);
    }
    Ok(kept)
}

/// Removes a volume's claim from `node` (its data goes with it) and marks it
/// released. Refused while an app using it is published there.
pub async fn release_volume(
    store: &dyn ControllerStore,
    deployer: &dyn Deployer,
    project: &str,
    node: &str,
    name: &str,
) -> Result<(), ResourceError> {
    let kind = ResourceKind::Volumes;
    let (p, n, nd) = (project.to_string(), name.to_string(), node.to_string());
    store.check_release(&p, &nd, &n).await?;
    let node_rec = store.get_node(&nd).await?;
    let cluster = match &node_rec {
        Some(nr) => store.get_cluster(&nr.cluster).await?,
        None => None,
    };
    let target = node_rec.zip(cluster);
    // A node that is gone has nothing left to remove.
    if let Some((node_rec, cluster)) = target {
        let target = DeployTarget {
            node: node_rec,
            cluster,
        };
        deployer
            .remove(&target, &resource_selector(project, node, kind, name))
            .await?;
    }
    let (p, n, nd) = (project.to_string(), name.to_string(), node.to_string());
    store.mark_released(&p, &nd, kind, &n).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Volume, WorkloadKind};
    use std::collections::BTreeSet;

    fn spec_with(config_maps: &[&str], volumes: &[&str]) -> AppSpec {
        let mut vols: Vec<Volume> = config_maps
            .iter()
            .map(|c| Volume {
                name: format!("cm-{c}"),
                config_map: Some(c.to_string()),
                ..Volume::default()
            })
            .collect();
        vols.extend(volumes.iter().map(|v| Volume {
            name: format!("v-{v}"),
            persistent_volume_claim: Some(v.to_string()),
            ..Volume::default()
        }));
        AppSpec {
            kind: WorkloadKind::Deployment,
            containers: vec![],
            volumes: vols,
            replicas: None,
            schedule: None,
            restart_policy: None,
            labels: BTreeMap::new(),
            run_as_user: None,
            run_as_group: None,
        }
    }

    #[test]
    fn cascade_keeps_what_others_use() {
        let web = spec_with(&["settings", "web-only"], &["data"]);
        let others = BTreeMap::from([
            ("api".to_string(), spec_with(&["settings"], &[])),
            ("db".to_string(), spec_with(&[], &["data"])),
        ]);
        let plan = cascade_plan("web", "n1", &web, &others);
        assert_eq!(
            plan.remove,
            vec![(ResourceKind::ConfigMaps, "web-only".to_string())]
        );
        assert_eq!(
            plan.kept,
            vec![
                "config map settings kept on n1: still used by api".to_string(),
                "volume data kept on n1 with its data: release it on its own (maintainer \
                 role, \"confirm\": \"data\")"
                    .to_string()
            ]
        );
        // Alone on the node, a volume still stays: its data goes only by release.
        let alone = cascade_plan("web", "n1", &web, &BTreeMap::new());
        assert_eq!(alone.remove.len(), 2);
        let set: BTreeSet<_> = alone.remove.iter().map(|(k, _)| *k).collect();
        assert!(!set.contains(&ResourceKind::Volumes));
        assert_eq!(alone.kept.len(), 1, "{:?}", alone.kept);
    }
}
