//! Publishing resources per node:
//! `POST /api/v1/projects/{project}/{kind}/{name}/publish` and `/unpublish`
//! with `{"nodes": [...]}`, `{"selector": {...}}` or `{}` (publish: every node
//! where an app the resource serves is published; unpublish: every node it is
//! published on).
//!
//! Owns: choosing the nodes, recording the request and triggering the
//! reconciler, audit records. Must not touch: the rules (see `store`) or what
//! happens on the node (see `reconcile`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::ports::CtlAction;
use crate::resources::{ResourceKind, ResourcePublication};
use crate::state::ControllerState;

use super::resources::{audit, load_view, ResourceView};
use super::{check_project, ApiError, ApiResult, Body, Routes};

/// Where to publish or unpublish a resource.
#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceTargetInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    /// Every node with all these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// A volume's unpublish takes its data: its name, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// The answer: the records the request changed, and the resource as it is now.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ResourcePublicationsView {
    pub publications: Vec<ResourcePublication>,
    pub resource: ResourceView,
}

/// The nodes named, those with the labels, or `None` for the default.
async fn chosen_nodes(
    state: &ControllerState,
    input: ResourceTargetInput,
) -> ApiResult<Option<Vec<String>>> {
    match (input.nodes, input.selector) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "give either nodes or selector, not both".into(),
        )),
        (Some(n), None) if n.is_empty() => Err(ApiError::BadRequest(
            "nodes: name at least one node, or leave nodes out for the default".into(),
        )),
        (Some(n), None) => Ok(Some(n)),
        (None, Some(sel)) => {
            let all = state.context().store().list_nodes().await?;
            let matched: Vec<String> = all
                .into_iter()
                .filter(|n| n.matches(&sel))
                .map(|n| n.name)
                .collect();
            if matched.is_empty() {
                let wanted: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
                return Err(ApiError::BadRequest(format!(
                    "no node has the labels {}",
                    wanted.join(",")
                )));
            }
            Ok(Some(matched))
        }
        (None, None) => Ok(None),
    }
}

async fn change(
    kind: ResourceKind,
    publish: bool,
    state: ControllerState,
    headers: HeaderMap,
    project: String,
    name: String,
    input: ResourceTargetInput,
) -> ApiResult<(StatusCode, Json<ResourcePublicationsView>)> {
    check_project(&project)?;
    let actor = if kind == ResourceKind::Volumes && !publish {
        super::volumes::authorize_data_loss(
            &state,
            &headers,
            &project,
            &name,
            input.confirm.as_deref(),
            "unpublish",
        )?
    } else {
        state
            .authorizer()
            .authorize(&headers, Some(&project), CtlAction::Write)
            .map_err(ApiError::Auth)?
    };
    let nodes = chosen_nodes(&state, input).await?;
    let target = match &nodes {
        Some(n) => format!("{name}@{}", n.join(",")),
        None => name.clone(),
    };
    let (p, n) = (project.clone(), name.clone());
    let store = state.store();
    let result = if publish {
        store
            .publish_resource(&p, kind, &n, nodes, now_secs())
            .await
    } else {
        store
            .unpublish_resource(&p, kind, &n, nodes, now_secs())
            .await
    }
    .map_err(ApiError::from);
    let action = if publish { "publish" } else { "unpublish" };
    audit(
        &state,
        &actor.name,
        &project,
        kind,
        action,
        &target,
        &result,
    );
    let pubs = result?;
    for rp in &pubs {
        state.trigger(rp.key());
    }
    let resource = load_view(&state, &project, kind, &name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ResourcePublicationsView {
            publications: pubs,
            resource,
        }),
    ))
}

/// Routes of publish and unpublish for every kind of resource.
pub(super) fn routes() -> Routes {
    let mut router = Routes::new();
    for kind in ResourceKind::ALL {
        for publish in [true, false] {
            let path = format!(
                "/api/v1/projects/{{project}}/{}/{{name}}/{}",
                kind.as_str(),
                if publish { "publish" } else { "unpublish" }
            );
            router = router.route(
                &path,
                post(
                    move |State(s): State<ControllerState>,
                          h: HeaderMap,
                          Path((p, n)): Path<(String, String)>,
                          Body(b): Body<ResourceTargetInput>| {
                        change(kind, publish, s, h, p, n, b)
                    },
                ),
            );
        }
    }
    router
}
