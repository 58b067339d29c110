//! What loses a local volume's data, and unbinding it:
//! `POST .../volumes/{name}/release`, `DELETE .../volumes/{name}` and (in
//! `resource_publications`) `POST .../volumes/{name}/unpublish` need the
//! maintainer role and `"confirm": "<volume name>"`; `POST .../unbind` takes a
//! released volume out of the templates that name it.
//!
//! Owns: the confirmation rule and these handlers' audit records. Must not
//! touch: the rules of release and unbind (see `store`) or the node (see
//! `resources_ctl`).

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::ports::{Actor, CtlAction};
use crate::resources::ResourceKind;
use crate::resources_ctl::release_volume;
use crate::state::ControllerState;

use super::resources::{audit, load_view, ResourceView};
use super::{check_project, ApiError, ApiResult, Body};

const KIND: ResourceKind = ResourceKind::Volumes;

/// The data of a volume goes only when the request repeats its name.
pub(super) fn check_confirm(name: &str, confirm: Option<&str>, what: &str) -> ApiResult<()> {
    match confirm {
        Some(c) if c == name => Ok(()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "confirm: {c:?} is not the volume's name; {what} destroys the data of volume \
             {name}, which cannot be recovered: send \"confirm\": \"{name}\" to go ahead"
        ))),
        None => Err(ApiError::BadRequest(format!(
            "confirm: {what} destroys the data of volume {name}, which cannot be recovered: \
             send \"confirm\": \"{name}\" to go ahead"
        ))),
    }
}

/// The maintainer role on the project, and the volume's name repeated; a
/// refusal is audited like the action.
pub(super) fn authorize_data_loss(
    state: &ControllerState,
    headers: &HeaderMap,
    project: &str,
    name: &str,
    confirm: Option<&str>,
    action: &str,
) -> ApiResult<Actor> {
    let actor = state
        .authorizer()
        .authorize(headers, Some(project), CtlAction::Admin)
        .map_err(ApiError::Auth)?;
    let checked = check_confirm(name, confirm, &format!("{action} of a volume"));
    if checked.is_err() {
        audit(state, &actor.name, project, KIND, action, name, &checked);
    }
    checked?;
    Ok(actor)
}

#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseInput {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// Removes the volume's claim from the node (its data goes with it) and marks
/// it released. Refused while an app using it is published there.
pub(super) async fn release(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
    Body(input): Body<ReleaseInput>,
) -> ApiResult<Json<ResourceView>> {
    check_project(&project)?;
    let actor = authorize_data_loss(
        &state,
        &headers,
        &project,
        &name,
        input.confirm.as_deref(),
        "release",
    )?;
    let ctx = state.context();
    let result = release_volume(
        ctx.store(),
        ctx.deployer.as_ref(),
        &project,
        &input.node,
        &name,
    )
    .await
    .map_err(ApiError::from);
    audit(
        &state,
        &actor.name,
        &project,
        KIND,
        "release",
        &format!("{name}@{}", input.node),
        &result,
    );
    result?;
    Ok(Json(load_view(&state, &project, KIND, &name).await?))
}

#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UnbindInput {
    /// The node to unbind from; every node it was released from when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The answer of an unbind: the volume, and the app versions made without it.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct UnbindView {
    /// The volume as it is now; absent when it was deleted before the unbind.
    pub volume: Option<ResourceView>,
    /// `app@version`: new template versions that no longer name the volume.
    #[serde(default)]
    pub unbound_from: Vec<String>,
}

pub(super) async fn unbind(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<UnbindView>> {
    check_project(&project)?;
    let actor = state
        .authorizer()
        .authorize(&headers, Some(&project), CtlAction::Write)
        .map_err(ApiError::Auth)?;
    let node = optional_json::<UnbindInput>(&body)?.node;
    let (p, n, nd, who) = (
        project.clone(),
        name.clone(),
        node.clone(),
        actor.name.clone(),
    );
    let result = state
        .context()
        .store()
        .unbind(&p, nd.as_deref(), &n, &who, now_secs())
        .await
        .map_err(ApiError::from);
    let target = match &node {
        Some(nd) => format!("{name}@{nd}"),
        None => name.clone(),
    };
    let outcome = match &result {
        Ok(v) if v.is_empty() => "ok".to_string(),
        Ok(v) => format!(
            "ok; new template versions without it: {}",
            v.iter()
                .map(|(a, v)| format!("{a}@{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => format!("refused: {e}"),
    };
    state
        .context()
        .audit
        .record(&actor.name, &project, "volumes.unbind", &target, &outcome);
    let versions = result?;
    Ok(Json(UnbindView {
        volume: match load_view(&state, &project, KIND, &name).await {
            Ok(v) => Some(v),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
        unbound_from: versions.iter().map(|(a, v)| format!("{a}@{v}")).collect(),
    }))
}

/// A JSON body that may be left out (the default then).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid: {e}")))
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfirmInput {
    #[serde(default)]
    confirm: Option<String>,
}

/// Deletes the volume record (after release, whether or not a template still
/// names it); `confirm` comes in the query or a JSON body.
pub(super) async fn delete(
    state: ControllerState,
    headers: HeaderMap,
    project: String,
    name: String,
    query: Result<Query<ConfirmInput>, QueryRejection>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    check_project(&project)?;
    let confirm = optional_json::<ConfirmInput>(&body)?.confirm.or(query
        .map_err(|e| ApiError::BadRequest(format!("the query is not valid: {}", e.body_text())))?
        .0
        .confirm);
    let actor = authorize_data_loss(
        &state,
        &headers,
        &project,
        &name,
        confirm.as_deref(),
        "delete",
    )?;
    let (p, n) = (project.clone(), name.clone());
    let result = state
        .context()
        .store()
        .delete_resource(&p, KIND, &n)
        .await
        .map_err(ApiError::from);
    audit(
        &state,
        &actor.name,
        &project,
        KIND,
        "delete",
        &name,
        &result,
    );
    result?;
    Ok(StatusCode::NO_CONTENT)
}
