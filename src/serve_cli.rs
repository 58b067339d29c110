//! `berth serve` and `berth edge`: the two server roles. Binds the listener
//! first, opens the registry (or edge cache) behind it, starts the embedded
//! workload controller beside the registry, and serves until a shutdown signal.
//!
//! Owns: wiring the roles' routers, connection limits and background tasks
//! together. Must not touch: what the routers do (the registry, edge and
//! controller crates) or how they are built from the config (`compose`).

use anyhow::anyhow;
use berth_config::Config;
use berth_registry::app::{CommonLayer, RegistryApp};
use berth_registry::server;

pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    let listen = cfg.server.listen;
    let grace = cfg.server.shutdown_grace;
    let log_access = cfg.log.access_log;
    // Listen first: a registry that cannot serve must not create its data
    // directory, its keys or the admin account (and their one-time password).
    let listener = server::bind(listen).await?;
    let mut app = crate::compose::open_registry(cfg).await?;
    let secrets = crate::compose::secret_box(&app.config)?;
    let sealer: std::sync::Arc<dyn berth_registry::sealing::Sealer> =
        std::sync::Arc::new(crate::compose::ControllerSealer(secrets.clone()));
    app.set_sealer(sealer.clone());
    // The controller's records are resealed with the registry's values,
    // whether or not the controller runs here.
    let records = crate::compose::controller_store(&app, secrets).await?;
    app.set_reseal_elsewhere(std::sync::Arc::new(crate::compose::ControllerReseal(
        records,
    )));
    app.enable_webhooks(sealer);
    let stop = tokio_util::sync::CancellationToken::new();
    let (router, reconciler) = routes(&app, stop.clone()).await?;
    let front = app.common_layer(log_access).front(router, app.v2());
    let conns = connections(&app.config, &app.metrics);
    tracing::info!(
        listen = %listen,
        data_dir = %app.config.server.data_dir.display(),
        tls = tls.is_some(),
        controller = app.config.controller.enabled,
        max_connections = conns.policy().max_connections,
        max_connections_per_ip = conns.policy().max_connections_per_ip,
        "berth registry listening"
    );
    app.spawn_background(stop.clone());
    let signal = {
        let stop = stop.clone();
        async move {
            server::shutdown_signal().await;
            stop.cancel();
        }
    };
    // Start-up is over: what it freed goes back to the kernel now.
    crate::arenas::trim();
    server::serve(listener, front, tls, signal, grace, conns).await;
    stop.cancel();
    // The pulls counted since the last flush.
    app.pulls.flush(app.registry.meta().as_ref()).await;
    if let Some(h) = reconciler {
        let _ = tokio::time::timeout(grace, h).await;
    }
    tracing::info!("berth registry stopped");
    Ok(())
}

/// Every route `berth serve` answers: the registry's, and the controller's
/// and the console's where they are enabled; with the reconcilers' task.
async fn routes(
    app: &RegistryApp,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(axum::Router, Option<tokio::task::JoinHandle<()>>)> {
    let mut router = if app.config.controller.enabled {
        app.router_with_docs(berth_controller::openapi_paths)
    } else {
        app.router()
    };
    let mut reconciler = None;
    let mut publication_changes = None;
    if app.config.controller.enabled {
        let (ctl_router, handle, changes) = start_controller(app, stop.clone()).await?;
        publication_changes = Some(changes);
        let (ctl_router, report_router) = ctl_router;
        router = router.merge(report_router).merge(
            ctl_router
                .layer(axum::middleware::from_fn_with_state(
                    app.access.clone(),
                    check_credentials,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    app.access.clone(),
                    berth_registry::auth::audit::record_refusals,
                ))
                .layer(axum::middleware::from_fn(
                    berth_registry::admin::refuse_forms,
                )),
        );
        reconciler = Some(handle);
    }
    if app.config.console.enabled {
        // The console calls the routes above in-process, as its signed-in accounts.
        // Sessions live where the accounts do: shared by replicas on PostgreSQL.
        let sessions: std::sync::Arc<dyn berth_registry::auth::sessions::SessionStore> =
            match &app.metadata {
                berth_registry::app::Metadata::Postgres(pool) => {
                    std::sync::Arc::new(berth_registry::meta::pg::PgSessions::new(pool.clone()))
                }
                _ => std::sync::Arc::new(berth_registry::auth::sessions::MemorySessions::default()),
            };
        let console = crate::console::Console::new(
            router.clone(),
            app.access.clone(),
            app.registry.clone(),
            sessions,
            publication_changes,
            stop.clone(),
            &app.config,
        );
        router = router.merge(console.router());
    }
    Ok((router, reconciler))
}

/// The connection limits of `[server]`, which `berth serve` and `berth edge`
/// share, within the open-file limit (raised to its hard limit first).
fn connections(
    cfg: &Config,
    metrics: &berth_registry::service::metrics::Metrics,
) -> std::sync::Arc<server::Connections> {
    let open_files = server::raise_open_file_limit();
    tracing::debug!(?open_files, "open-file limit");
    server::Connections::new(server::ConnectionPolicy::from_config(&cfg.server), metrics)
}

/// Checks the credentials of a controller API request with the client's address,
/// so that failed guesses there count against the address as on /v2 (the
/// controller's own authorizer then finds them in the credential cache).
async fn check_credentials(
    axum::extract::State(access): axum::extract::State<
        std::sync::Arc<berth_registry::auth::access::RegistryAccess>,
    >,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.headers().contains_key(http::header::AUTHORIZATION) {
        let peer = berth_registry::auth::client::client_addr(req.extensions());
        let info = berth_registry::auth::RequestInfo {
            headers: req.headers(),
            peer,
        };
        if let Err(r) = access.identify(&info).await {
            let (status, message, retry) = match r {
                berth_registry::auth::Refusal::TooMany {
                    message,
                    retry_after,
                } => (
                    http::StatusCode::TOO_MANY_REQUESTS,
                    message,
                    Some(retry_after),
                ),
                other => (http::StatusCode::UNAUTHORIZED, other.to_string(), None),
            };
            let mut res =
                (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
            if let Some(v) = retry.and_then(|s| http::HeaderValue::from_str(&s.to_string()).ok()) {
                res.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            return res;
        }
    }
    next.run(req).await
}

/// The embedded workload controller, wired to the registry's metadata, accounts and audit log.
async fn start_controller(
    app: &RegistryApp,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(
    (axum::Router, axum::Router),
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<u64>,
)> {
    use crate::compose::{
        secret_box, PublicationForwarder, PublicationSignals, RegistryAudit, RegistryAuthorizer,
        RegistryResolver,
    };
    use std::sync::Arc;
    let cfg = &app.config;
    let deployer = berth_controller::deployer_from_config(&cfg.controller, &cfg.server.data_dir)
        .map_err(anyhow::Error::msg)?;
    let edge = berth_controller::HttpEdgeClient::new(std::time::Duration::from_secs(30))
        .map_err(|e| anyhow!("{e}"))?;
    let image_host = cfg
        .server
        .external_url()
        .split_once("://")
        .map(|(_, h)| h.to_string());
    let store = crate::compose::controller_store(app, secret_box(cfg)?).await?;
    let (written, changes) = tokio::sync::watch::channel(0u64);
    let events = Arc::new(PublicationSignals {
        forwarder: PublicationForwarder::spawn(store.clone(), app.webhooks.clone(), stop.clone()),
        written,
    });
    let ports = berth_controller::Ports {
        resolver: Arc::new(RegistryResolver {
            registry: app.registry.clone(),
            signatures: app.signatures.clone(),
            projects: app.projects.clone(),
            accounts: app.access.accounts.clone(),
            hosts: cfg.proxy.hosts.clone(),
            own_host: image_host.clone(),
        }),
        edge: Arc::new(edge),
        deployer,
        authorizer: Arc::new(RegistryAuthorizer {
            access: app.access.clone(),
        }),
        audit: Arc::new(RegistryAudit {
            access: app.access.clone(),
        }),
        events,
    };
    let settings = controller_settings(cfg, image_host)?;
    let state = berth_controller::ControllerState::new(store, ports, settings);
    revoke_kubeconfigs_with_access(app, state.clone());
    app.registry
        .add_gc_roots(Arc::new(crate::compose::PublicationRoots {
            store: state.store().clone(),
        }));
    app.set_project_cleanup(Arc::new(crate::compose::ControllerProjectCleanup(
        state.clone(),
    )));
    let handle = spawn_reconciler(app, &state, stop)?;
    Ok((
        (
            berth_controller::router(state.clone()),
            berth_controller::report_router(state),
        ),
        handle,
        changes,
    ))
}

/// The controller's settings from `[controller]` and the sealing keys.
fn controller_settings(
    cfg: &Config,
    image_host: Option<String>,
) -> anyhow::Result<berth_controller::ControllerSettings> {
    Ok(berth_controller::ControllerSettings {
        secret_key: Some(crate::compose::secret_key(cfg)?),
        previous_secret_keys: crate::compose::previous_secret_keys(cfg)?,
        render: berth_controller::RenderOptions { image_host },
        kubeconfig_max_ttl: Some(cfg.controller.kubeconfig_max_ttl),
        // Edges report finished prefetch jobs to the URL they pull from.
        report_url: Some(cfg.server.external_url()),
        reconcile: berth_controller::ReconcileSettings {
            drift_check_interval: cfg.controller.drift_check_interval,
            poll_interval: cfg.controller.poll_interval,
            concurrency: cfg.controller.reconcile_concurrency as usize,
            ..Default::default()
        },
    })
}

/// Kubeconfigs exported for a project die with a member's access.
fn revoke_kubeconfigs_with_access(app: &RegistryApp, state: berth_controller::ControllerState) {
    let mut removed = app.access.accounts.access_removed();
    tokio::spawn(async move {
        loop {
            match removed.recv().await {
                Ok(project) => {
                    state.revoke_project_access(&project).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "kubeconfig revocations were missed");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// The reconcilers, until `stop`. Replicas on PostgreSQL: one leads them (a
/// lease with fencing); the embedded database has one process, always the leader.
fn spawn_reconciler(
    app: &RegistryApp,
    state: &berth_controller::ControllerState,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    Ok(match &app.metadata {
        berth_registry::app::Metadata::Postgres(pool) => {
            // Requests and edge reports a follower takes wake the leader.
            let (relay, incoming) =
                berth_controller::postgres_relay(pool.clone(), &app.config.meta.url)
                    .map_err(|e| anyhow!("{e}"))?;
            state.relay_through(relay, incoming);
            state.spawn_reconciler_led(
                berth_controller::postgres_leadership(
                    pool.clone(),
                    app.config.controller.leader_lease,
                ),
                async move { stop.cancelled().await },
            )
        }
        berth_registry::app::Metadata::Redb(_) => {
            state.spawn_reconciler(async move { stop.cancelled().await })
        }
    })
}

pub async fn edge(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.edge.listen;
    let grace = cfg.server.shutdown_grace;
    let log_access = cfg.log.access_log;
    let app = berth_edge::EdgeApp::open(cfg)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let front = CommonLayer::new(app.metrics.clone(), log_access).front(app.router(), app.v2());
    let conns = connections(&app.config, &app.metrics);
    let listener = server::bind(listen).await?;
    tracing::info!(
        listen = %listen,
        upstream = %app.config.edge.upstream,
        cache_dir = %app.config.edge.cache_dir.display(),
        capacity = %app.config.edge.capacity,
        max_connections = conns.policy().max_connections,
        max_connections_per_ip = conns.policy().max_connections_per_ip,
        "berth edge cache listening"
    );
    app.spawn_background();
    // Start-up is over: what it freed goes back to the kernel now.
    crate::arenas::trim();
    server::serve(
        listener,
        front,
        None,
        server::shutdown_signal(),
        grace,
        conns,
    )
    .await;
    app.flush().await;
    app.report_pulls().await;
    tracing::info!("berth edge cache stopped");
    Ok(())
}
