//! The `[server]` section: the registry's listener, TLS, public URL and request limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{duration_str, nets, ByteSize, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the registry listens on.
    pub listen: SocketAddr,
    /// Directory for metadata, uploads in progress and (with the local backend) blobs.
    pub data_dir: PathBuf,
    /// URL clients use to reach this registry (token realm, Location headers).
    /// Empty: derived from `listen` and whether TLS is on.
    pub external_url: String,
    /// PEM certificate chain; TLS is on when both this and `tls_key` are set.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: u64,
    /// How long in-flight requests may run after SIGTERM before the process exits.
    #[serde(with = "duration_str")]
    pub shutdown_grace: Duration,
    /// Serve only the read API (no pushes, no deletes).
    pub read_only: bool,
    /// Reverse proxies and load balancers (CIDRs, or single addresses) whose
    /// connections may name the client in `X-Forwarded-For`. The client address
    /// (for the login throttle and the audit log) is then the rightmost entry not
    /// in this list. Empty: the TCP peer is the client, and the header is ignored.
    #[serde(deserialize_with = "nets::deserialize")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A client must send a complete request head within this long of
    /// connecting or of its first byte after an idle spell (TLS handshake
    /// included). 0s: no limit. Applies to `berth edge` too, as do the keys below.
    #[serde(with = "duration_str")]
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long. 0s: never.
    #[serde(with = "duration_str")]
    pub idle_timeout: Duration,
    /// Connections held at once; lowered at start-up to what the open-file limit allows.
    pub max_connections: u32,
    /// Connections held at once from one client address (IPv6: one /64). 0: no
    /// per-address cap (behind a reverse proxy every client has the proxy's address).
    pub max_connections_per_ip: u32,
    /// A request body must arrive at least this fast, in bytes per second,
    /// averaged over `body_rate_window`. 0: no minimum.
    pub min_body_rate: ByteSize,
    /// The span over which `min_body_rate` is judged; also the longest a body
    /// may stall outright.
    #[serde(with = "duration_str")]
    pub body_rate_window: Duration,
    /// Manifest pulls (the registry's own and those edges report) are
    /// counted in memory and written to the metadata this often (and at
    /// shutdown), not on every pull.
    #[serde(with = "duration_str")]
    pub pull_flush_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("./berth-data"),
            external_url: String::new(),
            tls_cert: None,
            tls_key: None,
            max_manifest_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            read_only: false,
            trusted_proxies: Vec::new(),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 4096,
            max_connections_per_ip: 256,
            min_body_rate: ByteSize(512),
            body_rate_window: Duration::from_secs(60),
            pull_flush_interval: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// host[:port] of `external_url`, as `docker pull` names the registry.
    pub fn external_host(&self) -> String {
        let url = self.external_url();
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_string()
    }

    /// The URL clients use to reach this server, without a trailing slash.
    pub fn external_url(&self) -> String {
        if !self.external_url.is_empty() {
            return self.external_url.trim_end_matches('/').to_string();
        }
        let scheme = if self.tls_enabled() { "https" } else { "http" };
        format!("{scheme}://{}", self.listen)
    }

    pub(crate) fn validate_connection_limits(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "server.max_connections must be positive".into(),
            ));
        }
        if self.max_connections_per_ip > self.max_connections {
            return Err(ConfigError::Invalid(format!(
                "server.max_connections_per_ip ({}) exceeds server.max_connections ({}); one address could take every connection",
                self.max_connections_per_ip, self.max_connections
            )));
        }
        if self.min_body_rate.0 > 0 && self.body_rate_window.is_zero() {
            return Err(ConfigError::Invalid(
                "server.body_rate_window must be positive when server.min_body_rate is set".into(),
            ));
        }
        Ok(())
    }
}
