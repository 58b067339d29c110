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

/// Every handler of the admin API, each once, in the order the document
/// lists them; `$with` is the macro that registers them.
macro_rules! admin_handlers {
    ($with:ident) => {
        $with!(
            users::list_users,
            users::create_user,
            users::delete_user,
            users::set_password,
            projects::list_projects,
            projects::create_project,
            projects::show_project,
            projects::patch_project,
            projects::delete_project,
            quota::recount,
            quota::list_rules,
            quota::add_rule,
            quota::delete_rule,
            retention::show,
            retention::set,
            retention::run,
            members::list_members,
            members::put_member,
            members::delete_member,
            robots::list_robots,
            robots::create_robot,
            robots::revoke_robot,
            system_robots::list,
            system_robots::create,
            system_robots::revoke,
            repositories::list_repositories,
            repositories::delete_repository,
            repositories::list_tags,
            repositories::delete_tag,
            gc::start,
            gc::status,
            gc::runs,
            pulls::report,
            audit::audit_log,
            webhooks::list,
            webhooks::create,
            webhooks::show,
            webhooks::patch,
            webhooks::delete,
            webhooks::deliveries,
            webhooks::rotate_secret,
            replications::list,
            replications::create,
            replications::show,
            replications::patch,
            replications::delete,
            replications::run,
            replications::executions,
            replications::execution,
            system_keys::list,
            system_keys::rotate,
            system_keys::reseal,
        )
    };
}

/// The admin routes with their OpenAPI descriptions: what the document is
/// built from.
fn routes() -> OpenApiRouter<AdminState> {
    macro_rules! documented {
        ($($module:ident::$handler:ident),* $(,)?) => {
            OpenApiRouter::with_openapi(ApiDoc::openapi())$(.routes(routes!($module::$handler)))*
        };
    }
    admin_handlers!(documented)
}

/// The same routes without their descriptions: the router `berth serve`
/// answers with. Building the descriptions takes tens of KiB of stack and
/// much of utoipa's code, which start-up would otherwise keep resident.
fn plain_routes() -> axum::Router<AdminState> {
    macro_rules! plain {
        ($($module:ident::$handler:ident),* $(,)?) => {{
            let router = axum::Router::new();
            $(
                let router = utoipa_axum::paste! {
                    route::<$module::[<__path_ $handler>], _, _>(router, $module::$handler)
                };
            )*
            router
        }};
    }
    admin_handlers!(plain)
}

/// `handler` at the path and methods its `#[utoipa::path]` names; routes at
/// one path are merged by axum, as `OpenApiRouter` merges them.
fn route<P, H, T>(router: axum::Router<AdminState>, handler: H) -> axum::Router<AdminState>
where
    P: utoipa::Path,
    H: axum::handler::Handler<T, AdminState>,
    T: 'static,
{
    use utoipa_axum::PathItemExt;
    let methods = P::methods()
        .iter()
        .fold(axum::routing::MethodRouter::new(), |r, m| {
            r.on(m.to_method_filter(), handler.clone())
        });
    router.route(&P::path(), methods)
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
    let router = plain_routes().with_state(state);
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
