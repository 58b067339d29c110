//! What each subcommand does. Operator commands are thin clients of the admin API.

use anyhow::{anyhow, bail, Context};
use berth_config::Config;
use berth_registry::app::{with_common_layers, RegistryApp};
use berth_registry::gc::GcOptions;
use berth_registry::server;

/// How operator commands reach the registry.
#[derive(clap::Args, Debug, Clone)]
pub struct Conn {
    /// Registry URL [default: http://<server.listen>].
    #[arg(long, env = "BERTH_URL")]
    pub url: Option<String>,
    /// Account to act as.
    #[arg(long, short = 'u', env = "BERTH_USER", default_value = "admin")]
    pub user: String,
    /// Its password (prefer the environment variable).
    #[arg(long, env = "BERTH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

impl Conn {
    pub fn base(&self, cfg: &Config) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| cfg.server.external_url())
            .trim_end_matches('/')
            .to_string()
    }

    pub fn request(
        &self,
        cfg: &Config,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let client = reqwest::Client::new();
        let mut rb = client.request(method, format!("{}{}", self.base(cfg), path));
        if let Some(p) = &self.password {
            rb = rb.basic_auth(&self.user, Some(p));
        }
        rb
    }
}

/// Sends a request and returns the JSON answer, or the server's error message.
pub async fn send(rb: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    send_mapped(rb, &[]).await
}

/// Like `send`, with the field names of the body the command built turned
/// back into its flags in the server's message (see `flags`).
pub async fn send_mapped(
    rb: reqwest::RequestBuilder,
    fields: &[(&str, &str)],
) -> anyhow::Result<serde_json::Value> {
    let res = rb
        .send()
        .await
        .context("cannot reach the registry (is `berth serve` running? set --url)")?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let json: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone()))
    };
    if !status.is_success() {
        let msg = json
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .or_else(|| {
                json.pointer("/errors/0/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        bail!(
            "{} (HTTP {})",
            crate::flags::name_flags(&msg, fields),
            status.as_u16()
        );
    }
    Ok(json)
}

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
    let mut router = if app.config.controller.enabled {
        app.router_with_docs(&berth_controller::openapi_paths())
    } else {
        app.router()
    };
    let mut reconciler = None;
    let mut publication_changes = None;
    if app.config.controller.enabled {
        let (ctl_router, handle, changes) = start_controller(&app, stop.clone()).await?;
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
    let router = with_common_layers(
        app.with_client_addr(berth_registry::admin::with_method_errors(router)),
        app.metrics.clone(),
        log_access,
    );
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
    server::serve(listener, router, tls, signal, grace, conns).await;
    stop.cancel();
    // The pulls counted since the last flush.
    app.pulls.flush(app.registry.meta().as_ref()).await;
    if let Some(h) = reconciler {
        let _ = tokio::time::timeout(grace, h).await;
    }
    tracing::info!("berth registry stopped");
    Ok(())
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
        previous_secret_keys, secret_box, secret_key, PublicationForwarder, PublicationSignals,
        RegistryAudit, RegistryAuthorizer, RegistryResolver,
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
    let secret_key = secret_key(cfg)?;
    let store = crate::compose::controller_store(app, secret_box(cfg)?).await?;
    let (written, changes) = tokio::sync::watch::channel(0u64);
    let events = Arc::new(PublicationSignals {
        forwarder: PublicationForwarder::spawn(store.clone(), app.webhooks.clone(), stop.clone()),
        written,
    });
    let state = berth_controller::ControllerState::new(
        store,
        berth_controller::Ports {
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
        },
        berth_controller::ControllerSettings {
            secret_key: Some(secret_key),
            previous_secret_keys: previous_secret_keys(cfg)?,
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
        },
    );
    // Kubeconfigs exported for a project die with a member's access.
    let mut removed = app.access.accounts.access_removed();
    let revoker = state.clone();
    tokio::spawn(async move {
        loop {
            match removed.recv().await {
                Ok(project) => {
                    revoker.revoke_project_access(&project).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "kubeconfig revocations were missed");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    app.registry
        .add_gc_roots(Arc::new(crate::compose::PublicationRoots {
            store: state.store().clone(),
        }));
    app.set_project_cleanup(Arc::new(crate::compose::ControllerProjectCleanup(
        state.clone(),
    )));
    // Replicas on PostgreSQL: one leads the reconcilers (a lease with
    // fencing); the embedded database has one process, always the leader.
    let handle = match &app.metadata {
        berth_registry::app::Metadata::Postgres(pool) => {
            // Requests and edge reports a follower takes wake the leader.
            let (relay, incoming) = berth_controller::postgres_relay(pool.clone(), &cfg.meta.url)
                .map_err(|e| anyhow!("{e}"))?;
            state.relay_through(relay, incoming);
            state.spawn_reconciler_led(
                berth_controller::postgres_leadership(pool.clone(), cfg.controller.leader_lease),
                async move { stop.cancelled().await },
            )
        }
        berth_registry::app::Metadata::Redb(_) => {
            state.spawn_reconciler(async move { stop.cancelled().await })
        }
    };
    Ok((
        (
            berth_controller::router(state.clone()),
            berth_controller::report_router(state),
        ),
        handle,
        changes,
    ))
}

pub async fn edge(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.edge.listen;
    let grace = cfg.server.shutdown_grace;
    let log_access = cfg.log.access_log;
    let app = berth_edge::EdgeApp::open(cfg)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let router = with_common_layers(
        berth_registry::admin::with_method_errors(app.router()),
        app.metrics.clone(),
        log_access,
    );
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
    server::serve(
        listener,
        router,
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

pub async fn gc(cfg: Config, dry_run: bool, offline: bool, conn: Conn) -> anyhow::Result<()> {
    if offline {
        let opts = GcOptions {
            grace: cfg.gc.grace,
            upload_ttl: cfg.gc.upload_ttl,
            delete_untagged: cfg.gc.delete_untagged,
            dry_run,
        };
        let app = crate::compose::open_registry(cfg).await?;
        let secrets = crate::compose::secret_box(&app.config)?;
        let store = crate::compose::controller_store(&app, secrets).await?;
        app.registry
            .add_gc_roots(std::sync::Arc::new(crate::compose::PublicationRoots {
                store,
            }));
        // Recorded in the history like any run; no audit entry (no account asked).
        let runner = berth_registry::gc_runner::GcRunner::new(
            app.registry.clone(),
            opts,
            app.config.gc.history as usize,
            Default::default(),
            None,
            &app.metrics,
        );
        let (_, report) = runner
            .run(
                berth_registry::gc_runner::Trigger::Offline,
                Some(("offline", None)),
                dry_run,
            )
            .await
            .map_err(|e| anyhow!("{e}"))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let path = if dry_run {
        "/api/v1/gc?dry_run=true"
    } else {
        "/api/v1/gc"
    };
    let report = send(conn.request(&cfg, reqwest::Method::POST, path))
        .await
        .context("cannot collect garbage")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `berth gc --status`: whether a collection runs now, and the last one's report.
pub async fn gc_status(cfg: &Config, conn: &Conn) -> anyhow::Result<()> {
    let v = send(conn.request(cfg, reqwest::Method::GET, "/api/v1/gc"))
        .await
        .context("cannot read the garbage collection status")?;
    print_json(&v);
    Ok(())
}

/// `berth gc --runs`: the history of collections, newest first.
pub async fn gc_runs(cfg: &Config, conn: &Conn, limit: Option<usize>) -> anyhow::Result<()> {
    let path = match limit {
        Some(n) => format!("/api/v1/gc/runs?limit={n}"),
        None => "/api/v1/gc/runs".to_string(),
    };
    let v = send(conn.request(cfg, reqwest::Method::GET, &path))
        .await
        .context("cannot read the garbage collection history")?;
    print_json(&v);
    Ok(())
}

// ---------------------------------------------------------------- operator commands

#[derive(clap::Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create a project (private unless --public).
    #[command(
        after_help = "Examples:\n  berth project create team-a\n  berth project create shared --public"
    )]
    Create {
        name: String,
        #[arg(long)]
        public: bool,
        /// The default; accepted so that `--private` can be said explicitly.
        #[arg(long, conflicts_with = "public")]
        private: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the projects you can see.
    #[command(after_help = "Example:\n  berth project list")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a project: access level, repositories, members, storage usage and limit.
    #[command(after_help = "Example:\n  berth project show team-a")]
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Make a project public or private.
    #[command(after_help = "Example:\n  berth project set team-a --public")]
    Set {
        name: String,
        #[arg(long, conflicts_with = "private", required_unless_present = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Require pulls (and publications) of the project's images to carry a
    /// cosign/sigstore signature one of these public keys verifies; --off removes it.
    RequireSignature {
        name: String,
        /// A PEM public key file (ECDSA P-256, as cosign and skopeo write them); repeatable.
        #[arg(long = "key", value_name = "FILE", required_unless_present = "off")]
        keys: Vec<std::path::PathBuf>,
        #[arg(long, conflicts_with = "keys")]
        off: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a project's storage limit (system administrators): a size, `none`
    /// (no limit, whatever the default), or `default` (quota.default_project).
    #[command(after_help = "Examples:\n  \
        berth project quota team-a 50GiB\n  \
        berth project quota team-a none\n  \
        berth project quota team-a default\n\n\
        Usage counts each blob and manifest once per project; it goes down when the\n\
        project's last link to a blob goes (GC, or deleting the repository), not when a tag is deleted.")]
    Quota {
        name: String,
        /// e.g. 50GiB, 500MB, a number of bytes, `none` or `default`.
        limit: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Count a project's usage again from what its repositories hold (system administrators).
    #[command(after_help = "Example:\n  berth project recount team-a")]
    Recount {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a project (with --force, also its repositories, apps and resources, taken off every node).
    #[command(after_help = "Example:\n  berth project delete team-a --force")]
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Give an account a role in a project: guest, developer, maintainer or project-admin.
    #[command(after_help = "Example:\n  berth project add-member team-a alice --role developer")]
    AddMember {
        project: String,
        /// The account. (Not named `user`: that id is taken by --user, the account acting.)
        #[arg(value_name = "USER")]
        member: String,
        #[arg(long, default_value = "developer")]
        role: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove an account from a project.
    #[command(after_help = "Example:\n  berth project remove-member team-a alice")]
    RemoveMember {
        project: String,
        #[arg(value_name = "USER")]
        member: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCmd {
    /// Create an account with an initial password the user must reset.
    #[command(
        after_help = "Examples:\n  berth user add alice             # asks for the initial password twice\n  berth user add ops --admin --initial-password start1234"
    )]
    Add {
        name: String,
        /// Initial password (8-20 characters, a letter and a digit); prompted if absent.
        #[arg(long, env = "BERTH_NEW_PASSWORD", hide_env_values = true)]
        initial_password: Option<String>,
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List accounts.
    #[command(after_help = "Example:\n  berth user list")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete an account.
    #[command(after_help = "Example:\n  berth user delete alice")]
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a new initial password for an account (administrators).
    #[command(
        after_help = "Example:\n  berth user reset-password alice  # asks twice; alice must change it before use"
    )]
    ResetPassword {
        name: String,
        #[arg(long, env = "BERTH_NEW_PASSWORD", hide_env_values = true)]
        initial_password: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum RobotCmd {
    /// Create a robot account; its secret is printed once. With --system, a
    /// system robot (system administrators) that pulls from the projects named.
    #[command(
        after_help = "Examples:\n  berth robot create team-a edge --access pull\n  berth robot create team-a ci --access push --expires-in 90d\n  berth robot create --system edge --projects team-a,team-b\n  berth robot create --system mirror --projects '*'"
    )]
    Create {
        /// The project (with --system: the robot's name).
        #[arg(value_name = "PROJECT")]
        project: String,
        /// The robot's name (not with --system).
        name: Option<String>,
        /// A system robot, logging in as robot$NAME, that pulls from --projects.
        #[arg(long)]
        system: bool,
        /// With --system: the projects it pulls from, comma-separated, or '*' for every one.
        #[arg(long, value_delimiter = ',', requires = "system")]
        projects: Vec<String>,
        /// pull, or push (push includes pull; project robots only).
        #[arg(long, default_value = "pull")]
        access: String,
        /// Lifetime, e.g. 30d, 12h; default: no expiry.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a project's robots, or (--system) the system robots.
    #[command(after_help = "Examples:\n  berth robot list team-a\n  berth robot list --system")]
    List {
        #[arg(required_unless_present = "system")]
        project: Option<String>,
        #[arg(long, conflicts_with = "project")]
        system: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a robot.
    #[command(
        after_help = "Examples:\n  berth robot revoke team-a ci\n  berth robot revoke --system edge"
    )]
    Revoke {
        /// The project (with --system: the robot's name).
        #[arg(value_name = "PROJECT")]
        project: String,
        /// The robot's name (not with --system).
        name: Option<String>,
        #[arg(long)]
        system: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth passwd alice     # asks for the current password, then the new one twice\n  \
    berth passwd admin --old-password \"$(cat berth-data/admin-password)\" --new-password 'S3cure-pass'")]
pub struct PasswdArgs {
    /// Account whose password to change [default: --user].
    pub name: Option<String>,
    /// Current (or initial) password; prompted if absent.
    #[arg(long, env = "BERTH_OLD_PASSWORD", hide_env_values = true)]
    pub old_password: Option<String>,
    /// New password; prompted if absent.
    #[arg(long, env = "BERTH_NEW_PASSWORD", hide_env_values = true)]
    pub new_password: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn project(cfg: &Config, cmd: ProjectCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        ProjectCmd::Create {
            name, public, conn, ..
        } => {
            let v = send(
                conn.request(cfg, Method::POST, "/api/v1/projects")
                    .json(&serde_json::json!({"name": name, "public": public})),
            )
            .await
            .with_context(|| format!("cannot create project {name}"))?;
            println!(
                "created {} project {}",
                if public { "public" } else { "private" },
                v["name"].as_str().unwrap_or(&name)
            );
        }
        ProjectCmd::List { conn } => print_json(
            &send(conn.request(cfg, Method::GET, "/api/v1/projects"))
                .await
                .context("cannot list projects")?,
        ),
        ProjectCmd::Show { name, conn } => print_json(
            &send(conn.request(cfg, Method::GET, &format!("/api/v1/projects/{name}")))
                .await
                .with_context(|| format!("cannot show project {name}"))?,
        ),
        ProjectCmd::Set {
            name, public, conn, ..
        } => {
            send(
                conn.request(cfg, Method::PATCH, &format!("/api/v1/projects/{name}"))
                    .json(&serde_json::json!({ "public": public })),
            )
            .await
            .with_context(|| format!("cannot change project {name}"))?;
            println!(
                "project {name} is now {}",
                if public { "public" } else { "private" }
            );
        }
        ProjectCmd::RequireSignature {
            name,
            keys,
            off,
            conn,
        } => {
            let policy = if off {
                serde_json::Value::Null
            } else {
                let mut pems = Vec::new();
                for k in &keys {
                    pems.push(
                        std::fs::read_to_string(k)
                            .map_err(|e| anyhow!("reading {}: {e}", k.display()))?,
                    );
                }
                serde_json::json!({ "public_keys": pems })
            };
            send(
                conn.request(cfg, Method::PATCH, &format!("/api/v1/projects/{name}"))
                    .json(&serde_json::json!({ "require_signature": policy })),
            )
            .await?;
            if off {
                println!("project {name} no longer requires signatures");
            } else {
                println!(
                    "project {name} now requires images signed by one of {} key(s)",
                    keys.len()
                );
            }
        }
        ProjectCmd::Quota { name, limit, conn } => {
            crate::storage_cli::set_quota(cfg, &name, &limit, &conn).await?
        }
        ProjectCmd::Recount { name, conn } => {
            crate::storage_cli::recount(cfg, &name, &conn).await?
        }
        ProjectCmd::Delete { name, force, conn } => {
            send(conn.request(
                cfg,
                Method::DELETE,
                &format!("/api/v1/projects/{name}?force={force}"),
            ))
            .await
            .with_context(|| format!("cannot delete project {name}"))?;
            println!("deleted project {name}");
        }
        ProjectCmd::AddMember {
            project,
            member: user,
            role,
            conn,
        } => {
            send(
                conn.request(
                    cfg,
                    Method::PUT,
                    &format!("/api/v1/projects/{project}/members/{user}"),
                )
                .json(&serde_json::json!({ "role": role })),
            )
            .await
            .with_context(|| format!("cannot make {user} {role} in {project}"))?;
            println!("{user} is now {role} in {project}");
        }
        ProjectCmd::RemoveMember {
            project,
            member: user,
            conn,
        } => {
            send(conn.request(
                cfg,
                Method::DELETE,
                &format!("/api/v1/projects/{project}/members/{user}"),
            ))
            .await
            .with_context(|| format!("cannot remove {user} from {project}"))?;
            println!("removed {user} from {project}");
        }
    }
    Ok(())
}

pub async fn user(cfg: &Config, cmd: UserCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        UserCmd::Add {
            name,
            initial_password,
            admin,
            conn,
        } => {
            let pw = match initial_password {
                Some(p) => p,
                None => crate::prompt::new_secret(&format!("initial password of {name}"))?,
            };
            send(
                conn.request(cfg, Method::POST, "/api/v1/users")
                    .json(&serde_json::json!({"name": name, "password": pw, "admin": admin})),
            )
            .await
            .with_context(|| format!("cannot create account {name}"))?;
            println!(
                "created account {name}; it must set its own password first: berth passwd {name}"
            );
        }
        UserCmd::List { conn } => print_json(
            &send(conn.request(cfg, Method::GET, "/api/v1/users"))
                .await
                .context("cannot list accounts")?,
        ),
        UserCmd::Delete { name, conn } => {
            send(conn.request(cfg, Method::DELETE, &format!("/api/v1/users/{name}")))
                .await
                .with_context(|| format!("cannot delete account {name}"))?;
            println!("deleted account {name}");
        }
        UserCmd::ResetPassword {
            name,
            initial_password,
            conn,
        } => {
            let pw = match initial_password {
                Some(p) => p,
                None => crate::prompt::new_secret(&format!("new initial password of {name}"))?,
            };
            send(
                conn.request(cfg, Method::PUT, &format!("/api/v1/users/{name}/password"))
                    .json(&serde_json::json!({ "new_password": pw })),
            )
            .await
            .with_context(|| format!("cannot reset the password of {name}"))?;
            println!("{name} has a new initial password and must reset it: berth passwd {name}");
        }
    }
    Ok(())
}

/// `(project, name)` of a project robot, or `(None, name)` of a system robot.
fn robot_names(
    first: String,
    second: Option<String>,
    system: bool,
) -> anyhow::Result<(Option<String>, String)> {
    match (system, second) {
        (true, None) => Ok((None, first)),
        (true, Some(extra)) => Err(anyhow!(
            "a system robot belongs to no project: give only its name ({extra:?} is one too many)"
        )),
        (false, Some(name)) => Ok((Some(first), name)),
        (false, None) => Err(anyhow!(
            "give the project and the robot's name, or --system and the name of a system robot"
        )),
    }
}

pub async fn robot(cfg: &Config, cmd: RobotCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        RobotCmd::Create {
            project,
            name,
            system,
            projects,
            access,
            expires_in,
            conn,
        } => {
            let (project, name) = robot_names(project, name, system)?;
            let mut body = serde_json::json!({"name": name, "access": access});
            if let Some(d) = expires_in {
                body["expires_in"] = serde_json::json!(d.as_secs());
            }
            let (path, what) = match &project {
                Some(p) => (
                    format!("/api/v1/projects/{p}/robots"),
                    format!("robot {name} in {p}"),
                ),
                None => {
                    if projects.is_empty() {
                        return Err(anyhow!(
                            "a system robot needs --projects a,b (or '*' for every project)"
                        ));
                    }
                    body["projects"] = if projects.iter().any(|p| p == "*") {
                        serde_json::json!("*")
                    } else {
                        serde_json::json!(projects)
                    };
                    ("/api/v1/robots".to_string(), format!("system robot {name}"))
                }
            };
            let v = send_mapped(
                conn.request(cfg, Method::POST, &path).json(&body),
                &[
                    ("access", "--access"),
                    ("expires_in", "--expires-in"),
                    ("projects", "--projects"),
                ],
            )
            .await
            .with_context(|| format!("cannot create {what}"))?;
            println!("name:   {}", v["name"].as_str().unwrap_or(""));
            println!("secret: {}", v["secret"].as_str().unwrap_or(""));
            eprintln!("the secret is shown only now; store it (e.g. as the edge's BERTH_UPSTREAM_PASSWORD)");
        }
        RobotCmd::List {
            project,
            system,
            conn,
        } => {
            let (path, what) = match project.filter(|_| !system) {
                Some(p) => (
                    format!("/api/v1/projects/{p}/robots"),
                    format!("the robots of {p}"),
                ),
                None => ("/api/v1/robots".to_string(), "the system robots".into()),
            };
            print_json(
                &send(conn.request(cfg, Method::GET, &path))
                    .await
                    .with_context(|| format!("cannot list {what}"))?,
            )
        }
        RobotCmd::Revoke {
            project,
            name,
            system,
            conn,
        } => {
            let (project, name) = robot_names(project, name, system)?;
            let (path, what) = match &project {
                Some(p) => (
                    format!("/api/v1/projects/{p}/robots/{name}"),
                    format!("robot {name} of {p}"),
                ),
                None => (
                    format!("/api/v1/robots/{name}"),
                    format!("system robot {name}"),
                ),
            };
            send(conn.request(cfg, Method::DELETE, &path))
                .await
                .with_context(|| format!("cannot revoke {what}"))?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

pub async fn passwd(cfg: &Config, a: PasswdArgs) -> anyhow::Result<()> {
    let name = a.name.clone().unwrap_or_else(|| a.conn.user.clone());
    let old = match a.old_password {
        Some(p) => p,
        None => crate::prompt::secret(&format!("current password of {name}"))?,
    };
    let new = match a.new_password {
        Some(p) => p,
        None => crate::prompt::new_secret("new password (8-20 characters, a letter and a digit)")?,
    };
    // No credentials needed: the old password proves who we are, even an initial one.
    let conn = Conn {
        password: None,
        ..a.conn
    };
    send(
        conn.request(
            cfg,
            reqwest::Method::PUT,
            &format!("/api/v1/users/{name}/password"),
        )
        .json(&serde_json::json!({"old_password": old, "new_password": new})),
    )
    .await
    .with_context(|| format!("cannot change the password of {name}"))?;
    println!("password of {name} changed");
    Ok(())
}
