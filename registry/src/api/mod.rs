//! The `/v2` router: one name matcher, thin handlers, one error rendering.
//!
//! Repository names contain slashes, so `/v2/*` is matched by `route::parse`,
//! which splits a path into (name, endpoint) once. Handlers turn HTTP into
//! calls on a `Namespace` and its results back into HTTP; the same handlers
//! serve the registry and the edge cache. In read-only mode the write
//! endpoints are simply not routed (405 UNSUPPORTED).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::auth::{Access, Action, Refusal, RequestInfo, Subject};
use crate::oci::{ErrorCode, RepoName};
use crate::service::{metrics::Metrics, Namespace, ServiceError};

mod blobs;
mod body;
pub mod error;
pub(crate) mod events;
mod listing;
mod manifests;
pub mod range;
mod request;
mod response;
pub mod route;

use blobs::{blob_get, content_range, digest_param, upload_start};
use body::{body_stream, SharedBody};
pub use error::ApiError;
use listing::{catalog, referrers, tags};
use manifests::{manifest_get, manifest_put};
pub use request::url_decode_pairs;
use request::Ctx;
use response::{blob_created, empty, json_response, upload_response};
use route::Endpoint;

pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const CHUNK_MIN: HeaderName = HeaderName::from_static("oci-chunk-min-length");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_FILTERS: HeaderName = HeaderName::from_static("oci-filters-applied");
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");

/// Smallest PATCH chunk we ask clients to send (except the last).
pub const CHUNK_MIN_LENGTH: u64 = 1024 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub ns: Arc<dyn Namespace>,
    pub access: Arc<dyn Access>,
    pub metrics: Arc<Metrics>,
    pub read_only: bool,
    pub max_manifest_bytes: u64,
    /// Prefix for Location headers (the external URL), without trailing slash;
    /// empty for relative locations.
    pub base_url: String,
    /// The projects' signature policies, checked on every manifest pull
    /// (the registry's; None on the edge, which serves what it was given).
    pub signatures: Option<Arc<crate::signature::SignatureGate>>,
    /// Where pushes, deletes and pulls are reported (the registry's
    /// webhooks; None on the edge).
    pub events: Option<Arc<crate::webhooks::Webhooks>>,
    /// Told of every manifest GET (pull counts: the registry's batches them
    /// into its metadata, an edge's reports them to its registry).
    pub pulls: Option<Arc<dyn crate::pulls::PullSink>>,
}

/// The `/v2` routes. Mount the token endpoint and the admin API beside it.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v2", axum::routing::any(dispatch))
        .route("/v2/", axum::routing::any(dispatch))
        .route("/v2/{*path}", axum::routing::any(dispatch))
        .with_state(state)
}

/// The same `/v2` API as one call, for a listener's front to answer the
/// paths it `serves` without a router: the routes above match every such
/// path to one handler, and routing would cost a pull about twenty
/// allocations (path parameters, extensions, boxed services cloned).
pub struct V2 {
    state: ApiState,
    /// `?ns=` mirror hosts and the projects they map to (none: no rewrite).
    mirror_hosts: std::collections::BTreeMap<String, String>,
}

impl V2 {
    pub fn new(state: ApiState, mirror_hosts: std::collections::BTreeMap<String, String>) -> Self {
        V2 {
            state,
            mirror_hosts,
        }
    }

    /// Whether `path` is the `/v2` API's (`/v2/token` is the token
    /// endpoint's, routed beside it).
    pub fn serves(path: &str) -> bool {
        path == "/v2" || (path.starts_with("/v2/") && path != "/v2/token")
    }

    pub async fn call(&self, req: Request) -> Response {
        let req = crate::proxy::mirror::to_project(&self.mirror_hosts, req);
        serve(&self.state, req).await
    }
}

async fn dispatch(State(st): State<ApiState>, req: Request) -> Response {
    serve(&st, req).await
}

async fn serve(st: &ApiState, req: Request) -> Response {
    let peer = crate::auth::client::client_addr(req.extensions());
    let (parts, body) = req.into_parts();
    let uri = parts.uri;
    let query: Vec<(String, String)> = uri.query().map(url_decode_pairs).unwrap_or_default();
    let ctx = Ctx {
        method: parts.method,
        headers: parts.headers,
        query,
        peer,
    };
    let body = SharedBody::new(body);
    let res = match route::parse(uri.path()) {
        Ok(endpoint) => handle(st, &ctx, endpoint, Body::new(body.clone())).await,
        Err(e) => Err(e),
    };
    let is_head = ctx.method == Method::HEAD;
    body.drain(&ctx).await;
    let mut res = match res {
        Ok(r) => r,
        Err(e) => {
            if let ApiError::Service(ServiceError::Internal(msg)) = &e {
                tracing::error!(method = %ctx.method, path = %uri.path(), error = %msg, "request failed");
            }
            e.into_response()
        }
    };
    if is_head {
        // HEAD answers carry GET's headers and no body. Handlers set the
        // length of what GET would send where it is not in hand (a blob);
        // for the rest (errors above all) it is the length of the body
        // dropped here.
        if !res.headers().contains_key(header::CONTENT_LENGTH) {
            if let Some(n) = http_body::Body::size_hint(res.body()).exact() {
                res.headers_mut().insert(header::CONTENT_LENGTH, n.into());
            }
        }
        *res.body_mut() = Body::empty();
    }
    res
}

async fn authorize(
    st: &ApiState,
    ctx: &Ctx,
    scope: Option<(&RepoName, Action)>,
) -> Result<Subject, ApiError> {
    let info = RequestInfo {
        headers: &ctx.headers,
        peer: ctx.peer,
    };
    st.access
        .check(&info, scope)
        .await
        .map_err(ApiError::Refused)
}

fn unsupported_method(ctx: &Ctx, what: &str) -> ApiError {
    ApiError::Service(ServiceError::oci(
        ErrorCode::Unsupported,
        format!("{} is not supported on {what}", ctx.method),
    ))
}

fn read_only_refusal() -> ApiError {
    ApiError::Service(ServiceError::ReadOnly(
        "this registry serves pulls only; push to the central registry".into(),
    ))
}

async fn handle(
    st: &ApiState,
    ctx: &Ctx,
    endpoint: Endpoint,
    body: Body,
) -> Result<Response, ApiError> {
    let writes = !st.read_only;
    match endpoint {
        Endpoint::Base => match ctx.method {
            Method::GET | Method::HEAD => {
                authorize(st, ctx, None).await?;
                Ok(json_response(StatusCode::OK, b"{}".to_vec()))
            }
            _ => Err(unsupported_method(ctx, "/v2/")),
        },
        Endpoint::Catalog => match ctx.method {
            Method::GET => catalog(st, ctx).await,
            _ => Err(unsupported_method(ctx, "/v2/_catalog")),
        },
        Endpoint::Tags(repo) => match ctx.method {
            Method::GET => tags(st, ctx, &repo).await,
            _ => Err(unsupported_method(ctx, "the tag list")),
        },
        Endpoint::Referrers(repo, digest) => match ctx.method {
            Method::GET => referrers(st, ctx, &repo, &digest).await,
            _ => Err(unsupported_method(ctx, "the referrers API")),
        },
        Endpoint::Manifest(repo, reference) => match ctx.method {
            Method::GET | Method::HEAD => manifest_get(st, ctx, &repo, &reference).await,
            Method::PUT if writes => manifest_put(st, ctx, &repo, &reference, body).await,
            Method::DELETE if writes => {
                let subject = authorize(st, ctx, Some((&repo, Action::Delete))).await?;
                st.ns.manifest_delete(&repo, &reference).await?;
                st.access.record(
                    &subject,
                    ctx.peer,
                    "manifest.delete",
                    &repo,
                    &format!("{repo}:{reference}"),
                );
                if let Some(events) = &st.events {
                    events
                        .emit(events::manifest_deleted(&repo, &reference, &subject))
                        .await;
                }
                Ok(empty(StatusCode::ACCEPTED))
            }
            Method::PUT | Method::DELETE => Err(read_only_refusal()),
            _ => Err(unsupported_method(ctx, "manifests")),
        },
        Endpoint::Blob(repo, digest) => match ctx.method {
            Method::GET | Method::HEAD => blob_get(st, ctx, &repo, &digest).await,
            Method::DELETE if writes => {
                let subject = authorize(st, ctx, Some((&repo, Action::Delete))).await?;
                st.ns.blob_delete(&repo, &digest).await?;
                st.access.record(
                    &subject,
                    ctx.peer,
                    "blob.delete",
                    &repo,
                    &format!("{repo}@{digest}"),
                );
                Ok(empty(StatusCode::ACCEPTED))
            }
            Method::DELETE => Err(read_only_refusal()),
            _ => Err(unsupported_method(ctx, "blobs")),
        },
        Endpoint::UploadStart(repo) => match ctx.method {
            Method::POST if writes => upload_start(st, ctx, &repo, body).await,
            Method::POST => Err(read_only_refusal()),
            _ => Err(unsupported_method(ctx, "blob uploads")),
        },
        Endpoint::Upload(repo, id) => upload(st, ctx, &repo, &id, body).await,
    }
}

/// An upload session: its status (GET), a chunk (PATCH), the last chunk and
/// the digest (PUT), cancelling it (DELETE). Not routed in read-only mode.
async fn upload(
    st: &ApiState,
    ctx: &Ctx,
    repo: &RepoName,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if st.read_only {
        return Err(read_only_refusal());
    }
    match ctx.method {
        Method::GET => {
            authorize(st, ctx, Some((repo, Action::Push))).await?;
            let s = st.ns.upload_status(repo, id).await?;
            Ok(upload_response(
                st,
                StatusCode::NO_CONTENT,
                repo,
                &s.id,
                s.offset,
            ))
        }
        Method::PATCH => {
            authorize(st, ctx, Some((repo, Action::Push))).await?;
            let range = content_range(ctx)?;
            let s = st
                .ns
                .upload_append(repo, id, range, body_stream(body))
                .await?;
            Ok(upload_response(
                st,
                StatusCode::ACCEPTED,
                repo,
                &s.id,
                s.offset,
            ))
        }
        Method::PUT => {
            authorize(st, ctx, Some((repo, Action::Push))).await?;
            let digest = digest_param(ctx)?;
            let range = content_range(ctx)?;
            let has_body = range.is_some()
                || ctx
                    .header(header::CONTENT_LENGTH)
                    .is_some_and(|l| l.trim() != "0")
                || ctx.headers.contains_key(header::TRANSFER_ENCODING);
            // The last (or only) chunk's size is known: a blob that
            // cannot fit is refused before it is read.
            let len = ctx
                .header(header::CONTENT_LENGTH)
                .and_then(|l| l.trim().parse::<u64>().ok());
            if let (true, Some(len)) = (has_body, len) {
                st.ns.precheck_blob(repo, &digest, len).await?;
            }
            let body = has_body.then(|| body_stream(body));
            st.ns.upload_finish(repo, id, &digest, range, body).await?;
            Ok(blob_created(st, repo, &digest))
        }
        Method::DELETE => {
            authorize(st, ctx, Some((repo, Action::Push))).await?;
            st.ns.upload_cancel(repo, id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(unsupported_method(ctx, "blob uploads")),
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::Refused(r)
    }
}

#[cfg(test)]
mod tests;
