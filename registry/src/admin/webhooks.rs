//! `/api/v1/projects/{project}/webhooks`: a project's webhook endpoints and
//! their delivery logs, for its project admins (and system administrators).

use super::Params;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
use crate::auth::policy::Manage;
use crate::meta::{Delivery, Webhook};
use crate::webhooks::{EndpointChange, WebhookError, Webhooks};

/// A new endpoint.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// http(s) URL that receives the events (no loopback, link-local, private or
    /// this machine's addresses unless webhooks.allow_private_targets).
    pub url: String,
    /// Event kinds: push, delete, pull, publication. Default: push and delete.
    pub events: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// A change to an endpoint; absent fields stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub project: String,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_at: u64,
    /// Only in the answer to its creation or a rotation: the HMAC-SHA256 key
    /// of `X-Berth-Signature: sha256=<hex>`. Stored sealed; never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// After a rotation: until when (Unix seconds) deliveries also carry
    /// `X-Berth-Signature-Previous`, signed with the secret it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<u64>,
}

/// A secret rotation. The body may be empty (or absent): the configured overlap.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the replaced secret keeps signing beside the new one, in
    /// seconds (at most 604800, 7 days; 0: it stops at once). Default:
    /// webhooks.secret_overlap (24 h unless configured).
    pub overlap_seconds: Option<u64>,
}

/// One event's delivery to an endpoint.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub seq: u64,
    /// The CloudEvent's id.
    pub event_id: String,
    /// The CloudEvent's type, e.g. io.berth.artifact.pushed.
    pub event_type: String,
    pub subject: String,
    /// pending, delivered, failed (every attempt failed) or dropped (queue full).
    pub status: String,
    pub attempts: u32,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub enqueued_at: u64,
    pub last_attempt_at: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Newest first; at most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

fn view(w: Webhook, secret: Option<String>) -> WebhookView {
    WebhookView {
        id: w.id,
        project: w.project,
        url: w.url,
        events: w.events,
        enabled: w.enabled,
        created_at: w.created_at,
        secret,
        previous_secret_expires_at: w.previous.map(|p| p.until),
    }
}

fn delivery_view(d: Delivery) -> DeliveryView {
    let status = serde_json::to_value(d.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    DeliveryView {
        seq: d.seq,
        event_id: d.event_id,
        event_type: d.event_type,
        subject: d.subject,
        status,
        attempts: d.attempts,
        response_code: d.response_code,
        error: d.error,
        enqueued_at: d.enqueued_at,
        last_attempt_at: d.last_attempt_at,
    }
}

impl From<WebhookError> for AdminError {
    fn from(e: WebhookError) -> Self {
        let status = match &e {
            WebhookError::Invalid(_) => StatusCode::BAD_REQUEST,
            WebhookError::NotFound(_) => StatusCode::NOT_FOUND,
            WebhookError::Conflict(_) => StatusCode::CONFLICT,
            WebhookError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError::new(status, e.to_string())
    }
}

/// The webhooks service, once the caller may manage `project`'s webhooks.
fn allowed(st: &AdminState, c: &Caller, project: &str) -> AResult<Arc<Webhooks>> {
    st.require_role(c, project, Manage::Webhooks)?;
    st.webhooks.clone().ok_or_else(|| {
        AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks are not available here: they need berth serve's sealing key",
        )
    })
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/webhooks", tag = "webhooks",
    params(("project" = String, Path)),
    responses((status = 200, body = Vec<WebhookView>), (status = 403, body = ErrorBody)))]
pub(super) async fn list(
    State(st): State<AdminState>,
    c: Caller,
    Path(project): Path<String>,
) -> AResult<Json<Vec<WebhookView>>> {
    let hooks = allowed(&st, &c, &project)?;
    let all = hooks.list(&project).await?;
    Ok(Json(all.into_iter().map(|w| view(w, None)).collect()))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/webhooks", tag = "webhooks",
    request_body = NewWebhook, params(("project" = String, Path)),
    responses((status = 201, body = WebhookView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn create(
    State(st): State<AdminState>,
    c: Caller,
    Path(project): Path<String>,
    JsonBody(b): JsonBody<NewWebhook>,
) -> AResult<(StatusCode, Json<WebhookView>)> {
    let hooks = allowed(&st, &c, &project)?;
    let change = EndpointChange {
        url: Some(b.url),
        events: b.events,
        enabled: b.enabled,
    };
    let (w, secret) = hooks.create(&project, change).await?;
    st.audit(
        &c,
        "webhook.create",
        Some(&project),
        &format!("{} {}", w.id, w.url),
    );
    Ok((StatusCode::CREATED, Json(view(w, Some(secret)))))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/webhooks/{id}", tag = "webhooks",
    params(("project" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(st): State<AdminState>,
    c: Caller,
    Path((project, id)): Path<(String, String)>,
) -> AResult<Json<WebhookView>> {
    let hooks = allowed(&st, &c, &project)?;
    Ok(Json(view(hooks.get(&project, &id).await?, None)))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project}/webhooks/{id}", tag = "webhooks",
    request_body = WebhookPatch, params(("project" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn patch(
    State(st): State<AdminState>,
    c: Caller,
    Path((project, id)): Path<(String, String)>,
    JsonBody(b): JsonBody<WebhookPatch>,
) -> AResult<Json<WebhookView>> {
    let hooks = allowed(&st, &c, &project)?;
    if b.url.is_none() && b.events.is_none() && b.enabled.is_none() {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "nothing to change: give url, events and/or enabled",
        ));
    }
    let change = EndpointChange {
        url: b.url,
        events: b.events,
        enabled: b.enabled,
    };
    let w = hooks.update(&project, &id, change).await?;
    st.audit(
        &c,
        "webhook.update",
        Some(&project),
        &format!("{} {}", w.id, w.url),
    );
    Ok(Json(view(w, None)))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/webhooks/{id}", tag = "webhooks",
    params(("project" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    State(st): State<AdminState>,
    c: Caller,
    Path((project, id)): Path<(String, String)>,
) -> AResult<StatusCode> {
    let hooks = allowed(&st, &c, &project)?;
    hooks.delete(&project, &id).await?;
    st.audit(&c, "webhook.delete", Some(&project), &id);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/webhooks/{id}/deliveries", tag = "webhooks",
    params(("project" = String, Path), ("id" = String, Path), DeliveryQuery),
    responses((status = 200, body = Vec<DeliveryView>), (status = 404, body = ErrorBody)))]
pub(super) async fn deliveries(
    State(st): State<AdminState>,
    c: Caller,
    Path((project, id)): Path<(String, String)>,
    Params(q): Params<DeliveryQuery>,
) -> AResult<Json<Vec<DeliveryView>>> {
    let hooks = allowed(&st, &c, &project)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let log = hooks.deliveries(&project, &id, limit).await?;
    Ok(Json(log.into_iter().map(delivery_view).collect()))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/webhooks/{id}/rotate-secret", tag = "webhooks",
    request_body(content = Option<RotateSecret>, description = "optional; empty for the configured overlap"),
    params(("project" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = WebhookView, description = "the new secret, shown once"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn rotate_secret(
    State(st): State<AdminState>,
    c: Caller,
    Path((project, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> AResult<Json<WebhookView>> {
    let hooks = allowed(&st, &c, &project)?;
    let b: RotateSecret = if body.iter().all(u8::is_ascii_whitespace) {
        RotateSecret::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AdminError::new(
                StatusCode::BAD_REQUEST,
                format!("the request body is not valid: {e}"),
            )
        })?
    };
    let overlap = b.overlap_seconds.map(std::time::Duration::from_secs);
    let (w, secret) = hooks.rotate_secret(&project, &id, overlap).await?;
    let until = match &w.previous {
        Some(p) => format!("previous secret signs until {}", p.until),
        None => "previous secret dropped at once".to_string(),
    };
    st.audit(
        &c,
        "webhook.rotate-secret",
        Some(&project),
        &format!("{} ({until})", w.id),
    );
    Ok(Json(view(w, Some(secret))))
}
