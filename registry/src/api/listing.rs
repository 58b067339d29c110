//! The paginated listings: a repository's tags, the catalog, and the referrers of a manifest.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::request::Ctx;
use super::response::{hv, json_response, stale_warning};
use super::{authorize, ApiError, ApiState, OCI_FILTERS};
use crate::auth::{Action, RequestInfo};
use crate::oci::{media, Digest, RepoName};
use crate::service::ServiceError;

/// Default and largest page for tag lists and the catalog.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

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

pub(super) async fn tags(st: &ApiState, ctx: &Ctx, repo: &RepoName) -> Result<Response, ApiError> {
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

pub(super) async fn catalog(st: &ApiState, ctx: &Ctx) -> Result<Response, ApiError> {
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

pub(super) async fn referrers(
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
