//! `/api/v1/projects/{project}/members`: who has which role in a project. A
//! caller may only give, change or remove roles within their own reach.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
use crate::auth::accounts::IfRole;
use crate::auth::policy::{Manage, Role};

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub user: String,
    #[schema(value_type = String)]
    pub role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// guest (pull), developer (pull, push), maintainer (pull, push, delete, manage robots
    /// and members up to maintainer) or project-admin (everything in the project: also its
    /// settings, such as visibility, and project admins).
    pub role: String,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/members", tag = "members", params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = Vec<MemberView>)))]
pub(super) async fn list_members(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<Json<Vec<MemberView>>> {
    st.require_visible(&c, &name)?;
    Ok(Json(
        st.access
            .accounts
            .members(&name)
            .into_iter()
            .map(|(user, role)| MemberView { user, role })
            .collect(),
    ))
}

#[utoipa::path(put, path = "/api/v1/projects/{project}/members/{user}", tag = "members", request_body = RoleBody,
    params(("project" = String, Path, example = "demo"), ("user" = String, Path, example = "throwaway")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn put_member(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, user)): Path<(String, String)>,
    JsonBody(b): JsonBody<RoleBody>,
) -> AResult<StatusCode> {
    let role: Role = b
        .role
        .parse()
        .map_err(|e: String| AdminError::new(StatusCode::BAD_REQUEST, e))?;
    // Both the role given and the one it replaces must be within the caller's reach:
    // a maintainer neither makes nor unmakes project admins.
    st.require_role(&c, &name, Manage::Member(role))?;
    let before = st.access.accounts.role(&name, &user);
    if let Some(before) = before {
        st.require_role(&c, &name, Manage::Member(before))?;
    }
    // Refused if the membership changed since the permission was decided on it.
    st.access
        .accounts
        .set_member(&name, &user, role, IfRole::Is(before))
        .await?;
    st.audit(
        &c,
        "member.set",
        Some(&name),
        &format!("{user}={}", role.as_str()),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/members/{user}", tag = "members",
    params(("project" = String, Path, example = "demo"), ("user" = String, Path, example = "throwaway")), responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_member(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, user)): Path<(String, String)>,
) -> AResult<StatusCode> {
    let before = st.access.accounts.role(&name, &user).unwrap_or(Role::Guest);
    st.require_role(&c, &name, Manage::Member(before))?;
    // Refused if the role changed since the permission was decided on it.
    st.access
        .accounts
        .remove_member(&name, &user, IfRole::Is(Some(before)))
        .await?;
    st.audit(&c, "member.remove", Some(&name), &user);
    Ok(StatusCode::NO_CONTENT)
}
