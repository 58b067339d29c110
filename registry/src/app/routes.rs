//! The HTTP surface of `berth serve`: the router of every route, and the common layer every berth listener gets.

use std::sync::Arc;

use axum::Router;

use axum::http::{HeaderValue, StatusCode};

use super::RegistryApp;
use crate::admin::{self, AdminState};
use crate::api;
use crate::auth::access::RegistryAccess;
use crate::auth::audit::RefusalCheck;
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
        // Refused `/v2` writes are audited by the common layer (`common_layer`).
        let v2 = api::router(self.api_state());
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
    /// The common layer of `berth serve`: besides what every listener gets,
    /// it resolves each request's client address (`auth::client`) before
    /// any route sees it, and audits refused `/v2` writes.
    pub fn common_layer(&self, access_log: bool) -> CommonLayer {
        CommonLayer {
            trusted_proxies: Some(Arc::new(TrustedProxies::new(
                self.config.server.trusted_proxies.clone(),
            ))),
            refusals: Some(self.access.clone()),
            ..CommonLayer::new(self.metrics.clone(), access_log)
        }
    }
}

/// What every berth listener does around each request: the API version
/// header, request metrics, an optional access log, and a 405 under `/api/`
/// that names the allowed methods; on `berth serve` also the client address
/// and the audit of refused `/v2` writes. One layer, so that a request
/// passes one more boxed future, not one per concern.
#[derive(Clone)]
pub struct CommonLayer {
    metrics: Arc<Metrics>,
    access_log: bool,
    trusted_proxies: Option<Arc<TrustedProxies>>,
    refusals: Option<Arc<RegistryAccess>>,
}

impl CommonLayer {
    pub fn new(metrics: Arc<Metrics>, access_log: bool) -> Self {
        CommonLayer {
            metrics,
            access_log,
            trusted_proxies: None,
            refusals: None,
        }
    }

    /// Wraps the complete router (after every merge). axum sets `Allow` on a
    /// 405 outside every layer a router adds to its routes, so the router is
    /// wrapped as a whole, as a fallback service.
    pub fn apply(self, router: Router) -> Router {
        Self::wrap(Arc::new(self), router)
    }

    fn wrap(layer: Arc<Self>, router: Router) -> Router {
        Router::new()
            .fallback_service(router)
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    layer.clone().around(req, |req| next.run(req))
                },
            ))
    }

    /// A listener's front: `/v2` API paths go straight to `v2` (inside this
    /// layer), everything else to `router` (wrapped in it).
    pub fn front(self, router: Router, v2: api::V2) -> Front {
        let layer = Arc::new(self);
        Front {
            router: Self::wrap(layer.clone(), router),
            layer,
            v2: Arc::new(v2),
        }
    }

    async fn around<F, Fut>(
        self: Arc<Self>,
        mut req: axum::extract::Request,
        inner: F,
    ) -> axum::response::Response
    where
        F: FnOnce(axum::extract::Request) -> Fut,
        Fut: std::future::Future<Output = axum::response::Response>,
    {
        if let Some(proxies) = &self.trusted_proxies {
            proxies.resolve(&mut req);
        }
        let method = crate::service::metrics::method_label(req.method());
        let path = req.uri().path();
        let route = route_label(path);
        let api = path.starts_with("/api/");
        let refusal = match &self.refusals {
            Some(_) if crate::auth::audit::under_v2(path) => RefusalCheck::capture(&req),
            _ => None,
        };
        let logged = self
            .access_log
            .then(|| (req.method().clone(), path.to_string()));
        let start = std::time::Instant::now();
        let mut res = inner(req).await;
        if api && res.status() == StatusCode::METHOD_NOT_ALLOWED {
            res = admin::explain_405(res);
        }
        if let (Some(check), Some(access)) = (refusal, &self.refusals) {
            res = check.finish(access, res).await;
        }
        res.headers_mut()
            .insert(api::API_VERSION, HeaderValue::from_static("registry/2.0"));
        let status = res.status().as_u16();
        self.metrics
            .requests
            .get_or_create(&crate::service::metrics::RequestLabels {
                method,
                route,
                status,
            })
            .inc();
        if let Some((method, path)) = logged {
            tracing::info!(%method, %path, status, elapsed_ms = start.elapsed().as_millis() as u64, "request");
        }
        res
    }
}

/// What a listener answers with: `/v2` API paths by the API itself, the
/// rest by the router (`CommonLayer::front`), both inside the common
/// layer. `/v2` is what pulls ask for, many times a second on a busy
/// registry, and skipping the router's match for it (all of `/v2` goes to
/// one handler) saves a manifest GET about a third of its allocations.
#[derive(Clone)]
pub struct Front {
    router: Router,
    layer: Arc<CommonLayer>,
    v2: Arc<api::V2>,
}

impl crate::server::App for Front {
    fn answer(
        &self,
        req: axum::extract::Request,
    ) -> impl std::future::Future<Output = axum::response::Response> + Send + 'static {
        let direct = api::V2::serves(req.uri().path());
        let (router, layer, v2) = (self.router.clone(), self.layer.clone(), self.v2.clone());
        async move {
            if direct {
                layer
                    .around(req, |req| async move { v2.call(req).await })
                    .await
            } else {
                crate::server::App::answer(&router, req).await
            }
        }
    }
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
