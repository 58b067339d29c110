//! The edge's status document, `GET /api/v1/status`: what the registry's
//! console shows on a node's page. Capacity and bytes used (retention),
//! hits and misses since the edge started (the pull-through's counters, the
//! same as `/metrics`), the pinned images, whether upstream answers now (a
//! probe of `/v2/` with a short bound, which the circuit breaker learns from
//! too) and the prefetch jobs, newest first.
//!
//! Owns: that document's shape. Must not touch: the things it reads.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use berth_registry::proxy::PullThrough;
use serde::Serialize;

use crate::images::{self, Images};
use crate::metrics::EdgeMetrics;
use crate::prefetch::{Job, PrefetchError, Prefetcher};
use crate::retention::Retention;

/// How long the upstream probe may take: the controller reads this document
/// with a short timeout of its own.
const PROBE_WITHIN: Duration = Duration::from_secs(2);

/// How many finished jobs the document lists (unfinished ones always show).
const FINISHED_JOBS: usize = 20;

/// What the handler reads.
#[derive(Clone)]
pub struct Status {
    pub capacity: u64,
    pub retention: Arc<Retention>,
    pub metrics: Arc<EdgeMetrics>,
    pub images: Images,
    pub prefetcher: Arc<Prefetcher>,
    pub pull_through: Arc<PullThrough>,
}

#[derive(Serialize)]
pub struct UpstreamState {
    pub reachable: bool,
    /// The endpoint that answered, else the first configured.
    pub url: String,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct PinnedImage {
    pub image: String,
    pub digest: String,
    pub cached_bytes: u64,
}

#[derive(Serialize)]
pub struct StatusDocument {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses); absent before the first request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_rate: Option<f64>,
    pub images_cached: usize,
    pub pinned_images: Vec<PinnedImage>,
    pub upstream: UpstreamState,
    /// Unfinished jobs, and the newest finished ones.
    pub prefetch_jobs: Vec<Job>,
    pub prefetch_jobs_total: usize,
}

pub fn router(status: Status) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/status", axum::routing::get(get_status))
        .with_state(status)
}

/// The share of requests answered from the cache.
pub fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let all = hits.checked_add(misses)?;
    (all > 0).then(|| hits as f64 / all as f64)
}

/// Unfinished jobs, and at most `finished` finished ones; newest first.
fn shown_jobs(jobs: Vec<Job>, finished: usize) -> Vec<Job> {
    use crate::prefetch::JobState;
    let mut kept = 0;
    jobs.into_iter()
        .filter(|j| match j.state {
            JobState::Pending | JobState::Running => true,
            JobState::Done | JobState::Failed => {
                kept += 1;
                kept <= finished
            }
        })
        .collect()
}

async fn get_status(State(s): State<Status>) -> Result<Json<StatusDocument>, PrefetchError> {
    let up = &s.pull_through.upstream;
    let upstream = match up.probe(PROBE_WITHIN).await {
        Ok(url) => UpstreamState {
            reachable: true,
            url,
            error: None,
        },
        Err(e) => UpstreamState {
            reachable: false,
            url: up.base().to_string(),
            error: Some(e.to_string()),
        },
    };
    let cached = images::cached(&s.images).await?;
    let (hits, misses) = (s.metrics.proxy.hits.get(), s.metrics.proxy.misses.get());
    let jobs = s.prefetcher.jobs_newest_first();
    let total = jobs.len();
    Ok(Json(StatusDocument {
        capacity_bytes: s.capacity,
        used_bytes: s.retention.used_bytes(),
        hits,
        misses,
        hit_rate: hit_rate(hits, misses),
        images_cached: cached.iter().filter(|c| c.cached_bytes > 0).count(),
        pinned_images: cached
            .into_iter()
            .filter(|c| c.pinned)
            .map(|c| PinnedImage {
                image: c.image,
                digest: c.digest,
                cached_bytes: c.cached_bytes,
            })
            .collect(),
        upstream,
        prefetch_jobs: shown_jobs(jobs, FINISHED_JOBS),
        prefetch_jobs_total: total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefetch::JobState;

    fn job(id: &str, state: JobState) -> Job {
        serde_json::from_value(serde_json::json!({
            "id": id, "state": state, "pin": false, "bytes_done": 0, "bytes_total": 0,
            "error": null, "images": [], "created": 0, "updated": 0
        }))
        .expect("job")
    }

    #[test]
    fn hit_rate_is_absent_before_any_request() {
        assert_eq!(hit_rate(0, 0), None);
        assert_eq!(hit_rate(3, 1), Some(0.75));
        assert_eq!(hit_rate(0, 5), Some(0.0));
    }

    #[test]
    fn unfinished_jobs_always_show() {
        let jobs = vec![
            job("d1", JobState::Done),
            job("r", JobState::Running),
            job("f", JobState::Failed),
            job("p", JobState::Pending),
            job("d2", JobState::Done),
        ];
        let ids: Vec<String> = shown_jobs(jobs, 1).into_iter().map(|j| j.id).collect();
        assert_eq!(ids, ["d1", "r", "p"]);
    }
}
