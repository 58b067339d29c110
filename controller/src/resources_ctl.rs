//! Resources that travel with apps, in motion: their API collections, what the
//! reconciler applies before and after a workload, and what an unpublish with
//! cascade takes away.
//!
//! Owns:
//! - `/api/v1/projects/{project}/{loadbalancers|eips|routes|configmaps|secrets|volumes}`
//!   (POST/GET, and GET/PUT/DELETE on `/{name}`), plus
//!   `POST .../volumes/{name}/release {"node"}` and `.../unbind {"node"}`;
//! - the publish order: config maps, secrets, volumes before the workload;
//!   services (load balancers), EIPs, routes after it;
//! - the cascade plan: a resource used by another app published on the node is
//!   kept, and the answer says which and why.
//!
//! Secret values are sealed when they arrive and only opened to render the
//! Secret object; no API answer contains them.
//!
//! Must not touch: redb (through `store`), the publication state machine
//! (`reconcile` calls in here at fixed points).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{check_project, ApiError, Body};
use crate::deploy::{DeployTarget, OwnerSelector};
use crate::model::{AppSpec, Desired, Node, Publication};
use crate::ports::CtlAction;
use crate::reconcile::{now_secs, Context, ReconcileError};
use crate::render;
use crate::resources::{
    spec_resources, spec_uses, Binding, ConfigMapSpec, EipSpec, LoadBalancerSpec, Resource,
    ResourceKind, ResourceSpec, RouteSpec, SecretSpec, VolumeSpec,
};
use crate::secrets::SecretBox;
use crate::ControllerState;

/// Renders a publication's resources; holds the key that opens secret values.
pub struct ResourceRenderer {
    secrets: Option<SecretBox>,
}

fn missing(kind: ResourceKind, p: &Publication, name: &str) -> ReconcileError {
    ReconcileError::Resource(format!(
        "{} {}/{name} used by {} does not exist; create it (POST /api/v1/projects/{}/{})",
        kind.singular(),
        p.project,
        p.app,
        p.project,
        kind.as_str()
    ))
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

fn resource_selector(project: &str, node: &str, kind: ResourceKind, name: &str) -> OwnerSelector {
    OwnerSelector {
        namespace: project.into(),
        labels: render::resource_selector_labels(project, node, kind, name),
    }
}

impl ResourceRenderer {
    pub fn new(secrets: Option<SecretBox>) -> Self {
        ResourceRenderer { secrets }
    }

    /// Config maps, secrets and volume claims the workload needs, in that order.
    pub async fn before_workload(
        &self,
        ctx: &Context,
        p: &Publication,
        spec: &AppSpec,
        node: &Node,
    ) -> Result<Vec<Value>, ReconcileError> {
        let mut out = Vec::new();
        // spec_resources sorts by kind: config maps, secrets, volumes.
        for (kind, name) in spec_resources(spec) {
            let (proj, n) = (p.project.clone(), name.clone());
            let r = ctx
                .db(move |s| s.get_resource(&proj, kind, &n))
                .await?
                .ok_or_else(|| missing(kind, p, &name))?;
            match &r.spec {
                ResourceSpec::ConfigMap(c) => {
                    out.push(render::render_config_map(&p.project, &name, &c.data, node))
                }
                ResourceSpec::Secret(sec) => {
                    let key = self.secrets.as_ref().ok_or_else(|| {
                        ReconcileError::Resource(
                            "secrets cannot be opened: no controller.secret_key is configured"
                                .into(),
                        )
                    })?;
                    let mut plain = BTreeMap::new();
                    for (k, v) in &sec.data {
                        let value = key
                            .open(&format!("{}/{name}/{k}", p.project), v)
                            .map_err(|e| ReconcileError::Resource(e.to_string()))?;
                        plain.insert(k.clone(), value);
                    }
                    out.push(render::render_secret(&p.project, &name, &plain, node));
                }
                ResourceSpec::Volume(v) => {
                    out.push(render::render_volume_claim(&p.project, &name, v, node))
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Services of the app's load balancers, then their EIPs, then routes.
    pub async fn after_workload(
        &self,
        ctx: &Context,
        p: &Publication,
        node: &Node,
    ) -> Result<Vec<Value>, ReconcileError> {
        let proj = p.project.clone();
        let (lbs, eips, routes) = ctx
            .db(move |s| {
                Ok((
                    s.list_resources(&proj, ResourceKind::LoadBalancers)?,
                    s.list_resources(&proj, ResourceKind::Eips)?,
                    s.list_resources(&proj, ResourceKind::Routes)?,
                ))
            })
            .await?;
        let mine: BTreeMap<String, LoadBalancerSpec> = lbs
            .into_iter()
            .filter_map(|r| match r.spec {
                ResourceSpec::LoadBalancer(lb) if lb.app == p.app => Some((r.name, lb)),
                _ => None,
            })
            .collect();
        let mut out: Vec<Value> = mine
            .iter()
            .map(|(name, lb)| render::render_service(&p.project, name, lb, node))
            .collect();
        for r in eips {
            if let ResourceSpec::Eip(e) = &r.spec {
                if mine.contains_key(&e.load_balancer) {
                    out.push(render::render_eip(&p.project, &r.name, e, &p.app, node));
                }
            }
        }
        for r in routes {
            if let ResourceSpec::Route(rt) = &r.spec {
                if mine.contains_key(&rt.load_balancer) {
                    out.push(render::render_route(&p.project, &r.name, rt, &p.app, node));
                }
            }
        }
        Ok(out)
    }

    /// After an apply: the app's volumes are bound on the node.
    pub async fn record_bindings(
        &self,
        ctx: &Context,
        p: &Publication,
        spec: &AppSpec,
    ) -> Result<(), ReconcileError> {
        for (kind, name) in spec_resources(spec) {
            if kind == ResourceKind::Volumes {
                let (proj, node) = (p.project.clone(), p.node.clone());
                ctx.db(move |s| s.bind(&proj, &node, kind, &name, now_secs()))
                    .await?;
            }
        }
        Ok(())
    }

    /// With cascade: removes the resources only this app used on the node
    /// (volumes are released); returns in words what was kept and why.
    pub async fn on_unpublish(
        &self,
        ctx: &Context,
        p: &Publication,
        cascade: bool,
        target: &DeployTarget,
    ) -> Result<String, ReconcileError> {
        if !cascade {
            return Ok(String::new());
        }
        let plan = plan_for(ctx, p).await?;
        for (kind, name) in &plan.remove {
            ctx.deployer
                .remove(target, &resource_selector(&p.project, &p.node, *kind, name))
                .await?;
            if *kind == ResourceKind::Volumes {
                let (proj, node, n) = (p.project.clone(), p.node.clone(), name.clone());
                ctx.db(move |s| s.mark_released(&proj, &node, ResourceKind::Volumes, &n))
                    .await?;
            }
        }
        Ok(plan.kept.join("; "))
    }
}

async fn plan_for(ctx: &Context, p: &Publication) -> Result<CascadePlan, ReconcileError> {
    let (proj, node) = (p.project.clone(), p.node.clone());
    let on_node = ctx
        .db(move |s| s.published_specs_on_node(&proj, &node))
        .await?;
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
    state: &ControllerState,
    pubs: &[Publication],
) -> Result<Vec<String>, ApiError> {
    let mut kept = Vec::new();
    for p in pubs {
        let plan = plan_for(state.context(), p)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        kept.extend(plan.kept);
    }
    Ok(kept)
}

// ----- API ------------------------------------------------------------------------

/// A resource as the API shows it. Secrets show their keys, never values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceView {
    pub project: String,
    pub name: String,
    pub kind: ResourceKind,
    pub spec: Value,
    pub created_at: u64,
    pub updated_at: u64,
    /// Published apps using it (`app@node`); config maps, secrets, volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
    /// Nodes a volume is bound on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
}

fn view(r: &Resource, used_by: Vec<String>, bindings: Vec<Binding>) -> ResourceView {
    let spec = match &r.spec {
        ResourceSpec::Secret(s) => serde_json::json!({ "keys": s.data.keys().collect::<Vec<_>>() }),
        ResourceSpec::LoadBalancer(x) => serde_json::to_value(x).unwrap_or_default(),
        ResourceSpec::Eip(x) => serde_json::to_value(x).unwrap_or_default(),
        ResourceSpec::Route(x) => serde_json::to_value(x).unwrap_or_default(),
        ResourceSpec::ConfigMap(x) => serde_json::to_value(x).unwrap_or_default(),
        ResourceSpec::Volume(x) => serde_json::to_value(x).unwrap_or_default(),
    };
    ResourceView {
        project: r.project.clone(),
        name: r.name.clone(),
        kind: r.kind,
        spec,
        created_at: r.created_at,
        updated_at: r.updated_at,
        used_by,
        bindings,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretInput {
    #[serde(default)]
    data: BTreeMap<String, String>,
}

fn bad_body(kind: ResourceKind, e: serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("this is not a valid {}: {e}", kind.singular()))
}

/// Reads `{"name": ..., <spec fields>}` (name from the path on PUT).
fn parse_input(
    state: &ControllerState,
    project: &str,
    kind: ResourceKind,
    path_name: Option<&str>,
    body: Value,
) -> Result<Resource, ApiError> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::BadRequest("send a JSON object".into()));
    };
    let body_name = fields
        .remove("name")
        .and_then(|v| v.as_str().map(str::to_string));
    let name = match (path_name, body_name) {
        (Some(p), Some(b)) if p != b => {
            return Err(ApiError::BadRequest(format!(
                "the name in the body ({b}) differs from the one in the URL ({p})"
            )))
        }
        (Some(p), _) => p.to_string(),
        (None, Some(b)) => b,
        (None, None) => {
            return Err(ApiError::BadRequest(
                "name: give the resource a name".into(),
            ))
        }
    };
    let rest = Value::Object(fields);
    let spec = match kind {
        ResourceKind::LoadBalancers => ResourceSpec::LoadBalancer(
            serde_json::from_value::<LoadBalancerSpec>(rest).map_err(|e| bad_body(kind, e))?,
        ),
        ResourceKind::Eips => ResourceSpec::Eip(
            serde_json::from_value::<EipSpec>(rest).map_err(|e| bad_body(kind, e))?,
        ),
        ResourceKind::Routes => ResourceSpec::Route(
            serde_json::from_value::<RouteSpec>(rest).map_err(|e| bad_body(kind, e))?,
        ),
        ResourceKind::ConfigMaps => ResourceSpec::ConfigMap(
            serde_json::from_value::<ConfigMapSpec>(rest).map_err(|e| bad_body(kind, e))?,
        ),
        ResourceKind::Volumes => ResourceSpec::Volume(
            serde_json::from_value::<VolumeSpec>(rest).map_err(|e| bad_body(kind, e))?,
        ),
        ResourceKind::Secrets => {
            let input: SecretInput = serde_json::from_value(rest).map_err(|e| bad_body(kind, e))?;
            for k in input.data.keys() {
                crate::resources::validate_data_key(k)
                    .map_err(|m| ApiError::BadRequest(format!("data.{k}: {m}")))?;
            }
            let key = state.secrets().ok_or_else(|| {
                ApiError::Conflict(
                    "secrets cannot be stored: no controller.secret_key is configured".into(),
                )
            })?;
            let mut data = BTreeMap::new();
            for (k, v) in input.data {
                let sealed = key
                    .seal(&format!("{project}/{name}/{k}"), v.as_bytes())
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                data.insert(k, sealed);
            }
            ResourceSpec::Secret(SecretSpec { data })
        }
    };
    let now = now_secs();
    Ok(Resource {
        project: project.into(),
        name,
        kind,
        spec,
        created_at: now,
        updated_at: now,
    })
}

async fn load_view(
    state: &ControllerState,
    project: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<ResourceView, ApiError> {
    let (p, n) = (project.to_string(), name.to_string());
    let (r, users, bindings) = state
        .context()
        .db(move |s| {
            let r = s.get_resource(&p, kind, &n)?;
            let users = match kind {
                ResourceKind::ConfigMaps | ResourceKind::Secrets | ResourceKind::Volumes => {
                    s.resource_users(&p, kind, &n)?
                }
                _ => Vec::new(),
            };
            let bindings: Vec<Binding> = s
                .list_bindings(&p)?
                .into_iter()
                .filter(|b| b.kind == kind && b.name == n)
                .collect();
            Ok((r, users, bindings))
        })
        .await?;
    let r =
        r.ok_or_else(|| ApiError::NotFound(format!("no {} {project}/{name}", kind.singular())))?;
    Ok(view(&r, users, bindings))
}

async fn create(
    kind: ResourceKind,
    state: ControllerState,
    headers: HeaderMap,
    project: String,
    body: Value,
) -> Result<(StatusCode, Json<ResourceView>), ApiError> {
    check_project(&project)?;
    let actor = state
        .authorizer()
        .authorize(&headers, Some(&project), CtlAction::Write)
        .map_err(ApiError::Auth)?;
    let r = parse_input(&state, &project, kind, None, body)?;
    let name = r.name.clone();
    let r2 = r.clone();
    let result = state
        .context()
        .db(move |s| s.create_resource(&r2))
        .await
        .map_err(ApiError::from);
    audit(
        &state,
        &actor.name,
        &project,
        kind,
        "create",
        &name,
        &result,
    );
    result?;
    Ok((StatusCode::CREATED, Json(view(&r, Vec::new(), Vec::new()))))
}

fn audit<T>(
    state: &ControllerState,
    actor: &str,
    project: &str,
    kind: ResourceKind,
    action: &str,
    name: &str,
    result: &Result<T, ApiError>,
) {
    let outcome = match result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    state.context().audit.record(
        actor,
        project,
        &format!("{}.{action}", kind.as_str()),
        name,
        &outcome,
    );
}

async fn list(
    kind: ResourceKind,
    state: ControllerState,
    headers: HeaderMap,
    project: String,
) -> Result<Json<Vec<ResourceView>>, ApiError> {
    check_project(&project)?;
    state
        .authorizer()
        .authorize(&headers, Some(&project), CtlAction::Read)
        .map_err(ApiError::Auth)?;
    let all = state
        .context()
        .db(move |s| s.list_resources(&project, kind))
        .await?;
    Ok(Json(
        all.iter()
            .map(|r| view(r, Vec::new(), Vec::new()))
            .collect(),
    ))
}

async fn get_one(
    kind: ResourceKind,
    state: ControllerState,
    headers: HeaderMap,
    project: String,
    name: String,
) -> Result<Json<ResourceView>, ApiError> {
    check_project(&project)?;
    state
        .authorizer()
        .authorize(&headers, Some(&project), CtlAction::Read)
        .map_err(ApiError::Auth)?;
    Ok(Json(load_view(&state, &project, kind, &name).await?))
}

async fn update(
    kind: ResourceKind,
    state: ControllerState,
    headers: HeaderMap,
    project: String,
    name: String,
    body: Value,
) -> Result<Json<ResourceView>, ApiError> {
    check_project(&project)?;
    let actor = state
        .authorizer()
        .authorize(&headers, Some(&project), CtlAction::Write)
        .map_err(ApiError::Auth)?;
    let r = parse_input(&state, &project, kind, Some(&name), body)?;
    let result = state
        .context()
        .db(move |s| s.update_resource(&r))
        .await
        .map_err(ApiError::from);
    audit(
        &state,
        &actor.name,
        &project,
        kind,
        "update",
        &name,
        &result,
    );
    for key in result? {
        state.trigger(key);
    }
    Ok(Json(load_view(&state, &project, kind, &name).await?))
}

async fn delete(
    kind: ResourceKind,
    state: ControllerState,
    headers: HeaderMap,
    project: String,
    name: String,
) -> Result<StatusCode, ApiError> {
    check_project(&project)?;
    let actor = state
        .authorizer()
        .authorize(&headers, Some(&project), CtlAction::Write)
        .map_err(ApiError::Auth)?;
    let (p, n) = (project.clone(), name.clone());
    let result = state
        .context()
        .db(move |s| s.delete_resource(&p, kind, &n))
        .await
        .map_err(ApiError::from);
    audit(
        &state,
        &actor.name,
        &project,
        kind,
        "delete",
        &name,
        &result,
    );
    result?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeInput {
    node: String,
}

/// Removes the volume's claim from the node (its data goes with it) and marks
/// it released. Refused while an app using it is published there.
async fn release(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
    Body(input): Body<NodeInput>,
) -> Result<Json<ResourceView>, ApiError> {
    check_project(&project)?;
    let actor = state
        .authorizer()
        .authorize(&headers, Some(&project), CtlAction::Write)
        .map_err(ApiError::Auth)?;
    let kind = ResourceKind::Volumes;
    let (p, n, node) = (project.clone(), name.clone(), input.node.clone());
    let checked = state
        .context()
        .db(move |s| {
            s.check_release(&p, &node, &n)?;
            let node_rec = s.get_node(&node)?;
            let cluster = match &node_rec {
                Some(nr) => s.get_cluster(&nr.cluster)?,
                None => None,
            };
            Ok(node_rec.zip(cluster))
        })
        .await
        .map_err(ApiError::from);
    let result = match checked {
        Ok(Some((node, cluster))) => {
            let target = DeployTarget { node, cluster };
            state
                .context()
                .deployer
                .remove(
                    &target,
                    &resource_selector(&project, &input.node, kind, &name),
                )
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
        // The node is gone: nothing left to remove there.
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    let result = match result {
        Ok(()) => {
            let (p, n, node) = (project.clone(), name.clone(), input.node.clone());
            state
                .context()
                .db(move |s| s.mark_released(&p, &node, kind, &n))
                .await
                .map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    audit(
        &state,
        &actor.name,
        &project,
        kind,
        "release",
        &format!("{name}@{}", input.node),
        &result,
    );
    result?;
    Ok(Json(load_view(&state, &project, kind, &name).await?))
}

async fn unbind(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
    Body(input): Body<NodeInput>,
) -> Result<Json<ResourceView>, ApiError> {
    check_project(&project)?;
    let actor = state
        .authorizer()
        .authorize(&headers, Some(&project), CtlAction::Write)
        .map_err(ApiError::Auth)?;
    let (p, n, node) = (project.clone(), name.clone(), input.node.clone());
    let result = state
        .context()
        .db(move |s| s.unbind(&p, &node, &n))
        .await
        .map_err(ApiError::from);
    audit(
        &state,
        &actor.name,
        &project,
        ResourceKind::Volumes,
        "unbind",
        &format!("{name}@{}", input.node),
        &result,
    );
    result?;
    Ok(Json(
        load_view(&state, &project, ResourceKind::Volumes, &name).await?,
    ))
}

/// Routes of the resource collections.
pub fn routes() -> Router<ControllerState> {
    let mut router = Router::new();
    for kind in ResourceKind::ALL {
        let collection = format!("/api/v1/projects/{{project}}/{}", kind.as_str());
        router = router
            .route(
                &collection,
                post(
                    move |State(s): State<ControllerState>,
                          h: HeaderMap,
                          Path(p): Path<String>,
                          Body(b): Body<Value>| create(kind, s, h, p, b),
                )
                .get(
                    move |State(s): State<ControllerState>, h: HeaderMap, Path(p): Path<String>| {
                        list(kind, s, h, p)
                    },
                ),
            )
            .route(
                &format!("{collection}/{{name}}"),
                get(
                    move |State(s): State<ControllerState>,
                          h: HeaderMap,
                          Path((p, n)): Path<(String, String)>| {
                        get_one(kind, s, h, p, n)
                    },
                )
                .put(
                    move |State(s): State<ControllerState>,
                          h: HeaderMap,
                          Path((p, n)): Path<(String, String)>,
                          Body(b): Body<Value>| update(kind, s, h, p, n, b),
                )
                .delete(
                    move |State(s): State<ControllerState>,
                          h: HeaderMap,
                          Path((p, n)): Path<(String, String)>| {
                        delete(kind, s, h, p, n)
                    },
                ),
            );
    }
    router
        .route(
            "/api/v1/projects/{project}/volumes/{name}/release",
            post(release),
        )
        .route(
            "/api/v1/projects/{project}/volumes/{name}/unbind",
            post(unbind),
        )
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
                "volume data kept on n1: still used by db".to_string()
            ]
        );
        let alone = cascade_plan("web", "n1", &web, &BTreeMap::new());
        assert_eq!(alone.remove.len(), 3);
        let set: BTreeSet<_> = alone.remove.iter().map(|(k, _)| *k).collect();
        assert!(set.contains(&ResourceKind::Volumes));
    }
}
