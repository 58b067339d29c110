//! `/api/v1/projects/{project}/repositories`: a project's repositories and
//! their tags (with signatures and the pull policy's verdict), and deleting
//! either; a deletion is audited and announced to webhooks.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::image_list;
use super::{AResult, AdminError, AdminState, Caller, ErrorBody};
use crate::auth::policy::Manage;
use crate::oci::{RepoName, Tag};
use crate::signature::SignatureView;

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
pub(super) async fn list_repositories(
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
pub(super) async fn delete_repository(
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
pub(super) async fn list_tags(
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
pub(super) async fn delete_tag(
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
