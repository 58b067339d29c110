//! `/api/v1/projects/{project}/apps`: apps and their template versions.
//!
//! Owns: their request and answer bodies, and the rule that whoever writes an
//! app may pull every image it names. Must not touch: version numbering and
//! the change summary (see `store` and `model`).

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::model::{App, AppSpec, TemplateVersion};
use crate::ports::CtlAction;
use crate::state::ControllerState;

use super::manifests::{self, CloneInput};
use super::{audited, check_project, ApiError, ApiResult, Body, Routes};

/// Routes of apps and their versions.
pub(super) fn routes() -> Routes {
    Routes::new()
        .route(
            "/api/v1/projects/{project}/apps",
            post(create_app).get(list_apps),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}",
            get(get_app).put(update_app).delete(delete_app),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/clone",
            post(clone_app),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/versions",
            get(list_versions),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/versions/{version}",
            get(get_version),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAppInput {
    pub name: String,
    pub spec: AppSpec,
    /// What this version is about; default: a summary of the change.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAppInput {
    pub spec: AppSpec,
    #[serde(default)]
    pub message: Option<String>,
}

/// An app with its latest template.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AppView {
    #[serde(flatten)]
    pub app: App,
    pub latest: TemplateVersion,
}

/// The answer to a PUT: the version now latest, and whether it is new.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct VersionCreated {
    pub created: bool,
    pub version: TemplateVersion,
}

/// A JSON body (`{"name", "spec", "message"}`), or a Kubernetes manifest
/// sent as `application/yaml` (see `manifest`).
async fn create_app(
    State(state): State<ControllerState>,
    Path(project): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    check_project(&project)?;
    let headers = req.headers().clone();
    let actor = state.authorize(&headers, Some(&project), CtlAction::Write)?;
    if manifests::is_yaml(&headers, header::CONTENT_TYPE) {
        let body = axum::body::Bytes::from_request(req, &state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the manifest: {e}")))?;
        let m = manifests::parse(&state, &body)?;
        state.authorize_images(&headers, &project, &m.spec)?;
        let (app, latest) = manifests::create(&state, &actor, &project, m).await?;
        return Ok(manifests::created(app, latest));
    }
    let Body(input) = Body::<CreateAppInput>::from_request(req, &state).await?;
    state.authorize_images(&headers, &project, &input.spec)?;
    let (p, author, name) = (project.clone(), actor.name.clone(), input.name.clone());
    let r = state
        .store()
        .create_app(
            &p,
            &input.name,
            &input.spec,
            &author,
            input.message.as_deref(),
            now_secs(),
        )
        .await;
    let (app, latest) = audited(&state, &actor, &project, "app.create", &name, r).await?;
    Ok(manifests::created(app, latest))
}

async fn list_apps(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<App>>> {
    check_project(&project)?;
    state.authorize(&headers, Some(&project), CtlAction::Read)?;
    Ok(Json(state.store().list_apps(&project).await?))
}

pub(super) async fn load_app(state: &ControllerState, project: &str, app: &str) -> ApiResult<App> {
    let (p, a) = (project.to_string(), app.to_string());
    state
        .store()
        .get_app(&p, &a)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no app {project}/{app}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
}

/// The app as JSON, or as a Kubernetes manifest with `?format=yaml` or
/// `Accept: application/yaml`.
async fn get_app(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
    super::params::Params(q): super::params::Params<FormatQuery>,
) -> ApiResult<Response> {
    check_project(&project)?;
    state.authorize(&headers, Some(&project), CtlAction::Read)?;
    let yaml = match q.format.as_deref() {
        Some("yaml") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?}: use json or yaml"
            )))
        }
        None => manifests::is_yaml(&headers, header::ACCEPT),
    };
    let (a, latest) = latest(&state, &project, &app).await?;
    if yaml {
        return manifests::export(&state, &project, &app, &latest.spec).await;
    }
    Ok(Json(AppView { app: a, latest }).into_response())
}

/// An app and its latest template version.
async fn latest(
    state: &ControllerState,
    project: &str,
    app: &str,
) -> ApiResult<(App, TemplateVersion)> {
    let a = load_app(state, project, app).await?;
    let (p, n, v) = (project.to_string(), app.to_string(), a.latest_version);
    let latest = state
        .store()
        .get_version(&p, &n, v)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("{project}/{app} has lost version {v}")))?;
    Ok((a, latest))
}

/// A new app with `app`'s latest template, and volumes of the project added.
async fn clone_app(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
    Body(input): Body<CloneInput>,
) -> ApiResult<Response> {
    check_project(&project)?;
    let actor = state.authorize(&headers, Some(&project), CtlAction::Write)?;
    let (_, source) = latest(&state, &project, &app).await?;
    for (i, v) in input.add_volumes.iter().enumerate() {
        let (p, n) = (project.clone(), v.volume.clone());
        let found = state
            .store()
            .get_resource(&p, crate::resources::ResourceKind::Volumes, &n)
            .await?;
        if found.is_none() {
            return Err(ApiError::BadRequest(format!(
                "add_volumes[{i}].volume: project {project} has no volume {:?}; create it \
                 with POST .../volumes first",
                v.volume
            )));
        }
    }
    let spec = manifests::clone_spec(&source.spec, &input.add_volumes)?;
    state.authorize_images(&headers, &project, &spec)?;
    let message = input
        .message
        .clone()
        .unwrap_or_else(|| format!("cloned from app {app} version {}", source.version));
    let (p, author, name) = (project.clone(), actor.name.clone(), input.name.clone());
    let r = state
        .store()
        .create_app(&p, &name, &spec, &author, Some(&message), now_secs())
        .await;
    let target = format!("{} (from {app})", input.name);
    let (a, latest) = audited(&state, &actor, &project, "app.clone", &target, r).await?;
    Ok(manifests::created(a, latest))
}

async fn update_app(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
    Body(input): Body<UpdateAppInput>,
) -> ApiResult<Json<VersionCreated>> {
    check_project(&project)?;
    let actor = state.authorize(&headers, Some(&project), CtlAction::Write)?;
    state.authorize_images(&headers, &project, &input.spec)?;
    let (p, a, author) = (project.clone(), app.clone(), actor.name.clone());
    let r = state
        .store()
        .add_version(
            &p,
            &a,
            &input.spec,
            &author,
            input.message.as_deref(),
            now_secs(),
        )
        .await;
    let (version, created) = audited(&state, &actor, &project, "app.update", &app, r).await?;
    Ok(Json(VersionCreated { created, version }))
}

async fn delete_app(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_project(&project)?;
    let actor = state.authorize(&headers, Some(&project), CtlAction::Write)?;
    let (p, a) = (project.clone(), app.clone());
    let r = state.store().delete_app(&p, &a).await;
    audited(&state, &actor, &project, "app.delete", &app, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_versions(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
) -> ApiResult<Json<Vec<TemplateVersion>>> {
    check_project(&project)?;
    state.authorize(&headers, Some(&project), CtlAction::Read)?;
    load_app(&state, &project, &app).await?;
    Ok(Json(state.store().list_versions(&project, &app).await?))
}

async fn get_version(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app, version)): Path<(String, String, String)>,
) -> ApiResult<Json<TemplateVersion>> {
    check_project(&project)?;
    state.authorize(&headers, Some(&project), CtlAction::Read)?;
    let v: u32 = version
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("version {version:?} is not a number")))?;
    let a = load_app(&state, &project, &app).await?;
    let (p, n) = (project.clone(), app.clone());
    state
        .store()
        .get_version(&p, &n, v)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "app {project}/{app} has no version {v} (latest is {})",
                a.latest_version
            ))
        })
}
