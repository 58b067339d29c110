//! The controller's `/api/v1` endpoints: clusters, nodes, apps and their
//! versions, publish/unpublish and publication status, and the resources that
//! travel with apps.
//!
//! Owns: routes, request and response bodies, the mapping of errors to statuses
//! and to JSON bodies a person can act on (`error`), and audit records of requests.
//!
//! Must not touch: redb (goes through `store`), edge caches or clusters (the
//! reconciler does that; handlers record the request and trigger it), but
//! for reads a person asks for (container logs, a node's cache). Nothing
//! else in the crate imports this module but `cli`, which reads its bodies.
//!
//! - `clusters`: clusters, nodes, a node's kubeconfig;
//! - `node_cache`: a node's edge cache, read from its edge on request;
//! - `apps`: apps and their template versions;
//! - `manifests`: apps as Kubernetes YAML (create, export) and clones;
//! - `publications`: publish, unpublish, publication status, logs;
//! - `resources`: the resource collections;
//! - `resource_publications`: publishing and unpublishing resources per node;
//! - `volumes`: what loses a volume's data (maintainer role and `confirm`), unbind;
//! - `reports`: edges report finished prefetch jobs (`report_router`; its own token).

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use axum::routing::MethodRouter;
use axum::Router;

use crate::model::{validate_dns_label, AppSpec, ImageRef};
use crate::ports::{Actor, AuthError, CtlAction, ResolveError};
use crate::state::ControllerState;

mod apps;
mod clusters;
mod doc;
mod error;
mod manifests;
mod node_cache;
mod params;
mod publications;
mod reports;
mod resource_publications;
mod resources;
mod volumes;

pub use self::apps::{AppView, CreateAppInput, UpdateAppInput, VersionCreated};
pub use self::clusters::{ClusterView, NodeView};
pub use self::doc::openapi_paths;
use self::error::ApiResult;
pub use self::error::{ApiError, Body};
pub use self::manifests::{AddVolume, CloneInput};
pub use self::node_cache::NodeCacheView;
pub use self::publications::{PublicationsView, PublishInput, UnpublishInput};
pub use self::reports::report_router;
pub use self::resource_publications::{ResourcePublicationsView, ResourceTargetInput};
pub use self::resources::ResourceView;
pub use self::volumes::{ReleaseInput, UnbindInput, UnbindView};

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

    /// Every image `spec` names has a project here to come from (its own,
    /// or the proxy-cache project of its registry's host; a 400 saying how
    /// to add one otherwise), and the actor may pull from each, whichever
    /// project it is: an app must neither deploy images its author cannot see
    /// nor reveal their digests (publication status shows what a tag resolved to).
    fn authorize_images(
        &self,
        headers: &HeaderMap,
        project: &str,
        spec: &AppSpec,
    ) -> ApiResult<()> {
        let mut others = BTreeSet::new();
        for image in spec.images() {
            match self.context().resolver.project_of(&image) {
                Ok(source) => {
                    others.insert(source);
                }
                // The spec's validation names every malformed image.
                Err(ResolveError::InvalidReference(_)) => {}
                Err(e) => {
                    // Whether a project of this registry exists is told only
                    // to those who may see it.
                    let named = ImageRef::parse(&image).ok();
                    if let Some(p) = named.as_ref().and_then(ImageRef::project) {
                        self.authorize_image_project(headers, p)?;
                    }
                    return Err(ApiError::BadRequest(e.to_string()));
                }
            }
        }
        others.remove(project);
        for other in others {
            self.authorize_image_project(headers, &other)?;
        }
        Ok(())
    }

    fn authorize_image_project(&self, headers: &HeaderMap, other: &str) -> ApiResult<()> {
        self.authorizer()
            .authorize(headers, Some(other), CtlAction::Read)
            .map(|_| ())
            .map_err(|e| {
                ApiError::Auth(AuthError {
                    status: e.status,
                    message: format!("{} (the app uses images of project {other})", e.message),
                })
            })
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
    result: Result<T, impl Into<ApiError>>,
) -> ApiResult<T> {
    let result = result.map_err(Into::into);
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e @ ApiError::Internal(_)) => format!("failed: {e}"),
        Err(e) => format!("refused: {e}"),
    };
    state.audit(actor, project, action, target, &outcome);
    result
}

/// A router that keeps the list of the paths it routes, so that the OpenAPI
/// document can be checked against it (axum cannot list its routes).
pub(super) struct Routes {
    router: Router<ControllerState>,
    paths: Vec<String>,
}

impl Routes {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    fn route(mut self, path: &str, methods: MethodRouter<ControllerState>) -> Self {
        self.paths.push(path.to_string());
        self.router = self.router.route(path, methods);
        self
    }

    fn merge(mut self, other: Routes) -> Self {
        self.paths.extend(other.paths);
        self.router = self.router.merge(other.router);
        self
    }
}

fn all_routes() -> Routes {
    Routes::new()
        .merge(clusters::routes())
        .merge(node_cache::routes())
        .merge(apps::routes())
        .merge(publications::routes())
        .merge(resources::routes())
        .merge(resource_publications::routes())
}

/// The controller's routes, to be merged into the registry's router.
pub fn router(state: ControllerState) -> Router {
    all_routes().router.with_state(state)
}

/// The paths `router` and `report_router` serve, as registered (`{param}` templates).
pub fn route_paths() -> Vec<String> {
    let mut paths = all_routes().paths;
    paths.push(reports::path_template());
    paths
}

/// The project named in the path is a valid project name.
fn check_project(project: &str) -> ApiResult<()> {
    validate_dns_label(project).map_err(|m| ApiError::BadRequest(format!("project: {m}")))
}
