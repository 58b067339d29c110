//! Blob handlers: GET and HEAD (ranges, redirects to the bucket), and starting an upload (mount, monolithic, or a session).

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;

use super::body::body_stream;
use super::request::Ctx;
use super::response::{blob_created, empty, hv, upload_response};
use super::{authorize, range, ApiError, ApiState, CONTENT_DIGEST};
use crate::auth::Action;
use crate::content::ByteRange;
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::service::ServiceError;

pub(super) fn digest_param(ctx: &Ctx) -> Result<Digest, ApiError> {
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
pub(super) fn content_range(ctx: &Ctx) -> Result<Option<(u64, u64)>, ApiError> {
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
pub(super) fn parse_range(raw: &str, size: u64) -> Result<Option<ByteRange>, ApiError> {
    range::parse_range(raw, size)
        .map_err(|_| ApiError::Service(ServiceError::RangeNotSatisfiable { size }))
}

pub(super) async fn blob_get(
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

pub(super) async fn upload_start(
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
