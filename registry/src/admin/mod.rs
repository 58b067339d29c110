//! The admin HTTP API under `/api/v1`, and its OpenAPI document.
//!
//! Handlers are annotated with `utoipa::path` and mounted through an
//! `OpenApiRouter`, so the document served at `/api/v1/openapi.json` is built
//! from the same route table that serves the requests: it cannot drift.
//! Errors are JSON `{"error": "<what went wrong and what to do>"}`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
pub(crate) use params::Params;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::access::RegistryAccess;
use crate::auth::accounts::{AccountError, AuditEvent, AuditQuery, IfRole, Project, ProjectChange};
use crate::auth::audit::Outcome;
use crate::auth::client::{client_addr, ClientIp};
use crate::auth::policy::{Manage, Role};
use crate::auth::{Refusal, RequestInfo, Subject};
use crate::gc::GcReport;
use crate::oci::{RepoName, Tag};
use crate::service::LocalRegistry;
use crate::signature::{RequireSignature, SignatureGate, SignatureView};

mod body;
mod gc;
mod image_list;
mod params;
mod pulls;
pub use body::{is_simple_form, refuse_forms, with_method_errors, JsonBody};
mod proxy_projects;
mod quota;
mod replications;
mod retention;
mod system_keys;
mod system_robots;
mod webhooks;

/// The project-cleanup port, filled in once the controller is up.
pub type CleanupSlot = Arc<std::sync::OnceLock<Arc<dyn crate::project_cleanup::ProjectCleanup>>>;

#[derive(Clone)]
pub struct AdminState {
    pub access: Arc<RegistryAccess>,
    /// Seals proxy projects' upstream passwords (the controller's key).
    pub sealer: Arc<std::sync::OnceLock<Arc<dyn crate::sealing::Sealer>>>,
    /// Takes a deleted project's controller records down (set by `berth serve`).
    pub project_cleanup: CleanupSlot,
    pub proxy: berth_config::ProxyConfig,
    pub registry: Arc<LocalRegistry>,
    /// Runs GC (one at a time) and keeps its history.
    pub gc: Arc<crate::gc_runner::GcRunner>,
    /// Runs projects' retention rules.
    pub retention: Arc<crate::retention::RetentionRunner>,
    /// Where edges' pull reports go (counted, then flushed with the registry's own).
    pub pulls: Arc<crate::pulls::PullCounter>,
    /// host[:port] in the pull commands the image list shows.
    pub pull_host: String,
    pub signatures: Arc<SignatureGate>,
    /// None where no sealing key was given (webhook routes answer 503).
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    /// Replication policies and their executions.
    pub replications: Arc<crate::replication::Replications>,
    /// The keys tokens are signed with, and their rotation.
    pub token_keys: Arc<crate::auth::token_keys::TokenKeys>,
    /// Reseals what the controller keeps (set by `berth serve`).
    pub reseal_elsewhere: ResealSlot,
}

/// The port that reseals what is kept outside the registry's stores.
pub type ResealSlot = Arc<std::sync::OnceLock<Arc<dyn crate::sealing::ResealElsewhere>>>;

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct GcStatus {
    pub running: bool,
    #[schema(value_type = Option<Object>)]
    pub last: Option<GcReport>,
    pub last_error: Option<String>,
}

/// An admin API error: a status and a message a person can act on.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
    /// The handler recorded this refusal in the audit log itself.
    pub audited: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

impl AdminError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            audited: false,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth\""),
            );
        }
        if let Some(s) = self
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            r.headers_mut().insert(header::RETRY_AFTER, s);
        }
        if self.audited {
            r.extensions_mut().insert(crate::auth::audit::Audited);
        }
        r
    }
}

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> Self {
        let status = match &e {
            AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
            AccountError::NotFound(_) => StatusCode::NOT_FOUND,
            AccountError::Conflict(_) => StatusCode::CONFLICT,
            AccountError::Forbidden(_) => StatusCode::FORBIDDEN,
            AccountError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError::new(status, e.to_string())
    }
}

impl From<Refusal> for AdminError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Unauthorized { message, .. } => {
                AdminError::new(StatusCode::UNAUTHORIZED, message)
            }
            Refusal::Denied(m) => AdminError::new(StatusCode::FORBIDDEN, m),
            Refusal::Hidden(m) => AdminError::new(StatusCode::NOT_FOUND, m),
            Refusal::TooMany {
                message,
                retry_after,
            } => AdminError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message,
                retry_after: Some(retry_after),
                audited: false,
            },
        }
    }
}

impl From<crate::service::ServiceError> for AdminError {
    fn from(e: crate::service::ServiceError) -> Self {
        // A refusal by the registry's own rules (an immutable tag) is the caller's to fix.
        let status = match e.code() {
            Some(crate::oci::ErrorCode::Denied) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError::new(status, e.to_string())
    }
}

type AResult<T> = Result<T, AdminError>;

/// The authenticated caller of an admin endpoint. Robots are refused: they are for pulls and pushes.
pub struct Caller {
    pub subject: Subject,
    pub peer: Option<std::net::IpAddr>,
}

impl Caller {
    pub(crate) fn name(&self) -> &str {
        self.subject.display()
    }
    pub(crate) fn require_admin(&self) -> AResult<()> {
        if self.subject.admin {
            Ok(())
        } else {
            Err(AdminError::new(
                StatusCode::FORBIDDEN,
                format!("{} is not a system administrator", self.name()),
            ))
        }
    }
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = AdminError;
    async fn from_request_parts(
        parts: &mut Parts,
        st: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let peer = client_addr(&parts.extensions);
        let info = RequestInfo {
            headers: &parts.headers,
            peer,
        };
        let subject = st.access.identify(&info).await?;
        if subject.name.is_none() {
            return Err(AdminError::new(
                StatusCode::UNAUTHORIZED,
                "the admin API needs credentials: HTTP Basic with an account, or a bearer token from /v2/token",
            ));
        }
        if subject.robot {
            return Err(AdminError::new(
                StatusCode::FORBIDDEN,
                "robot accounts cannot use the admin API",
            ));
        }
        Ok(Caller { subject, peer })
    }
}

impl AdminState {
    pub(crate) fn audit(&self, c: &Caller, action: &str, project: Option<&str>, target: &str) {
        self.access
            .audit(c.name(), c.peer, action, project, target, Outcome::OK);
    }

    /// A system administrator, or a member of `project` whose role may do `what`
    /// (see `Role::may`). Refusals name the role needed; non-members of a private
    /// project are told it may not exist.
    pub(crate) fn require_role(&self, c: &Caller, project: &str, what: Manage) -> AResult<()> {
        if c.subject.admin {
            return Ok(());
        }
        let role = self.access.accounts.role(project, c.name());
        if role.is_some_and(|r| r.may(what)) {
            return Ok(());
        }
        self.require_visible(c, project)?;
        let needed = Role::needed_for(what);
        let doing = match what {
            Manage::Settings => "changing its visibility or settings".to_string(),
            Manage::Member(r) => format!("giving, changing or removing the {r} role"),
            Manage::Robots => "managing its robots".to_string(),
            Manage::Repositories => "deleting its repositories and tags".to_string(),
            Manage::Webhooks => "managing its webhooks".to_string(),
        };
        let has = role.map_or_else(|| "not a member".to_string(), |r| format!("role {r}"));
        Err(AdminError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not a {} of project {project} ({has}): {doing} needs the {needed} role, or a system administrator",
                c.name(),
                needed.title(),
            ),
        ))
    }

    /// The project exists and the caller may see it (public, member, admin).
    fn require_visible(&self, c: &Caller, project: &str) -> AResult<Project> {
        let p = self.access.accounts.project(project);
        match p {
            Some(p)
                if p.public
                    || c.subject.admin
                    || self.access.accounts.role(project, c.name()).is_some() =>
            {
                Ok(p)
            }
            _ => Err(AdminError::new(
                StatusCode::NOT_FOUND,
                format!("no project named {project}, or you are not a member of it"),
            )),
        }
    }

    async fn project_repos(&self, project: &str) -> AResult<Vec<String>> {
        let project: RepoName = project.parse().map_err(|e: crate::oci::NameError| {
            AdminError::new(StatusCode::BAD_REQUEST, e.to_string())
        })?;
        Ok(self.registry.project_repositories(&project).await?)
    }
}

// ---------------------------------------------------------------- users

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    /// The password is an initial one and must be reset before the account can log in.
    pub must_reset: bool,
    pub created: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    /// The initial password; the user must reset it before first use.
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Required when changing your own password (an initial password counts).
    pub old_password: Option<String>,
    pub new_password: String,
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserView>), (status = 403, body = ErrorBody)))]
async fn list_users(State(st): State<AdminState>, c: Caller) -> AResult<Json<Vec<UserView>>> {
    c.require_admin()?;
    Ok(Json(
        st.access
            .accounts
            .users()
            .into_iter()
            .map(|u| UserView {
                name: u.name,
                admin: u.admin,
                must_reset: u.must_reset,
                created: u.created,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
    State(st): State<AdminState>,
    c: Caller,
    JsonBody(b): JsonBody<NewUser>,
) -> AResult<(StatusCode, Json<UserView>)> {
    c.require_admin()?;
    let u = st
        .access
        .accounts
        .create_user(&b.name, &b.password, b.admin)
        .await?;
    st.audit(&c, "user.create", None, &u.name);
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            name: u.name,
            admin: u.admin,
            must_reset: u.must_reset,
            created: u.created,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, example = "throwaway")), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_user(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<StatusCode> {
    c.require_admin()?;
    st.access.accounts.delete_user(&name).await?;
    st.audit(&c, "user.delete", None, &name);
    Ok(StatusCode::NO_CONTENT)
}

/// Change a password. With `old_password`: anyone, for their own account (no other
/// credentials needed, so an initial password can be reset). Without: an
/// administrator sets a new initial password, which the owner must reset.
#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "users", request_body = PasswordChange,
    params(("name" = String, Path, example = "throwaway")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn set_password(
    State(st): State<AdminState>,
    ClientIp(peer): ClientIp,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<PasswordChange>,
) -> AResult<StatusCode> {
    let accounts = &st.access.accounts;
    match b.old_password {
        Some(old) => {
            // The old password is checked like a login, under the same throttle,
            // or this endpoint would be an unlimited password oracle.
            let _attempt = st.access.attempt(&name, peer).await;
            st.access.check_throttle(&name, peer).await?;
            let res = accounts
                .change_password(&name, &old, &b.new_password)
                .await
                .map_err(AdminError::from);
            match &res {
                Err(e) if e.status == StatusCode::FORBIDDEN => {
                    st.access.record_failure(&name, peer).await
                }
                Ok(()) => st.access.record_success(&name, peer).await,
                Err(_) => {}
            }
            let outcome = match &res {
                Ok(()) => Outcome::OK,
                Err(e) if e.status.is_server_error() => Outcome::Failed(&e.message),
                Err(e) => Outcome::Refused(&e.message),
            };
            st.access
                .audit(&name, peer, "user.password", None, &name, outcome);
            res.map_err(|e| AdminError { audited: true, ..e })?;
        }
        None => {
            let info = RequestInfo {
                headers: &headers,
                peer,
            };
            let subject = st.access.identify(&info).await?;
            if !subject.admin {
                return Err(AdminError::new(
                    StatusCode::FORBIDDEN,
                    "give old_password to change your own password; only administrators set passwords without it",
                ));
            }
            accounts.admin_set_password(&name, &b.new_password).await?;
            st.access.audit(
                subject.display(),
                peer,
                "user.password.reset",
                None,
                &name,
                Outcome::OK,
            );
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- projects

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
async fn list_projects(
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
async fn create_project(
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

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub user: String,
    #[schema(value_type = String)]
    pub role: Role,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}", tag = "projects", params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorBody)))]
async fn show_project(
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
async fn patch_project(
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
async fn delete_project(
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

// ---------------------------------------------------------------- members

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
async fn list_members(
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
async fn put_member(
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
async fn delete_member(
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

// ---------------------------------------------------------------- robots

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
async fn list_robots(
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
async fn create_robot(
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
async fn revoke_robot(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, robot)): Path<(String, String)>,
) -> AResult<StatusCode> {
    st.require_role(&c, &name, Manage::Robots)?;
    st.access.accounts.revoke_robot(&name, &robot).await?;
    st.audit(&c, "robot.revoke", Some(&name), &robot);
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- repositories

#[derive(Serialize, ToSchema)]
pub struct TagView {
    pub name: String,
    pub digest: String,
    /// The image's signatures: cosign's `<alg>-<hex>.sig` tag (also what skopeo
    /// and podman write), and cosign and notation referrers.
    pub signatures: Vec<SignatureView>,
    /// Under the project's `require_signature` policy (absent without one):
    /// whether the image may be pulled, and why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_policy: Option<PolicyView>,
    /// Size, platforms, push and pull times, pull command, referrers.
    #[serde(flatten)]
    pub details: image_list::TagDetails,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    pub pull_allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AdminState {
    /// The repository `repository` names in `project`: either its full name, as
    /// the repository list gives it (`pub/hello`), or its name within the
    /// project (`hello`); the full name wins if both exist. 404 when neither does.
    async fn resolve_repo(&self, project: &str, repository: &str) -> AResult<RepoName> {
        let known = self.project_repos(project).await?;
        let within = format!("{project}/{repository}");
        let candidates = [repository, within.as_str()];
        let found = candidates
            .iter()
            .filter(|c| *c == &project || c.starts_with(&format!("{project}/")))
            .find(|c| known.iter().any(|k| k == *c));
        match found {
            Some(name) => name.parse().map_err(|e: crate::oci::NameError| {
                AdminError::new(StatusCode::BAD_REQUEST, e.to_string())
            }),
            None => {
                let shown = if repository.starts_with(&format!("{project}/")) {
                    repository
                } else {
                    &within
                };
                Err(AdminError::new(
                    StatusCode::NOT_FOUND,
                    format!("no repository {shown} in project {project}"),
                ))
            }
        }
    }
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories", tag = "repositories", params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = Vec<String>)))]
async fn list_repositories(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<Json<Vec<String>>> {
    st.require_visible(&c, &name)?;
    Ok(Json(st.project_repos(&name).await?))
}

/// `repository` is the full name the repository list gives, or the name within
/// the project, URL-encoded (`p%2Fa%2Fb` or `a%2Fb` for `p/a/b`).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/repositories/{repository}", tag = "repositories",
    params(("project" = String, Path, example = "demo"), ("repository" = String, Path, example = "demo/hello")), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_repository(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, repository)): Path<(String, String)>,
) -> AResult<StatusCode> {
    st.require_role(&c, &name, Manage::Repositories)?;
    let repo = st.resolve_repo(&name, &repository).await?;
    if !st.registry.delete_repository(&repo).await? {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            format!("no repository {repo}"),
        ));
    }
    st.audit(&c, "repository.delete", Some(&name), repo.as_str());
    if let Some(hooks) = &st.webhooks {
        hooks
            .emit(crate::api::events::repository_deleted(&repo, &c.subject))
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/tags", tag = "repositories",
    params(("project" = String, Path, example = "demo"), ("repository" = String, Path, example = "demo/hello")),
    responses((status = 200, body = Vec<TagView>), (status = 404, body = ErrorBody)))]
async fn list_tags(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, repository)): Path<(String, String)>,
) -> AResult<Json<Vec<TagView>>> {
    let project = st.require_visible(&c, &name)?;
    let repo = st.resolve_repo(&name, &repository).await?;
    let records = st
        .registry
        .meta()
        .tag_records(&repo)
        .await
        .map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut details = image_list::details(&st.registry, &st.pull_host, &repo, &records)
        .await
        .map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut out = Vec::new();
    for r in records {
        let (name, digest) = (r.tag, r.digest);
        let Ok(d) = digest.parse::<crate::oci::Digest>() else {
            continue;
        };
        let signatures = crate::signature::signature_views(&st.registry, &repo, &d).await?;
        let signature_policy = match project.require_signature {
            None => None,
            Some(_) => Some(match st.signatures.check_pull(&repo, &d).await {
                Ok(()) => PolicyView {
                    pull_allowed: true,
                    reason: None,
                },
                Err(e) => PolicyView {
                    pull_allowed: false,
                    reason: Some(e.to_string()),
                },
            }),
        };
        out.push(TagView {
            details: details.remove(&name).unwrap_or_default(),
            name,
            digest,
            signatures,
            signature_policy,
        });
    }
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/repositories/{repository}/tags/{tag}", tag = "repositories",
    params(("project" = String, Path, example = "demo"), ("repository" = String, Path, example = "demo/hello"), ("tag" = String, Path, example = "v1")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_tag(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, repository, tag)): Path<(String, String, String)>,
) -> AResult<StatusCode> {
    st.require_role(&c, &name, Manage::Repositories)?;
    let repo = st.resolve_repo(&name, &repository).await?;
    let t: Tag = tag.parse().map_err(|e: crate::oci::NameError| {
        AdminError::new(StatusCode::BAD_REQUEST, e.to_string())
    })?;
    if !st.registry.delete_tag(&repo, &t).await? {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            format!("no tag {t} in {repo}"),
        ));
    }
    st.audit(&c, "tag.delete", Some(&name), &format!("{repo}:{t}"));
    if let Some(hooks) = &st.webhooks {
        let reference = crate::oci::Reference::Tag(t);
        hooks
            .emit(crate::api::events::manifest_deleted(
                &repo, &reference, &c.subject,
            ))
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- audit (gc: gc.rs)

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEvent>)))]
async fn audit_log(
    State(st): State<AdminState>,
    c: Caller,
    Params(q): Params<AuditQuery>,
) -> AResult<Json<Vec<AuditEvent>>> {
    c.require_admin()?;
    Ok(Json(st.access.accounts.audit_query(&q).await?))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth admin API",
        description = "Accounts, projects (with storage quotas, immutable-tag and retention rules), members, robots, repositories, webhooks, replication policies, GC and audit of a berth registry. Authenticate with HTTP Basic or a bearer token from /v2/token."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_users, create_user))
        .routes(routes!(delete_user))
        .routes(routes!(set_password))
        .routes(routes!(list_projects, create_project))
        .routes(routes!(show_project, patch_project, delete_project))
        .routes(routes!(quota::recount))
        .routes(routes!(quota::list_rules, quota::add_rule))
        .routes(routes!(quota::delete_rule))
        .routes(routes!(retention::show, retention::set))
        .routes(routes!(retention::run))
        .routes(routes!(list_members))
        .routes(routes!(put_member, delete_member))
        .routes(routes!(list_robots, create_robot))
        .routes(routes!(revoke_robot))
        .routes(routes!(system_robots::list, system_robots::create))
        .routes(routes!(system_robots::revoke))
        .routes(routes!(list_repositories))
        .routes(routes!(delete_repository))
        .routes(routes!(list_tags))
        .routes(routes!(delete_tag))
        .routes(routes!(gc::start, gc::status))
        .routes(routes!(gc::runs))
        .routes(routes!(pulls::report))
        .routes(routes!(audit_log))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::show, webhooks::patch, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(replications::list, replications::create))
        .routes(routes!(
            replications::show,
            replications::patch,
            replications::delete
        ))
        .routes(routes!(replications::run, replications::executions))
        .routes(routes!(replications::execution))
        .routes(routes!(system_keys::list))
        .routes(routes!(system_keys::rotate))
        .routes(routes!(system_keys::reseal))
}

/// The admin API's OpenAPI document, generated from the routes it serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The admin router. `/api/v1/openapi.json` serves `doc`: `openapi()` with
/// what the other routes of the listener add (see `crate::openapi`).
pub fn router(state: AdminState, doc: serde_json::Value) -> axum::Router {
    let access = state.access.clone();
    let router = routes().with_state(state).split_for_parts().0;
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .layer(axum::middleware::from_fn(refuse_forms))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            access,
            crate::auth::audit::record_refusals,
        ))
}

/// Errors the framework answers by itself (a body that is not the JSON asked for,
/// a wrong content type, a bad query string, a method the path does not serve) come
/// as plain text or empty; they become `{"error": ...}` like every other error here.
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    };
    let mut r = AdminError::new(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            r.headers_mut().insert(name.clone(), value.clone());
        }
    }
    r
}
