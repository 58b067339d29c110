//! `POST /api/v1/projects/{project}/apps/{app}/publications/{node}/prefetch-report`:
//! an edge reports the end of the prefetch job the controller gave it for
//! that publication (see `reconcile::reports` for why reports, and the token).
//!
//! Owns: the route and its answers: 202 taken (the publication's reconcile
//! is woken), 400 a body that is not a job, 401 a missing or wrong token. It
//! authenticates with the report token only, never with an account: it is
//! mounted apart from the account-checked routes (`report_router`). It reads
//! nothing from the store: a report for a publication that is gone or
//! follows another job is kept until it expires and never read. With
//! replicas, a follower that takes a report relays it to the leader
//! (`ControllerState::reported`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::edge::reported_job;
use crate::model::PublicationKey;
use crate::reconcile::reports::report_path;
use crate::state::ControllerState;

/// The report route's path template.
pub(super) fn path_template() -> String {
    report_path("{project}", "{app}", "{node}")
}

/// The report route, with its own authentication (the report token).
pub fn report_router(state: ControllerState) -> Router {
    Router::new()
        .route(&path_template(), post(report))
        .with_state(state)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn report(
    State(state): State<ControllerState>,
    Path((project, app, node)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reports = &state.context().reports;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a prefetch report needs the token the controller gave with the job (Authorization: Bearer)",
        );
    };
    if !reports.verify(&project, &app, &node, token) {
        tracing::warn!(%project, %app, %node, "prefetch report with a wrong token refused");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this token was not given for this publication's prefetch jobs",
        );
    }
    let (id, status) = match reported_job(&body) {
        Ok(job) => job,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("expected the job as GET /api/v1/prefetch/{{id}} answers it: {e}"),
            )
        }
    };
    tracing::debug!(%project, %app, %node, job = %id, "prefetch job reported");
    let kept = state.reported(PublicationKey { project, app, node }, &id, status, &body);
    if !kept {
        tracing::debug!(job = %id, "the report inbox is full; the job is polled");
    }
    (StatusCode::ACCEPTED, Json(json!({ "job": id }))).into_response()
}
