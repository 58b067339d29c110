//! The admin API's one error type: a status and a message a person can act on,
//! answered as `{"error": ...}`; the conversions from the layers below; and the
//! middleware that turns the framework's own plain-text rejections into the same JSON.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::accounts::AccountError;
use crate::auth::Refusal;

/// An admin API error: a status and a message a person can act on.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
    /// The handler recorded this refusal in the audit log itself.
    pub audited: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

impl AdminError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            audited: false,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth\""),
            );
        }
        if let Some(s) = self
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            r.headers_mut().insert(header::RETRY_AFTER, s);
        }
        if self.audited {
            r.extensions_mut().insert(crate::auth::audit::Audited);
        }
        r
    }
}

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> Self {
        let status = match &e {
            AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
            AccountError::NotFound(_) => StatusCode::NOT_FOUND,
            AccountError::Conflict(_) => StatusCode::CONFLICT,
            AccountError::Forbidden(_) => StatusCode::FORBIDDEN,
            AccountError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError::new(status, e.to_string())
    }
}

impl From<Refusal> for AdminError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Unauthorized { message, .. } => {
                AdminError::new(StatusCode::UNAUTHORIZED, message)
            }
            Refusal::Denied(m) => AdminError::new(StatusCode::FORBIDDEN, m),
            Refusal::Hidden(m) => AdminError::new(StatusCode::NOT_FOUND, m),
            Refusal::TooMany {
                message,
                retry_after,
            } => AdminError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message,
                retry_after: Some(retry_after),
                audited: false,
            },
        }
    }
}

impl From<crate::service::ServiceError> for AdminError {
    fn from(e: crate::service::ServiceError) -> Self {
        // A refusal by the registry's own rules (an immutable tag) is the caller's to fix.
        let status = match e.code() {
            Some(crate::oci::ErrorCode::Denied) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError::new(status, e.to_string())
    }
}

pub(super) type AResult<T> = Result<T, AdminError>;

/// Errors the framework answers by itself (a body that is not the JSON asked for,
/// a wrong content type, a bad query string, a method the path does not serve) come
/// as plain text or empty; they become `{"error": ...}` like every other error here.
pub(super) async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    };
    let mut r = AdminError::new(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            r.headers_mut().insert(name.clone(), value.clone());
        }
    }
    r
}
