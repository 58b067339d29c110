//! The controller's `/api/v1` endpoints: clusters, nodes, apps and their
//! versions, publish/unpublish and publication status (and, issue 6, the
//! resources that travel with apps).
//!
//! Owns: routes, request and response bodies, the mapping of errors to statuses
//! (400 validation, 401/403 auth, 404 unknown, 409 conflict) and to JSON
//! `{"error": "..."}` bodies a person can act on, and audit records of requests.
//!
//! Must not touch: redb (goes through `store`), edge caches or clusters (the
//! reconciler does that; handlers record the request and trigger it).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{
    kubeconfig_for_namespace, kubeconfig_summary, validate_dns_label, App, AppSpec, Cluster,
    EdgeCredentials, Node, Publication, TemplateVersion, ValidationError,
};
use crate::ports::{Actor, AuthError, CtlAction};
use crate::reconcile::now_secs;
use crate::store::{Store, StoreError};
use crate::ControllerState;

/// An error as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{}", .0.message)]
    Auth(AuthError),
    /// The deployer cannot do this (e.g. logs from manifest files).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(v) => ApiError::BadRequest(v.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            ApiError::Auth(a) => (a.status, a.message.clone()),
            ApiError::Unsupported(m) => (StatusCode::NOT_IMPLEMENTED, m.clone()),
            ApiError::Internal(m) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: {m}"),
            ),
        };
        let mut resp = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth\""),
            );
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `Json<T>` whose rejections are JSON errors that say what is wrong with the body.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::BadRequest(
                "send the body as JSON with Content-Type: application/json".into(),
            )),
            Err(e) => Err(ApiError::BadRequest(format!(
                "the request body is not valid: {}",
                e.body_text()
            ))),
        }
    }
}

impl ControllerState {
    fn authorize(
        &self,
        headers: &HeaderMap,
        project: Option<&str>,
        action: CtlAction,
    ) -> ApiResult<Actor> {
        self.authorizer()
            .authorize(headers, project, action)
            .map_err(ApiError::Auth)
    }

    /// The actor may pull every image `spec` names, whichever project it is
    /// in: an app must neither deploy images its author cannot see nor reveal
    /// their digests (publication status shows what a tag resolved to).
    fn authorize_images(
        &self,
        headers: &HeaderMap,
        project: &str,
        spec: &AppSpec,
    ) -> ApiResult<()> {
        let others: BTreeSet<String> = spec
            .images()
            .iter()
            .filter_map(|i| i.split_once('/').map(|(p, _)| p.to_string()))
            .filter(|p| p != project)
            .collect();
        for other in others {
            self.authorizer()
                .authorize(headers, Some(&other), CtlAction::Read)
                .map_err(|e| {
                    ApiError::Auth(AuthError {
                        status: e.status,
                        message: format!("{} (the app uses images of project {other})", e.message),
                    })
                })?;
        }
        Ok(())
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> ApiResult<T> {
        Ok(self.context().db(f).await?)
    }

    fn audit(&self, actor: &Actor, project: &str, action: &str, target: &str, outcome: &str) {
        self.context()
            .audit
            .record(&actor.name, project, action, target, outcome);
    }
}

/// Runs a write and records it in the audit log, whatever the outcome.
async fn audited<T>(
    state: &ControllerState,
    actor: &Actor,
    project: &str,
    action: &str,
    target: &str,
    result: ApiResult<T>,
) -> ApiResult<T> {
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    state.audit(actor, project, action, target, &outcome);
    result
}

/// The controller's routes, to be merged into the registry's router.
pub fn router(state: ControllerState) -> Router {
    Router::new()
        .route("/api/v1/clusters", post(create_cluster).get(list_clusters))
        .route(
            "/api/v1/clusters/{name}",
            get(get_cluster).delete(delete_cluster),
        )
        .route("/api/v1/nodes", post(create_node).get(list_nodes))
        .route("/api/v1/nodes/{name}", get(get_node).delete(delete_node))
        .route("/api/v1/nodes/{name}/kubeconfig", get(node_kubeconfig))
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
        .merge(crate::resources_ctl::routes())
        .with_state(state)
}

pub(crate) fn check_project(project: &str) -> ApiResult<()> {
    validate_dns_label(project).map_err(|m| ApiError::BadRequest(format!("project: {m}")))
}

// ----- clusters ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterInput {
    name: String,
    /// The kubeconfig YAML, stored as given.
    kubeconfig: String,
}

/// A cluster as the API shows it: never the kubeconfig's secrets.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub name: String,
    pub server: String,
    pub current_context: String,
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
        created_at: now_secs(),
    };
    let view = cluster_view(&cluster);
    let name = cluster.name.clone();
    let r = state.db(move |s| s.create_cluster(&cluster)).await;
    audited(&state, &actor, "", "cluster.create", &name, r).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_clusters(
    State(state): State<ControllerState>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<ClusterView>>> {
    state.authorize(&headers, None, CtlAction::Read)?;
    let all = state.db(|s| s.list_clusters()).await?;
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
        .db(move |s| s.get_cluster(&n))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster named {name:?}")))?;
    Ok(Json(cluster_view(&c)))
}

async fn delete_cluster(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let actor = state.authorize(&headers, None, CtlAction::Admin)?;
    let n = name.clone();
    let r = state.db(move |s| s.delete_cluster(&n)).await;
    audited(&state, &actor, "", "cluster.delete", &name, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- nodes ---------------------------------------------------------------

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
    let node = Node {
        name: input.name,
        cluster: input.cluster,
        k8s_node_name: input.k8s_node_name.unwrap_or_default(),
        labels: input.labels,
        edge_url: input.edge_url,
        edge_credentials: input.edge_credentials,
        created_at: now_secs(),
    };
    let r = state
        .db(move |s| {
            let mut node = node;
            s.create_node(&mut node)?;
            Ok(node)
        })
        .await;
    let node = audited(&state, &actor, "", "node.create", &name, r).await?;
    Ok((StatusCode::CREATED, Json(node_view(&node))))
}

async fn list_nodes(
    State(state): State<ControllerState>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<NodeView>>> {
    state.authorize(&headers, None, CtlAction::Read)?;
    let all = state.db(|s| s.list_nodes()).await?;
    Ok(Json(all.iter().map(node_view).collect()))
}

async fn load_node(state: &ControllerState, name: &str) -> ApiResult<Node> {
    let n = name.to_string();
    state
        .db(move |s| s.get_node(&n))
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
    let r = state.db(move |s| s.delete_node(&n)).await;
    audited(&state, &actor, "", "node.delete", &name, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct KubeconfigQuery {
    project: Option<String>,
}

/// The node's cluster kubeconfig with the project's namespace as the context namespace.
/// System administrators only: it carries the cluster's own credential. Everyone
/// else who may administer the project learns why they cannot have it (409).
async fn node_kubeconfig(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<KubeconfigQuery>,
) -> ApiResult<Response> {
    let project = q.project.ok_or_else(|| {
        ApiError::BadRequest("name the project: add ?project=<project> to the URL".into())
    })?;
    check_project(&project)?;
    let actor = state.authorize(&headers, Some(&project), CtlAction::Admin)?;
    if !actor.admin {
        state.audit(
            &actor,
            &project,
            "kubeconfig.export",
            &name,
            "refused: not a system administrator",
        );
        return Err(ApiError::Conflict(format!(
            "the kubeconfig of node {name}'s cluster carries the cluster's own credential, which \
             only system administrators may export; a kubeconfig scoped to project {project} is \
             not available with this deployer: ask a system administrator"
        )));
    }
    let node = load_node(&state, &name).await?;
    let c = node.cluster.clone();
    let cluster = state
        .db(move |s| s.get_cluster(&c))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster named {:?}", node.cluster)))?;
    let yaml = kubeconfig_for_namespace(&cluster.kubeconfig, &project)
        .map_err(|m| ApiError::Conflict(format!("cluster {}: {m}", cluster.name)))?;
    state.audit(&actor, &project, "kubeconfig.export", &name, "ok");
    Ok((
        [
            (header::CONTENT_TYPE, "application/yaml"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"kubeconfig.yaml\"",
            ),
        ],
        yaml,
    )
        .into_response())
}

// ----- apps ----------------------------------------------------------------

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

async fn load_app(state: &ControllerState, project: &str, app: &str) -> ApiResult<App> {
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

// ----- publications --------------------------------------------------------

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
        crate::resources_ctl::preview_cascade(&state, &pubs).await?
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
