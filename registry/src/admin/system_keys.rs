//! `/api/v1/system/token-keys`: the keys bearer tokens are signed with,
//! listed (never their secrets) and rotated with overlap; and
//! `/api/v1/system/reseal`: every sealed value sealed again with the
//! current sealing key. System administrators only; rotations and reseals
//! are audited. The keys themselves are `auth::token_keys`' and the
//! sealer's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody};
use crate::auth::audit::Outcome;
use crate::auth::token_keys::{TokenKeyList, TokenKeyView};
use crate::sealing::ResealReport;

/// What a rotation answers: the new key, and the set as it is now.
#[derive(Serialize, ToSchema)]
pub struct RotatedTokenKey {
    /// The new key: it verifies at once everywhere it was read, and signs
    /// from `signs_from` on.
    pub published: TokenKeyView,
    #[serde(flatten)]
    pub list: TokenKeyList,
}

fn failed(e: impl std::fmt::Display) -> AdminError {
    AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The token keys that verify now: the one signing, one published to sign
/// later, and those retiring (verifying the tokens they signed until
/// `retires_at`); and the key this replica signs with.
#[utoipa::path(get, path = "/api/v1/system/token-keys", tag = "system",
    responses((status = 200, body = TokenKeyList), (status = 403, body = ErrorBody)))]
pub(super) async fn list(State(st): State<AdminState>, c: Caller) -> AResult<Json<TokenKeyList>> {
    c.require_admin()?;
    Ok(Json(st.token_keys.list().await.map_err(failed)?))
}

/// Publishes a new token signing key. It verifies at once and signs from
/// `signs_from` (with several replicas, after each has read it); the key
/// it replaces keeps verifying until the last token it signed expires
/// (`auth.token_ttl` later). Tokens already issued keep working.
#[utoipa::path(post, path = "/api/v1/system/token-keys/rotate", tag = "system",
    responses((status = 200, body = RotatedTokenKey), (status = 403, body = ErrorBody)))]
pub(super) async fn rotate(
    State(st): State<AdminState>,
    c: Caller,
) -> AResult<Json<RotatedTokenKey>> {
    c.require_admin()?;
    let (published, list) = st.token_keys.rotate().await.map_err(failed)?;
    st.audit(
        &c,
        "token-keys.rotate",
        None,
        &format!("key {}", published.id),
    );
    Ok(Json(RotatedTokenKey { published, list }))
}

/// What a reseal answers: totals, and the counts by kind of value.
#[derive(Serialize, ToSchema)]
pub struct ResealAnswer {
    /// The id of the key values are sealed with now (`controller.secret_key`).
    pub key_id: String,
    /// Values sealed again with it.
    pub resealed: u64,
    /// Values it had sealed already.
    pub current: u64,
    /// Values no configured key opens (left as they are; see `kinds`).
    pub failed: u64,
    /// By kind: `proxy_passwords`, `webhook_secrets`, `replication_passwords`,
    /// and the controller's `secret_values`, `cluster_kubeconfigs`,
    /// `node_credentials`.
    pub kinds: ResealReport,
}

/// Seals every sealed value (proxy projects' upstream passwords, webhook
/// secrets, replication passwords, the controller's secret values,
/// kubeconfigs and edge credentials) again with the current key
/// (`controller.secret_key`), opening it with that key or one of
/// `controller.previous_secret_keys`. Afterwards the previous keys can be
/// removed. A value no configured key opens is left as it is and counted
/// as failed, with why; run it again once the key is back.
#[utoipa::path(post, path = "/api/v1/system/reseal", tag = "system",
    responses((status = 200, body = ResealAnswer), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn reseal(State(st): State<AdminState>, c: Caller) -> AResult<Json<ResealAnswer>> {
    c.require_admin()?;
    let sealer = st.sealer.get().cloned().ok_or_else(|| {
        AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this registry has no sealing key (controller.secret_key)",
        )
    })?;
    let mut kinds = ResealReport::new();
    let proxies = st
        .access
        .accounts
        .reseal_proxy_passwords(sealer.clone())
        .await?;
    kinds.insert("proxy_passwords".into(), proxies);
    kinds.extend(
        st.registry
            .meta()
            .reseal(sealer.clone())
            .await
            .map_err(failed)?,
    );
    if let Some(elsewhere) = st.reseal_elsewhere.get() {
        kinds.extend(elsewhere.reseal().await.map_err(failed)?);
    }
    let sum = |f: fn(&crate::sealing::ResealCount) -> u64| kinds.values().map(f).sum::<u64>();
    let answer = ResealAnswer {
        key_id: sealer.key_id(),
        resealed: sum(|k| k.resealed),
        current: sum(|k| k.current),
        failed: sum(|k| k.failed.len() as u64),
        kinds,
    };
    let summary = format!(
        "{} resealed, {} current, {} failed (key {})",
        answer.resealed, answer.current, answer.failed, answer.key_id
    );
    let outcome = if answer.failed == 0 {
        Outcome::OK
    } else {
        Outcome::Failed(&summary)
    };
    st.access
        .audit(c.name(), c.peer, "secrets.reseal", None, &summary, outcome);
    Ok(Json(answer))
}
