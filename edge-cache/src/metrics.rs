//! Edge cache metrics, registered into the process's Prometheus registry:
//! the pull-through's counters and the edge's own (eviction, prefetch).

use std::sync::Arc;

use berth_registry::proxy::ProxyMetrics;
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
    /// The pull-through's counters, as `edge_hits` and so on.
    pub proxy: Arc<ProxyMetrics>,
    pub evictions: Counter,
    pub cached_bytes: Gauge,
    pub prefetch_jobs: Family<JobState, Gauge>,
}

impl EdgeMetrics {
    pub fn register(&self, m: &Metrics) {
        self.proxy.register(m, "edge");
        m.register(|r| {
            r.register(
                "edge_evictions",
                "Blobs evicted to stay within capacity",
                self.evictions.clone(),
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
