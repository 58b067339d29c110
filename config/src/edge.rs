//! The `[edge]` and `[proxy]` sections: pull-through caching, by `berth edge` and by proxy-cache projects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{duration_str, ByteSize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Registry (or upstream edge) to pull through, e.g. https://registry.example:5000.
    /// Several, comma-separated (registry replicas, or a regional edge), are
    /// tried in order: a connection error, timeout, 5xx or 429 sends a request
    /// to the next, and requests return to the first once it answers again.
    pub upstream: String,
    /// Address the edge cache listens on.
    pub listen: SocketAddr,
    /// Cache directory: blobs, metadata, prefetch jobs.
    pub cache_dir: PathBuf,
    /// Upper bound of cached bytes, e.g. "50GiB".
    pub capacity: ByteSize,
    /// Upstream account (a robot account of the registry).
    pub upstream_user: String,
    pub upstream_password: String,
    /// Within this window a cached tag is served without asking upstream.
    #[serde(with = "duration_str")]
    pub tag_freshness: Duration,
    /// When upstream is unreachable, cached tags are served for this long past freshness.
    #[serde(with = "duration_str")]
    pub stale_limit: Duration,
    /// Timeout for connecting to upstream.
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// Platforms to prefetch from multi-arch indexes, e.g. ["linux/amd64"]. Empty: this node's own.
    pub platforms: Vec<String>,
    /// Client networks allowed without credentials when listening beyond loopback.
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Client credentials ("user:password") required from non-trusted clients.
    pub client_user: String,
    pub client_password: String,
    /// Skip TLS verification of the upstream (testing only).
    pub insecure_upstream: bool,
    /// Where the kubelet writes container logs (`<namespace>_<pod>_<uid>/<container>/N.log`).
    pub pod_logs_dir: PathBuf,
    /// Bearer token the registry's controller presents for this node's container
    /// logs (the node record's `edge_controller_token`). Empty: logs are not served.
    pub controller_token: String,
    /// The manifest pulls this edge serves are reported to the upstream
    /// registry this often, in one request (the image list's pull counts).
    #[serde(with = "duration_str")]
    pub pull_report_interval: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            upstream: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            cache_dir: PathBuf::from("./berth-edge"),
            capacity: ByteSize(50 * 1024 * 1024 * 1024),
            upstream_user: String::new(),
            upstream_password: String::new(),
            tag_freshness: Duration::from_secs(60),
            stale_limit: Duration::from_secs(7 * 24 * 3600),
            connect_timeout: Duration::from_secs(3),
            platforms: Vec::new(),
            trusted_networks: Vec::new(),
            client_user: String::new(),
            client_password: String::new(),
            insecure_upstream: false,
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            controller_token: String::new(),
            pull_report_interval: Duration::from_secs(30),
        }
    }
}

/// Proxy-cache projects of `berth serve` (projects created with an upstream).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Upstreams may be loopback, link-local, private or this machine's own
    /// addresses (and redirects may lead there). Off: only public addresses.
    pub allow_private_upstreams: bool,
    /// Registry host -> proxy project, for mirror requests that name their
    /// registry (`?ns=docker.io`, as containerd sends), e.g. {"docker.io" = "dockerhub"}.
    /// From the environment: `docker.io=dockerhub,ghcr.io=ghcr`.
    pub hosts: std::collections::BTreeMap<String, String>,
    /// Within this window a cached tag is served without asking upstream.
    #[serde(with = "duration_str")]
    pub tag_freshness: Duration,
    /// When upstream is unreachable (or answers 429/5xx), cached tags are
    /// served, with a Warning, for this long past freshness.
    #[serde(with = "duration_str")]
    pub stale_limit: Duration,
    /// Timeout for connecting to an upstream.
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// What a proxy project keeps at most (its usage) when it sets no
    /// `capacity` of its own; least recently pulled images go first. None: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<ByteSize>,
    /// Images of a proxy project nobody pulled for this long are evicted,
    /// unless the project sets its own `expire_after`. "0s": never.
    #[serde(with = "duration_str")]
    pub expire_after: Duration,
    /// How often proxy projects are swept for capacity and expiry (also
    /// after a fill takes a project over its capacity).
    #[serde(with = "duration_str")]
    pub sweep_interval: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            allow_private_upstreams: false,
            hosts: Default::default(),
            tag_freshness: Duration::from_secs(300),
            stale_limit: Duration::from_secs(7 * 24 * 3600),
            connect_timeout: Duration::from_secs(5),
            capacity: None,
            expire_after: Duration::ZERO,
            sweep_interval: Duration::from_secs(600),
        }
    }
}
