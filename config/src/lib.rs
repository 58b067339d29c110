//! Typed configuration for every berth role.
//!
//! One TOML document with a section per concern. Every key has a default, so an
//! empty file (or none at all) is a working configuration; `berth.example.toml`
//! at the top of the repository documents each key. Any key can be overridden
//! from the environment as `BERTH_<SECTION>_<KEY>` (upper case), for example
//! `BERTH_SERVER_LISTEN=0.0.0.0:5000` or `BERTH_EDGE_CAPACITY=20GiB`.
//!
//! This crate does no I/O beyond reading the file it is pointed at.

#![forbid(unsafe_code)]

mod auth;
mod backends;
mod controller;
pub mod cron;
mod edge;
mod env;
mod gc;
mod logging;
mod server;
mod services;
mod units;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration problem, worded for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub meta: MetaConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub gc: GcConfig,
    pub edge: EdgeConfig,
    pub controller: ControllerConfig,
    pub webhooks: WebhooksConfig,
    pub proxy: ProxyConfig,
    pub console: ConsoleConfig,
    pub quota: QuotaConfig,
    pub replication: ReplicationConfig,
}

pub use auth::AuthConfig;
pub use backends::{MetaBackend, MetaConfig, StorageBackend, StorageConfig, MIN_PART_SIZE};
pub use controller::ControllerConfig;
pub use edge::{EdgeConfig, ProxyConfig};
pub use gc::GcConfig;
pub use logging::{LogConfig, LogFormat};
pub use server::ServerConfig;
pub use services::{
    ConsoleConfig, QuotaConfig, ReplicationConfig, WebhooksConfig, WEBHOOK_MAX_SECRET_OVERLAP,
};
pub use units::{duration_str, nets, ByteSize};

impl Config {
    /// Reads `path` if given (a missing explicit file is an error), then applies
    /// `BERTH_*` environment overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let origin = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("(defaults)"));
        let mut cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        cfg.apply_env(std::env::vars())?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests;
