//! What the admin API says and takes about storage quotas and immutable
//! tags: the `quota` field of a project PATCH (system administrators), the
//! `storage` part of a project's answer, the usage recount, and
//! `/api/v1/projects/{project}/immutable-tags` (project admins).
//! The rules themselves are kept and enforced by the metadata (`meta::quota`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
use crate::auth::policy::Manage;
use crate::meta::quota::{check_pattern, human, ImmutableRule, QuotaSetting, Recount};

/// A project's usage and the limit that applies to it.
#[derive(Serialize, ToSchema)]
pub struct StorageView {
    /// Bytes the project holds: each blob and manifest once, however many of
    /// its repositories and tags use it.
    pub usage: u64,
    /// The limit that applies, in bytes; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// `project` (its own), `default` (quota.default_project) or `none`.
    pub limit_from: &'static str,
    /// The same in words, e.g. "1.2 GiB of 50 GiB".
    pub summary: String,
}

pub(super) async fn storage(st: &AdminState, project: &str) -> AResult<StorageView> {
    let q = st.registry.quota(project).await?;
    let limit_from = match (q.own, q.default) {
        (Some(QuotaSetting::Bytes(_)), _) => "project",
        (Some(QuotaSetting::Unlimited), _) | (None, None) => "none",
        (None, Some(_)) => "default",
    };
    let limit = q.limit();
    let summary = match limit {
        Some(l) => format!("{} of {}", human(q.usage), human(l)),
        None => format!("{} (no limit)", human(q.usage)),
    };
    Ok(StorageView {
        usage: q.usage,
        limit,
        limit_from,
        summary,
    })
}

/// The setting a PATCH's `quota` asks for (`Some(None)`: the project's own
/// limit removed), after checking that the caller may set it here.
pub(super) fn requested(
    st: &AdminState,
    c: &Caller,
    name: &str,
    quota: Option<&Option<serde_json::Value>>,
) -> AResult<Option<Option<QuotaSetting>>> {
    let Some(q) = quota else {
        return Ok(None);
    };
    if !c.subject.admin {
        return Err(AdminError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not a system administrator: only they set storage quotas",
                c.name()
            ),
        ));
    }
    if st
        .access
        .accounts
        .project(name)
        .is_some_and(|p| p.proxy.is_some())
    {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{name} is a proxy-cache project: it holds what pulls bring, and quotas limit pushes"
            ),
        ));
    }
    Ok(Some(q.as_ref().map(parse_quota).transpose()?))
}

/// Stores a project's own setting, audited.
pub(super) async fn set(
    st: &AdminState,
    c: &Caller,
    name: &str,
    setting: Option<QuotaSetting>,
) -> AResult<()> {
    st.registry.set_quota(name, setting).await?;
    let target = match setting {
        Some(QuotaSetting::Bytes(n)) => format!("{name}: {}", human(n)),
        Some(QuotaSetting::Unlimited) => format!("{name}: none"),
        None => format!("{name}: default"),
    };
    st.audit(c, "project.quota", Some(name), &target);
    Ok(())
}

/// Reads the `quota` of a PATCH: a size ("50GiB", "500MB", a number of
/// bytes), or "none" (no limit, whatever the default). `null` is handled by
/// the caller (the project's own limit removed).
fn parse_quota(v: &serde_json::Value) -> AResult<QuotaSetting> {
    let bad = |what: String| {
        AdminError::new(
            StatusCode::BAD_REQUEST,
            format!("quota: {what}; give a size such as \"50GiB\" or \"500MB\", a number of bytes, \"none\" for no limit, or null for the registry default"),
        )
    };
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(QuotaSetting::Bytes)
            .ok_or_else(|| bad(format!("{n} is not a whole number of bytes"))),
        serde_json::Value::String(s) if ["none", "unlimited"].contains(&s.trim()) => {
            Ok(QuotaSetting::Unlimited)
        }
        serde_json::Value::String(s) => s
            .parse::<berth_config::ByteSize>()
            .map(|b| QuotaSetting::Bytes(b.0))
            .map_err(bad),
        other => Err(bad(format!("{other} is not a size"))),
    }
}

/// Recounts a project's usage from the blobs and manifests its repositories
/// hold and stores the result (system administrators). `counted` equals
/// `recounted` unless the counter had drifted.
#[utoipa::path(post, path = "/api/v1/projects/{project}/usage/recount", tag = "projects",
    params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = Recount), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn recount(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<Json<Recount>> {
    c.require_admin()?;
    st.require_visible(&c, &name)?;
    let r = st.registry.recount_usage(&name).await?;
    st.audit(
        &c,
        "project.usage.recount",
        Some(&name),
        &format!("{} -> {} bytes", r.counted, r.recounted),
    );
    Ok(Json(r))
}

/// A new immutable-tag rule.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewImmutableRule {
    /// Tags it protects in every repository of the project, e.g. `v*` or
    /// `release-*` (`*`: any run of characters, `?`: any one).
    pub pattern: String,
}

/// A project's immutable-tag rules: a tag they match cannot be moved to
/// another manifest or deleted (pushing the same manifest again is fine).
#[utoipa::path(get, path = "/api/v1/projects/{project}/immutable-tags", tag = "immutable-tags",
    params(("project" = String, Path, example = "demo")),
    responses((status = 200, body = Vec<ImmutableRule>), (status = 404, body = ErrorBody)))]
pub(super) async fn list_rules(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
) -> AResult<Json<Vec<ImmutableRule>>> {
    st.require_visible(&c, &name)?;
    Ok(Json(st.registry.immutable_rules(&name).await?))
}

/// Adds an immutable-tag rule (project admins).
#[utoipa::path(post, path = "/api/v1/projects/{project}/immutable-tags", tag = "immutable-tags",
    request_body = NewImmutableRule, params(("project" = String, Path, example = "demo")),
    responses((status = 201, body = ImmutableRule), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn add_rule(
    State(st): State<AdminState>,
    c: Caller,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<NewImmutableRule>,
) -> AResult<(StatusCode, Json<ImmutableRule>)> {
    st.require_role(&c, &name, Manage::Settings)?;
    if st
        .access
        .accounts
        .project(&name)
        .is_some_and(|p| p.proxy.is_some())
    {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} is a proxy-cache project: its tags follow its upstream's"),
        ));
    }
    let pattern = b.pattern.trim();
    check_pattern(pattern).map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, e))?;
    if !st.registry.add_immutable_rule(&name, pattern).await? {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("project {name} already has the immutable-tag rule {pattern:?}"),
        ));
    }
    st.audit(&c, "project.immutable-tag.add", Some(&name), pattern);
    let rule = st
        .registry
        .immutable_rules(&name)
        .await?
        .into_iter()
        .find(|r| r.pattern == pattern)
        .ok_or_else(|| {
            AdminError::new(
                StatusCode::CONFLICT,
                format!("the rule {pattern:?} was removed meanwhile"),
            )
        })?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Removes an immutable-tag rule (project admins); `pattern` as listed.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/immutable-tags/{pattern}", tag = "immutable-tags",
    params(("project" = String, Path, example = "demo"), ("pattern" = String, Path, example = "v*")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_rule(
    State(st): State<AdminState>,
    c: Caller,
    Path((name, pattern)): Path<(String, String)>,
) -> AResult<StatusCode> {
    st.require_role(&c, &name, Manage::Settings)?;
    if !st.registry.remove_immutable_rule(&name, &pattern).await? {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            format!("project {name} has no immutable-tag rule {pattern:?}"),
        ));
    }
    st.audit(&c, "project.immutable-tag.delete", Some(&name), &pattern);
    Ok(StatusCode::NO_CONTENT)
}
