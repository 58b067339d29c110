//! Assembles the registry from its configuration: store, metadata, service,
//! access control and routes. `berth serve` and the tests both start here.

use std::sync::Arc;

use berth_config::{Config, MetaBackend};

use crate::admin;
use crate::api::ApiState;
use crate::auth::access::{AccessConfig, RegistryAccess};
use crate::auth::accounts::Accounts;
use crate::auth::throttle::ThrottleConfig;
use crate::auth::token_keys::TokenKeys;
use crate::auth::Access;
use crate::meta::RedbMeta;
use crate::proxy::projects::{ProxyOptions, ProxyProjects};
use crate::proxy::{ProxyMetrics, TagPolicy};
use crate::sealing::Sealer;
use crate::service::{metrics::Metrics, LocalRegistry};
use crate::signature::SignatureGate;
use crate::webhooks::{SecretSealer, WebhookSettings, Webhooks};

mod routes;
mod stores;

pub use routes::{CommonLayer, Front};
pub use stores::{open_content, open_metadata};
use stores::{open_embedded, open_token_keys};

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

impl RegistryApp {
    /// Opens the metadata `config.meta` names (PostgreSQL: migrating the
    /// registry's and the accounts' schema), then as `open_on`.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        let metadata = match config.meta.backend {
            MetaBackend::Redb => {
                let meta = open_metadata(&config.server.data_dir, "berth.redb")?;
                Metadata::Redb(meta.with_read_cache(config.meta.cache_size.0))
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
        let (registry, accounts) = open_registry(&config, &metadata, &metrics).await?;
        registry
            .set_default_quota(config.quota.default_project.map(|b| b.0))
            .await
            .map_err(|e| StartError::Other(format!("setting quota.default_project: {e}")))?;
        exempt_proxy_projects(&registry, &accounts).await?;
        bootstrap_admin(&accounts, data).await?;
        let token_keys = open_token_keys(&config, &metadata).await?;
        let key = token_keys.key();
        let signatures = Arc::new(SignatureGate::new(registry.clone(), accounts.clone()));
        let sealer: Arc<std::sync::OnceLock<Arc<dyn Sealer>>> = Arc::default();
        let projects = proxy_projects(&config, &registry, &accounts, &sealer, &metrics);
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
        let access = registry_access(&config, &metadata, accounts, key, &metrics);
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

    /// The `/v2` API as one call (`Front`), as `router` routes it.
    pub fn v2(&self) -> crate::api::V2 {
        crate::api::V2::new(self.api_state(), self.config.proxy.hosts.clone())
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
}

/// The registry and its accounts over the metadata: the embedded file (with
/// the recovery at start), or PostgreSQL shared by replicas.
async fn open_registry(
    config: &Config,
    metadata: &Metadata,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<LocalRegistry>, Arc<Accounts>), StartError> {
    let data = &config.server.data_dir;
    Ok(match metadata {
        Metadata::Redb(meta) => open_embedded(config, meta, metrics).await?,
        Metadata::Postgres(pool) => {
            crate::private::private_dir(data).map_err(|source| StartError::DataDir {
                path: data.display().to_string(),
                source,
            })?;
            // No recovery of uploads at start: other replicas may be
            // ingesting into the same directory right now.
            let registry = crate::replicas::registry(config, pool, metrics.clone())?;
            // Background duties (GC, schedules, webhook delivery) run on
            // one replica at a time.
            registry.set_duties(Arc::new(crate::meta::pg::PgDuties::new(&config.meta.url)?));
            let accounts = crate::replicas::accounts(config, pool).await?;
            (Arc::new(registry), accounts)
        }
    })
}

/// Creates the `admin` account on first start (`BERTH_ADMIN_PASSWORD`, or a
/// generated password shown once in the log).
async fn bootstrap_admin(accounts: &Accounts, data: &std::path::Path) -> Result<(), StartError> {
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
    Ok(())
}

/// The namespace `/v2` serves: the local registry, with a pull-through for
/// each proxy-cache project.
fn proxy_projects(
    config: &Config,
    registry: &Arc<LocalRegistry>,
    accounts: &Arc<Accounts>,
    sealer: &Arc<std::sync::OnceLock<Arc<dyn Sealer>>>,
    metrics: &Arc<Metrics>,
) -> Arc<ProxyProjects> {
    let proxy_metrics = Arc::new(ProxyMetrics::default());
    proxy_metrics.register(metrics, "proxy");
    let p = &config.proxy;
    Arc::new(ProxyProjects::new(
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
    ))
}

/// Access control over the accounts: logins, tokens signed with `key`, and
/// a failed-login throttle shared by replicas on PostgreSQL.
fn registry_access(
    config: &Config,
    metadata: &Metadata,
    accounts: Arc<Accounts>,
    key: crate::auth::token::TokenKey,
    metrics: &Arc<Metrics>,
) -> Arc<RegistryAccess> {
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
    if let Metadata::Postgres(pool) = metadata {
        let cfg = access.config().throttle;
        access = access.with_throttle(crate::replicas::throttle(pool, cfg));
    }
    Arc::new(access)
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

#[cfg(test)]
mod front_tests;
