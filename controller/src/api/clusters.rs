//! `/api/v1/clusters` and `/api/v1/nodes`: the clusters edge nodes belong to,
//! the nodes, and a node's kubeconfig for a project.
//!
//! Owns: their request and answer bodies. Answers never show a kubeconfig's
//! credentials or an edge password. Must not touch: the records' rules (see
//! `model` and `store`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::model::{kubeconfig_for_namespace, kubeconfig_summary, Cluster, EdgeCredentials, Node};
use crate::ports::CtlAction;
use crate::state::ControllerState;

use super::{audited, check_project, ApiError, ApiResult, Body, Routes};

/// Routes of clusters and nodes.
pub(super) fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/clusters", post(create_cluster).get(list_clusters))
        .route(
            "/api/v1/clusters/{name}",
            get(get_cluster)
                .patch(update_cluster)
                .delete(delete_cluster),
        )
        .route("/api/v1/nodes", post(create_node).get(list_nodes))
        .route(
            "/api/v1/nodes/{name}",
            get(get_node).patch(label_node).delete(delete_node),
        )
        .route("/api/v1/nodes/{name}/kubeconfig", get(node_kubeconfig))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterInput {
    name: String,
    /// The kubeconfig YAML, stored as given.
    kubeconfig: String,
    /// Addresses for pool EIPs: a CIDR or a range.
    #[serde(default)]
    eip_pool: Option<String>,
}

/// `PATCH /api/v1/clusters/{name}`: what is given changes (`"eip_pool": ""`
/// removes the pool).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterPatch {
    #[serde(default)]
    eip_pool: Option<String>,
}

/// A cluster as the API shows it: never the kubeconfig's secrets.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub name: String,
    pub server: String,
    pub current_context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip_pool: Option<String>,
    pub created_at: u64,
}

fn cluster_view(c: &Cluster) -> ClusterView {
    let summary = kubeconfig_summary(&c.kubeconfig).ok();
    ClusterView {
        name: c.name.clone(),
        server: summary
            .as_ref()
            .map(|s| s.server.clone())
            .unwrap_or_default(),
        current_context: summary.map(|s| s.current_context).unwrap_or_default(),
        eip_pool: c.eip_pool.clone(),
        created_at: c.created_at,
    }
}

async fn create_cluster(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Body(input): Body<ClusterInput>,
) -> ApiResult<(StatusCode, Json<ClusterView>)> {
    let actor = state.authorize(&headers, None, CtlAction::Admin)?;
    let cluster = Cluster {
        name: input.name,
        kubeconfig: input.kubeconfig,
        eip_pool: input.eip_pool.filter(|p| !p.is_empty()),
        created_at: now_secs(),
    };
    let view = cluster_view(&cluster);
    let name = cluster.name.clone();
    let r = state.store().create_cluster(&cluster).await;
    audited(&state, &actor, "", "cluster.create", &name, r).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_clusters(
    State(state): State<ControllerState>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<ClusterView>>> {
    state.authorize(&headers, None, CtlAction::Read)?;
    let all = state.store().list_clusters().await?;
    Ok(Json(all.iter().map(cluster_view).collect()))
}

async fn get_cluster(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<ClusterView>> {
    state.authorize(&headers, None, CtlAction::Read)?;
    let n = name.clone();
    let c = state
        .store()
        .get_cluster(&n)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster named {name:?}")))?;
    Ok(Json(cluster_view(&c)))
}

async fn update_cluster(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(input): Body<ClusterPatch>,
) -> ApiResult<Json<ClusterView>> {
    let actor = state.authorize(&headers, None, CtlAction::Admin)?;
    let n = name.clone();
    let r = state
        .store()
        .update_cluster_pool(&n, input.eip_pool.as_deref())
        .await;
    let c = audited(&state, &actor, "", "cluster.update", &name, r).await?;
    Ok(Json(cluster_view(&c)))
}

async fn delete_cluster(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let actor = state.authorize(&headers, None, CtlAction::Admin)?;
    let n = name.clone();
    let r = state.store().delete_cluster(&n).await;
    audited(&state, &actor, "", "cluster.delete", &name, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeInput {
    name: String,
    cluster: String,
    #[serde(default)]
    k8s_node_name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    edge_url: String,
    #[serde(default)]
    edge_credentials: Option<EdgeCredentials>,
    /// The token set as `edge.controller_token` on the node's edge, for container logs.
    #[serde(default)]
    edge_controller_token: Option<String>,
}

/// A node as the API shows it: the edge user, never the password.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub cluster: String,
    pub k8s_node_name: String,
    pub labels: BTreeMap<String, String>,
    pub edge_url: String,
    pub edge_user: Option<String>,
    /// Whether the controller holds the edge's token for container logs.
    #[serde(default)]
    pub edge_logs: bool,
    pub created_at: u64,
}

fn node_view(n: &Node) -> NodeView {
    NodeView {
        name: n.name.clone(),
        cluster: n.cluster.clone(),
        k8s_node_name: n.k8s_node_name.clone(),
        labels: n.labels.clone(),
        edge_url: n.edge_url.clone(),
        edge_user: n.edge_credentials.as_ref().map(|c| c.user.clone()),
        edge_logs: n.edge_controller_token.is_some(),
        created_at: n.created_at,
    }
}

async fn create_node(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Body(input): Body<NodeInput>,
) -> ApiResult<(StatusCode, Json<NodeView>)> {
    let actor = state.authorize(&headers, None, CtlAction::Admin)?;
    let name = input.name.clone();
    let mut node = Node {
        name: input.name,
        cluster: input.cluster,
        k8s_node_name: input.k8s_node_name.unwrap_or_default(),
        labels: input.labels,
        edge_url: input.edge_url,
        edge_credentials: input.edge_credentials,
        edge_controller_token: input
            .edge_controller_token
            .filter(|t| !t.is_empty())
            .map(crate::model::EdgeToken),
        created_at: now_secs(),
    };
    let r = state
        .store()
        .create_node(&mut node)
        .await
        .map(|()| node)
        .map_err(ApiError::from);
    let node = audited(&state, &actor, "", "node.create", &name, r).await?;
    Ok((StatusCode::CREATED, Json(node_view(&node))))
}

async fn list_nodes(
    State(state): State<ControllerState>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<NodeView>>> {
    state.authorize(&headers, None, CtlAction::Read)?;
    let all = state.store().list_nodes().await?;
    Ok(Json(all.iter().map(node_view).collect()))
}

pub(super) async fn load_node(state: &ControllerState, name: &str) -> ApiResult<Node> {
    let n = name.to_string();
    state
        .store()
        .get_node(&n)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no node named {name:?}")))
}

async fn get_node(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<NodeView>> {
    state.authorize(&headers, None, CtlAction::Read)?;
    Ok(Json(node_view(&load_node(&state, &name).await?)))
}

async fn delete_node(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let actor = state.authorize(&headers, None, CtlAction::Admin)?;
    let n = name.clone();
    let r = state.store().delete_node(&n).await;
    audited(&state, &actor, "", "node.delete", &name, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /api/v1/nodes/{name}`: a JSON merge patch of the node's labels
/// (`{"labels": {"zone": "north", "old": null}}`); nothing else of a node changes
/// in place (its cluster, edge and credentials are set when it is registered).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodePatch {
    labels: BTreeMap<String, Option<String>>,
}

async fn label_node(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(patch): Body<NodePatch>,
) -> ApiResult<Json<NodeView>> {
    let actor = state.authorize(&headers, None, CtlAction::Admin)?;
    let n = name.clone();
    let r = state.store().label_node(&n, &patch.labels).await;
    let node = audited(&state, &actor, "", "node.label", &name, r).await?;
    Ok(Json(node_view(&node)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeconfigQuery {
    project: Option<String>,
    /// Token lifetime in seconds (default one hour), capped by configuration.
    ttl: Option<u64>,
}

fn yaml_attachment(yaml: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/yaml"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"kubeconfig.yaml\"",
            ),
        ],
        yaml,
    )
        .into_response()
}

/// A kubeconfig for the project on the node's cluster. Project maintainers and
/// above. With the Kubernetes deployer: a token of the project's ServiceAccount,
/// limited to its namespace, for `ttl` seconds. Otherwise only system
/// administrators get the cluster's own kubeconfig (with the project's
/// namespace); everyone else learns why not (409). Audited; the token never is.
async fn node_kubeconfig(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    super::params::Params(q): super::params::Params<KubeconfigQuery>,
) -> ApiResult<Response> {
    let project = q.project.ok_or_else(|| {
        ApiError::BadRequest("name the project: add ?project=<project> to the URL".into())
    })?;
    check_project(&project)?;
    let actor = state.authorize(&headers, Some(&project), CtlAction::Admin)?;
    let max = state.kubeconfig_max_ttl().as_secs();
    let ttl = q.ttl.unwrap_or(3600).min(max);
    if ttl < 600 {
        return Err(ApiError::BadRequest(format!(
            "ttl: at least 600 seconds (the Kubernetes minimum), at most {max}"
        )));
    }
    let scoped = state.context().deployer.scopes_kubeconfigs();
    if !scoped && !actor.admin {
        state.audit(
            &actor,
            &project,
            "kubeconfig.export",
            &name,
            "refused: not a system administrator",
        );
        return Err(ApiError::Conflict(format!(
            "the kubeconfig of node {name}'s cluster carries the cluster's own credential, which \
             only system administrators may export; a kubeconfig scoped to project {project} \
             needs the Kubernetes deployer (this one writes manifest files and has no access \
             to the cluster): ask a system administrator"
        )));
    }
    let node = load_node(&state, &name).await?;
    let c = node.cluster.clone();
    let cluster = state
        .store()
        .get_cluster(&c)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster named {:?}", node.cluster)))?;
    if !scoped {
        let yaml = kubeconfig_for_namespace(&cluster.kubeconfig, &project)
            .map_err(|m| ApiError::Conflict(format!("cluster {}: {m}", cluster.name)))?;
        state.audit(
            &actor,
            &project,
            "kubeconfig.export",
            &name,
            "ok: the cluster's kubeconfig",
        );
        return Ok(yaml_attachment(yaml));
    }
    let target = crate::deploy::DeployTarget { node, cluster };
    let result = state
        .context()
        .deployer
        .project_kubeconfig(&target, &project, ttl)
        .await;
    match result {
        Ok(yaml) => {
            let outcome = format!("ok: token for {ttl}s");
            state.audit(&actor, &project, "kubeconfig.export", &name, &outcome);
            Ok(yaml_attachment(yaml))
        }
        Err(e) => {
            state.audit(
                &actor,
                &project,
                "kubeconfig.export",
                &name,
                &format!("failed: {e}"),
            );
            Err(ApiError::Internal(e.to_string()))
        }
    }
}
