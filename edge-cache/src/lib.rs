//! berth's edge cache: the registry's read API over a pull-through namespace.
//!
//! The same `/v2` router as the registry, over the registry's `PullThrough`
//! (`berth_registry::proxy`, the one pull-through that proxy-cache projects
//! use too): a decorator over a `LocalRegistry` in the cache directory and
//! the client of the upstream registry. A hit runs the registry's own code;
//! a miss is fetched from upstream once per blob, verified and committed the
//! way an upload is, and served stale, with a Warning, while upstream is
//! unreachable. What is the edge's own: capacity-bounded LRU eviction with
//! pins (`retention.rs`, the pull-through's `Keeper`), prefetch
//! jobs (`prefetch.rs`) and the report of a finished one to the controller
//! (`job_report.rs`), the cached-images API (`images.rs`), the status
//! document the registry's console shows (`status.rs`), a cache
//! directory removed under a running edge (`cache_dir.rs`), and the
//! listener's access rule (`access.rs`).
//!
//! What the edge uses of the registry crate (`berth_registry`), and nothing
//! else (`grep -rhoE 'berth_registry::[a-z_]+' edge-cache/src | sort -u`):
//! - `service`: `LocalRegistry` and its public calls (`open`,
//!   `recover_at_start`, the `Namespace` reads, `open_ingest`,
//!   `ingest_data`, `discard_ingest`, `commit_verified`, `cache_manifest`,
//!   `recorded_blob_size`, `link_recorded_blob`, `stored_blob_size`,
//!   `evict_blob`, `recorded_blobs`, `cached_images`, `resolve_image`,
//!   `cache_book`, `reopen_database`), the types in their signatures, which
//!   `service` re-exports, and the `Namespace` trait the router serves;
//!   `service::metrics::Metrics`, the process's Prometheus registry;
//! - `proxy`: the pull-through, its upstream client, the `Keeper` port the
//!   edge implements, and the `BookTagClock` its tag times are kept by;
//! - `api`: the `/v2` router, its state and its error response;
//! - `auth`: the router's access interface (`Access`, `RequestInfo`,
//!   `Subject`, `Refusal`, `client::client_addr`), which `access.rs`
//!   implements for the edge's listener;
//! - `oci`: digests, names, references, descriptors, media types;
//! - and `berth_config` for its configuration.
//!
//! Not the registry's metadata (`meta`), content store (`content`), GC or
//! admin: those are the local registry's to use.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use berth_config::{Config, EdgeConfig};
use berth_registry::api::{self, ApiState};
use berth_registry::auth::Access;
use berth_registry::service::metrics::Metrics;
use berth_registry::service::LocalRegistry;

pub mod access;
mod cache_dir;
pub mod images;
pub mod job_report;
pub mod metrics;
pub mod openapi;
pub mod podlogs;
pub mod prefetch;
pub mod pull_report;
pub mod retention;
pub mod status;
pub mod store;

use access::EdgeAccess;
use berth_registry::proxy::{upstream, PullThrough, TagFreshness, TagPolicy};
use cache_dir::CacheDir;
use retention::Retention;
use store::EdgeStore;

/// The local registry's database in the cache directory.
const DATABASE: &str = "edge.redb";

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Start(String),
}

fn start(e: impl std::fmt::Display) -> EdgeError {
    EdgeError::Start(e.to_string())
}

pub struct EdgeApp {
    pub config: Config,
    pub pull_through: Arc<PullThrough>,
    pub prefetcher: Arc<prefetch::Prefetcher>,
    pub metrics: Arc<Metrics>,
    pub edge_metrics: Arc<metrics::EdgeMetrics>,
    pub retention: Arc<Retention>,
    /// Counts the manifest pulls served here and reports them upstream.
    pub pulls: Arc<pull_report::PullReporter>,
    store: Arc<EdgeStore>,
    cache_dir: Arc<CacheDir>,
    access: Arc<EdgeAccess>,
}

impl EdgeApp {
    pub async fn open(config: Config) -> Result<Self, EdgeError> {
        let e = &config.edge;
        let client = checked_client(e)?;
        let dir = &e.cache_dir;
        let mut local_cfg = config.clone();
        local_cfg.storage.backend = berth_config::StorageBackend::Local;
        let metrics = Arc::new(Metrics::new());
        let local = open_local(&local_cfg, dir, metrics.clone()).await?;
        let store = Arc::new(EdgeStore::open(&local).await.map_err(start)?);
        let em = Arc::new(metrics::EdgeMetrics::default());
        em.register(&metrics);
        let retention = Arc::new(
            Retention::new(local.clone(), store.clone(), em.clone(), e.capacity.0)
                .await
                .map_err(start)?,
        );
        let cache_dir = Arc::new(CacheDir::new(
            dir.clone(),
            dir.join(DATABASE),
            local.clone(),
            store.clone(),
            retention.clone(),
        ));
        let pt = open_pull_through(e, local, &store, &retention, &em, &cache_dir)?;
        let prefetcher = open_prefetcher(e, &pt, &store, &em).await?;
        let pulls = pull_report::PullReporter::new(
            &e.upstream,
            (!e.upstream_user.is_empty())
                .then(|| (e.upstream_user.clone(), e.upstream_password.clone())),
            e.insecure_upstream,
        )
        .map_err(EdgeError::Config)?;
        Ok(Self {
            access: Arc::new(EdgeAccess {
                trusted: e.trusted_networks.clone(),
                client,
            }),
            config,
            pull_through: pt,
            prefetcher,
            pulls,
            metrics,
            edge_metrics: em,
            retention,
            store,
            cache_dir,
        })
    }

    /// The pull-through API's state: read-only, no signature policy or
    /// webhooks (the registry's), pull counts reported upstream.
    fn api_state(&self) -> ApiState {
        ApiState {
            ns: self.pull_through.clone(),
            access: self.access.clone() as Arc<dyn Access>,
            metrics: self.metrics.clone(),
            read_only: true,
            max_manifest_bytes: self.config.server.max_manifest_bytes,
            base_url: String::new(),
            signatures: None,
            events: None,
            pulls: Some(self.pulls.counter.clone()),
        }
    }

    /// The `/v2` API as one call (a listener's `Front`), as `router`
    /// routes it.
    pub fn v2(&self) -> api::V2 {
        api::V2::new(self.api_state(), self.config.proxy.hosts.clone())
    }

    pub fn router(&self) -> Router {
        let state = self.api_state();
        let guarded = self.guarded_routes();
        let logs = Arc::new(podlogs::PodLogs::new(
            self.config.edge.pod_logs_dir.clone(),
            self.config.edge.controller_token.clone(),
        ));
        // A node's containerd mirroring another registry through this edge
        // (`?ns=docker.io`) reads that registry's proxy-cache project upstream.
        let hosts = Arc::new(self.config.proxy.hosts.clone());
        api::router(state)
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let req = berth_registry::proxy::mirror::to_project(&hosts, req);
                    next.run(req)
                },
            ))
            .merge(guarded)
            .merge(podlogs::router(logs))
            .route("/metrics", self.metrics_route())
            .route(
                "/healthz",
                axum::routing::get(health).with_state(self.cache_dir.clone()),
            )
            .route(
                "/api/v1/openapi.json",
                axum::routing::get(|| async { axum::Json(openapi::document()) }),
            )
    }

    /// The prefetch, cached-images and status APIs, behind the listener's
    /// access rule and refusing form posts.
    fn guarded_routes(&self) -> Router {
        let access = self.access.clone();
        let cached = images::Images {
            local: self.pull_through.local.clone(),
            store: self.store.clone(),
            retention: self.retention.clone(),
        };
        let status = status::router(status::Status {
            capacity: self.config.edge.capacity.0,
            retention: self.retention.clone(),
            metrics: self.edge_metrics.clone(),
            images: cached.clone(),
            prefetcher: self.prefetcher.clone(),
            pull_through: self.pull_through.clone(),
        });
        let images = images::router(cached);
        prefetch::router(self.prefetcher.clone())
            .merge(images)
            .merge(status)
            .layer(axum::middleware::from_fn(
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
                            Err(r) => axum::response::IntoResponse::into_response(
                                api::ApiError::Refused(r),
                            ),
                        }
                    }
                },
            ))
            .layer(axum::middleware::from_fn(
                berth_registry::admin::refuse_forms,
            ))
    }

    /// `/metrics`: the process's Prometheus registry, the cached bytes
    /// updated first.
    fn metrics_route(&self) -> axum::routing::MethodRouter {
        let metrics = self.metrics.clone();
        let (retention, em) = (self.retention.clone(), self.edge_metrics.clone());
        axum::routing::get(move || {
            let m = metrics.clone();
            let used = retention.used_bytes();
            async move {
                em.cached_bytes.set(used as i64);
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    m.render(),
                )
            }
        })
    }

    /// Every few seconds: recreates the cache directory if it was removed,
    /// and flushes LRU order; reports pulls upstream every
    /// `edge.pull_report_interval`; call `flush` (and `report_pulls`) at
    /// shutdown too.
    pub fn spawn_background(&self) {
        self.pulls.spawn(self.config.edge.pull_report_interval);
        let (cache_dir, store) = (self.cache_dir.clone(), self.store.clone());
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(5));
            loop {
                t.tick().await;
                if let Err(e) = cache_dir.ensure_async().await {
                    tracing::error!(error = %e, "the cache cannot work");
                }
                if let Err(e) = store.flush_access().await {
                    tracing::warn!(error = %e, "cannot save LRU order");
                }
            }
        });
    }

    /// Reports the pulls counted since the last report now.
    pub async fn report_pulls(&self) {
        self.pulls.report().await;
    }

    pub async fn flush(&self) {
        if let Err(e) = self.store.flush_access().await {
            tracing::error!(error = %e, "cannot save LRU order");
        }
    }
}

/// Refuses an edge without an upstream, or listening past loopback with no
/// client credentials or trusted networks; the client credentials if any.
fn checked_client(e: &EdgeConfig) -> Result<Option<(String, String)>, EdgeError> {
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
    Ok(client)
}

/// Opens the local registry in the cache directory and settles what a crash
/// left half done there.
async fn open_local(
    local_cfg: &Config,
    dir: &std::path::Path,
    metrics: Arc<Metrics>,
) -> Result<Arc<LocalRegistry>, EdgeError> {
    let local = Arc::new(LocalRegistry::open(local_cfg, dir, DATABASE, metrics).map_err(start)?);
    // The database is ours, so nothing else uses this directory: what a
    // crash left half done is settled before serving.
    let recovery = local.recover_at_start(true).await.map_err(start)?;
    if recovery != Default::default() {
        tracing::info!(
            recorded = recovery.recorded,
            discarded = recovery.discarded,
            deleted = recovery.swept,
            "start-up: recorded blobs a crash left unrecorded, discarded fills that never wrote a durable byte, deleted blob files no record counts"
        );
    }
    Ok(local)
}

/// The pull-through over the local registry and the upstream's client, its
/// tag times kept by the edge's store.
fn open_pull_through(
    e: &EdgeConfig,
    local: Arc<LocalRegistry>,
    store: &Arc<EdgeStore>,
    retention: &Arc<Retention>,
    em: &Arc<metrics::EdgeMetrics>,
    cache_dir: &Arc<CacheDir>,
) -> Result<Arc<PullThrough>, EdgeError> {
    let creds = (!e.upstream_user.is_empty())
        .then(|| (e.upstream_user.clone(), e.upstream_password.clone()));
    let up = Arc::new(
        upstream::Upstream::new(&e.upstream, creds, e.connect_timeout, e.insecure_upstream)
            .map_err(EdgeError::Config)?,
    );
    let ready = {
        let cache_dir = cache_dir.clone();
        Arc::new(move || cache_dir.ensure())
    };
    let tags = TagFreshness::new(
        store.tag_clock(),
        TagPolicy {
            freshness: e.tag_freshness,
            stale_limit: e.stale_limit,
        },
    );
    Ok(Arc::new(PullThrough::new(
        "",
        local,
        up,
        retention.clone(),
        tags,
        em.proxy.clone(),
        ready,
    )))
}

/// The prefetcher over the pull-through, reporting finished jobs upstream.
async fn open_prefetcher(
    e: &EdgeConfig,
    pt: &Arc<PullThrough>,
    store: &Arc<EdgeStore>,
    em: &Arc<metrics::EdgeMetrics>,
) -> Result<Arc<prefetch::Prefetcher>, EdgeError> {
    let reporter = job_report::JobReporter::new(&e.upstream, e.insecure_upstream)
        .map_err(EdgeError::Config)?;
    Ok(prefetch::Prefetcher::new(
        pt.clone(),
        store.clone(),
        em.clone(),
        e.platforms.clone(),
        Some(Arc::new(reporter)),
    )
    .await)
}

/// `/healthz`: "ok" while the cache can work (its directory recreated first
/// if it was removed), else 503 with the reason.
async fn health(
    axum::extract::State(cache_dir): axum::extract::State<Arc<CacheDir>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match cache_dir.ensure_async().await {
        Ok(()) => "ok".into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {e}"),
        )
            .into_response(),
    }
}
