//! `/api/v1/projects/{project}/retention`: a project's retention rules
//! (read by members, set by project admins) and runs of them on demand,
//! dry or not. The rules are the metadata's (`meta::retention`); runs are
//! `retention::RetentionRunner`'s.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
use crate::auth::policy::Manage;
use crate::gc_runner::Trigger;
use crate::meta::retention::{check, RetentionPolicy};
use crate::meta::MetaError;
use crate::retention::RetentionRun;

fn failed(what: &str, e: MetaError) -> AdminError {
    AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}"))
}

fn no_proxy(st: &AdminState, name: &str) -> AResult<()> {
    if st
        .access
        .accounts
        .project(name)
        .is_some_and(|p| p.proxy.is_some())
    {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} is a proxy-cache project: its cache's own retention applies"),
        ));
    }
    Ok(())
}

/// A project's retention rules (an empty list: none; nothing is deleted).
#[utoipa::path(get, path = "/api/v1/projects/{project}/retention", tag = "retention",
    params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = RetentionPolicy), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<Json<RetentionPolicy>> {
    st.require_visible(&c, &name)?;
    let p = st
        .registry
        .meta()
        .retention_policy(&name)
        .await
        .map_err(|e| failed("reading the retention rules", e))?;
    Ok(Json(p.unwrap_or_default()))
}

/// Replaces a project's retention rules (project admins); `{"rules": []}`
/// removes them. A rule covers the tags its `repositories` and `tags`
/// patterns match; a covered tag is kept if any rule keeps it (`keep_last`,
/// `pulled_within_days`), else a run deletes it — unless a publication
/// deploys or an edge pins its manifest, or an immutable-tag rule protects
/// it and no covering rule says `include_immutable`. `untagged_hours` keeps
/// the untagged manifests of the covered repositories from GC that long.
#[utoipa::path(put, path = "/api/v1/projects/{project}/retention", tag = "retention",
    request_body = RetentionPolicy, params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = RetentionPolicy), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn set(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
    JsonBody(policy): JsonBody<RetentionPolicy>,
) -> AResult<Json<RetentionPolicy>> {
    st.require_visible(&c, &name)?;
    st.require_role(&c, &name, Manage::Settings)?;
    no_proxy(&st, &name)?;
    check(&policy).map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, e))?;
    let stored = (!policy.rules.is_empty()).then_some(&policy);
    st.registry
        .meta()
        .retention_policy_set(&name, stored)
        .await
        .map_err(|e| failed("storing the retention rules", e))?;
    let summary = serde_json::to_string(&policy.rules).unwrap_or_default();
    st.audit(&c, "project.retention.set", Some(&name), &summary);
    Ok(Json(policy))
}

/// What a run is asked to do.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Only say what would go and why; delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Applies a project's retention rules now (project admins): deletes the
/// tags they let go (GC then removes manifests nothing reaches) and answers
/// with every covered tag, deleted or kept, and why. With `dry_run` it
/// deletes nothing and lists exactly what a run would delete.
#[utoipa::path(post, path = "/api/v1/projects/{project}/retention/run", tag = "retention",
    request_body = RunRequest, params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = RetentionRun), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn run(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
    JsonBody(r): JsonBody<RunRequest>,
) -> AResult<Json<RetentionRun>> {
    st.require_visible(&c, &name)?;
    st.require_role(&c, &name, Manage::Settings)?;
    no_proxy(&st, &name)?;
    let done = st
        .retention
        .run(&name, Trigger::Api, Some((c.name(), c.peer)), r.dry_run)
        .await
        .map_err(|e| failed("the retention run failed", e))?;
    Ok(Json(done))
}
