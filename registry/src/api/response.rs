//! Building answers: empty and JSON bodies, upload and blob locations, the stale warning.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::{ApiState, CHUNK_MIN, CHUNK_MIN_LENGTH, CONTENT_DIGEST, UPLOAD_UUID};
use crate::oci::{Digest, RepoName};

pub(super) fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(super) fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

pub(super) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn location(st: &ApiState, path: String) -> HeaderValue {
    hv(&format!("{}{}", st.base_url, path))
}

pub(super) fn upload_response(
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

pub(super) fn blob_created(st: &ApiState, repo: &RepoName, digest: &Digest) -> Response {
    let mut r = empty(StatusCode::CREATED);
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        location(st, format!("/v2/{repo}/blobs/{digest}")),
    );
    h.insert(CONTENT_DIGEST, hv(&digest.to_string()));
    r
}

/// The Warning (RFC 7234's 110) on an answer a pull-through cache assembled
/// while its upstream was unreachable: it may lack what upstream has since.
pub(super) fn stale_warning() -> HeaderValue {
    HeaderValue::from_static("110 berth \"Response is Stale\"")
}
