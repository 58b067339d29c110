//! Who is calling an admin endpoint, and what they may do: the `Caller`
//! extractor (robots refused), the role and visibility checks every
//! project-scoped handler makes, and the audit record of a successful change.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::{AResult, AdminError, AdminState};
use crate::auth::accounts::Project;
use crate::auth::audit::Outcome;
use crate::auth::client::client_addr;
use crate::auth::policy::{Manage, Role};
use crate::auth::{RequestInfo, Subject};
use crate::oci::RepoName;

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
    pub(super) fn require_visible(&self, c: &Caller, project: &str) -> AResult<Project> {
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

    pub(super) async fn project_repos(&self, project: &str) -> AResult<Vec<String>> {
        let project: RepoName = project.parse().map_err(|e: crate::oci::NameError| {
            AdminError::new(StatusCode::BAD_REQUEST, e.to_string())
        })?;
        Ok(self.registry.project_repositories(&project).await?)
    }
}
