//! Publish, unpublish and publication status of an app
//! (`/api/v1/projects/{project}/apps/{app}/...`), and its pods' logs.
//!
//! Owns: choosing the nodes (by name or by labels), recording the request and
//! triggering the reconciler. Must not touch: edge caches or clusters (the
//! reconciler does that; only logs are read here, through the deployer).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::model::Publication;
use crate::ports::CtlAction;
use crate::state::ControllerState;

use super::apps::load_app;
use super::clusters::load_node;
use super::{audited, check_project, ApiError, ApiResult, Body};

/// Routes of publish, unpublish, publications and logs.
pub(super) fn routes() -> Router<ControllerState> {
    Router::new()
        .route(
            "/api/v1/projects/{project}/apps/{app}/publish",
            post(publish),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/unpublish",
            post(unpublish),
        )
        .route(
            "/api/v1/projects/{project}/apps/{app}/publications",
            get(list_publications),
        )
        .route("/api/v1/projects/{project}/apps/{app}/logs", get(app_logs))
}

#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    /// Every node with all these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// Template version; default the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct UnpublishInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// Also release the resources only this app uses on those nodes.
    #[serde(default)]
    pub cascade: bool,
}

/// Publications as the publish/unpublish answers show them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PublicationsView {
    pub publications: Vec<Publication>,
    /// Unpublish with cascade: resources that stay on a node, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

async fn target_nodes(
    state: &ControllerState,
    nodes: Option<Vec<String>>,
    selector: Option<BTreeMap<String, String>>,
) -> ApiResult<Vec<String>> {
    match (nodes, selector) {
        (Some(n), None) if !n.is_empty() => Ok(n),
        (None, Some(sel)) if !sel.is_empty() => {
            let all = state.db(|s| s.list_nodes()).await?;
            let matched: Vec<String> = all
                .into_iter()
                .filter(|n| n.matches(&sel))
                .map(|n| n.name)
                .collect();
            if matched.is_empty() {
                let wanted = sel
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                return Err(ApiError::BadRequest(format!(
                    "no node has the labels {wanted}"
                )));
            }
            Ok(matched)
        }
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "give either nodes or selector, not both".into(),
        )),
        _ => Err(ApiError::BadRequest(
            "say where: {\"nodes\": [\"node-1\"]} or {\"selector\": {\"label\": \"value\"}}".into(),
        )),
    }
}

async fn publish(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
    Body(input): Body<PublishInput>,
) -> ApiResult<(StatusCode, Json<PublicationsView>)> {
    check_project(&project)?;
    let actor = state.authorize(&headers, Some(&project), CtlAction::Write)?;
    // Whoever publishes must be allowed the images, not only whoever wrote them.
    let current = load_app(&state, &project, &app).await?;
    let (p, a, v) = (
        project.clone(),
        app.clone(),
        input.version.unwrap_or(current.latest_version),
    );
    if let Some(tv) = state.db(move |s| s.get_version(&p, &a, v)).await? {
        state.authorize_images(&headers, &project, &tv.spec)?;
    }
    let nodes = target_nodes(&state, input.nodes, input.selector).await?;
    let target = format!("{app}@{}", nodes.join(","));
    let (p, a) = (project.clone(), app.clone());
    let r = state
        .db(move |s| s.publish(&p, &a, input.version, &nodes, now_secs()))
        .await;
    let pubs = audited(&state, &actor, &project, "app.publish", &target, r).await?;
    for p in &pubs {
        state.trigger(p.key());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(PublicationsView {
            publications: pubs,
            kept: Vec::new(),
        }),
    ))
}

async fn unpublish(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
    Body(input): Body<UnpublishInput>,
) -> ApiResult<(StatusCode, Json<PublicationsView>)> {
    check_project(&project)?;
    let actor = state.authorize(&headers, Some(&project), CtlAction::Write)?;
    let nodes = target_nodes(&state, input.nodes, input.selector).await?;
    let target = format!("{app}@{}", nodes.join(","));
    let (p, a, cascade) = (project.clone(), app.clone(), input.cascade);
    let r = state
        .db(move |s| s.unpublish(&p, &a, &nodes, cascade, now_secs()))
        .await;
    let pubs = audited(&state, &actor, &project, "app.unpublish", &target, r).await?;
    let kept = if cascade {
        crate::resources_ctl::preview_cascade(&state.context().store, &pubs)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    } else {
        Vec::new()
    };
    for p in &pubs {
        state.trigger(p.key());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(PublicationsView {
            publications: pubs,
            kept,
        }),
    ))
}

async fn list_publications(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
) -> ApiResult<Json<PublicationsView>> {
    check_project(&project)?;
    state.authorize(&headers, Some(&project), CtlAction::Read)?;
    load_app(&state, &project, &app).await?;
    let pubs = state
        .db(move |s| s.list_app_publications(&project, &app))
        .await?;
    Ok(Json(PublicationsView {
        publications: pubs,
        kept: Vec::new(),
    }))
}

#[derive(Deserialize)]
struct LogsQuery {
    node: Option<String>,
    tail: Option<i64>,
}

/// Recent log lines of an app's pods on a node, where the deployer can see them.
async fn app_logs(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    check_project(&project)?;
    state.authorize(&headers, Some(&project), CtlAction::Read)?;
    let node_name = q
        .node
        .ok_or_else(|| ApiError::BadRequest("name the node: add ?node=<node> to the URL".into()))?;
    let a = load_app(&state, &project, &app).await?;
    let node = load_node(&state, &node_name).await?;
    let c = node.cluster.clone();
    let cluster = state
        .db(move |s| s.get_cluster(&c))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster named {:?}", node.cluster)))?;
    let workload = crate::render::workload_ref(&project, &app, a.kind, &node_name);
    let target = crate::deploy::DeployTarget { node, cluster };
    let text = state
        .context()
        .deployer
        .logs(&target, &workload, q.tail.or(Some(200)))
        .await
        .map_err(|e| match e {
            crate::deploy::DeployError::Unsupported(_) => ApiError::Unsupported(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
