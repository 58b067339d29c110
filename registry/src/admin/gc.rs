//! `/api/v1/gc`: run garbage collection now, its status, and its history
//! (system administrators only). The runs themselves are `gc_runner`'s.

use super::Params;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, GcStatus};
use crate::gc::GcReport;
use crate::gc_runner::{RunError, Trigger};
use crate::meta::GcRun;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GcParams {
    #[serde(default)]
    pub dry_run: bool,
}

/// Runs garbage collection now (while serving) and answers with its report.
#[utoipa::path(post, path = "/api/v1/gc", tag = "gc", params(GcParams),
    responses((status = 200, body = Object), (status = 409, body = ErrorBody)))]
pub(super) async fn start(
    State(st): State<AdminState>,
    c: Caller,
    Params(p): Params<GcParams>,
) -> AResult<Json<GcReport>> {
    c.require_admin()?;
    match st
        .gc
        .run(Trigger::Api, Some((c.name(), c.peer)), p.dry_run)
        .await
    {
        Ok((_, report)) => Ok(Json(report)),
        Err(RunError::Busy) => Err(AdminError::new(
            StatusCode::CONFLICT,
            RunError::Busy.to_string(),
        )),
        Err(e) => Err(AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// Whether a collection runs now, and the last one's report.
#[utoipa::path(get, path = "/api/v1/gc", tag = "gc", responses((status = 200, body = GcStatus)))]
pub(super) async fn status(State(st): State<AdminState>, c: Caller) -> AResult<Json<GcStatus>> {
    c.require_admin()?;
    Ok(Json(st.gc.status()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsParams {
    /// At most this many runs, newest first (default 50, at most 1000).
    pub limit: Option<usize>,
}

/// GC's history: each finished run (scheduled, asked for, or offline), what
/// it freed and how long it took, newest first.
#[utoipa::path(get, path = "/api/v1/gc/runs", tag = "gc", params(RunsParams),
    responses((status = 200, body = Vec<GcRun>), (status = 403, body = ErrorBody)))]
pub(super) async fn runs(
    State(st): State<AdminState>,
    c: Caller,
    Params(p): Params<RunsParams>,
) -> AResult<Json<Vec<GcRun>>> {
    c.require_admin()?;
    let limit = p.limit.unwrap_or(50).clamp(1, 1000);
    let runs = st.registry.meta().gc_runs(limit).await.map_err(|e| {
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the GC history: {e}"),
        )
    })?;
    Ok(Json(runs))
}
