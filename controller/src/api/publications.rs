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
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::model::Publication;
use crate::ports::{CtlAction, EdgeError, LogRequest};
use crate::resources::ResourcePublication;
use crate::state::ControllerState;

use super::apps::load_app;
use super::clusters::load_node;
use super::{audited, check_project, ApiError, ApiResult, Body, Routes};

/// Routes of publish, unpublish, publications and logs.
pub(super) fn routes() -> Routes {
    Routes::new()
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
    /// The nodes are gone for good: drop the records and pins now, without
    /// waiting for their edges (maintainer role); a node that comes back is
    /// reconciled to nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// Publications as the publish/unpublish answers show them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PublicationsView {
    pub publications: Vec<Publication>,
    /// Unpublish with cascade: resources that stay on a node, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    /// The resources travelling with the app, per node (publication status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourcePublication>,
}

async fn target_nodes(
    state: &ControllerState,
    nodes: Option<Vec<String>>,
    selector: Option<BTreeMap<String, String>>,
) -> ApiResult<Vec<String>> {
    match (nodes, selector) {
        (Some(n), None) if !n.is_empty() => Ok(n),
        (None, Some(sel)) if !sel.is_empty() => {
            let all = state.store().list_nodes().await?;
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

/// Wakes the publication events' forwarder for what a request stored (the
/// store recorded the changes with the write, in order).
fn announce_requests<E>(state: &ControllerState, stored: &Result<Vec<Publication>, E>) {
    if stored.as_ref().is_ok_and(|v| !v.is_empty()) {
        state.context().events.recorded();
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
    if let Some(tv) = state.store().get_version(&p, &a, v).await? {
        state.authorize_images(&headers, &project, &tv.spec)?;
    }
    let nodes = target_nodes(&state, input.nodes, input.selector).await?;
    let target = format!("{app}@{}", nodes.join(","));
    let (p, a) = (project.clone(), app.clone());
    let r = state
        .store()
        .publish(&p, &a, input.version, &nodes, now_secs())
        .await;
    announce_requests(&state, &r);
    let pubs = audited(&state, &actor, &project, "app.publish", &target, r).await?;
    for p in &pubs {
        state.trigger(p.key());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(PublicationsView {
            publications: pubs,
            kept: Vec::new(),
            resources: Vec::new(),
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
    if input.force {
        return force_unpublish(state, headers, project, app, input).await;
    }
    let actor = state.authorize(&headers, Some(&project), CtlAction::Write)?;
    let nodes = target_nodes(&state, input.nodes, input.selector).await?;
    let target = format!("{app}@{}", nodes.join(","));
    let (p, a, cascade) = (project.clone(), app.clone(), input.cascade);
    let r = state
        .store()
        .unpublish(&p, &a, &nodes, cascade, now_secs())
        .await;
    announce_requests(&state, &r);
    let pubs = audited(&state, &actor, &project, "app.unpublish", &target, r).await?;
    let kept = if cascade {
        crate::resources_ctl::preview_cascade(state.context().store(), &pubs)
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
            resources: Vec::new(),
        }),
    ))
}

/// `"force": true`: the records go now; tombstones take the node back to
/// nothing when it returns. The nodes must be named.
async fn force_unpublish(
    state: ControllerState,
    headers: HeaderMap,
    project: String,
    app: String,
    input: UnpublishInput,
) -> ApiResult<(StatusCode, Json<PublicationsView>)> {
    let actor = state.authorize(&headers, Some(&project), CtlAction::Admin)?;
    let Some(nodes) = input.nodes.filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(
            "nodes: a force-unpublish names the nodes that are gone for good".into(),
        ));
    };
    let target = format!("{app}@{}", nodes.join(","));
    let (p, a) = (project.clone(), app.clone());
    let r = state
        .store()
        .force_unpublish(&p, &a, &nodes, now_secs())
        .await;
    let forced = audited(&state, &actor, &project, "app.force_unpublish", &target, r).await?;
    state.context().events.recorded();
    let kept = forced
        .iter()
        .map(|f| {
            format!(
                "{}: records dropped; when it comes back its objects are removed and {} pin(s) \
                 released",
                f.node,
                f.pins.len()
            )
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(PublicationsView {
            publications: Vec::new(),
            kept,
            resources: Vec::new(),
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
    let pubs = state.store().list_app_publications(&project, &app).await?;
    let resources = state
        .store()
        .app_resource_publications(&project, &app)
        .await?;
    Ok(Json(PublicationsView {
        publications: pubs,
        kept: Vec::new(),
        resources,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    node: Option<String>,
    /// A pod of the app on the node; default: the newest.
    pod: Option<String>,
    /// Default: the app's only container.
    container: Option<String>,
    tail: Option<usize>,
    /// A duration (`10m`) or an RFC 3339 time.
    since: Option<String>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    previous: bool,
    #[serde(default)]
    timestamps: bool,
}

fn edge_error(e: EdgeError) -> ApiError {
    match &e {
        EdgeError::Rejected { status: 404, .. } => ApiError::NotFound(e.to_string()),
        EdgeError::Rejected { status: 400, .. } => ApiError::BadRequest(e.to_string()),
        EdgeError::Rejected { status: 409, .. } => ApiError::Conflict(e.to_string()),
        _ => ApiError::Internal(e.to_string()),
    }
}

/// An app's container log on a node. With the node's edge token, read from the
/// kubelet's files through the node's edge (either deployer; `follow` streams);
/// without it, from the deployer (the Kubernetes deployer's pods/log).
/// Developers and above: logs may carry what the app handles.
async fn app_logs(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, app)): Path<(String, String)>,
    query: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    check_project(&project)?;
    let Query(q) = query.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; the parameters are node, pod, container, tail, since, follow, previous and timestamps"
        ))
    })?;
    state.authorize(&headers, Some(&project), CtlAction::Write)?;
    let node_name = q
        .node
        .clone()
        .ok_or_else(|| ApiError::BadRequest("name the node: add ?node=<node> to the URL".into()))?;
    let a = load_app(&state, &project, &app).await?;
    let node = load_node(&state, &node_name).await?;
    let workload = crate::render::workload_ref(&project, &app, a.kind, &node_name);
    if node.edge_controller_token.is_none() {
        return deployer_logs(&state, node, &workload, &q).await;
    }
    let edge = state.context().edge.clone();
    let prefix = format!("{}-", workload.name);
    let pod = match &q.pod {
        Some(p) if p.starts_with(&prefix) => p.clone(),
        Some(p) => {
            return Err(ApiError::BadRequest(format!(
                "pod {p} is not one of app {project}/{app}'s on node {node_name} (their names start with {prefix})"
            )))
        }
        None => edge
            .log_pods(&node, &project)
            .await
            .map_err(edge_error)?
            .into_iter()
            .find(|p| p.pod.starts_with(&prefix))
            .map(|p| p.pod)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no pod of app {project}/{app} has written logs on node {node_name} yet"
                ))
            })?,
    };
    let container = match q.container.clone() {
        Some(c) => c,
        None => only_container(&state, &project, &app, a.latest_version).await?,
    };
    let request = LogRequest {
        namespace: project,
        pod,
        container,
        tail: q.tail,
        since: q.since,
        follow: q.follow,
        previous: q.previous,
        timestamps: q.timestamps,
    };
    let stream = edge.logs(&node, &request).await.map_err(edge_error)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// The name of the app's one container, or a request to name one.
async fn only_container(
    state: &ControllerState,
    project: &str,
    app: &str,
    version: u32,
) -> ApiResult<String> {
    let (p, a) = (project.to_string(), app.to_string());
    let v = state
        .store()
        .get_version(&p, &a, version)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("app {project}/{app} has no version {version}"))
        })?;
    let names: Vec<&str> = v.spec.containers.iter().map(|c| c.name.as_str()).collect();
    match names.as_slice() {
        [one] => Ok(one.to_string()),
        many => Err(ApiError::BadRequest(format!(
            "app {project}/{app} has containers {}: add &container=<name>",
            many.join(", ")
        ))),
    }
}

/// Recent log lines through the deployer (the Kubernetes deployer's pods/log).
async fn deployer_logs(
    state: &ControllerState,
    node: crate::model::Node,
    workload: &crate::render::WorkloadRef,
    q: &LogsQuery,
) -> ApiResult<Response> {
    let c = node.cluster.clone();
    let cluster = state
        .store()
        .get_cluster(&c)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster named {:?}", node.cluster)))?;
    let node_name = node.name.clone();
    let target = crate::deploy::DeployTarget { node, cluster };
    let tail = q.tail.map(|t| t as i64).or(Some(200));
    let text = state
        .context()
        .deployer
        .logs(&target, workload, tail)
        .await
        .map_err(|e| match e {
            crate::deploy::DeployError::Unsupported(_) => ApiError::Unsupported(format!(
                "{e}; to read logs through node {node_name}'s edge, set edge_controller_token on the node (the value of edge.controller_token on its edge)"
            )),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
