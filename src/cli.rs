//! What each subcommand does. Operator commands are thin clients of the admin API.

use anyhow::{anyhow, bail, Context};
use berth_config::Config;
use berth_registry::app::{with_common_layers, RegistryApp};
use berth_registry::gc::{self, GcOptions};
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
    let res = rb
        .send()
        .await
        .context("cannot reach the registry (is `berth serve` running? set --url)")?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone()));
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
            .unwrap_or(text);
        bail!("{status}: {msg}");
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
    let app = RegistryApp::open(cfg).map_err(|e| anyhow!("{e}"))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut router = app.router();
    let mut reconciler = None;
    if app.config.controller.enabled {
        let (ctl_router, handle) = start_controller(&app, stop.clone())?;
        router = router.merge(ctl_router.layer(axum::middleware::from_fn_with_state(
            app.access.clone(),
            check_credentials,
        )));
        reconciler = Some(handle);
    }
    let router = with_common_layers(
        app.with_client_addr(router),
        app.metrics.clone(),
        log_access,
    );
    let conns = connections(&app.config, &app.metrics);
    let listener = server::bind(listen).await?;
    tracing::info!(
        listen = %listen,
        data_dir = %app.config.server.data_dir.display(),
        tls = tls.is_some(),
        controller = app.config.controller.enabled,
        max_connections = conns.policy().max_connections,
        max_connections_per_ip = conns.policy().max_connections_per_ip,
        "berth registry listening"
    );
    app.spawn_background();
    let signal = {
        let stop = stop.clone();
        async move {
            server::shutdown_signal().await;
            stop.cancel();
        }
    };
    server::serve(listener, router, tls, signal, grace, conns).await;
    stop.cancel();
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
fn start_controller(
    app: &RegistryApp,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(axum::Router, tokio::task::JoinHandle<()>)> {
    use crate::compose::{secret_key, RegistryAudit, RegistryAuthorizer, RegistryResolver};
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
    let state = berth_controller::ControllerState::new(
        app.registry.database(),
        berth_controller::Ports {
            resolver: Arc::new(RegistryResolver {
                registry: app.registry.clone(),
            }),
            edge: Arc::new(edge),
            deployer,
            authorizer: Arc::new(RegistryAuthorizer {
                access: app.access.clone(),
            }),
            audit: Arc::new(RegistryAudit {
                access: app.access.clone(),
            }),
        },
        berth_controller::ControllerSettings {
            secret_key: Some(secret_key(cfg)?),
            render: berth_controller::RenderOptions { image_host },
            reconcile: berth_controller::ReconcileSettings {
                drift_check_interval: cfg.controller.drift_check_interval,
                ..Default::default()
            },
        },
    )
    .map_err(|e| anyhow!("controller: {e}"))?;
    app.registry
        .add_gc_roots(Arc::new(crate::compose::PublicationRoots {
            store: state.store().clone(),
        }));
    let handle = state.spawn_reconciler(async move { stop.cancelled().await });
    Ok((berth_controller::router(state), handle))
}

pub async fn edge(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.edge.listen;
    let grace = cfg.server.shutdown_grace;
    let log_access = cfg.log.access_log;
    let app = berth_edge::EdgeApp::open(cfg).map_err(|e| anyhow!("{e}"))?;
    let router = with_common_layers(app.router(), app.metrics.clone(), log_access);
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
    app.flush();
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
        let app = RegistryApp::open(cfg).map_err(|e| anyhow!("{e}"))?;
        let sealer = berth_controller::sealed_records::RecordSealer::new(Some(
            berth_controller::secrets::SecretBox::new(&crate::compose::secret_key(&app.config)?),
        ));
        let store = berth_controller::Store::open(app.registry.database(), sealer)
            .map_err(|e| anyhow!("controller records: {e}"))?;
        app.registry
            .add_gc_roots(std::sync::Arc::new(crate::compose::PublicationRoots {
                store,
            }));
        let report = gc::run(&app.registry, opts)
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
    let report = send(conn.request(&cfg, reqwest::Method::POST, path)).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

// ---------------------------------------------------------------- operator commands

#[derive(clap::Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create a project (private unless --public).
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
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a project: access level, repositories, members.
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Make a project public or private.
    Set {
        name: String,
        #[arg(long, conflicts_with = "private", required_unless_present = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a project (with --force, also its repositories).
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Give an account a role in a project: guest, developer, maintainer or project-admin.
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
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete an account.
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a new initial password for an account (administrators).
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
    /// Create a robot account; its secret is printed once.
    Create {
        project: String,
        name: String,
        /// pull, or push (push includes pull).
        #[arg(long, default_value = "pull")]
        access: String,
        /// Lifetime, e.g. 30d, 12h; default: no expiry.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a project's robots.
    List {
        project: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a robot.
    Revoke {
        project: String,
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Args, Debug)]
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

/// Reads a secret from the terminal (stdin), without echo when possible.
fn prompt(label: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    eprint!("{label}: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let s = line.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        bail!("{label} is required");
    }
    Ok(s)
}

fn print_json(v: &serde_json::Value) {
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
            .await?;
            println!(
                "created {} project {}",
                if public { "public" } else { "private" },
                v["name"].as_str().unwrap_or(&name)
            );
        }
        ProjectCmd::List { conn } => {
            print_json(&send(conn.request(cfg, Method::GET, "/api/v1/projects")).await?)
        }
        ProjectCmd::Show { name, conn } => print_json(
            &send(conn.request(cfg, Method::GET, &format!("/api/v1/projects/{name}"))).await?,
        ),
        ProjectCmd::Set {
            name, public, conn, ..
        } => {
            send(
                conn.request(cfg, Method::PATCH, &format!("/api/v1/projects/{name}"))
                    .json(&serde_json::json!({ "public": public })),
            )
            .await?;
            println!(
                "project {name} is now {}",
                if public { "public" } else { "private" }
            );
        }
        ProjectCmd::Delete { name, force, conn } => {
            send(conn.request(
                cfg,
                Method::DELETE,
                &format!("/api/v1/projects/{name}?force={force}"),
            ))
            .await?;
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
            .await?;
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
            .await?;
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
                None => prompt("initial password")?,
            };
            send(
                conn.request(cfg, Method::POST, "/api/v1/users")
                    .json(&serde_json::json!({"name": name, "password": pw, "admin": admin})),
            )
            .await?;
            println!(
                "created account {name}; it must set its own password first: berth passwd {name}"
            );
        }
        UserCmd::List { conn } => {
            print_json(&send(conn.request(cfg, Method::GET, "/api/v1/users")).await?)
        }
        UserCmd::Delete { name, conn } => {
            send(conn.request(cfg, Method::DELETE, &format!("/api/v1/users/{name}"))).await?;
            println!("deleted account {name}");
        }
        UserCmd::ResetPassword {
            name,
            initial_password,
            conn,
        } => {
            let pw = match initial_password {
                Some(p) => p,
                None => prompt("new initial password")?,
            };
            send(
                conn.request(cfg, Method::PUT, &format!("/api/v1/users/{name}/password"))
                    .json(&serde_json::json!({ "new_password": pw })),
            )
            .await?;
            println!("{name} has a new initial password and must reset it: berth passwd {name}");
        }
    }
    Ok(())
}

pub async fn robot(cfg: &Config, cmd: RobotCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        RobotCmd::Create {
            project,
            name,
            access,
            expires_in,
            conn,
        } => {
            let mut body = serde_json::json!({"name": name, "access": access});
            if let Some(d) = expires_in {
                body["expires_in"] = serde_json::json!(d.as_secs());
            }
            let v = send(
                conn.request(
                    cfg,
                    Method::POST,
                    &format!("/api/v1/projects/{project}/robots"),
                )
                .json(&body),
            )
            .await?;
            println!("name:   {}", v["name"].as_str().unwrap_or(""));
            println!("secret: {}", v["secret"].as_str().unwrap_or(""));
            eprintln!("the secret is shown only now; store it (e.g. as the edge's BERTH_UPSTREAM_PASSWORD)");
        }
        RobotCmd::List { project, conn } => print_json(
            &send(conn.request(
                cfg,
                Method::GET,
                &format!("/api/v1/projects/{project}/robots"),
            ))
            .await?,
        ),
        RobotCmd::Revoke {
            project,
            name,
            conn,
        } => {
            send(conn.request(
                cfg,
                Method::DELETE,
                &format!("/api/v1/projects/{project}/robots/{name}"),
            ))
            .await?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

pub async fn passwd(cfg: &Config, a: PasswdArgs) -> anyhow::Result<()> {
    let name = a.name.clone().unwrap_or_else(|| a.conn.user.clone());
    let old = match a.old_password {
        Some(p) => p,
        None => prompt(&format!("current password of {name}"))?,
    };
    let new = match a.new_password {
        Some(p) => p,
        None => prompt("new password (8-20 characters, a letter and a digit)")?,
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
    .await?;
    println!("password of {name} changed");
    Ok(())
}
