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
    let router = with_common_layers(app.router(), app.metrics.clone(), log_access);
    let listener = server::bind(listen).await?;
    tracing::info!(
        listen = %listen,
        data_dir = %app.config.server.data_dir.display(),
        tls = tls.is_some(),
        "berth registry listening"
    );
    app.spawn_background();
    server::serve(listener, router, tls, server::shutdown_signal(), grace).await;
    tracing::info!("berth registry stopped");
    Ok(())
}

pub async fn edge(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.edge.listen;
    let grace = cfg.server.shutdown_grace;
    let log_access = cfg.log.access_log;
    let app = berth_edge::EdgeApp::open(cfg).map_err(|e| anyhow!("{e}"))?;
    let router = with_common_layers(app.router(), app.metrics.clone(), log_access);
    let listener = server::bind(listen).await?;
    tracing::info!(
        listen = %listen,
        upstream = %app.config.edge.upstream,
        cache_dir = %app.config.edge.cache_dir.display(),
        capacity = %app.config.edge.capacity,
        "berth edge cache listening"
    );
    app.spawn_background();
    server::serve(listener, router, None, server::shutdown_signal(), grace).await;
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
