//! `/v2/token`: the Docker token endpoint (GET with Basic credentials or none)
//! and its OAuth2 password-grant form (POST), as containerd may use.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;

use super::access::RegistryAccess;
use super::RequestInfo;
use crate::api::ApiError;

/// Largest token request form accepted (a username, a password and scopes).
const MAX_FORM_BYTES: usize = 64 * 1024;

pub fn router(access: Arc<RegistryAccess>) -> axum::Router {
    axum::Router::new()
        .route("/v2/token", axum::routing::get(token).post(token))
        .with_state(access)
}

async fn token(State(access): State<Arc<RegistryAccess>>, req: Request) -> Response {
    let peer = super::client::client_addr(req.extensions());
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    let mut pairs: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_pairs(q.as_bytes()))
        .unwrap_or_default();
    if method == Method::POST {
        // Refused before reading: a client announcing a huge body must not
        // hold the connection while it sends (or never sends) it.
        if headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > MAX_FORM_BYTES as u64)
        {
            return too_large();
        }
        let body = match http_body_util::BodyExt::collect(http_body_util::Limited::new(
            req.into_body(),
            MAX_FORM_BYTES,
        ))
        .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(e) => return bad(&format!("the token request body broke off: {e}")),
        };
        pairs.extend(form_pairs(&body));
        let get = |k: &str| pairs.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
        match get("grant_type").as_deref() {
            Some("password") => {
                let (Some(u), Some(p)) = (get("username"), get("password")) else {
                    return bad("grant_type=password needs username and password");
                };
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                if let Ok(v) = HeaderValue::from_str(&format!("Basic {basic}")) {
                    headers.insert(axum::http::header::AUTHORIZATION, v);
                }
            }
            Some("refresh_token") => {
                return bad("refresh tokens are not issued by berth; use grant_type=password");
            }
            _ => {}
        }
    }
    let scope: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    let scope = scope.join(" ");
    let service = pairs
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str());
    let info = RequestInfo {
        headers: &headers,
        peer,
    };
    match access.issue_token(&info, &scope, service).await {
        Ok(t) => (StatusCode::OK, Json(t)).into_response(),
        Err(r) => ApiError::Refused(r).into_response(),
    }
}

fn bad(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"errors": [{"code": "UNSUPPORTED", "message": msg}]})),
    )
        .into_response()
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(serde_json::json!({"errors": [{
            "code": "UNSUPPORTED",
            "message": format!("a token request body may hold at most {MAX_FORM_BYTES} bytes"),
        }]})),
    )
        .into_response()
}

fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    let s = String::from_utf8_lossy(raw);
    crate::api::url_decode_pairs(&s)
}
