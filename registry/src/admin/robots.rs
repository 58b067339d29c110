//! `/api/v1/projects/{project}/robots`: a project's robot accounts (pull or
//! push credentials for automation); the secret is shown once, at creation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
use crate::auth::policy::Manage;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRobot {
    pub name: String,
    /// "pull" or "push" (push includes pull).
    pub access: String,
    /// Lifetime in seconds; absent: never expires.
    pub expires_in: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct RobotCreated {
    /// Log in with this name.
    pub name: String,
    /// Shown once; stored only as a hash.
    pub secret: String,
    pub expires_at: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct RobotView {
    pub name: String,
    pub access: String,
    pub expires_at: Option<u64>,
    pub revoked: bool,
    pub created: u64,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/robots", tag = "robots", params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = Vec<RobotView>)))]
pub(super) async fn list_robots(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<Json<Vec<RobotView>>> {
    st.require_role(&c, &name, Manage::Robots)?;
    Ok(Json(
        st.access
            .accounts
            .robots(&name)
            .into_iter()
            .map(|r| RobotView {
                name: r.name,
                access: if r.push { "push" } else { "pull" }.into(),
                expires_at: r.expires_at,
                revoked: r.revoked,
                created: r.created,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/robots", tag = "robots", request_body = NewRobot,
    params(("project" = String, Path, example = "demo")), responses((status = 201, body = RobotCreated), (status = 400, body = ErrorBody)))]
pub(super) async fn create_robot(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<NewRobot>,
) -> AResult<(StatusCode, Json<RobotCreated>)> {
    st.require_role(&c, &name, Manage::Robots)?;
    let push = match b.access.as_str() {
        "pull" => false,
        "push" | "pull,push" => true,
        other => {
            return Err(AdminError::new(
                StatusCode::BAD_REQUEST,
                format!("access {other:?} is not one of \"pull\" or \"push\""),
            ))
        }
    };
    let expires_at = b.expires_in.map(|s| crate::meta::now() + s);
    let (robot, secret) = st
        .access
        .accounts
        .create_robot(&name, &b.name, push, expires_at)
        .await?;
    st.audit(&c, "robot.create", Some(&name), &robot.name);
    Ok((
        StatusCode::CREATED,
        Json(RobotCreated {
            name: robot.name,
            secret,
            expires_at,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/robots/{robot}", tag = "robots",
    params(("project" = String, Path, example = "demo"), ("robot" = String, Path, example = "robot$demo+ci")), responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_robot(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, robot)): Path<(String, String)>,
) -> AResult<StatusCode> {
    st.require_role(&c, &name, Manage::Robots)?;
    st.access.accounts.revoke_robot(&name, &robot).await?;
    st.audit(&c, "robot.revoke", Some(&name), &robot);
    Ok(StatusCode::NO_CONTENT)
}
