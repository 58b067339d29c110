//! `/api/v1/replications`: replication policies, for system administrators.
//! What a policy may be is `crate::replication`'s; here are the routes,
//! who may call them, and the audit records.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
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
    params(("name" = String, Path)),
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
    request_body = ReplicationPatch, params(("name" = String, Path)),
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
    params(("name" = String, Path)),
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
