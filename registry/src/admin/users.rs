//! `/api/v1/users`: accounts (system administrators), and password changes
//! (the owner with the old password, under the login throttle; or an administrator).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
use crate::auth::audit::Outcome;
use crate::auth::client::ClientIp;
use crate::auth::RequestInfo;

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
pub(super) async fn list_users(
    State(st): State<AdminState>,
    c: Caller,
) -> AResult<Json<Vec<UserView>>> {
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
pub(super) async fn create_user(
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
pub(super) async fn delete_user(
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
pub(super) async fn set_password(
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
