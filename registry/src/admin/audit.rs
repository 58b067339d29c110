//! `/api/v1/audit`: the audit log, filtered (system administrators only).

use axum::extract::State;
use axum::Json;

use super::{AResult, AdminState, Caller, Params};
use crate::auth::accounts::{AuditEvent, AuditQuery};

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEvent>)))]
pub(super) async fn audit_log(
    State(st): State<AdminState>,
    c: Caller,
    Params(q): Params<AuditQuery>,
) -> AResult<Json<Vec<AuditEvent>>> {
    c.require_admin()?;
    Ok(Json(st.access.accounts.audit_query(&q).await?))
}
