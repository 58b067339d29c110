//! `/api/v1/projects` and `/api/v1/projects/{project}`: list, create (plain or
//! proxy-cache), show, change (visibility, signature policy, quota) and delete
//! (with its repositories, apps and resources when forced).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::members::MemberView;
use super::{proxy_projects, quota};
use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody, Params};
use crate::auth::accounts::{Project, ProjectChange};
use crate::auth::policy::Manage;
use crate::oci::RepoName;
use crate::signature::RequireSignature;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    /// Anyone may pull. A proxy project with upstream credentials is private
    /// unless this is given: anonymous users would read through that account.
    #[serde(default)]
    pub public: bool,
    /// A proxy-cache project of this upstream registry (system administrators).
    #[serde(default)]
    pub proxy: Option<proxy_projects::NewProxy>,
}

/// What to change; fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    /// Anyone may pull (true), or members only (false).
    #[serde(default)]
    pub public: Option<bool>,
    /// Pulls of the project's images (and their publication by the controller)
    /// need a signature one of these keys verifies; `null` removes the policy.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RequireSignature>, nullable)]
    pub require_signature: Option<Option<RequireSignature>>,
    /// The project's storage limit (system administrators): a size such as
    /// "50GiB" or "500MB", a number of bytes, or "none" for no limit even
    /// where `quota.default_project` sets one; `null` removes the project's
    /// own limit (the default applies again).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, example = "50GiB")]
    pub quota: Option<Option<serde_json::Value>>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Force {
    /// Delete the project's repositories, apps and resources too (their
    /// publications taken off every node).
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", responses((status = 200, body = Vec<Project>)))]
pub(super) async fn list_projects(
    State(st): State<AdminState>,
    c: Caller,
) -> AResult<Json<Vec<serde_json::Value>>> {
    let visible = st
        .access
        .accounts
        .projects()
        .into_iter()
        .filter(|p| {
            p.public || c.subject.admin || st.access.accounts.role(&p.name, c.name()).is_some()
        })
        .map(|p| proxy_projects::answer(&st, &p))
        .collect();
    Ok(Json(visible))
}

#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = Project), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_project(
    State(st): State<AdminState>,
    c: Caller,
    JsonBody(b): JsonBody<NewProject>,
) -> AResult<(StatusCode, Json<serde_json::Value>)> {
    c.require_admin()?;
    let proxy = match b.proxy {
        Some(p) => Some(proxy_projects::upstream(&st, &b.name, p).await?),
        None => None,
    };
    let p = st
        .access
        .accounts
        .create_project_with(&b.name, b.public, proxy)
        .await?;
    if p.proxy.is_some() {
        // What its pulls bring is not limited (see `app::exempt_proxy_projects`).
        let unlimited = Some(crate::meta::quota::QuotaSetting::Unlimited);
        st.registry.set_quota(&p.name, unlimited).await?;
    }
    st.audit(&c, "project.create", Some(&p.name), &p.name);
    Ok((StatusCode::CREATED, Json(proxy_projects::answer(&st, &p))))
}

#[derive(Serialize, ToSchema)]
pub struct ProjectView {
    #[serde(flatten)]
    #[schema(value_type = Project)]
    pub project: serde_json::Value,
    pub repositories: Vec<String>,
    pub members: Vec<MemberView>,
    pub storage: quota::StorageView,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}", tag = "projects", params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorBody)))]
pub(super) async fn show_project(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<Json<ProjectView>> {
    let project = st.require_visible(&c, &name)?;
    let storage = quota::storage(&st, &name).await?;
    let mut shown = proxy_projects::answer(&st, &project);
    if let Some(proxy) = shown.get_mut("proxy") {
        proxy["usage"] = storage.usage.into();
    }
    Ok(Json(ProjectView {
        storage,
        repositories: st.project_repos(&name).await?,
        members: st
            .access
            .accounts
            .members(&name)
            .into_iter()
            .map(|(user, role)| MemberView { user, role })
            .collect(),
        project: shown,
    }))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project}", tag = "projects", request_body = ProjectPatch,
    params(("project" = String, Path, example = "demo")), responses((status = 200, body = Project), (status = 403, body = ErrorBody)))]
pub(super) async fn patch_project(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<ProjectPatch>,
) -> AResult<Json<serde_json::Value>> {
    st.require_role(&c, &name, Manage::Settings)?;
    if b.public.is_none() && b.require_signature.is_none() && b.quota.is_none() {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "nothing to change: give public, require_signature and/or quota",
        ));
    }
    // Checked before anything changes, so a refused quota changes nothing else.
    let quota = quota::requested(&st, &c, &name, b.quota.as_ref())?;
    let change = ProjectChange {
        public: b.public,
        require_signature: b.require_signature,
    };
    let p = if change.public.is_some() || change.require_signature.is_some() {
        st.access.accounts.update_project(&name, &change).await?
    } else {
        st.require_visible(&c, &name)?
    };
    if let Some(setting) = quota {
        quota::set(&st, &c, &name, setting).await?;
    }
    if let Some(policy) = &change.require_signature {
        let action = if policy.is_some() {
            "project.require-signature"
        } else {
            "project.require-signature.removed"
        };
        st.audit(&c, action, Some(&name), &name);
    }
    if let Some(public) = change.public {
        let action = if public {
            "project.public"
        } else {
            "project.private"
        };
        st.audit(&c, action, Some(&name), &name);
    }
    let mut answer = proxy_projects::answer(&st, &p);
    answer["storage"] = serde_json::to_value(quota::storage(&st, &name).await?).unwrap_or_default();
    Ok(Json(answer))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}", tag = "projects", params(("project" = String, Path, example = "demo"), Force),
    responses((status = 204), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_project(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
    Params(f): Params<Force>,
) -> AResult<StatusCode> {
    c.require_admin()?;
    if st.access.accounts.project(&name).is_none() {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            format!("no project named {name}"),
        ));
    }
    // Apps and resources first: a project holding them holds images too.
    if let Some(cleanup) = st.project_cleanup.get() {
        use crate::project_cleanup::CleanupError;
        match cleanup.project_deleted(c.name(), &name, f.force).await {
            Ok(()) => {}
            Err(CleanupError::Holds(what)) => {
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "project {name} still has {} apps and resources ({}); delete them first \
                         or pass ?force=true",
                        what.len(),
                        what.join(", ")
                    ),
                ))
            }
            Err(CleanupError::Failed(e)) => {
                return Err(AdminError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("project {name}: cannot take down its apps and resources: {e}"),
                ))
            }
        }
    }
    let repos = st.project_repos(&name).await?;
    if !repos.is_empty() && !f.force {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!(
                "project {name} still has {} repositories ({}); delete them first or pass ?force=true",
                repos.len(),
                repos.join(", ")
            ),
        ));
    }
    if !repos.is_empty() {
        // A forced delete takes immutable tags with it: the rules go first.
        st.registry.forget_project(&name).await?;
    }
    for r in repos {
        if let Ok(repo) = r.parse::<RepoName>() {
            st.registry.delete_repository(&repo).await?;
        }
    }
    st.access.accounts.delete_project(&name).await?;
    // A project of the same name later starts without this one's quota and
    // rules, and without its webhooks (as in Harbor, they go with it, and
    // nothing is sent to them: the audit records each, and the delete).
    st.registry.forget_project(&name).await?;
    if let Some(hooks) = &st.webhooks {
        for id in hooks.delete_project(&name).await? {
            st.audit(&c, "webhook.delete", Some(&name), &id);
        }
    }
    st.audit(&c, "project.delete", Some(&name), &name);
    Ok(StatusCode::NO_CONTENT)
}
