//! The prefetch API: `POST` and `GET /api/v1/prefetch`, `GET /api/v1/prefetch/{id}`, and how a refusal is answered.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{Job, PrefetchError, PrefetchRequest, Prefetcher};

impl IntoResponse for PrefetchError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

pub fn router(p: Arc<Prefetcher>) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/v1/prefetch",
            axum::routing::post(submit).get(list_jobs),
        )
        .route("/api/v1/prefetch/{id}", axum::routing::get(get_job))
        .with_state(p)
}

async fn submit(
    State(p): State<Arc<Prefetcher>>,
    body: Result<Json<PrefetchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Job>), PrefetchError> {
    let Json(req) = body.map_err(|e| {
        PrefetchError(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"images\": [...], \"pin\": bool}}: {e}"),
        )
    })?;
    Ok((StatusCode::ACCEPTED, Json(p.submit(req).await?)))
}

async fn list_jobs(State(p): State<Arc<Prefetcher>>) -> Json<Vec<Job>> {
    let mut v: Vec<Job> = p
        .jobs
        .lock()
        .map(|j| j.values().cloned().collect())
        .unwrap_or_default();
    v.sort_by_key(|j| std::cmp::Reverse(j.created));
    Json(v)
}

async fn get_job(
    State(p): State<Arc<Prefetcher>>,
    Path(id): Path<String>,
) -> Result<Json<Job>, PrefetchError> {
    p.job(&id)
        .map(Json)
        .ok_or_else(|| PrefetchError(StatusCode::NOT_FOUND, format!("no prefetch job {id}")))
}
