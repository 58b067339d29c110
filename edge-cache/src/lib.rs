//! berth's edge cache: the registry's read API over a pull-through namespace.
//!
//! The same `/v2` router, digest types, content store and metadata as the
//! registry; what differs is the `Namespace` behind the router (`pull_through`),
//! which fills misses from upstream once per blob, verifies, and keeps serving
//! when the link is down. Around it: capacity-bounded LRU eviction with pins,
//! prefetch jobs, and the listener's access rule.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use berth_config::Config;
use berth_registry::api::{self, ApiState};
use berth_registry::app::open_content;
use berth_registry::auth::Access;
use berth_registry::meta::Meta;
use berth_registry::service::metrics::Metrics;

pub mod access;
mod cache_dir;
mod flight;
pub mod metrics;
pub mod podlogs;
pub mod prefetch;
pub mod pull_through;
pub mod store;
pub mod upstream;

use pull_through::{EdgeNamespace, EdgeSettings, PullThrough};

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Start(String),
}

pub struct EdgeApp {
    pub config: Config,
    pub pull_through: Arc<PullThrough>,
    pub prefetcher: Arc<prefetch::Prefetcher>,
    pub metrics: Arc<Metrics>,
    access: Arc<EdgeAccess>,
}

use access::EdgeAccess;

impl EdgeApp {
    pub fn open(config: Config) -> Result<Self, EdgeError> {
        let e = &config.edge;
        if e.upstream.is_empty() {
            return Err(EdgeError::Config(
                "no upstream: give --upstream http(s)://REGISTRY or set edge.upstream".into(),
            ));
        }
        let client =
            (!e.client_user.is_empty()).then(|| (e.client_user.clone(), e.client_password.clone()));
        if !e.listen.ip().is_loopback() && client.is_none() && e.trusted_networks.is_empty() {
            return Err(EdgeError::Config(format!(
                "refusing to listen on {} without protection: set edge.client_user/client_password or edge.trusted_networks, \
                 or listen on 127.0.0.1 (the cache holds private images its upstream account can read)",
                e.listen
            )));
        }
        let dir = &e.cache_dir;
        berth_registry::private::private_dir(dir)
            .map_err(|err| EdgeError::Start(format!("{}: {err}", dir.display())))?;
        let mut local = config.clone();
        local.storage.backend = berth_config::StorageBackend::Local;
        let content = open_content(&local, dir).map_err(|err| EdgeError::Start(err.to_string()))?;
        let db_path = dir.join("edge.redb");
        let meta = Meta::open(&db_path).map_err(|err| EdgeError::Start(err.to_string()))?;
        let cache_dir = cache_dir::CacheDir::new(dir.clone(), db_path);
        let store = Arc::new(
            store::EdgeStore::open(meta.clone())
                .map_err(|err| EdgeError::Start(err.to_string()))?,
        );
        let creds = (!e.upstream_user.is_empty())
            .then(|| (e.upstream_user.clone(), e.upstream_password.clone()));
        let up = Arc::new(
            upstream::Upstream::new(&e.upstream, creds, e.connect_timeout, e.insecure_upstream)
                .map_err(EdgeError::Config)?,
        );
        let metrics = Arc::new(Metrics::new());
        let em = Arc::new(metrics::EdgeMetrics::default());
        em.register(&metrics);
        let pt = Arc::new(
            PullThrough::new(
                meta,
                content,
                up,
                store,
                em,
                EdgeSettings {
                    tag_freshness: e.tag_freshness,
                    stale_limit: e.stale_limit,
                    capacity: e.capacity.0,
                },
                cache_dir,
            )
            .map_err(|err| EdgeError::Start(err.to_string()))?,
        );
        let prefetcher = prefetch::Prefetcher::new(pt.clone(), e.platforms.clone());
        Ok(Self {
            access: Arc::new(EdgeAccess {
                trusted: e.trusted_networks.clone(),
                client,
            }),
            config,
            pull_through: pt,
            prefetcher,
            metrics,
        })
    }

    pub fn router(&self) -> Router {
        let state = ApiState {
            ns: Arc::new(EdgeNamespace(self.pull_through.clone())),
            access: self.access.clone() as Arc<dyn Access>,
            metrics: self.metrics.clone(),
            read_only: true,
            max_manifest_bytes: self.config.server.max_manifest_bytes,
            base_url: String::new(),
        };
        let metrics = self.metrics.clone();
        let pt = self.pull_through.clone();
        let access = self.access.clone();
        let guarded = prefetch::router(self.prefetcher.clone()).layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let access = access.clone();
                async move {
                    let peer = berth_registry::auth::client::client_addr(req.extensions());
                    let info = berth_registry::auth::RequestInfo {
                        headers: req.headers(),
                        peer,
                    };
                    match access.check(&info, None).await {
                        Ok(_) => next.run(req).await,
                        Err(r) => {
                            axum::response::IntoResponse::into_response(api::ApiError::Refused(r))
                        }
                    }
                }
            },
        ));
        let logs = Arc::new(podlogs::PodLogs::new(
            self.config.edge.pod_logs_dir.clone(),
            self.config.edge.controller_token.clone(),
        ));
        api::router(state)
            .merge(guarded)
            .merge(podlogs::router(logs))
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let m = metrics.clone();
                    let used = pt.used_bytes();
                    async move {
                        pt.metrics.cached_bytes.set(used as i64);
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
            .route(
                "/healthz",
                axum::routing::get(health).with_state(self.pull_through.clone()),
            )
    }

    /// Every few seconds: recreates the cache directory if it was removed,
    /// and flushes LRU order; call `flush` at shutdown too.
    pub fn spawn_background(&self) {
        let pt = self.pull_through.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(5));
            loop {
                t.tick().await;
                let pt = pt.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = pt.ensure_cache_dir() {
                        tracing::error!(error = %e, "the cache cannot work");
                    }
                    pt.store.flush_access()
                })
                .await;
            }
        });
    }

    pub fn flush(&self) {
        if let Err(e) = self.pull_through.store.flush_access() {
            tracing::error!(error = %e, "cannot save LRU order");
        }
    }
}

/// `/healthz`: "ok" while the cache can work (its directory recreated first
/// if it was removed), else 503 with the reason.
async fn health(
    axum::extract::State(pt): axum::extract::State<Arc<PullThrough>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match pt.ensure_cache_dir_async().await {
        Ok(()) => "ok".into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {e}"),
        )
            .into_response(),
    }
}
