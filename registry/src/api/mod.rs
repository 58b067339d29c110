//! The `/v2` router: one name matcher, thin handlers, one error rendering.
//!
//! Repository names contain slashes, so `/v2/*` is matched by `route::parse`,
//! which splits a path into (name, endpoint) once. Handlers turn HTTP into
//! calls on a `Namespace` and its results back into HTTP; the same handlers
//! serve the registry and the edge cache. In read-only mode the write
//! endpoints are simply not routed (405 UNSUPPORTED).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::TryStreamExt;
use http_body_util::BodyExt;

use crate::auth::{Access, Action, Refusal, RequestInfo, Subject};
use crate::content::ByteRange;
use crate::oci::{media, Digest, ErrorCode, Reference, RepoName, Tag};
use crate::service::{metrics::Metrics, BodyStream, Namespace, ServiceError};

pub mod error;
pub(crate) mod events;
pub mod range;
pub mod route;

pub use error::ApiError;
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
/// After an answer that left the request body unread (a refused chunk, a
/// manifest over the limit, a failed login), at most this much of it is read
/// and discarded, so the client can finish sending and read the answer.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default and largest page for tag lists and the catalog.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

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

/// Adds `Docker-Distribution-API-Version` to every response.
pub async fn api_version_header(req: Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    res
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn body_stream(body: Body) -> BodyStream {
    Box::pin(TryStreamExt::map_err(
        body.into_data_stream(),
        std::io::Error::other,
    ))
}

struct Ctx {
    method: Method,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    peer: Option<std::net::IpAddr>,
}

impl Ctx {
    fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn q_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn dispatch(State(st): State<ApiState>, req: Request) -> Response {
    let peer = crate::auth::client::client_addr(req.extensions());
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query: Vec<(String, String)> = parts.uri.query().map(url_decode_pairs).unwrap_or_default();
    let ctx = Ctx {
        method: parts.method,
        headers: parts.headers,
        query,
        peer,
    };
    let body = SharedBody::new(body);
    let res = match route::parse(&path) {
        Ok(endpoint) => handle(&st, &ctx, endpoint, Body::new(body.clone())).await,
        Err(e) => Err(e),
    };
    let is_head = ctx.method == Method::HEAD;
    body.drain(&ctx).await;
    let mut res = match res {
        Ok(r) => r,
        Err(e) => {
            if let ApiError::Service(ServiceError::Internal(msg)) = &e {
                tracing::error!(method = %ctx.method, path = %path, error = %msg, "request failed");
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

/// The request body, shared between the handler and `dispatch`.
///
/// A server that answers before reading the body (a 416 for an out-of-order
/// chunk, a 413, a 401) and then closes the connection makes the client's
/// send fail with a reset or broken pipe, often before it has read the
/// answer: the client never sees the 416's `Range` and cannot resume. So
/// whatever the handler leaves unread is drained (bounded) before answering.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<SharedState>>);

struct SharedState {
    body: Body,
    /// The handler asked for the body (and so a `100 Continue` went out).
    polled: bool,
    done: bool,
}

impl SharedBody {
    fn new(body: Body) -> Self {
        SharedBody(Arc::new(Mutex::new(SharedState {
            body,
            polled: false,
            done: false,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and discards what is left of the body, up to `DRAIN_LIMIT`.
    async fn drain(&self, ctx: &Ctx) {
        {
            let s = self.state();
            if s.done || http_body::Body::is_end_stream(&s.body) {
                return;
            }
            // A client waiting for `100 Continue` that never came has sent nothing.
            let expects_continue = ctx
                .header(header::EXPECT)
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
            if expects_continue && !s.polled {
                return;
            }
        }
        let mut body = self.clone();
        let mut left = DRAIN_LIMIT;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while left > 0 {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let n = frame.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                        left = left.saturating_sub(n);
                    }
                    _ => break,
                }
            }
        })
        .await;
    }
}

impl http_body::Body for SharedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut s = self.state();
        s.polled = true;
        let res = Pin::new(&mut s.body).poll_frame(cx);
        if matches!(res, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            s.done = true;
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        let s = self.state();
        s.done || http_body::Body::is_end_stream(&s.body)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.state().body)
    }
}

pub fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
        Endpoint::Upload(repo, id) => {
            if !writes {
                return Err(read_only_refusal());
            }
            match ctx.method {
                Method::GET => {
                    authorize(st, ctx, Some((&repo, Action::Push))).await?;
                    let s = st.ns.upload_status(&repo, &id).await?;
                    Ok(upload_response(
                        st,
                        StatusCode::NO_CONTENT,
                        &repo,
                        &s.id,
                        s.offset,
                    ))
                }
                Method::PATCH => {
                    authorize(st, ctx, Some((&repo, Action::Push))).await?;
                    let range = content_range(ctx)?;
                    let s = st
                        .ns
                        .upload_append(&repo, &id, range, body_stream(body))
                        .await?;
                    Ok(upload_response(
                        st,
                        StatusCode::ACCEPTED,
                        &repo,
                        &s.id,
                        s.offset,
                    ))
                }
                Method::PUT => {
                    authorize(st, ctx, Some((&repo, Action::Push))).await?;
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
                        st.ns.precheck_blob(&repo, &digest, len).await?;
                    }
                    let body = has_body.then(|| body_stream(body));
                    st.ns
                        .upload_finish(&repo, &id, &digest, range, body)
                        .await?;
                    Ok(blob_created(st, &repo, &digest))
                }
                Method::DELETE => {
                    authorize(st, ctx, Some((&repo, Action::Push))).await?;
                    st.ns.upload_cancel(&repo, &id).await?;
                    Ok(empty(StatusCode::NO_CONTENT))
                }
                _ => Err(unsupported_method(ctx, "blob uploads")),
            }
        }
    }
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn location(st: &ApiState, path: String) -> HeaderValue {
    hv(&format!("{}{}", st.base_url, path))
}

fn upload_response(
    st: &ApiState,
    status: StatusCode,
    repo: &RepoName,
    id: &str,
    offset: u64,
) -> Response {
    let mut r = empty(status);
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        location(st, format!("/v2/{repo}/blobs/uploads/{id}")),
    );
    h.insert(UPLOAD_UUID, hv(id));
    h.insert(
        header::RANGE,
        hv(&format!("0-{}", offset.saturating_sub(1))),
    );
    h.insert(CHUNK_MIN, hv(&CHUNK_MIN_LENGTH.to_string()));
    r
}

fn blob_created(st: &ApiState, repo: &RepoName, digest: &Digest) -> Response {
    let mut r = empty(StatusCode::CREATED);
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        location(st, format!("/v2/{repo}/blobs/{digest}")),
    );
    h.insert(CONTENT_DIGEST, hv(&digest.to_string()));
    r
}

fn digest_param(ctx: &Ctx) -> Result<Digest, ApiError> {
    let raw = ctx.q("digest").ok_or_else(|| {
        ApiError::Service(ServiceError::oci(
            ErrorCode::DigestInvalid,
            "the digest query parameter is required to complete an upload (…?digest=sha256:<hex>)",
        ))
    })?;
    raw.parse().map_err(|e: crate::oci::DigestError| {
        ApiError::Service(ServiceError::oci(ErrorCode::DigestInvalid, e.to_string()))
    })
}

/// `Content-Range: <start>-<end>` on a PATCH (also accepts `bytes <start>-<end>/<total>`).
fn content_range(ctx: &Ctx) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(raw) = ctx.header(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    match range::parse_content_range(raw) {
        Some(r) => Ok(Some(r)),
        None => Err(ApiError::Service(ServiceError::oci(
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range {raw:?} is not of the form <start>-<end> with start <= end"),
        ))),
    }
}

/// A single `Range: bytes=...` request, resolved against `size` (see `range::parse_range`).
fn parse_range(raw: &str, size: u64) -> Result<Option<ByteRange>, ApiError> {
    range::parse_range(raw, size)
        .map_err(|_| ApiError::Service(ServiceError::RangeNotSatisfiable { size }))
}

async fn blob_get(
    st: &ApiState,
    ctx: &Ctx,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    authorize(st, ctx, Some((repo, Action::Pull))).await?;
    let size = st.ns.blob_stat(repo, digest).await?;
    let range = match ctx.header(header::RANGE) {
        Some(raw) => parse_range(raw, size)?,
        None => None,
    };
    if ctx.method == Method::GET {
        if let Some(url) = st.ns.blob_redirect(repo, digest).await? {
            return Ok(blob_redirect(&url, digest));
        }
    }
    let mut builder = Response::builder()
        .header(CONTENT_DIGEST, hv(&digest.to_string()))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, hv(&format!("\"{digest}\"")))
        .header(header::CACHE_CONTROL, "max-age=31536000")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if ctx.method == Method::HEAD {
        let (status, len) = match range {
            Some(r) => {
                let end = r.end.unwrap_or(size - 1);
                builder = builder.header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{}", r.start, end, size),
                );
                (StatusCode::PARTIAL_CONTENT, end - r.start + 1)
            }
            None => (StatusCode::OK, size),
        };
        return builder
            .status(status)
            .header(header::CONTENT_LENGTH, len)
            .body(Body::empty())
            .map_err(|e| ApiError::Service(ServiceError::Internal(e.to_string())));
    }
    let read = st.ns.blob_read(repo, digest, range).await?;
    let status = if range.is_some() {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{}",
                read.start,
                read.start + read.len.saturating_sub(1),
                read.size
            ),
        );
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    builder
        .status(status)
        .header(header::CONTENT_LENGTH, read.len)
        .body(Body::from_stream(read.body))
        .map_err(|e| ApiError::Service(ServiceError::Internal(e.to_string())))
}

/// A `307` to where the blob's bytes are (a presigned URL: the client
/// sends its `Range` there too). Never stored by caches: the URL expires,
/// and it was handed to one caller who may pull.
fn blob_redirect(url: &str, digest: &Digest) -> Response {
    let mut r = empty(StatusCode::TEMPORARY_REDIRECT);
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(url));
    h.insert(CONTENT_DIGEST, hv(&digest.to_string()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn upload_start(
    st: &ApiState,
    ctx: &Ctx,
    repo: &RepoName,
    body: Body,
) -> Result<Response, ApiError> {
    let subject = authorize(st, ctx, Some((repo, Action::Push))).await?;
    if let Some(mount) = ctx.q("mount") {
        let digest: Digest = mount.parse().map_err(|e: crate::oci::DigestError| {
            ApiError::Service(ServiceError::oci(ErrorCode::DigestInvalid, e.to_string()))
        })?;
        let from = match ctx.q("from") {
            Some(f) if !f.is_empty() => Some(f.parse::<RepoName>().map_err(|e| {
                ApiError::Service(ServiceError::oci(ErrorCode::NameInvalid, e.to_string()))
            })?),
            _ => None,
        };
        let access = st.access.clone();
        let may_read = move |name: &str| access.may_pull(&subject, name);
        if st
            .ns
            .blob_mount(repo, &digest, from.as_ref(), &may_read)
            .await?
            .is_some()
        {
            return Ok(blob_created(st, repo, &digest));
        }
        // Not mountable: fall back to a regular upload session, as the spec says.
    } else if let Some(raw) = ctx.q("digest") {
        let digest: Digest = raw.parse().map_err(|e: crate::oci::DigestError| {
            ApiError::Service(ServiceError::oci(ErrorCode::DigestInvalid, e.to_string()))
        })?;
        let len = ctx
            .header(header::CONTENT_LENGTH)
            .and_then(|l| l.trim().parse::<u64>().ok());
        st.ns
            .blob_put(repo, &digest, len, body_stream(body))
            .await?;
        return Ok(blob_created(st, repo, &digest));
    }
    let s = st.ns.upload_start(repo).await?;
    Ok(upload_response(st, StatusCode::ACCEPTED, repo, &s.id, 0))
}

async fn manifest_get(
    st: &ApiState,
    ctx: &Ctx,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    let subject = authorize(st, ctx, Some((repo, Action::Pull))).await?;
    let m = st.ns.manifest(repo, reference).await?;
    if let Some(gate) = &st.signatures {
        gate.check_pull(repo, &m.digest).await?;
    }
    let filling = ctx.headers.contains_key(crate::pulls::FILL_HEADER);
    if let (Some(pulls), true) = (&st.pulls, ctx.method == Method::GET && !filling) {
        pulls.pulled(repo, &m.digest);
    }
    if let (Some(events), true) = (&st.events, ctx.method == Method::GET) {
        events.emit_later(events::manifest_pulled(
            repo,
            reference,
            &m.digest,
            &m.media_type,
            &subject,
        ));
    }
    let accept: Vec<String> = ctx
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if !media::acceptable(&m.media_type, &accept) {
        return Err(ApiError::Service(ServiceError::with_detail(
            ErrorCode::ManifestUnknown,
            format!(
                "manifest {reference} in {repo} is a {}, which the client's Accept header does not list",
                m.media_type
            ),
            serde_json::json!({"mediaType": m.media_type}),
        )));
    }
    let mut r = Response::new(Body::from(m.bytes.clone()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert(header::CONTENT_LENGTH, hv(&m.bytes.len().to_string()));
    h.insert(CONTENT_DIGEST, hv(&m.digest.to_string()));
    h.insert(header::ETAG, hv(&format!("\"{}\"", m.digest)));
    if m.stale {
        h.insert(header::WARNING, stale_warning());
    }
    Ok(r)
}

async fn manifest_put(
    st: &ApiState,
    ctx: &Ctx,
    repo: &RepoName,
    reference: &Reference,
    body: Body,
) -> Result<Response, ApiError> {
    let subject = authorize(st, ctx, Some((repo, Action::Push))).await?;
    let limit = st.max_manifest_bytes;
    let too_big = || {
        ApiError::TooLarge(format!(
            "manifest is larger than the {limit}-byte limit; split the image or raise server.max_manifest_bytes"
        ))
    };
    if ctx
        .header(header::CONTENT_LENGTH)
        .and_then(|l| l.trim().parse::<u64>().ok())
        .is_some_and(|l| l > limit)
    {
        return Err(too_big());
    }
    let bytes = http_body_util::Limited::new(body, limit as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_big()
            } else {
                ApiError::Service(ServiceError::oci(
                    ErrorCode::ManifestInvalid,
                    format!("the manifest body broke off: {e}"),
                ))
            }
        })?
        .to_bytes();
    let content_type = ctx.header(header::CONTENT_TYPE).unwrap_or("");
    let size = bytes.len() as u64;
    let mut extra = Vec::new();
    for t in ctx.q_all("tag") {
        extra.push(t.parse::<Tag>().map_err(|e| {
            ApiError::Service(ServiceError::oci(ErrorCode::ManifestInvalid, e.to_string()))
        })?);
    }
    // The push's event is queued with the manifest, in one transaction.
    let hooks = st.events.as_deref();
    let actor = &subject;
    let build = hooks.map(|h| {
        move |p: &crate::service::PushedManifest| {
            h.outbox_event(&events::manifest_pushed(repo, p, content_type, size, actor))
        }
    });
    let event: Option<crate::service::PushEvent<'_>> = build.as_ref().map(|b| b as _);
    let pushed = st
        .ns
        .manifest_put(repo, reference, content_type, bytes, &extra, event)
        .await?;
    st.access.record(
        &subject,
        ctx.peer,
        "push",
        repo,
        &format!("{repo}:{reference}@{}", pushed.digest),
    );
    if let Some(h) = hooks {
        let e = events::manifest_pushed(repo, &pushed, content_type, size, &subject);
        h.queued(&e, pushed.events_dropped);
    }
    let mut r = empty(StatusCode::CREATED);
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        location(st, format!("/v2/{repo}/manifests/{}", pushed.digest)),
    );
    h.insert(CONTENT_DIGEST, hv(&pushed.digest.to_string()));
    if let Some(s) = &pushed.subject {
        h.insert(OCI_SUBJECT, hv(&s.to_string()));
    }
    if !extra.is_empty() {
        for t in &pushed.tags {
            h.append(OCI_TAG, hv(t.as_str()));
        }
    }
    Ok(r)
}

fn page_size(ctx: &Ctx) -> Result<Option<usize>, ApiError> {
    match ctx.q("n") {
        None | Some("") => Ok(None),
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .map(|n| Some(n.min(MAX_PAGE)))
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "n={raw:?} is not a page size; use a whole number like n=100"
                ))
            }),
    }
}

fn link_next(path: &str, n: usize, last: &str) -> HeaderValue {
    hv(&format!("<{path}?n={n}&last={last}>; rel=\"next\""))
}

async fn tags(st: &ApiState, ctx: &Ctx, repo: &RepoName) -> Result<Response, ApiError> {
    authorize(st, ctx, Some((repo, Action::Pull))).await?;
    let n = page_size(ctx)?;
    let last = ctx.q("last").filter(|l| !l.is_empty());
    let page = st.ns.tags(repo, last, n.unwrap_or(usize::MAX)).await?;
    let tags = &page.tags;
    let body = serde_json::to_vec(&serde_json::json!({"name": repo.as_str(), "tags": tags}))
        .map_err(|e| ApiError::Service(ServiceError::Internal(e.to_string())))?;
    let mut r = json_response(StatusCode::OK, body);
    if page.stale {
        r.headers_mut().insert(header::WARNING, stale_warning());
    }
    if page.more {
        if let (Some(n), Some(l)) = (n, tags.last()) {
            r.headers_mut().insert(
                header::LINK,
                link_next(&format!("/v2/{repo}/tags/list"), n, l),
            );
        }
    }
    Ok(r)
}

async fn catalog(st: &ApiState, ctx: &Ctx) -> Result<Response, ApiError> {
    let info = RequestInfo {
        headers: &ctx.headers,
        peer: ctx.peer,
    };
    let subject = st.access.identify(&info).await.map_err(ApiError::Refused)?;
    let n = page_size(ctx)?.unwrap_or(DEFAULT_PAGE);
    let last = ctx.q("last").filter(|l| !l.is_empty());
    let access = st.access.clone();
    let visible = move |name: &str| access.may_pull(&subject, name);
    let (repos, more) = st.ns.catalog(last, n, &visible).await?;
    let body = serde_json::to_vec(&serde_json::json!({"repositories": repos}))
        .map_err(|e| ApiError::Service(ServiceError::Internal(e.to_string())))?;
    let mut r = json_response(StatusCode::OK, body);
    if more {
        if let Some(l) = repos.last() {
            r.headers_mut()
                .insert(header::LINK, link_next("/v2/_catalog", n, l));
        }
    }
    Ok(r)
}

async fn referrers(
    st: &ApiState,
    ctx: &Ctx,
    repo: &RepoName,
    subject: &Digest,
) -> Result<Response, ApiError> {
    authorize(st, ctx, Some((repo, Action::Pull))).await?;
    let found = st.ns.referrers(repo, subject).await?;
    let mut list = found.manifests;
    let filter = ctx.q("artifactType").filter(|a| !a.is_empty());
    if let Some(f) = filter {
        list.retain(|d| d.artifact_type.as_deref() == Some(f));
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": list,
    }))
    .map_err(|e| ApiError::Service(ServiceError::Internal(e.to_string())))?;
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::OCI_INDEX),
    );
    if filter.is_some() {
        r.headers_mut()
            .insert(OCI_FILTERS, HeaderValue::from_static("artifactType"));
    }
    if found.stale {
        r.headers_mut().insert(header::WARNING, stale_warning());
    }
    Ok(r)
}

/// The Warning (RFC 7234's 110) on an answer a pull-through cache assembled
/// while its upstream was unreachable: it may lack what upstream has since.
fn stale_warning() -> HeaderValue {
    HeaderValue::from_static("110 berth \"Response is Stale\"")
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::Refused(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100).ok().flatten(),
            Some(ByteRange {
                start: 0,
                end: Some(9)
            })
        );
        assert_eq!(
            parse_range("bytes=90-", 100).ok().flatten(),
            Some(ByteRange {
                start: 90,
                end: None
            })
        );
        assert_eq!(
            parse_range("bytes=-10", 100).ok().flatten(),
            Some(ByteRange {
                start: 90,
                end: Some(99)
            })
        );
        assert_eq!(
            parse_range("bytes=50-500", 100).ok().flatten(),
            Some(ByteRange {
                start: 50,
                end: Some(99)
            })
        );
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=9-1", 100).is_err());
        assert!(parse_range("bytes=x-", 100).is_err());
        assert_eq!(parse_range("bytes=0-1,5-6", 100).ok().flatten(), None);
        assert_eq!(parse_range("items=0-1", 100).ok().flatten(), None);
    }

    #[test]
    fn query_decoding() {
        let q = url_decode_pairs("digest=sha256%3Aab&tag=a&tag=b&empty&x=%zz");
        assert_eq!(q[0], ("digest".into(), "sha256:ab".into()));
        assert_eq!(q[2], ("tag".into(), "b".into()));
        assert_eq!(q[3], ("empty".into(), "".into()));
        assert_eq!(q[4], ("x".into(), "%zz".into()));
    }
}
