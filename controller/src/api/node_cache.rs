//! `GET /api/v1/nodes/{name}/cache`: a node's edge cache as its edge reports
//! it now — capacity, bytes used, hit rate, pinned images, whether its
//! upstream answers, and its prefetch jobs.
//!
//! Read from the edge on each request, with a short bound, and kept nowhere:
//! nothing to replicate between registry replicas, and always current. An
//! edge that does not answer is an answer too (`reachable: false` with the
//! reason), never an error status: the node exists, its edge is down.
//!
//! Owns: that answer's shape. Must not touch: the edge's wire format
//! (`edge.rs`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::ports::{CtlAction, EdgeCacheStatus};
use crate::state::ControllerState;

use super::clusters::load_node;
use super::{ApiResult, Routes};

/// How long the edge may take to answer: a page waits for this.
const EDGE_ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub(super) fn routes() -> Routes {
    Routes::new().route("/api/v1/nodes/{name}/cache", get(node_cache))
}

/// A node's edge cache, or why it cannot be read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NodeCacheView {
    pub node: String,
    pub edge_url: String,
    /// Whether the node's edge answered.
    pub reachable: bool,
    /// Why it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<EdgeCacheStatus>,
}

async fn node_cache(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<NodeCacheView>> {
    state.authorize(&headers, None, CtlAction::Read)?;
    let node = load_node(&state, &name).await?;
    let edge = state.context().edge.clone();
    let read = tokio::time::timeout(EDGE_ANSWER_WITHIN, edge.cache_status(&node)).await;
    let (cache, error) = match read {
        Ok(Ok(c)) => (Some(c), None),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Err(_) => (
            None,
            Some(format!(
                "edge cache of node {} at {} is unreachable: no answer within {}s",
                node.name,
                node.edge_url,
                EDGE_ANSWER_WITHIN.as_secs()
            )),
        ),
    };
    if let Some(e) = &error {
        tracing::debug!(node = %node.name, error = %e, "edge cache status not read");
    }
    Ok(Json(NodeCacheView {
        node: node.name,
        edge_url: node.edge_url,
        reachable: cache.is_some(),
        error,
        cache,
    }))
}
