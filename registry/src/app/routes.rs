//! The HTTP surface of `berth serve`: the router of every route, the client-address layer, and the layers every berth listener gets.

use std::sync::Arc;

use axum::Router;

use super::RegistryApp;
use crate::admin::{self, AdminState};
use crate::api;
use crate::auth::client::TrustedProxies;
use crate::service::metrics::Metrics;

impl RegistryApp {
    /// `/v2`, `/v2/token`, `/api/v1`, `/metrics` and `/healthz`.
    pub fn router(&self) -> Router {
        self.router_with_docs(|| serde_json::json!({}))
    }

    /// `router`, whose OpenAPI document also describes what `extra_paths`
    /// returns (an OpenAPI `paths` object: the routes merged in beside it,
    /// such as the controller's); the document is built when first asked
    /// for. Every path it routes is in `crate::openapi::route_paths`.
    pub fn router_with_docs(&self, extra_paths: fn() -> serde_json::Value) -> Router {
        let metrics = self.metrics.clone();
        let admin_state = AdminState {
            access: self.access.clone(),
            sealer: self.sealer.clone(),
            project_cleanup: self.project_cleanup.clone(),
            proxy: self.config.proxy.clone(),
            registry: self.registry.clone(),
            gc: self.gc.clone(),
            retention: self.retention.clone(),
            pulls: self.pulls.clone(),
            pull_host: self.config.server.external_host(),
            signatures: self.signatures.clone(),
            webhooks: self.webhooks.clone(),
            replications: self.replications.clone(),
            token_keys: self.token_keys.clone(),
            reseal_elsewhere: self.reseal_elsewhere.clone(),
        };
        let v2 = api::router(self.api_state()).layer(axum::middleware::from_fn_with_state(
            self.access.clone(),
            crate::auth::audit::record_refusals,
        ));
        // Mirror hosts only when some are configured: every layer is one
        // more boxed future on every request.
        let v2 = if self.config.proxy.hosts.is_empty() {
            v2
        } else {
            let hosts = Arc::new(self.config.proxy.hosts.clone());
            v2.layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let req = crate::proxy::mirror::to_project(&hosts, req);
                    next.run(req)
                },
            ))
        };
        v2.merge(crate::auth::endpoint::router(self.access.clone()))
            .merge(admin::router(admin_state, move || {
                crate::openapi::document(&extra_paths())
            }))
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let m = metrics.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            m.render(),
                        )
                    }
                }),
            )
            .route("/healthz", axum::routing::get(|| async { "ok" }))
    }
}

impl RegistryApp {
    /// Resolves each request's client address (`auth::client`) before any route
    /// sees it. Apply to the complete router, after every merge.
    pub fn with_client_addr(&self, router: Router) -> Router {
        let proxies = Arc::new(TrustedProxies::new(
            self.config.server.trusted_proxies.clone(),
        ));
        router.layer(axum::middleware::from_fn_with_state(
            proxies,
            crate::auth::client::resolve,
        ))
    }
}

/// Cross-cutting layers every berth listener gets: the API version header,
/// request metrics, and an optional access log. One layer, so that a request
/// passes one more boxed future, not one per concern.
pub fn with_common_layers(router: Router, metrics: Arc<Metrics>, access_log: bool) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let metrics = metrics.clone();
            async move {
                let method = req.method().clone();
                let route = route_label(req.uri().path());
                let path = access_log.then(|| req.uri().path().to_string());
                let start = std::time::Instant::now();
                let mut res = next.run(req).await;
                res.headers_mut().insert(
                    api::API_VERSION,
                    axum::http::HeaderValue::from_static("registry/2.0"),
                );
                let status = res.status().as_u16();
                metrics
                    .requests
                    .get_or_create(&crate::service::metrics::RequestLabels {
                        method: crate::service::metrics::method_label(&method),
                        route,
                        status,
                    })
                    .inc();
                if let Some(path) = path {
                    tracing::info!(%method, %path, status, elapsed_ms = start.elapsed().as_millis() as u64, "request");
                }
                res
            }
        },
    ))
}

/// A low-cardinality label for a path, by its shape alone (no parsing, no allocation).
fn route_label(path: &str) -> &'static str {
    if let Some(rest) = path.strip_prefix("/v2") {
        if rest.is_empty() || rest == "/" {
            "base"
        } else if rest == "/_catalog" {
            "catalog"
        } else if rest == "/token" {
            "token"
        } else if rest.ends_with("/tags/list") {
            "tags"
        } else if rest.contains("/blobs/uploads") {
            "upload"
        } else if rest.contains("/manifests/") {
            "manifest"
        } else if rest.contains("/referrers/") {
            "referrers"
        } else if rest.contains("/blobs/") {
            "blob"
        } else {
            "other"
        }
    } else if path.starts_with("/api/") {
        "admin"
    } else if path == "/metrics" {
        "metrics"
    } else {
        "other"
    }
}
