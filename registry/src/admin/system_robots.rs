//! `/api/v1/robots`: system robot accounts (system administrators only), as
//! Harbor 2.x has them. One robot pulls from the projects it names, or from
//! every project (`"*"`): the credential of an edge that serves several
//! projects. The secret is shown once; each change is audited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::JsonBody;
use super::{AResult, AdminError, AdminState, Caller, ErrorBody, RobotCreated};
use crate::auth::accounts::{AccountError, Robot, RobotProjects};

/// `["a", "b"]`, or `"*"` for every project (those created later too).
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProjectsInput {
    Every(String),
    Named(Vec<String>),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSystemRobot {
    /// Short name: the robot logs in as `robot$<name>`.
    pub name: String,
    pub projects: ProjectsInput,
    /// "pull": system robots never push.
    pub access: String,
    /// Lifetime in seconds; absent: never expires.
    pub expires_in: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SystemRobotView {
    pub name: String,
    /// The projects it pulls from, or `"*"`.
    pub projects: ProjectsInput,
    pub access: String,
    pub expires_at: Option<u64>,
    pub revoked: bool,
    pub created: u64,
}

fn bad(message: impl Into<String>) -> AdminError {
    AdminError::new(StatusCode::BAD_REQUEST, message)
}

fn view(r: Robot) -> SystemRobotView {
    let projects = match r.system {
        Some(RobotProjects::Only(names)) => ProjectsInput::Named(names),
        _ => ProjectsInput::Every("*".into()),
    };
    SystemRobotView {
        name: r.name,
        projects,
        access: "pull".into(),
        expires_at: r.expires_at,
        revoked: r.revoked,
        created: r.created,
    }
}

#[utoipa::path(get, path = "/api/v1/robots", tag = "robots",
    responses((status = 200, body = Vec<SystemRobotView>), (status = 403, body = ErrorBody)))]
pub(super) async fn list(
    State(st): State<AdminState>,
    c: Caller,
) -> AResult<Json<Vec<SystemRobotView>>> {
    c.require_admin()?;
    Ok(Json(
        st.access
            .accounts
            .system_robots()
            .into_iter()
            .map(view)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/robots", tag = "robots", request_body = NewSystemRobot,
    responses((status = 201, body = RobotCreated), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create(
    State(st): State<AdminState>,
    c: Caller,
    JsonBody(b): JsonBody<NewSystemRobot>,
) -> AResult<(StatusCode, Json<RobotCreated>)> {
    c.require_admin()?;
    if b.access != "pull" {
        return Err(bad(format!(
            "access {:?}: system robots pull (\"pull\"); a robot that pushes belongs to its \
             project (POST /api/v1/projects/{{project}}/robots)",
            b.access
        )));
    }
    let projects = match b.projects {
        ProjectsInput::Every(s) if s == "*" => RobotProjects::All,
        ProjectsInput::Every(s) => {
            return Err(bad(format!(
                "projects {s:?}: give a list of project names, or \"*\" for every project"
            )))
        }
        ProjectsInput::Named(mut names) => {
            names.sort();
            names.dedup();
            RobotProjects::Only(names)
        }
    };
    let expires_at = b.expires_in.map(|s| crate::meta::now() + s);
    let (robot, secret) = st
        .access
        .accounts
        .create_system_robot(&b.name, projects, expires_at)
        .await
        .map_err(|e| match e {
            AccountError::NotFound(m) => bad(format!("projects: {m}")),
            other => other.into(),
        })?;
    st.audit(&c, "robot.create", None, &robot.name);
    Ok((
        StatusCode::CREATED,
        Json(RobotCreated {
            name: robot.name,
            secret,
            expires_at,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/robots/{robot}", tag = "robots",
    params(("robot" = String, Path, example = "robot$edge")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke(
    State(st): State<AdminState>,
    c: Caller,
    Path(robot): Path<String>,
) -> AResult<StatusCode> {
    c.require_admin()?;
    let r = st.access.accounts.revoke_system_robot(&robot).await?;
    st.audit(&c, "robot.revoke", None, &r.name);
    Ok(StatusCode::NO_CONTENT)
}
