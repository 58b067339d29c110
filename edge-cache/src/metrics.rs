//! Edge cache metrics, registered into the process's Prometheus registry.

use berth_registry::service::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct JobState {
    pub state: String,
}

#[derive(Default)]
pub struct EdgeMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub upstream_bytes: Counter,
    pub served_bytes: Counter,
    pub stale_serves: Counter,
    pub evictions: Counter,
    pub fill_errors: Counter,
    pub cached_bytes: Gauge,
    pub prefetch_jobs: Family<JobState, Gauge>,
}

impl EdgeMetrics {
    pub fn register(&self, m: &Metrics) {
        m.register(|r| {
            r.register(
                "edge_hits",
                "Requests answered from the cache",
                self.hits.clone(),
            );
            r.register(
                "edge_misses",
                "Requests that went upstream",
                self.misses.clone(),
            );
            r.register(
                "edge_upstream_bytes",
                "Bytes received from upstream",
                self.upstream_bytes.clone(),
            );
            r.register(
                "edge_served_bytes",
                "Blob bytes served to clients",
                self.served_bytes.clone(),
            );
            r.register(
                "edge_stale_serves",
                "Tags served stale while upstream was unreachable",
                self.stale_serves.clone(),
            );
            r.register(
                "edge_evictions",
                "Blobs evicted to stay within capacity",
                self.evictions.clone(),
            );
            r.register(
                "edge_fill_errors",
                "Upstream transfers that failed or failed verification",
                self.fill_errors.clone(),
            );
            r.register(
                "edge_cached_bytes",
                "Bytes held in the cache",
                self.cached_bytes.clone(),
            );
            r.register(
                "edge_prefetch_jobs",
                "Prefetch jobs by state",
                self.prefetch_jobs.clone(),
            );
        });
    }
}
