//! The collections of resources that travel with apps:
//! `/api/v1/projects/{project}/{loadbalancers|eips|routes|configmaps|secrets|volumes}`
//! (POST/GET, and GET/PUT/DELETE on `/{name}`), plus
//! `POST .../volumes/{name}/release {"node"}` and `.../unbind {"node"}`.
//!
//! Owns: their bodies (a spec's fields beside its name), sealing secret values
//! as they arrive (no answer contains them), and audit records. Must not
//! touch: what a resource does on a node (see `resources_ctl`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::now_secs;
use crate::ports::CtlAction;
use crate::resources::{
    Binding, ConfigMapSpec, EipSpec, LoadBalancerSpec, Resource, ResourceKind, ResourcePublication,
    ResourceSpec, RouteSpec, SecretSpec, VolumeSpec,
};
use crate::state::ControllerState;

use super::{check_project, ApiError, Body, Routes};

/// A resource as the API shows it. Secrets show their keys, never values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceView {
    pub project: String,
    pub name: String,
    pub kind: ResourceKind,
    pub spec: Value,
    #[serde(default)]
    pub description: String,
    pub created_at: u64,
    pub updated_at: u64,
    /// Where it is published, per node: wanted, applied, what happened last.
    #[serde(default)]
    pub publications: Vec<ResourcePublication>,
    /// Published apps using it (`app@node`); config maps, secrets, volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
    /// Nodes a volume is bound on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
    /// An EIP's address on each node it holds one on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, String>,
}

fn view(
    r: &Resource,
    used_by: Vec<String>,
    bindings: Vec<Binding>,
    publications: Vec<ResourcePublication>,
) -> ResourceView {
    let spec = match &r.spec {
        ResourceSpec::Secret(s) => serde_json::json!({ "keys": s.data.keys().collect::<Vec<_>>() }),
        ResourceSpec::LoadBalancer(x) => {
            let mut v = serde_json::to_value(x).unwrap_or_default();
            // The selector in force, with the `app` shorthand folded in.
            v["selector"] = serde_json::to_value(x.app_selector()).unwrap_or_default();
            v
        }
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
        description: r.description.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        publications,
        used_by,
        bindings,
        addresses: BTreeMap::new(),
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
    let name = input_name(path_name, &mut fields)?;
    let description = input_description(&mut fields)?;
    let rest = Value::Object(fields);
    let spec = input_spec(state, project, &name, kind, rest)?;
    let now = now_secs();
    Ok(Resource {
        project: project.into(),
        name,
        kind,
        spec,
        description,
        created_at: now,
        updated_at: now,
    })
}

/// The resource's name: the path's on PUT, which the body's must match, else
/// the body's.
fn input_name(
    path_name: Option<&str>,
    fields: &mut serde_json::Map<String, Value>,
) -> Result<String, ApiError> {
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
    Ok(name)
}

/// The optional `description`, a string.
fn input_description(fields: &mut serde_json::Map<String, Value>) -> Result<String, ApiError> {
    let description = match fields.remove("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(d)) => d,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "description: give it as a string".into(),
            ))
        }
    };
    Ok(description)
}

/// The kind's spec from the fields beside name and description.
fn input_spec(
    state: &ControllerState,
    project: &str,
    name: &str,
    kind: ResourceKind,
    rest: Value,
) -> Result<ResourceSpec, ApiError> {
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
        ResourceKind::Secrets => sealed_secret(state, project, name, kind, rest)?,
    };
    Ok(spec)
}

/// A secret's spec: its keys checked and its values sealed as they arrive.
fn sealed_secret(
    state: &ControllerState,
    project: &str,
    name: &str,
    kind: ResourceKind,
    rest: Value,
) -> Result<ResourceSpec, ApiError> {
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
    Ok(ResourceSpec::Secret(SecretSpec { data }))
}

pub(super) async fn load_view(
    state: &ControllerState,
    project: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<ResourceView, ApiError> {
    let (p, n) = (project.to_string(), name.to_string());
    let s = state.store();
    let r = s.get_resource(&p, kind, &n).await?;
    let pubs = s.list_resource_publications(&p, kind, &n).await?;
    let users = match kind {
        ResourceKind::ConfigMaps | ResourceKind::Secrets | ResourceKind::Volumes => {
            s.resource_users(&p, kind, &n).await?
        }
        _ => Vec::new(),
    };
    let bindings: Vec<Binding> = s
        .list_bindings(&p)
        .await?
        .into_iter()
        .filter(|b| b.kind == kind && b.name == n)
        .collect();
    let addresses: BTreeMap<String, String> = if kind == ResourceKind::Eips {
        s.list_eip_claims()
            .await?
            .into_iter()
            .filter(|(_, _, c)| c.project == p && c.eip == n)
            .map(|(_, a, c)| (c.node, a))
            .collect()
    } else {
        BTreeMap::new()
    };
    let r =
        r.ok_or_else(|| ApiError::NotFound(format!("no {} {project}/{name}", kind.singular())))?;
    let mut v = view(&r, users, bindings, pubs);
    v.addresses = addresses;
    Ok(v)
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
        .store()
        .create_resource(&r2)
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
    for key in result? {
        state.trigger(key);
    }
    Ok((
        StatusCode::CREATED,
        Json(view(&r, Vec::new(), Vec::new(), Vec::new())),
    ))
}

pub(super) fn audit<T>(
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
        Err(e @ ApiError::Internal(_)) => format!("failed: {e}"),
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
    let s = state.store();
    let mut all = Vec::new();
    for r in s.list_resources(&project, kind).await? {
        let pubs = s
            .list_resource_publications(&project, kind, &r.name)
            .await?;
        all.push((r, pubs));
    }
    Ok(Json(
        all.into_iter()
            .map(|(r, pubs)| view(&r, Vec::new(), Vec::new(), pubs))
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
        .store()
        .update_resource(&r)
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
        .store()
        .delete_resource(&p, kind, &n)
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

/// Routes of the resource collections.
pub(super) fn routes() -> Routes {
    let mut router = Routes::new();
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
                          Path((p, n)): Path<(String, String)>,
                          q: Result<
                        Query<super::volumes::ConfirmInput>,
                        axum::extract::rejection::QueryRejection,
                    >,
                          b: Bytes| async move {
                        if kind == ResourceKind::Volumes {
                            super::volumes::delete(s, h, p, n, q, b).await
                        } else {
                            delete(kind, s, h, p, n).await
                        }
                    },
                ),
            );
    }
    router
        .route(
            "/api/v1/projects/{project}/volumes/{name}/release",
            post(super::volumes::release),
        )
        .route(
            "/api/v1/projects/{project}/volumes/{name}/unbind",
            post(super::volumes::unbind),
        )
}
