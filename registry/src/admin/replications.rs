//! `/api/v1/replications`: replication policies and their executions, for
//! system administrators.
//! What a policy may be is `crate::replication`'s; here are the routes,
//! who may call them, and the audit records.

use super::Params;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
use crate::meta::Execution;
use crate::replication::{
    NewReplication, ReplicationError, ReplicationPatch, ReplicationView, Replications,
};

impl From<ReplicationError> for AdminError {
    fn from(e: ReplicationError) -> Self {
        let status = match &e {
            ReplicationError::Invalid(_) => StatusCode::BAD_REQUEST,
            ReplicationError::NotFound(_) => StatusCode::NOT_FOUND,
            ReplicationError::Conflict(_) => StatusCode::CONFLICT,
            ReplicationError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ReplicationError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError::new(status, e.to_string())
    }
}

fn allowed(st: &AdminState, c: &Caller) -> AResult<Arc<Replications>> {
    c.require_admin()?;
    Ok(st.replications.clone())
}

#[utoipa::path(get, path = "/api/v1/replications", tag = "replication",
    responses((status = 200, body = Vec<ReplicationView>), (status = 403, body = ErrorBody)))]
pub(super) async fn list(
    State(st): State<AdminState>,
    c: Caller,
) -> AResult<Json<Vec<ReplicationView>>> {
    let r = allowed(&st, &c)?;
    Ok(Json(r.list().await?.iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/replications", tag = "replication",
    request_body = NewReplication,
    responses((status = 201, body = ReplicationView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create(
    State(st): State<AdminState>,
    c: Caller,
    JsonBody(b): JsonBody<NewReplication>,
) -> AResult<(StatusCode, Json<ReplicationView>)> {
    let r = allowed(&st, &c)?;
    let p = r.create(b).await?;
    st.audit(
        &c,
        "replication.create",
        None,
        &format!("{} {:?} {}", p.name, p.direction, p.remote.url),
    );
    Ok((StatusCode::CREATED, Json((&p).into())))
}

#[utoipa::path(get, path = "/api/v1/replications/{name}", tag = "replication",
    params(("name" = String, Path, example = "mirror")),
    responses((status = 200, body = ReplicationView), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<Json<ReplicationView>> {
    let r = allowed(&st, &c)?;
    Ok(Json((&r.get(&name).await?).into()))
}

#[utoipa::path(patch, path = "/api/v1/replications/{name}", tag = "replication",
    request_body = ReplicationPatch, params(("name" = String, Path, example = "mirror")),
    responses((status = 200, body = ReplicationView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn patch(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<ReplicationPatch>,
) -> AResult<Json<ReplicationView>> {
    let r = allowed(&st, &c)?;
    let p = r.update(&name, b).await?;
    st.audit(
        &c,
        "replication.update",
        None,
        &format!("{} {:?} {}", p.name, p.direction, p.remote.url),
    );
    Ok(Json((&p).into()))
}

#[utoipa::path(delete, path = "/api/v1/replications/{name}", tag = "replication",
    params(("name" = String, Path, example = "mirror")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<StatusCode> {
    let r = allowed(&st, &c)?;
    r.delete(&name).await?;
    st.audit(&c, "replication.delete", None, &name);
    Ok(StatusCode::NO_CONTENT)
}

/// An execution as the admin API shows it: its record, with the bytes done
/// and to do over its blobs.
fn execution_view(e: &Execution) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    let total: u64 = e.blobs.iter().map(|b| b.size).sum();
    let done: u64 = e.blobs.iter().map(|b| b.done.min(b.size)).sum();
    v["bytes_total"] = total.into();
    v["bytes_done"] = done.into();
    v
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExecutionQuery {
    /// Newest first; at most this many (default 20, at most 500).
    pub limit: Option<usize>,
}

#[utoipa::path(post, path = "/api/v1/replications/{name}/executions", tag = "replication",
    params(("name" = String, Path, example = "mirror")),
    responses((status = 202, body = Object, description = "the execution, started"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn run(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<(StatusCode, Json<serde_json::Value>)> {
    let r = allowed(&st, &c)?;
    let e = r.run(&name, "manual").await?;
    st.audit(
        &c,
        "replication.run",
        None,
        &format!("{}#{}", e.policy, e.id),
    );
    Ok((StatusCode::ACCEPTED, Json(execution_view(&e))))
}

#[utoipa::path(get, path = "/api/v1/replications/{name}/executions", tag = "replication",
    params(("name" = String, Path, example = "mirror"), ExecutionQuery),
    responses((status = 200, body = Vec<Object>), (status = 404, body = ErrorBody)))]
pub(super) async fn executions(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
    Params(q): Params<ExecutionQuery>,
) -> AResult<Json<Vec<serde_json::Value>>> {
    let r = allowed(&st, &c)?;
    let limit = q.limit.unwrap_or(20).clamp(1, 500);
    let list = r.executions(&name, limit).await?;
    Ok(Json(list.iter().map(execution_view).collect()))
}

#[utoipa::path(get, path = "/api/v1/replications/{name}/executions/{execution}", tag = "replication",
    params(("name" = String, Path, example = "mirror"), ("execution" = u64, Path, example = 1)),
    responses((status = 200, body = Object, description = "the execution with per-image and per-blob progress"),
        (status = 404, body = ErrorBody)))]
pub(super) async fn execution(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, id)): Path<(String, u64)>,
) -> AResult<Json<serde_json::Value>> {
    let r = allowed(&st, &c)?;
    Ok(Json(execution_view(&r.execution(&name, id).await?)))
}
