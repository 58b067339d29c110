//! Assembles the registry from its configuration: store, metadata, service,
//! access control and routes. `berth serve` and the tests both start here.

use std::sync::Arc;

use axum::Router;
use berth_config::{Config, MetaBackend, StorageBackend};

use crate::admin::{self, AdminState};
use crate::api::{self, ApiState};
use crate::auth::access::{AccessConfig, RegistryAccess};
use crate::auth::accounts::Accounts;
use crate::auth::client::TrustedProxies;
use crate::auth::throttle::ThrottleConfig;
use crate::auth::token_keys::{TokenKeyStore, TokenKeys};
use crate::auth::Access;
use crate::content::ContentStore;
use crate::meta::RedbMeta;
use crate::proxy::projects::{ProxyOptions, ProxyProjects};
use crate::proxy::{ProxyMetrics, TagPolicy};
use crate::sealing::Sealer;
use crate::service::{metrics::Metrics, LocalRegistry};
use crate::signature::SignatureGate;
use crate::webhooks::{SecretSealer, WebhookSettings, Webhooks};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("content store: {0}")]
    Content(#[from] crate::content::ContentError),
    #[error("metadata: {0}")]
    Meta(#[from] crate::meta::MetaError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("{0}")]
    Other(String),
}

/// Opens the content store the configuration describes.
pub fn open_content(cfg: &Config, root: &std::path::Path) -> Result<ContentStore, StartError> {
    let ingest = root.join("uploads");
    Ok(match cfg.storage.backend {
        StorageBackend::Local => ContentStore::local(root, &ingest)?,
        StorageBackend::Memory => ContentStore::memory(&ingest)?,
        StorageBackend::S3 => {
            std::fs::create_dir_all(&ingest).map_err(|source| StartError::DataDir {
                path: ingest.display().to_string(),
                source,
            })?;
            let s = &cfg.storage;
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(&s.bucket)
                .with_region(&s.region)
                .with_allow_http(s.allow_http);
            if !s.endpoint.is_empty() {
                b = b.with_endpoint(&s.endpoint);
            }
            if !s.access_key_id.is_empty() {
                b = b
                    .with_access_key_id(&s.access_key_id)
                    .with_secret_access_key(&s.secret_access_key);
            }
            let bucket = Arc::new(b.build()?);
            // Uploads live in the bucket too, so that every process sharing
            // it can continue one (`ingest` stays unused for them).
            let store = ContentStore::in_bucket(bucket.clone(), s.part_size.0, &ingest);
            if s.redirect {
                store.with_redirects(bucket, s.redirect_expiry)
            } else {
                store
            }
        }
    })
}

impl LocalRegistry {
    /// Opens a registry in `dir`: the metadata database `dir/<database>` and
    /// the content store the configuration's storage section names (blobs
    /// under `dir` on the local backend, ingests in `dir/uploads`). Run
    /// `recover_at_start` next, before serving.
    pub fn open(
        config: &Config,
        dir: &std::path::Path,
        database: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let meta = open_metadata(dir, database)?;
        Self::open_over(config, dir, meta, metrics)
    }

    /// As `open`, over metadata opened already (`open_metadata`), whose
    /// file also holds what others keep (the accounts).
    pub fn open_over(
        config: &Config,
        dir: &std::path::Path,
        meta: RedbMeta,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let content = open_content(config, dir)?;
        Ok(LocalRegistry::embedded(meta, content, metrics))
    }
}

/// Opens (or creates) the metadata database `dir/<database>`, making `dir`
/// private first.
pub fn open_metadata(dir: &std::path::Path, database: &str) -> Result<RedbMeta, StartError> {
    crate::private::private_dir(dir).map_err(|source| StartError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(RedbMeta::open(&dir.join(database))?)
}

/// The registry and accounts over the embedded file, uploads a crash
/// interrupted recovered (opening the file succeeded, so no other process
/// uses this data directory).
async fn open_embedded(
    config: &Config,
    meta: &RedbMeta,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<LocalRegistry>, Arc<Accounts>), StartError> {
    let data = &config.server.data_dir;
    let account_store = meta
        .accounts()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let registry = Arc::new(LocalRegistry::open_over(
        config,
        data,
        meta.clone(),
        metrics.clone(),
    )?);
    // Uploads a crash caught between placing their blob and recording it
    // are recorded now; then spools of uploads that never acknowledged a
    // byte are garbage. Unrecorded blob files are GC's, after its grace
    // window.
    let recovery = registry
        .recover_at_start(false)
        .await
        .map_err(|e| StartError::Other(format!("recovering uploads: {e}")))?;
    log_recovery(&recovery);
    let accounts = Arc::new(
        Accounts::open(Arc::new(account_store), config.auth.bcrypt_cost)
            .await
            .map_err(|e| StartError::Other(e.to_string()))?,
    );
    Ok((registry, accounts))
}

/// A running registry's parts.
pub struct RegistryApp {
    pub config: Config,
    pub registry: Arc<LocalRegistry>,
    /// The metadata backend `registry` runs on: the composition root opens
    /// the stores others keep there over it (the controller's).
    pub metadata: Metadata,
    /// The keys tokens are signed with, kept fresh, and their rotation.
    pub token_keys: Arc<TokenKeys>,
    pub metrics: Arc<Metrics>,
    pub access: Arc<RegistryAccess>,
    /// The projects' signature policies (pulls here, publications in the controller).
    pub signatures: Arc<SignatureGate>,
    /// The projects' webhooks, once `enable_webhooks` gave them a sealer.
    pub webhooks: Option<Arc<Webhooks>>,
    /// The namespace `/v2` serves: the local registry, with a pull-through
    /// for each proxy-cache project.
    pub projects: Arc<ProxyProjects>,
    /// Replication policies and their executions.
    pub replications: Arc<crate::replication::Replications>,
    /// Seals proxy projects' upstream passwords; set by `set_sealer`.
    sealer: Arc<std::sync::OnceLock<Arc<dyn Sealer>>>,
    /// Takes a deleted project's records elsewhere down; set by `set_project_cleanup`.
    project_cleanup: admin::CleanupSlot,
    /// Reseals what the controller keeps; set by `set_reseal_elsewhere`.
    reseal_elsewhere: admin::ResealSlot,
    /// Runs GC for the admin API and the schedule, one at a time.
    pub gc: Arc<crate::gc_runner::GcRunner>,
    /// Runs projects' retention rules for the admin API and the schedule.
    pub retention: Arc<crate::retention::RetentionRunner>,
    /// Pulls counted (here and reported by edges), flushed in batches.
    pub pulls: Arc<crate::pulls::PullCounter>,
    /// Proxy projects' capacity and expiry.
    pub proxy_retention: Arc<crate::proxy::retention::ProxyRetention>,
}

/// Where a running registry's metadata is kept.
#[derive(Clone)]
pub enum Metadata {
    /// The embedded file in the data directory; the composition root opens
    /// the controller's store over it too (`RedbMeta::database`).
    Redb(RedbMeta),
    /// A PostgreSQL database that replicas share (`replicas`).
    Postgres(crate::meta::pg::Pool),
}

/// The token keys where the metadata is, re-read every
/// `auth.token_key_refresh`. With PostgreSQL a rotated key signs six of
/// those later (every replica has read it by then); in the embedded file,
/// one process holds the keys, so it signs at once.
async fn open_token_keys(
    config: &Config,
    metadata: &Metadata,
) -> Result<Arc<TokenKeys>, StartError> {
    let refresh = config.auth.token_key_refresh;
    let (store, publish): (Arc<dyn TokenKeyStore>, _) = match metadata {
        Metadata::Redb(meta) => {
            let legacy = config.server.data_dir.join("token.key");
            let store = meta
                .token_keys(&legacy)
                .map_err(|e| StartError::Other(e.to_string()))?;
            (Arc::new(store), std::time::Duration::ZERO)
        }
        Metadata::Postgres(pool) => (
            Arc::new(crate::meta::pg::PgTokenKeys::new(pool.clone())),
            refresh * 6,
        ),
    };
    let keys = TokenKeys::open(store, config.auth.token_ttl, publish)
        .await
        .map_err(|e| StartError::Other(format!("token keys: {e}")))?;
    let keys = Arc::new(keys);
    // The task ends when the registry (the last holder) is dropped.
    drop(keys.follow(refresh));
    Ok(keys)
}

impl RegistryApp {
    /// Opens the metadata `config.meta` names (PostgreSQL: migrating the
    /// registry's and the accounts' schema), then as `open_on`.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        let metadata = match config.meta.backend {
            MetaBackend::Redb => {
                Metadata::Redb(open_metadata(&config.server.data_dir, "berth.redb")?)
            }
            MetaBackend::Postgres => {
                Metadata::Postgres(crate::replicas::connect_and_migrate(&config).await?)
            }
        };
        Self::open_on(config, metadata).await
    }

    /// Assembles the registry over metadata opened (and migrated) already.
    pub async fn open_on(config: Config, metadata: Metadata) -> Result<Self, StartError> {
        let data = &config.server.data_dir;
        let metrics = Arc::new(Metrics::new());
        let (registry, accounts) = match &metadata {
            Metadata::Redb(meta) => open_embedded(&config, meta, &metrics).await?,
            Metadata::Postgres(pool) => {
                crate::private::private_dir(data).map_err(|source| StartError::DataDir {
                    path: data.display().to_string(),
                    source,
                })?;
                // No recovery of uploads at start: other replicas may be
                // ingesting into the same directory right now.
                let registry = crate::replicas::registry(&config, pool, metrics.clone())?;
                // Background duties (GC, schedules, webhook delivery) run on
                // one replica at a time.
                registry.set_duties(Arc::new(crate::meta::pg::PgDuties::new(&config.meta.url)?));
                let accounts = crate::replicas::accounts(&config, pool).await?;
                (Arc::new(registry), accounts)
            }
        };
        registry
            .set_default_quota(config.quota.default_project.map(|b| b.0))
            .await
            .map_err(|e| StartError::Other(format!("setting quota.default_project: {e}")))?;
        exempt_proxy_projects(&registry, &accounts).await?;
        let admin_pw = std::env::var("BERTH_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        if let Some(pw) = accounts
            .bootstrap_admin(data, admin_pw.as_deref())
            .await
            .map_err(|e| StartError::Other(e.to_string()))?
        {
            tracing::warn!(
                password = %pw,
                file = %data.join("admin-password").display(),
                "created account `admin` with this initial password (shown once); reset it with `berth passwd admin` before first use"
            );
        }
        let token_keys = open_token_keys(&config, &metadata).await?;
        let key = token_keys.key();
        let signatures = Arc::new(SignatureGate::new(registry.clone(), accounts.clone()));
        let sealer: Arc<std::sync::OnceLock<Arc<dyn Sealer>>> = Arc::default();
        let proxy_metrics = Arc::new(ProxyMetrics::default());
        proxy_metrics.register(&metrics, "proxy");
        let p = &config.proxy;
        let projects = Arc::new(ProxyProjects::new(
            registry.clone(),
            accounts.clone(),
            sealer.clone(),
            ProxyOptions {
                tags: TagPolicy {
                    freshness: p.tag_freshness,
                    stale_limit: p.stale_limit,
                },
                connect_timeout: p.connect_timeout,
                allow_private_upstreams: p.allow_private_upstreams,
            },
            proxy_metrics,
        ));
        let replications = crate::replication::Replications::new(
            registry.clone(),
            sealer.clone(),
            &config.replication,
            &metrics,
        );
        let known = accounts.clone();
        let _ = replications.landing.set(Arc::new(move |project: &str| {
            match known.project(project) {
                None => Err(format!(
                    "project {project} does not exist here; create it before pulling into it"
                )),
                Some(p) if p.proxy.is_some() => Err(format!(
                    "project {project} is a proxy-cache project; nothing can be pulled into it"
                )),
                Some(_) => Ok(()),
            }
        }));
        let mut access = RegistryAccess::new(
            accounts,
            key,
            AccessConfig {
                realm: format!("{}/v2/token", config.server.external_url()),
                service: config.auth.service.clone(),
                token_ttl: config.auth.token_ttl,
                cache_ttl: config.auth.credential_cache_ttl,
                throttle: ThrottleConfig {
                    backoff: config.auth.login_backoff,
                    backoff_max: config.auth.login_backoff_max,
                    window: config.auth.failure_window,
                    account_threshold: config.auth.account_failure_threshold,
                    attacked_interval: config.auth.attacked_login_interval,
                    ..ThrottleConfig::default()
                },
                anonymous_direct: config.auth.anonymous_direct,
            },
            metrics.clone(),
        );
        if let Metadata::Postgres(pool) = &metadata {
            let cfg = access.config().throttle;
            access = access.with_throttle(crate::replicas::throttle(pool, cfg));
        }
        let access = Arc::new(access);
        let gc = crate::gc_runner::GcRunner::new(
            registry.clone(),
            gc_options(&config, false),
            config.gc.history as usize,
            Default::default(),
            Some(access.clone()),
            &metrics,
        );
        let retention = crate::retention::RetentionRunner::new(
            registry.clone(),
            Some(access.clone()),
            &metrics,
        );
        let pulls = crate::pulls::PullCounter::new();
        let proxy_retention = crate::proxy::retention::ProxyRetention::new(
            registry.clone(),
            access.accounts.clone(),
            pulls.clone(),
            access.clone(),
            config.proxy.clone(),
            &metrics,
        );
        projects.set_retention(proxy_retention.clone());
        Ok(Self {
            config,
            registry,
            token_keys,
            metadata,
            metrics,
            access,
            signatures,
            webhooks: None,
            projects,
            replications,
            sealer,
            project_cleanup: Default::default(),
            reseal_elsewhere: Default::default(),
            gc,
            retention,
            pulls,
            proxy_retention,
        })
    }

    /// Turns on the projects' webhooks, their secrets sealed by `sealer`.
    /// Call before `router`; `spawn_background` then starts their delivery.
    pub fn enable_webhooks(&mut self, sealer: Arc<dyn SecretSealer>) {
        let settings =
            WebhookSettings::from_config(&self.config.webhooks, self.config.server.external_url());
        self.webhooks = Some(Webhooks::new(
            self.registry.meta(),
            sealer,
            settings,
            self.metrics.clone(),
        ));
    }

    /// Gives the registry the key that seals credentials at rest (the
    /// controller's); without one, proxy projects cannot keep passwords.
    pub fn set_sealer(&self, sealer: Arc<dyn Sealer>) {
        let _ = self.sealer.set(sealer);
    }

    /// What `POST /api/v1/system/reseal` reseals beside the registry's own
    /// stores (the controller's records).
    pub fn set_reseal_elsewhere(&self, elsewhere: Arc<dyn crate::sealing::ResealElsewhere>) {
        let _ = self.reseal_elsewhere.set(elsewhere);
    }

    /// What a project delete also takes down (the controller's records).
    pub fn set_project_cleanup(&self, cleanup: Arc<dyn crate::project_cleanup::ProjectCleanup>) {
        let _ = self.project_cleanup.set(cleanup);
    }

    pub fn api_state(&self) -> ApiState {
        ApiState {
            ns: self.projects.clone(),
            access: self.access.clone() as Arc<dyn Access>,
            metrics: self.metrics.clone(),
            read_only: self.config.server.read_only,
            max_manifest_bytes: self.config.server.max_manifest_bytes,
            base_url: String::new(),
            signatures: Some(self.signatures.clone()),
            events: self.webhooks.clone(),
            pulls: Some(self.pulls.clone()),
        }
    }

    pub fn gc_options(&self, dry_run: bool) -> crate::gc::GcOptions {
        gc_options(&self.config, dry_run)
    }

    /// Periodic work until `stop`: GC on `gc.interval` or `gc.schedule`;
    /// retention on `gc.retention_schedule`; writing pull counts; webhook delivery.
    pub fn spawn_background(&self, stop: tokio_util::sync::CancellationToken) {
        let stop_schedule = stop.clone();
        let replications = self.replications.clone();
        let access = self.access.clone();
        let _ = replications.audit.set(Arc::new(move |target, failed| {
            let outcome = match failed {
                None => crate::auth::audit::Outcome::OK,
                Some(why) => crate::auth::audit::Outcome::Failed(why),
            };
            access.audit(
                "replication",
                None,
                "replication.execution",
                None,
                target,
                outcome,
            );
        }));
        if let Some(hooks) = &self.webhooks {
            let r = self.replications.clone();
            let _ = hooks.observer.set(Arc::new(move |e| r.observe(e)));
        }
        tokio::spawn(async move {
            replications.schedule(stop_schedule).await;
        });
        if let Some(hooks) = &self.webhooks {
            let _ = hooks.duties.set(self.registry.duties());
            if let Err(e) = hooks.spawn_delivery(stop.clone()) {
                tracing::error!(error = %e, "webhook delivery cannot start");
            }
        }
        self.pulls.spawn_flush(
            self.registry.meta(),
            self.config.server.pull_flush_interval,
            stop.clone(),
        );
        if let Some(cron) = self.config.gc.retention_cron() {
            self.retention
                .spawn_schedule(crate::gc_runner::Schedule::Cron(cron), stop.clone());
        }
        self.proxy_retention.spawn(stop.clone());
        if let Some(schedule) = crate::gc_runner::Schedule::from_config(&self.config.gc) {
            self.gc.spawn_schedule(schedule, stop);
        }
    }

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
        let hosts = Arc::new(self.config.proxy.hosts.clone());
        api::router(self.api_state())
            .layer(axum::middleware::from_fn_with_state(
                self.access.clone(),
                crate::auth::audit::record_refusals,
            ))
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let req = crate::proxy::mirror::to_project(&hosts, req);
                    next.run(req)
                },
            ))
            .merge(crate::auth::endpoint::router(self.access.clone()))
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

/// Proxy-cache projects hold what their pulls bring, not pushes: no storage
/// limit (the default included) applies to them. Projects created before
/// quotas existed get that setting here; new ones when they are created.
async fn exempt_proxy_projects(
    registry: &LocalRegistry,
    accounts: &Accounts,
) -> Result<(), StartError> {
    for p in accounts
        .projects()
        .into_iter()
        .filter(|p| p.proxy.is_some())
    {
        let q = registry.quota(&p.name).await;
        if q.is_ok_and(|q| q.own.is_none()) {
            registry
                .set_quota(&p.name, Some(crate::meta::quota::QuotaSetting::Unlimited))
                .await
                .map_err(|e| StartError::Other(format!("project {}: {e}", p.name)))?;
        }
    }
    Ok(())
}

/// GC's options from the configuration.
pub fn gc_options(config: &Config, dry_run: bool) -> crate::gc::GcOptions {
    crate::gc::GcOptions {
        grace: config.gc.grace,
        upload_ttl: config.gc.upload_ttl,
        delete_untagged: config.gc.delete_untagged,
        dry_run,
    }
}

/// Logs what `LocalRegistry::recover_at_start` found, if anything.
fn log_recovery(r: &crate::service::Recovery) {
    if r.recorded > 0 {
        tracing::info!(
            recovered = r.recorded,
            "recorded blobs of uploads that finished just before a crash"
        );
    }
    if r.discarded > 0 {
        tracing::info!(
            discarded = r.discarded,
            "discarded uploads cut off before their first acknowledged byte"
        );
    }
    if r.swept > 0 {
        tracing::info!(
            deleted = r.swept,
            "deleted blob files that no record counts"
        );
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
/// request metrics, and an optional access log.
pub fn with_common_layers(router: Router, metrics: Arc<Metrics>, access_log: bool) -> Router {
    router
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let metrics = metrics.clone();
            async move {
                let method = req.method().clone();
                let path = req.uri().path().to_string();
                let start = std::time::Instant::now();
                let res = next.run(req).await;
                let status = res.status().as_u16();
                metrics
                    .requests
                    .get_or_create(&crate::service::metrics::RequestLabels {
                        method: method.to_string(),
                        route: route_label(&path).to_string(),
                        status,
                    })
                    .inc();
                if access_log {
                    tracing::info!(%method, %path, status, elapsed_ms = start.elapsed().as_millis() as u64, "request");
                }
                res
            }
        }))
        .layer(axum::middleware::from_fn(api::api_version_header))
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
