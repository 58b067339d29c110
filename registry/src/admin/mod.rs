//! The admin HTTP API under `/api/v1`, and its OpenAPI document.
//!
//! Handlers are annotated with `utoipa::path` and mounted through an
//! `OpenApiRouter`, so the document served at `/api/v1/openapi.json` is built
//! from the same route table that serves the requests: it cannot drift.
//! Errors are JSON `{"error": "<what went wrong and what to do>"}`.

use std::sync::Arc;

use axum::http::header;
pub(crate) use params::Params;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::access::RegistryAccess;
use crate::gc::GcReport;
use crate::service::LocalRegistry;
use crate::signature::SignatureGate;

mod audit;
mod body;
mod caller;
mod error;
mod gc;
mod image_list;
mod members;
mod params;
mod projects;
mod pulls;
pub use body::{explain_405, is_simple_form, refuse_forms, JsonBody};
mod proxy_projects;
mod quota;
mod replications;
mod repositories;
mod retention;
mod robots;
mod system_keys;
mod system_robots;
mod users;
mod webhooks;

pub use caller::Caller;
use error::{json_errors, AResult};
pub use error::{AdminError, ErrorBody};
pub use members::{MemberView, RoleBody};
pub use projects::{Force, NewProject, ProjectPatch, ProjectView};
pub use repositories::{PolicyView, TagView};
pub use robots::{NewRobot, RobotCreated, RobotView};
pub use users::{NewUser, PasswordChange, UserView};

/// The project-cleanup port, filled in once the controller is up.
pub type CleanupSlot = Arc<std::sync::OnceLock<Arc<dyn crate::project_cleanup::ProjectCleanup>>>;

#[derive(Clone)]
pub struct AdminState {
    pub access: Arc<RegistryAccess>,
    /// Seals proxy projects' upstream passwords (the controller's key).
    pub sealer: Arc<std::sync::OnceLock<Arc<dyn crate::sealing::Sealer>>>,
    /// Takes a deleted project's controller records down (set by `berth serve`).
    pub project_cleanup: CleanupSlot,
    pub proxy: berth_config::ProxyConfig,
    pub registry: Arc<LocalRegistry>,
    /// Runs GC (one at a time) and keeps its history.
    pub gc: Arc<crate::gc_runner::GcRunner>,
    /// Runs projects' retention rules.
    pub retention: Arc<crate::retention::RetentionRunner>,
    /// Where edges' pull reports go (counted, then flushed with the registry's own).
    pub pulls: Arc<crate::pulls::PullCounter>,
    /// host[:port] in the pull commands the image list shows.
    pub pull_host: String,
    pub signatures: Arc<SignatureGate>,
    /// None where no sealing key was given (webhook routes answer 503).
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    /// Replication policies and their executions.
    pub replications: Arc<crate::replication::Replications>,
    /// The keys tokens are signed with, and their rotation.
    pub token_keys: Arc<crate::auth::token_keys::TokenKeys>,
    /// Reseals what the controller keeps (set by `berth serve`).
    pub reseal_elsewhere: ResealSlot,
}

/// The port that reseals what is kept outside the registry's stores.
pub type ResealSlot = Arc<std::sync::OnceLock<Arc<dyn crate::sealing::ResealElsewhere>>>;

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct GcStatus {
    pub running: bool,
    #[schema(value_type = Option<Object>)]
    pub last: Option<GcReport>,
    pub last_error: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth admin API",
        description = "Accounts, projects (with storage quotas, immutable-tag and retention rules), members, robots, repositories, webhooks, replication policies, GC and audit of a berth registry. Authenticate with HTTP Basic or a bearer token from /v2/token."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::delete_user))
        .routes(routes!(users::set_password))
        .routes(routes!(projects::list_projects, projects::create_project))
        .routes(routes!(
            projects::show_project,
            projects::patch_project,
            projects::delete_project
        ))
        .routes(routes!(quota::recount))
        .routes(routes!(quota::list_rules, quota::add_rule))
        .routes(routes!(quota::delete_rule))
        .routes(routes!(retention::show, retention::set))
        .routes(routes!(retention::run))
        .routes(routes!(members::list_members))
        .routes(routes!(members::put_member, members::delete_member))
        .routes(routes!(robots::list_robots, robots::create_robot))
        .routes(routes!(robots::revoke_robot))
        .routes(routes!(system_robots::list, system_robots::create))
        .routes(routes!(system_robots::revoke))
        .routes(routes!(repositories::list_repositories))
        .routes(routes!(repositories::delete_repository))
        .routes(routes!(repositories::list_tags))
        .routes(routes!(repositories::delete_tag))
        .routes(routes!(gc::start, gc::status))
        .routes(routes!(gc::runs))
        .routes(routes!(pulls::report))
        .routes(routes!(audit::audit_log))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::show, webhooks::patch, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(replications::list, replications::create))
        .routes(routes!(
            replications::show,
            replications::patch,
            replications::delete
        ))
        .routes(routes!(replications::run, replications::executions))
        .routes(routes!(replications::execution))
        .routes(routes!(system_keys::list))
        .routes(routes!(system_keys::rotate))
        .routes(routes!(system_keys::reseal))
}

/// The admin API's OpenAPI document, generated from the routes it serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The admin router. `/api/v1/openapi.json` serves what `doc` builds:
/// `openapi()` with what the other routes of the listener add (see
/// `crate::openapi`). Built on the first request, not at start: most
/// registries never serve it, and building it touches much of the binary.
pub fn router(
    state: AdminState,
    doc: impl Fn() -> serde_json::Value + Send + Sync + 'static,
) -> axum::Router {
    let access = state.access.clone();
    let router = routes().with_state(state).split_for_parts().0;
    let built: Arc<std::sync::OnceLock<bytes::Bytes>> = Arc::default();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let body = built
                    .get_or_init(|| serde_json::to_vec(&doc()).unwrap_or_default().into())
                    .clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .layer(axum::middleware::from_fn(refuse_forms))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            access,
            crate::auth::audit::record_refusals,
        ))
}
