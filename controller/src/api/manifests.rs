//! Apps as Kubernetes YAML: `POST .../apps` with `Content-Type:
//! application/yaml`, `GET .../apps/{app}?format=yaml` (or `Accept:
//! application/yaml`), and `POST .../apps/{app}/clone`.
//!
//! Owns: turning a parsed manifest into stored records (the app, and its
//! resources, created or reused when the project already has them exactly so;
//! undone on a failure part way), collecting what an export shows, and the
//! clone body. Must not touch: which Kubernetes fields mean what (see
//! `manifest`).

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::clock::now_secs;
use crate::manifest::{export_manifest, parse_manifest, Draft, ImportOptions, Manifest};
use crate::model::{App, AppSpec, TemplateVersion, Volume, VolumeMount};
use crate::ports::Actor;
use crate::resources::{spec_resources, Resource, ResourceKind, ResourceSpec, SecretSpec};
use crate::state::ControllerState;

use super::{audited, ApiError, ApiResult};

/// Whether a request body is a manifest, by its content type.
pub(super) fn is_yaml(headers: &HeaderMap, header_name: header::HeaderName) -> bool {
    headers
        .get_all(header_name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(crate::manifest::is_yaml_media_type)
}

pub(super) fn parse(state: &ControllerState, body: &Bytes) -> ApiResult<Manifest> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the manifest is not UTF-8 text".into()))?;
    let options = ImportOptions {
        image_host: state.context().render.image_host.clone(),
    };
    parse_manifest(text, &options).map_err(|e| {
        ApiError::BadRequest(format!(
            "the manifest is not accepted: {}",
            e.problems.join("; ")
        ))
    })
}

/// A resource of the manifest as it would be stored; `None` for a secret
/// given without values (the project's own must exist).
fn record(
    state: &ControllerState,
    project: &str,
    name: &str,
    draft: &Draft,
) -> ApiResult<Option<Resource>> {
    let spec = match draft {
        Draft::LoadBalancer(x) => ResourceSpec::LoadBalancer(x.clone()),
        Draft::Route(x) => ResourceSpec::Route(x.clone()),
        Draft::ConfigMap(x) => ResourceSpec::ConfigMap(x.clone()),
        Draft::Volume(x) => ResourceSpec::Volume(x.clone()),
        Draft::Secret(None) => return Ok(None),
        Draft::Secret(Some(values)) => {
            let key = state.secrets().ok_or_else(|| {
                ApiError::Conflict(
                    "secrets cannot be stored: no controller.secret_key is configured".into(),
                )
            })?;
            let mut data = std::collections::BTreeMap::new();
            for (k, v) in values {
                let sealed = key
                    .seal(&format!("{project}/{name}/{k}"), v)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                data.insert(k.clone(), sealed);
            }
            ResourceSpec::Secret(SecretSpec { data })
        }
    };
    let now = now_secs();
    Ok(Some(Resource {
        project: project.into(),
        name: name.into(),
        kind: draft.kind(),
        spec,
        description: String::new(),
        created_at: now,
        updated_at: now,
    }))
}

/// The resources to create: those the project lacks. One it has is reused
/// when the manifest says the same (a secret given without values always).
async fn plan(state: &ControllerState, project: &str, m: &Manifest) -> ApiResult<Vec<Resource>> {
    let mut create = Vec::new();
    for r in &m.resources {
        let kind = r.draft.kind();
        let (p, n) = (project.to_string(), r.name.clone());
        let existing = state.store().get_resource(&p, kind, &n).await?;
        let wanted = record(state, project, &r.name, &r.draft)?;
        match (existing, wanted) {
            (None, None) => {
                return Err(ApiError::BadRequest(format!(
                    "Secret/{}: no data given and project {project} has no secret {:?}; give \
                     its data (or stringData)",
                    r.name, r.name
                )))
            }
            (Some(_), None) => {}
            (None, Some(w)) => {
                crate::resources::validate(w.kind, &w.name, &w.spec)?;
                create.push(w);
            }
            (Some(e), Some(w)) if e.spec == w.spec => {}
            (Some(_), Some(_)) => {
                return Err(ApiError::Conflict(format!(
                    "{} {project}/{} exists with other content; change it with PUT \
                     .../{}/{}, or leave it out of the manifest",
                    kind.singular(),
                    r.name,
                    kind.as_str(),
                    r.name
                )))
            }
        }
    }
    // What pods use first, then the app, then what points at the app.
    create.sort_by_key(|r| (r.kind.phase(), r.kind));
    Ok(create)
}

/// Creates the app and its resources; a failure part way removes what this
/// request created.
pub(super) async fn create(
    state: &ControllerState,
    actor: &Actor,
    project: &str,
    m: Manifest,
) -> ApiResult<(App, TemplateVersion)> {
    let resources = plan(state, project, &m).await?;
    let mut created: Vec<(ResourceKind, String)> = Vec::new();
    let mut app = None;
    let mut outcome = Ok(());
    for phase in [0u8, 1, 2] {
        if phase == 1 {
            let (p, a, spec, author) = (
                project.to_string(),
                m.name.clone(),
                m.spec.clone(),
                actor.name.clone(),
            );
            let r = state
                .store()
                .create_app(&p, &a, &spec, &author, None, now_secs())
                .await;
            match audited(state, actor, project, "app.create", &m.name, r).await {
                Ok(x) => app = Some(x),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
            continue;
        }
        for r in resources.iter().filter(|r| r.kind.phase() == phase) {
            let r2 = r.clone();
            let result = state.store().create_resource(&r2).await;
            let action = format!("{}.create", r.kind.as_str());
            match audited(state, actor, project, &action, &r.name, result).await {
                // A new app is published nowhere yet: nothing follows it.
                Ok(_) => created.push((r.kind, r.name.clone())),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_err() {
            break;
        }
    }
    match (outcome, app) {
        (Ok(()), Some(app)) => Ok(app),
        (outcome, app) => {
            undo(state, project, app.map(|(a, _)| a.name), created).await;
            Err(outcome
                .err()
                .unwrap_or_else(|| ApiError::Internal("the app was not created".into())))
        }
    }
}

async fn undo(
    state: &ControllerState,
    project: &str,
    app: Option<String>,
    created: Vec<(ResourceKind, String)>,
) {
    for (kind, name) in created
        .iter()
        .rev()
        .filter(|(k, _)| k.phase() == 2)
        .cloned()
    {
        let p = project.to_string();
        let _ = state.store().delete_resource(&p, kind, &name).await;
    }
    if let Some(a) = app {
        let p = project.to_string();
        let _ = state.store().delete_app(&p, &a).await;
    }
    for (kind, name) in created.into_iter().rev().filter(|(k, _)| k.phase() != 2) {
        let p = project.to_string();
        let _ = state.store().delete_resource(&p, kind, &name).await;
    }
}

/// The app's latest template and the resources it uses, as YAML: its load
/// balancers, their routes, and the config maps, secrets and volumes its pods
/// use (EIPs have no manifest kind and stay out).
pub(super) async fn export(
    state: &ControllerState,
    project: &str,
    app: &str,
    spec: &AppSpec,
) -> ApiResult<Response> {
    let (p, a, used) = (project.to_string(), app.to_string(), spec_resources(spec));
    let s = state.store();
    let mut resources = Vec::new();
    let lbs: Vec<Resource> = s
        .list_resources(&p, ResourceKind::LoadBalancers)
        .await?
        .into_iter()
        .filter(|r| matches!(&r.spec, ResourceSpec::LoadBalancer(lb) if lb.owner_app() == Some(a.as_str())))
        .collect();
    for route in s.list_resources(&p, ResourceKind::Routes).await? {
        if matches!(&route.spec, ResourceSpec::Route(rt)
            if lbs.iter().any(|lb| lb.name == rt.load_balancer))
        {
            resources.push(route);
        }
    }
    resources.extend(lbs);
    for (kind, name) in used {
        if let Some(r) = s.get_resource(&p, kind, &name).await? {
            resources.push(r);
        }
    }
    let yaml = export_manifest(app, spec, &resources);
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

/// `POST .../apps/{app}/clone`: a new app with the latest template, and
/// volumes of the project mounted into it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneInput {
    pub name: String,
    #[serde(default)]
    pub add_volumes: Vec<AddVolume>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A local volume of the project to mount into the clone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddVolume {
    pub volume: String,
    pub mount_path: String,
    /// Which container mounts it; may be left out when the app has one.
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// The template of the clone: `spec` with the volumes added (each must be a
/// volume of the project, which the caller checked).
pub(super) fn clone_spec(spec: &AppSpec, add: &[AddVolume]) -> ApiResult<AppSpec> {
    let mut out = spec.clone();
    // A local volume belongs to one app: the clone leaves the source's out
    // (with their mounts) and gets the ones it is given.
    let local: Vec<String> = out
        .volumes
        .iter()
        .filter(|v| v.persistent_volume_claim.is_some())
        .map(|v| v.name.clone())
        .collect();
    out.volumes.retain(|v| !local.contains(&v.name));
    for c in &mut out.containers {
        c.volume_mounts.retain(|m| !local.contains(&m.name));
    }
    for (i, v) in add.iter().enumerate() {
        let f = format!("add_volumes[{i}]");
        if out.volumes.iter().any(|x| x.name == v.volume) {
            return Err(ApiError::BadRequest(format!(
                "{f}.volume: the app already has a volume named {:?}",
                v.volume
            )));
        }
        let container = match (&v.container, out.containers.len()) {
            (Some(c), _) => out.containers.iter_mut().find(|x| x.name == *c),
            (None, 1) => out.containers.first_mut(),
            (None, _) => {
                return Err(ApiError::BadRequest(format!(
                    "{f}.container: the app has several containers; name the one that mounts it"
                )))
            }
        }
        .ok_or_else(|| ApiError::BadRequest(format!("{f}.container: no such container")))?;
        container.volume_mounts.push(VolumeMount {
            name: v.volume.clone(),
            mount_path: v.mount_path.clone(),
            read_only: v.read_only,
            sub_path: None,
        });
        out.volumes.push(Volume {
            name: v.volume.clone(),
            persistent_volume_claim: Some(v.volume.clone()),
            ..Volume::default()
        });
    }
    out.validate()?;
    Ok(out)
}

/// `201 Created` with the app as JSON.
pub(super) fn created(app: App, latest: TemplateVersion) -> Response {
    (
        StatusCode::CREATED,
        axum::Json(super::AppView { app, latest }),
    )
        .into_response()
}
