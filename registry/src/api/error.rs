//! `ApiError` → HTTP: the OCI error body and the status distribution uses for each code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::Refusal;
use crate::oci::ErrorCode;
use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{0}")]
    Refused(Refusal),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    BadRequest(String),
}

/// The HTTP status for an error code, as distribution registers them.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BlobUnknown
        | ErrorCode::BlobUploadUnknown
        | ErrorCode::ManifestUnknown
        | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
        ErrorCode::BlobUploadInvalid
        | ErrorCode::DigestInvalid
        | ErrorCode::ManifestBlobUnknown
        | ErrorCode::ManifestInvalid
        | ErrorCode::NameInvalid
        | ErrorCode::SizeInvalid => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Denied => StatusCode::FORBIDDEN,
        ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// `{"errors":[{"code","message","detail"}]}`.
pub fn error_body(code: &str, message: &str, detail: Option<&serde_json::Value>) -> Vec<u8> {
    let mut e = serde_json::json!({"code": code, "message": message});
    if let Some(d) = detail {
        e["detail"] = d.clone();
    }
    serde_json::to_vec(&serde_json::json!({ "errors": [e] })).unwrap_or_default()
}

fn respond(
    status: StatusCode,
    code: &str,
    message: &str,
    detail: Option<&serde_json::Value>,
) -> Response {
    let mut r = (status, error_body(code, message, detail)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Service(e) => service_response(e),
            ApiError::Refused(r) => refusal_response(r),
            ApiError::NotFound(p) => respond(
                StatusCode::NOT_FOUND,
                ErrorCode::NameUnknown.as_str(),
                &format!("no such endpoint: {p}; see the OCI distribution spec for the /v2 API"),
                None,
            ),
            ApiError::TooLarge(m) => respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::ManifestInvalid.as_str(),
                &m,
                None,
            ),
            ApiError::BadRequest(m) => respond(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported.as_str(),
                &m,
                None,
            ),
        }
    }
}

/// A service error as the OCI error it is.
fn service_response(e: ServiceError) -> Response {
    match e {
        ServiceError::Oci {
            code,
            message,
            detail,
        } => respond(status_of(code), code.as_str(), &message, detail.as_ref()),
        ServiceError::UploadOffset { current } => {
            let mut r = respond(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid.as_str(),
                &format!(
                    "chunk does not start at the end of the upload; {current} bytes received so far, send the next chunk from byte {current}"
                ),
                Some(&serde_json::json!({"offset": current})),
            );
            r.headers_mut().insert(
                header::RANGE,
                HeaderValue::from_str(&format!("0-{}", current.saturating_sub(1)))
                    .unwrap_or(HeaderValue::from_static("0-0")),
            );
            r
        }
        ServiceError::RangeNotSatisfiable { size } => {
            let mut r = respond(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::SizeInvalid.as_str(),
                &format!("requested range is outside the blob, which has {size} bytes"),
                None,
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        ServiceError::ReadOnly(m) => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported.as_str(),
            &m,
            None,
        ),
        ServiceError::Unavailable(m) => {
            // "Not here and cannot get it": a fast 404 lets containerd move to the next host.
            respond(
                StatusCode::NOT_FOUND,
                ErrorCode::NameUnknown.as_str(),
                &m,
                None,
            )
        }
        ServiceError::Internal(m) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            &format!("internal error: {m}"),
            None,
        ),
    }
}

/// A refusal: 401 with the challenge, 403, 404 that hides, 429 with Retry-After.
fn refusal_response(r: Refusal) -> Response {
    match r {
        Refusal::Unauthorized { message, challenge } => {
            let mut r = respond(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized.as_str(),
                &message,
                None,
            );
            if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            r
        }
        Refusal::Denied(m) => respond(StatusCode::FORBIDDEN, ErrorCode::Denied.as_str(), &m, None),
        Refusal::Hidden(m) => respond(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown.as_str(),
            &m,
            None,
        ),
        Refusal::TooMany {
            message,
            retry_after,
        } => {
            let mut r = respond(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests.as_str(),
                &message,
                None,
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}
