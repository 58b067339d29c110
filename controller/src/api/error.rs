//! How the API answers when it cannot do what was asked.
//!
//! Owns: `ApiError` and its mapping to statuses (400 validation, 401/403 auth,
//! 404 unknown, 409 conflict, 501 unsupported) and to JSON `{"error": "..."}`
//! bodies a person can act on; `Body`, the JSON extractor (a body without a
//! `Content-Type` is JSON too) whose refusals say what is wrong with the
//! body. Must not touch: logging (the audit log records
//! refusals of writes; see `audited`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::model::ValidationError;
use crate::ports::AuthError;
use crate::resources_ctl::ResourceError;
use crate::store::StoreError;

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

/// A refusal of the store keeps its status; anything else went wrong inside.
impl From<ResourceError> for ApiError {
    fn from(e: ResourceError) -> Self {
        match e {
            ResourceError::Store(e) => e.into(),
            ResourceError::Deploy(e) => ApiError::Internal(e.to_string()),
            ResourceError::Unusable(m) => ApiError::Internal(m),
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

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// `Json<T>` whose rejections are JSON errors that say what is wrong with the body.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body sent without a Content-Type is read as JSON;
        // form types never reach here (the router refuses them with 415).
        if !req.headers().contains_key(header::CONTENT_TYPE) {
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::BadRequest(e.body_text()))?;
            return serde_json::from_slice(&bytes).map(Body).map_err(|e| {
                let hint = if e.is_syntax() {
                    " (send JSON, with Content-Type: application/json or none)"
                } else {
                    ""
                };
                ApiError::BadRequest(format!("the request body is not valid{hint}: {e}"))
            });
        }
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
