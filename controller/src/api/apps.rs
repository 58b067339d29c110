//! `/api/v1/projects/{project}/apps`: apps and their template versions.
//!
//! Owns: their request and answer bodies, and the rule that whoever writes an
//! app may pull every image it names. Must not touch: version numbering and
//! the change summary (see `store` and `model`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::model::{App, AppSpec, TemplateVersion};
use crate::ports::CtlAction;
use crate::state::ControllerState;

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

async fn create_app(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Body(input): Body<CreateAppInput>,
) -> ApiResult<(StatusCode, Json<AppView>)> {
    check_project(&project)?;
    let actor = state.authorize(&headers, Some(&project), CtlAction::Write)?;
    state.authorize_images(&headers, &project, &input.spec)?;
    let (p, author, name) = (project.clone(), actor.name.clone(), input.name.clone());
    let r = state
        .db(move |s| {
            s.create_app(
                &p,
                &input.name,
                &input.spec,
                &author,
                input.message.as_deref(),
                now_secs(),
            )
        })
        .await;
    let (app, latest) = audited(&state, &actor, &project, "app.create", &name, r).await?;
    Ok((StatusCode::CREATED, Json(AppView { app, latest })))
}

async fn list_apps(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<App>>> {
    check_project(&project)?;
    state.authorize(&headers, Some(&project), CtlAction::Read)?;
    Ok(Json(state.db(move |s| s.list_apps(&project)).await?))
}

pub(super) async fn load_app(state: &ControllerState, project: &str, app: &str) -> ApiResult<App> {
    let (p, a) = (project.to_string(), app.to_string());
    state
        .db(move |s| s.get_app(&p, &a))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no app {project}/{app}")))
}

async fn get_app(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
) -> ApiResult<Json<AppView>> {
    check_project(&project)?;
    state.authorize(&headers, Some(&project), CtlAction::Read)?;
    let a = load_app(&state, &project, &app).await?;
    let (p, n, v) = (project.clone(), app.clone(), a.latest_version);
    let latest = state
        .db(move |s| s.get_version(&p, &n, v))
        .await?
        .ok_or_else(|| ApiError::Internal(format!("{project}/{app} has lost version {v}")))?;
    Ok(Json(AppView { app: a, latest }))
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
        .db(move |s| {
            s.add_version(
                &p,
                &a,
                &input.spec,
                &author,
                input.message.as_deref(),
                now_secs(),
            )
        })
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
    let r = state.db(move |s| s.delete_app(&p, &a)).await;
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
    Ok(Json(
        state.db(move |s| s.list_versions(&project, &app)).await?,
    ))
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
        .db(move |s| s.get_version(&p, &n, v))
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "app {project}/{app} has no version {v} (latest is {})",
                a.latest_version
            ))
        })
}
