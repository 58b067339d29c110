//! What the admin and controller APIs accept as a request body.
//!
//! Owns: [`JsonBody`], the admin API's JSON extractor (a body without a
//! `Content-Type` is read as JSON; unknown fields
//! are refused by the body types themselves), and [`refuse_forms`], the layer
//! that refuses the bodies a browser may send to another site without a CORS
//! preflight (`application/x-www-form-urlencoded`, `multipart/form-data`,
//! `text/plain`) with 415 before any handler runs. With Basic credentials
//! cached by a browser, such a cross-site form could otherwise act as its
//! user. `/v2/token` is not behind this layer: docker sends forms there.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::AdminError;

/// A JSON request body; `Content-Type` may be absent or any JSON type.
pub struct JsonBody<T>(pub T);

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
}

/// The media type without parameters, lower-cased.
fn essence(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_json(ct: &str) -> bool {
    let e = essence(ct);
    e == "application/json" || (e.starts_with("application/") && e.ends_with("+json"))
}

/// A content type browsers send across sites without asking the server first.
pub fn is_simple_form(ct: &str) -> bool {
    matches!(
        essence(ct).as_str(),
        "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
    )
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let typed = content_type(req.headers());
        if let Some(ct) = &typed {
            if !is_json(ct) {
                return Err(AdminError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "the body must be JSON (Content-Type: application/json, or none), not {ct}"
                    ),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| AdminError::new(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let hint = if typed.is_none() && e.is_syntax() {
                " (a body without a Content-Type is read as JSON)"
            } else {
                ""
            };
            AdminError::new(
                StatusCode::BAD_REQUEST,
                format!("the request body is not valid{hint}: {e}"),
            )
        })
    }
}

/// Refuses form, multipart and plain-text bodies with 415 (see the module doc).
pub async fn refuse_forms(req: Request, next: Next) -> Response {
    if let Some(ct) = content_type(req.headers()) {
        if is_simple_form(&ct) {
            return AdminError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "this API takes JSON (Content-Type: application/json, or none); {ct} is refused \
                     because browsers send it to other sites without asking them first"
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// A 405 under `/api/`, saying in its JSON body too which methods the path
/// serves (`{"error": ..., "allowed": [...]}`). axum sets `Allow` outside
/// every layer a router can add to its routes, so the common layer, which
/// wraps the router as a whole, calls this.
pub fn explain_405(res: Response) -> Response {
    let allow = res
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let allowed: Vec<&str> = allow
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    let message = format!(
        "this method is not served on this path (allowed: {}); see /api/v1/openapi.json",
        allowed.join(", ")
    );
    let mut out = (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "error": message, "allowed": allowed })),
    )
        .into_response();
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_json_are_told_apart_by_their_essence() {
        assert!(is_simple_form("application/x-www-form-urlencoded"));
        assert!(is_simple_form("multipart/form-data; boundary=x"));
        assert!(is_simple_form("Text/Plain;charset=UTF-8"));
        assert!(!is_simple_form("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("text/plain"));
    }
}
