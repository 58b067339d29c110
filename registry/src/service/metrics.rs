//! Prometheus metrics, rendered at `/metrics` in the text exposition format.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Request counts by method, route and status class. Every label takes a
/// bounded set of values (`method_label`, the route's shape), so a client
/// cannot grow the family, and counting a request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

/// The method as a label: the standard ones by name, any other as "other".
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub blobs_pushed: Counter,
    pub bytes_pushed: Counter,
    pub manifests_pushed: Counter,
    pub bytes_served: Counter,
    /// Blob GETs answered with a redirect to a presigned URL (`storage.redirect`).
    pub blob_redirects: Counter,
    pub login_failures: Counter,
    /// Login attempts answered 429 by the throttle, without checking the secret.
    pub logins_throttled: Counter,
    pub gc_runs: Counter,
    pub gc_blobs_deleted: Counter,
    pub gc_bytes_freed: Counter,
    pub uploads_in_progress: Gauge,
    /// Webhook events dropped unsent because their endpoint's queue was full.
    pub webhook_events_dropped: Counter,
    pub webhook_deliveries: Counter,
    pub webhook_delivery_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            blobs_pushed: Counter::default(),
            bytes_pushed: Counter::default(),
            manifests_pushed: Counter::default(),
            bytes_served: Counter::default(),
            blob_redirects: Counter::default(),
            login_failures: Counter::default(),
            logins_throttled: Counter::default(),
            gc_runs: Counter::default(),
            gc_blobs_deleted: Counter::default(),
            gc_bytes_freed: Counter::default(),
            uploads_in_progress: Gauge::default(),
            webhook_events_dropped: Counter::default(),
            webhook_deliveries: Counter::default(),
            webhook_delivery_failures: Counter::default(),
        };
        m.register_webhook_metrics(&mut registry);
        m.register_request_and_push_metrics(&mut registry);
        m.register_login_and_gc_metrics(&mut registry);
        if let Ok(mut r) = m.registry.lock() {
            *r = registry;
        }
        m
    }

    /// Registers the webhook counters.
    fn register_webhook_metrics(&self, registry: &mut Registry) {
        registry.register(
            "webhook_events_dropped",
            "Webhook events dropped unsent because their endpoint's queue was full",
            self.webhook_events_dropped.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries the endpoint answered with 2xx",
            self.webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_delivery_failures",
            "Webhook delivery attempts that failed (no answer, or not 2xx)",
            self.webhook_delivery_failures.clone(),
        );
    }

    /// Registers the request family and the push, serve and redirect counters.
    fn register_request_and_push_metrics(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            self.requests.clone(),
        );
        registry.register(
            "blobs_pushed",
            "Blobs committed by uploads",
            self.blobs_pushed.clone(),
        );
        registry.register(
            "pushed_bytes",
            "Bytes committed by uploads",
            self.bytes_pushed.clone(),
        );
        registry.register(
            "manifests_pushed",
            "Manifests pushed",
            self.manifests_pushed.clone(),
        );
        registry.register(
            "served_bytes",
            "Blob bytes served to clients",
            self.bytes_served.clone(),
        );
        registry.register(
            "blob_redirects",
            "Blob GETs answered with a redirect to a presigned URL of the bucket",
            self.blob_redirects.clone(),
        );
    }

    /// Registers the login, garbage collection and upload metrics.
    fn register_login_and_gc_metrics(&self, registry: &mut Registry) {
        registry.register(
            "login_failures",
            "Failed logins",
            self.login_failures.clone(),
        );
        registry.register(
            "logins_throttled",
            "Login attempts refused with 429 by the failed-login throttle",
            self.logins_throttled.clone(),
        );
        registry.register("gc_runs", "Garbage collection runs", self.gc_runs.clone());
        registry.register(
            "gc_blobs_deleted",
            "Blobs deleted by garbage collection",
            self.gc_blobs_deleted.clone(),
        );
        registry.register(
            "gc_freed_bytes",
            "Bytes freed by garbage collection",
            self.gc_bytes_freed.clone(),
        );
        registry.register(
            "uploads_in_progress",
            "Upload sessions open",
            self.uploads_in_progress.clone(),
        );
    }

    /// Lets other components (the edge cache) register their own metrics.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        if let Ok(mut r) = self.registry.lock() {
            f(&mut r);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label(&http::Method::GET), "GET");
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
        for made_up in ["PROPFIND", "X-SCAN-1", "x-scan-2"] {
            let m = http::Method::from_bytes(made_up.as_bytes()).expect("a token");
            assert_eq!(method_label(&m), "other", "{made_up}");
        }
    }
}
