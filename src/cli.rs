//! The admin API client the operator commands share: how they reach the
//! registry (`Conn`), send a request and turn an error answer into the
//! server's message, and print JSON. Each command group lives in its own
//! `*_cli.rs`; `berth serve` and `berth edge` in `serve_cli.rs`.

use anyhow::{bail, Context};
use berth_config::Config;

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

pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
