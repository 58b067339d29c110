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

pub mod cron;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

    fn validate_connection_limits(&self) -> Result<(), ConfigError> {
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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Files under `<data_dir>/blobs` (object_store LocalFileSystem).
    Local,
    /// An S3-compatible bucket.
    S3,
    /// In memory; for tests and throwaway instances only.
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// S3 bucket name (backend = "s3").
    pub bucket: String,
    /// S3 endpoint, e.g. http://127.0.0.1:9000 for MinIO. Empty: AWS.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow plain-HTTP endpoints.
    pub allow_http: bool,
    /// backend = "s3": the size of the multipart parts an upload's bytes are
    /// sent to the bucket in. Smaller PATCH chunks wait in small objects
    /// under `_uploads/<id>/` until a part is full; one part per upload may
    /// be held in memory by the process serving it. At least 5 MiB (S3's
    /// minimum part), a multiple of 1 MiB; a blob can have 10,000 parts, so
    /// this times 10,000 is the largest blob.
    pub part_size: ByteSize,
    /// backend = "s3": answer a blob GET with a `307` to a presigned URL of
    /// the object, so that clients fetch its bytes from the bucket rather
    /// than through berth (distribution's and Harbor's `redirect`). Only
    /// after the usual checks: a caller who may not pull gets no URL.
    /// Clients must reach the bucket at `endpoint`.
    pub redirect: bool,
    /// How long a presigned URL stays valid (S3 allows up to 7 days).
    #[serde(with = "duration_str")]
    pub redirect_expiry: Duration,
}

/// S3's smallest part of a multipart upload (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Local,
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
            part_size: ByteSize(16 << 20),
            redirect: false,
            redirect_expiry: Duration::from_secs(20 * 60),
        }
    }
}

/// Where the registry keeps its metadata (repositories, accounts, audit,
/// the controller's records, ...).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetaBackend {
    /// One embedded redb file in the data directory: the default, one process.
    #[default]
    Redb,
    /// A PostgreSQL database several `berth serve` replicas share.
    Postgres,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    pub backend: MetaBackend,
    /// `postgres://user:password@host:port/database` (backend = "postgres").
    /// Never logged; prefer the environment (`BERTH_META_URL`) for the password.
    pub url: String,
    /// Connections each process keeps open to PostgreSQL at most.
    pub max_connections: u32,
    /// backend = "postgres": how much each replica keeps of its hot reads
    /// (manifests by digest, tags, blob links) in memory, so that pulls
    /// rarely ask the database. 0: no cache. Kept true by the changes other
    /// replicas announce (see README, "Running several replicas").
    pub cache_size: ByteSize,
    /// backend = "postgres": the longest a cached read is served, whatever
    /// was announced: the bound on staleness should a replica's listening
    /// connection die without a word (until TCP keepalives notice, about a
    /// minute). 0s: no cache.
    #[serde(with = "duration_str")]
    pub cache_ttl: Duration,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            backend: MetaBackend::Redb,
            url: String::new(),
            max_connections: 16,
            cache_size: ByteSize(64 << 20),
            cache_ttl: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `berth_registry=debug,info`, ...
    pub level: String,
    pub format: LogFormat,
    /// Log one line per HTTP request.
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            access_log: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// bcrypt cost for stored passwords and robot secrets.
    pub bcrypt_cost: u32,
    /// Lifetime of bearer tokens issued by /v2/token.
    #[serde(with = "duration_str")]
    pub token_ttl: Duration,
    /// `service` in the WWW-Authenticate challenge and in tokens.
    pub service: String,
    /// How often `berth serve` re-reads its token signing keys (with
    /// PostgreSQL: the keys every replica shares). A rotated key starts
    /// signing `6 x token_key_refresh` after it is published (with
    /// PostgreSQL; at once on the embedded file), so every replica verifies
    /// it before any signs with it.
    #[serde(with = "duration_str")]
    pub token_key_refresh: Duration,
    /// How long a verified Basic credential is remembered (so bcrypt runs once per login).
    #[serde(with = "duration_str")]
    pub credential_cache_ttl: Duration,
    /// After a wrong password from an address, that (account, address) pair waits this
    /// long before its next attempt is looked at (429 with Retry-After until then); the
    /// delay doubles with each further failure. 0s: no delay.
    #[serde(with = "duration_str")]
    pub login_backoff: Duration,
    /// The longest delay of one (account, address) pair.
    #[serde(with = "duration_str")]
    pub login_backoff_max: Duration,
    /// How long failures are remembered: a pair's, since its last one; an account's, looking back.
    #[serde(with = "duration_str", alias = "lockout_window")]
    pub failure_window: Duration,
    /// Failures on one account from all addresses within `failure_window` that put it
    /// under attack: addresses that have failed on it then share one attempt per
    /// `attacked_login_interval`. Addresses without failures are never held back.
    #[serde(alias = "max_failed_logins")]
    pub account_failure_threshold: u32,
    #[serde(with = "duration_str")]
    pub attacked_login_interval: Duration,
    /// Let anonymous clients pull public projects without the token dance (the default).
    /// Off: every anonymous request is challenged and fetches an anonymous token, as Harbor does.
    pub anonymous_direct: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            bcrypt_cost: 10,
            token_ttl: Duration::from_secs(300),
            service: "berth".into(),
            token_key_refresh: Duration::from_secs(10),
            credential_cache_ttl: Duration::from_secs(300),
            login_backoff: Duration::from_secs(1),
            login_backoff_max: Duration::from_secs(300),
            failure_window: Duration::from_secs(900),
            account_failure_threshold: 10,
            attacked_login_interval: Duration::from_secs(10),
            anonymous_direct: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// Blobs and manifests younger than this are never collected: this is the
    /// window in which a pushed layer waits for the manifest that references it.
    #[serde(with = "duration_str")]
    pub grace: Duration,
    /// Upload sessions untouched for this long are discarded.
    #[serde(with = "duration_str")]
    pub upload_ttl: Duration,
    /// Run GC periodically; 0s disables.
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// Run GC at the times of this cron expression (five fields, UTC), e.g.
    /// "0 3 * * *"; empty disables. Not together with `interval`.
    pub schedule: String,
    /// GC runs kept in the history (`GET /api/v1/gc/runs`), newest first.
    pub history: u32,
    /// Collect manifests that no tag, index or subject reaches.
    pub delete_untagged: bool,
    /// Apply every project's retention rules at the times of this cron
    /// expression (five fields, UTC); empty disables (runs on demand only).
    pub retention_schedule: String,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3600),
            upload_ttl: Duration::from_secs(24 * 3600),
            interval: Duration::ZERO,
            schedule: String::new(),
            history: 200,
            delete_untagged: true,
            retention_schedule: String::new(),
        }
    }
}

impl GcConfig {
    /// The cron schedule, if one is set (`validate` has checked it parses).
    pub fn cron(&self) -> Option<cron::Cron> {
        let s = self.schedule.trim();
        (!s.is_empty()).then(|| cron::Cron::parse(s).ok()).flatten()
    }

    /// The retention schedule, if one is set (`validate` has checked it parses).
    pub fn retention_cron(&self) -> Option<cron::Cron> {
        let s = self.retention_schedule.trim();
        (!s.is_empty()).then(|| cron::Cron::parse(s).ok()).flatten()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let r = self.retention_schedule.trim();
        if !r.is_empty() {
            cron::Cron::parse(r)
                .map_err(|e| ConfigError::Invalid(format!("gc.retention_schedule: {e}")))?;
        }
        let s = self.schedule.trim();
        if s.is_empty() {
            return Ok(());
        }
        if !self.interval.is_zero() {
            return Err(ConfigError::Invalid(
                "gc.schedule and gc.interval are both set: keep one (set the other to \"\" or \"0s\")"
                    .into(),
            ));
        }
        cron::Cron::parse(s)
            .map(|_| ())
            .map_err(|e| ConfigError::Invalid(format!("gc.schedule: {e}")))
    }
}

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

/// Replication between registries (`/api/v1/replications`, `berth replication`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Remote registries may be loopback, link-local, private or this
    /// machine's own addresses. Off: only public addresses, checked when a
    /// policy is saved and at every connection.
    pub allow_private_remotes: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// Run the workload controller inside `berth serve`.
    pub enabled: bool,
    /// Where the directory deployer writes rendered objects. Empty: `<data_dir>/manifests`.
    pub manifests_dir: Option<PathBuf>,
    /// "directory" or "kubernetes".
    pub deployer: String,
    /// Hex-encoded 32-byte key for encrypting secret values at rest. Empty:
    /// generated into the data dir (redb only; required with PostgreSQL).
    pub secret_key: String,
    /// Earlier values of `secret_key` (hex, 64 digits each): they still open
    /// what they sealed, until `berth reseal` seals it again with
    /// `secret_key`; then they can be removed.
    pub previous_secret_keys: Vec<String>,
    /// Longest lifetime of the token in a project's node kubeconfig (Kubernetes
    /// deployer); `?ttl=` asks for less. At least 10 minutes (the TokenRequest minimum).
    #[serde(with = "duration_str")]
    pub kubeconfig_max_ttl: Duration,
    /// How often running publications are compared with what is on the node
    /// (a rendered file edited or deleted by hand, an object changed in the
    /// cluster) and repaired. "0s": never.
    #[serde(with = "duration_str")]
    pub drift_check_interval: Duration,
    /// With `meta.backend = "postgres"`: how long the replica that runs the
    /// reconcilers holds its lease (renewed every third of it). When it
    /// dies, another replica takes over within about this long.
    #[serde(with = "duration_str")]
    pub leader_lease: Duration,
    /// How often a publish asks a node's edge about its prefetch job when the
    /// edge does not report the job's end, and looks at a rollout in
    /// progress. Edges that report (berth edge does) are asked only every
    /// `max(poll_interval, 30s)`, as a fallback for a lost report.
    #[serde(with = "duration_str")]
    pub poll_interval: Duration,
    /// Reconciles (different publications) run at once. A publish to a
    /// fleet spends most of each reconcile waiting on a node's edge, the
    /// deployer or a commit; more at once share the commits and the waits.
    pub reconcile_concurrency: u32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            manifests_dir: None,
            deployer: "directory".into(),
            secret_key: String::new(),
            previous_secret_keys: Vec::new(),
            kubeconfig_max_ttl: Duration::from_secs(24 * 3600),
            drift_check_interval: Duration::from_secs(60),
            leader_lease: Duration::from_secs(15),
            poll_interval: Duration::from_secs(2),
            reconcile_concurrency: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Let endpoints target loopback, link-local, private (RFC 1918, unique
    /// local) and this machine's own addresses. Off: such URLs are refused
    /// when an endpoint is saved and again when each delivery connects.
    pub allow_private_targets: bool,
    /// Events kept per endpoint while it does not take them; beyond this the
    /// oldest are dropped (and counted in berth_webhook_events_dropped_total).
    pub queue_cap: u64,
    /// Attempts per event before it is logged as failed and the next one goes.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each, up to `retry_max`.
    #[serde(with = "duration_str")]
    pub retry_initial: Duration,
    #[serde(with = "duration_str")]
    pub retry_max: Duration,
    /// Longest wait for an endpoint's answer to one delivery.
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// After a secret rotation, deliveries also carry a signature by the
    /// previous secret (`X-Berth-Signature-Previous`) this long, unless the
    /// rotation names its own overlap; then the previous secret is dropped.
    #[serde(with = "duration_str")]
    pub secret_overlap: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            queue_cap: 1000,
            max_attempts: 10,
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            secret_overlap: Duration::from_secs(24 * 3600),
        }
    }
}

/// The longest overlap a webhook secret rotation may keep the previous
/// secret signing (as Stripe's roll: at most a week).
pub const WEBHOOK_MAX_SECRET_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);

impl WebhooksConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_cap == 0 || self.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "webhooks.queue_cap and webhooks.max_attempts must be at least 1".into(),
            ));
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return Err(ConfigError::Invalid(format!(
                "webhooks.retry_initial ({}) must be positive and not longer than webhooks.retry_max ({})",
                humantime::format_duration(self.retry_initial),
                humantime::format_duration(self.retry_max)
            )));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "webhooks.timeout must be positive".into(),
            ));
        }
        if self.secret_overlap > WEBHOOK_MAX_SECRET_OVERLAP {
            return Err(ConfigError::Invalid(format!(
                "webhooks.secret_overlap ({}) must not be longer than 7 days",
                humantime::format_duration(self.secret_overlap)
            )));
        }
        Ok(())
    }
}

/// The web console `berth serve` answers at `/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console. Off: `/` and `/ui/...` are not routed.
    pub enabled: bool,
    /// A console session unused this long is signed out.
    #[serde(with = "duration_str")]
    pub session_idle: Duration,
    /// A console session ends this long after sign-in, used or not.
    #[serde(with = "duration_str")]
    pub session_lifetime: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

impl ConsoleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.session_idle < Duration::from_secs(60) || self.session_lifetime < self.session_idle
        {
            return Err(ConfigError::Invalid(format!(
                "console.session_idle ({}) must be at least 1m and not longer than console.session_lifetime ({})",
                humantime::format_duration(self.session_idle),
                humantime::format_duration(self.session_lifetime)
            )));
        }
        Ok(())
    }
}

/// Storage quotas (system administrators set a project's own with
/// `PATCH /api/v1/projects/{project}` or `berth project quota`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// The storage limit of every project that has none of its own. None: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_project: Option<ByteSize>,
}

/// A size in bytes, written in TOML as a number or a string like "50GiB", "512MB".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size; write e.g. 50GiB, 512MiB or 1000000"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            "t" | "tb" => 1000u64.pow(4),
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
            ))
            }
        };
        Ok(ByteSize((num * mult as f64) as u64))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(ByteSize(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Networks as CIDRs ("10.0.0.0/8"), or single addresses ("192.0.2.10", taken as /32 or /128).
pub mod nets {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        serde::de::Error::custom(format!(
                            "{s:?} is not a network; write e.g. 10.0.0.0/8, 192.0.2.10 or 2001:db8::/32"
                        ))
                    })
            })
            .collect()
    }
}

/// Durations as humantime strings: "30s", "5m", "1h 30m", "7days".
pub mod duration_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write e.g. 30s, 5m, 1h"
            ))
        })
    }
}

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

    /// Applies `BERTH_<SECTION>_<KEY>` overrides, plus the short aliases the
    /// documentation promises (`BERTH_UPSTREAM_USER`, `BERTH_UPSTREAM_PASSWORD`).
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut tree =
            toml::Value::try_from(&*self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut changed = false;
        for (var, value) in vars {
            let Some(rest) = var.strip_prefix("BERTH_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let (section, key) = match rest.as_str() {
                "upstream_user" => ("edge".to_string(), "upstream_user".to_string()),
                "upstream_password" => ("edge".to_string(), "upstream_password".to_string()),
                _ => match rest.split_once('_') {
                    Some((s, k)) => (s.to_string(), k.to_string()),
                    None => continue,
                },
            };
            let key = RENAMED_KEYS
                .iter()
                .find(|(s, old, _)| *s == section && *old == key)
                .map(|(_, _, new)| new.to_string())
                .unwrap_or(key);
            let Some(table) = tree.get_mut(&section).and_then(|t| t.as_table_mut()) else {
                continue;
            };
            let current = table.get(&key).cloned();
            let parsed = match &current {
                Some(toml::Value::String(_)) | None => toml::Value::String(value.clone()),
                Some(toml::Value::Integer(_)) => {
                    toml::Value::Integer(value.trim().parse().map_err(|_| ConfigError::Env {
                        var: var.clone(),
                        message: format!("{value:?} is not a whole number"),
                    })?)
                }
                Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match value.trim() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" => false,
                    _ => {
                        return Err(ConfigError::Env {
                            var,
                            message: format!("{value:?} is not a boolean (true/false)"),
                        })
                    }
                }),
                Some(toml::Value::Table(_)) => {
                    let mut t = toml::map::Map::new();
                    for pair in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let Some((k, v)) = pair.split_once('=') else {
                            return Err(ConfigError::Env {
                                var,
                                message: format!("{pair:?} is not KEY=VALUE"),
                            });
                        };
                        t.insert(k.trim().into(), toml::Value::String(v.trim().into()));
                    }
                    toml::Value::Table(t)
                }
                Some(toml::Value::Array(_)) => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                ),
                Some(_) => toml::Value::String(value.clone()),
            };
            if current.is_none() && !KNOWN_OPTIONAL_KEYS.contains(&(section.as_str(), key.as_str()))
            {
                // Not a key of this section: ignore rather than fail, so unrelated
                // BERTH_* variables (BERTH_ADMIN_PASSWORD, ...) pass through.
                continue;
            }
            table.insert(key, parsed);
            changed = true;
        }
        if changed {
            *self = tree
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Env {
                    var: "BERTH_*".into(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "server.tls_cert and server.tls_key must be set together".into(),
            ));
        }
        if !(4..=31).contains(&self.auth.bcrypt_cost) {
            return Err(ConfigError::Invalid(format!(
                "auth.bcrypt_cost must be between 4 and 31, not {}",
                self.auth.bcrypt_cost
            )));
        }
        if self.controller.kubeconfig_max_ttl < Duration::from_secs(600) {
            return Err(ConfigError::Invalid(format!(
                "controller.kubeconfig_max_ttl must be at least 10m (the Kubernetes TokenRequest \
                 minimum), not {}",
                humantime::format_duration(self.controller.kubeconfig_max_ttl)
            )));
        }
        if self.storage.backend == StorageBackend::S3 && self.storage.bucket.is_empty() {
            return Err(ConfigError::Invalid(
                "storage.backend = \"s3\" needs storage.bucket".into(),
            ));
        }
        if self.meta.backend == MetaBackend::Postgres && self.meta.url.is_empty() {
            return Err(ConfigError::Invalid(
                "meta.backend = \"postgres\" needs meta.url (postgres://user:password@host:port/database)"
                    .into(),
            ));
        }
        if self.meta.backend == MetaBackend::Postgres && self.controller.secret_key.is_empty() {
            // Each replica would generate its own, and none could open what
            // another sealed.
            return Err(ConfigError::Invalid(
                "meta.backend = \"postgres\" needs controller.secret_key (64 hex digits, the \
                 same on every replica; BERTH_CONTROLLER_SECRET_KEY): replicas never generate \
                 their own"
                    .into(),
            ));
        }
        for (i, k) in self.controller.previous_secret_keys.iter().enumerate() {
            // Says which entry, never what it holds.
            let k = k.trim();
            if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "controller.previous_secret_keys[{i}] must be 64 hex digits (a 32-byte key)"
                )));
            }
        }
        if self.meta.cache_ttl > Duration::from_secs(3600) {
            return Err(ConfigError::Invalid(format!(
                "meta.cache_ttl bounds how stale a replica's cached reads may be; at most 1h, not {}",
                humantime::format_duration(self.meta.cache_ttl)
            )));
        }
        if self.meta.max_connections < 2 {
            return Err(ConfigError::Invalid(format!(
                "meta.max_connections must be at least 2, not {}",
                self.meta.max_connections
            )));
        }
        let part = self.storage.part_size.0;
        if part < MIN_PART_SIZE || !part.is_multiple_of(1 << 20) || part > 5 << 30 {
            return Err(ConfigError::Invalid(format!(
                "storage.part_size must be a whole number of MiB between 5MiB and 5GiB, not {}",
                self.storage.part_size
            )));
        }
        if self.storage.redirect && self.storage.backend != StorageBackend::S3 {
            return Err(ConfigError::Invalid(
                "storage.redirect = true needs storage.backend = \"s3\": only a bucket can \
                 hand out presigned URLs"
                    .into(),
            ));
        }
        let expiry = self.storage.redirect_expiry;
        if expiry < Duration::from_secs(10) || expiry > Duration::from_secs(7 * 24 * 3600) {
            return Err(ConfigError::Invalid(format!(
                "storage.redirect_expiry must be between 10s and 7 days (S3's longest \
                 presigned URL), not {}",
                humantime::format_duration(expiry)
            )));
        }
        if self.server.max_manifest_bytes == 0 {
            return Err(ConfigError::Invalid(
                "server.max_manifest_bytes must be positive".into(),
            ));
        }
        let a = &self.auth;
        if a.login_backoff_max < a.login_backoff {
            return Err(ConfigError::Invalid(format!(
                "auth.login_backoff_max ({}) must not be shorter than auth.login_backoff ({})",
                humantime::format_duration(a.login_backoff_max),
                humantime::format_duration(a.login_backoff)
            )));
        }
        if a.token_key_refresh.is_zero() || a.token_key_refresh > Duration::from_secs(3600) {
            return Err(ConfigError::Invalid(format!(
                "auth.token_key_refresh must be between 1s and 1h, not {}",
                humantime::format_duration(a.token_key_refresh)
            )));
        }
        if a.account_failure_threshold == 0 {
            return Err(ConfigError::Invalid(
                "auth.account_failure_threshold must be at least 1".into(),
            ));
        }
        if a.failure_window.is_zero() {
            return Err(ConfigError::Invalid(
                "auth.failure_window must be positive".into(),
            ));
        }
        self.server.validate_connection_limits()?;
        self.webhooks.validate()?;
        self.console.validate()?;
        self.gc.validate()?;
        if self.proxy.sweep_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "proxy.sweep_interval must be positive".into(),
            ));
        }
        if self.server.pull_flush_interval.is_zero() || self.edge.pull_report_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "server.pull_flush_interval and edge.pull_report_interval must be positive".into(),
            ));
        }
        if self.controller.leader_lease < Duration::from_secs(3) {
            return Err(ConfigError::Invalid(
                "controller.leader_lease must be at least 3s (the leader renews it every third)"
                    .into(),
            ));
        }
        let drift = self.controller.drift_check_interval;
        if !drift.is_zero() && drift < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "controller.drift_check_interval must be at least 1s, or \"0s\" to turn drift \
                 checks off"
                    .into(),
            ));
        }
        if self.controller.poll_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid(
                "controller.poll_interval must be at least 100ms".into(),
            ));
        }
        if !(1..=1024).contains(&self.controller.reconcile_concurrency) {
            return Err(ConfigError::Invalid(
                "controller.reconcile_concurrency must be between 1 and 1024".into(),
            ));
        }
        if let Some((host, _)) = self
            .proxy
            .hosts
            .iter()
            .find(|(h, p)| h.is_empty() || p.is_empty())
        {
            return Err(ConfigError::Invalid(format!(
                "proxy.hosts: {host:?} must map a registry host to a project name"
            )));
        }
        if !["directory", "kubernetes"].contains(&self.controller.deployer.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "controller.deployer must be \"directory\" or \"kubernetes\", not {:?}",
                self.controller.deployer
            )));
        }
        Ok(())
    }
}

/// Keys that were renamed: (section, old name, new name). Files accept the old
/// names as serde aliases; environment variables are mapped here.
const RENAMED_KEYS: &[(&str, &str, &str)] = &[
    ("auth", "max_failed_logins", "account_failure_threshold"),
    ("auth", "lockout_window", "failure_window"),
];

/// Optional keys that are absent from the serialized defaults (None) but may be set from the environment.
const KNOWN_OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("server", "tls_cert"),
    ("server", "tls_key"),
    ("controller", "manifests_dir"),
    ("quota", "default_project"),
    ("proxy", "capacity"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let cfg = Config::default();
        cfg.validate().expect("defaults valid");
        let text = toml::to_string(&cfg).expect("serialize");
        let back: Config = toml::from_str(&text).expect("parse");
        assert_eq!(back.server.listen, cfg.server.listen);
        assert_eq!(back.gc.grace, cfg.gc.grace);
        assert_eq!(back.edge.capacity, cfg.edge.capacity);
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../../berth.example.toml");
        let cfg: Config = toml::from_str(text).expect("example parses");
        cfg.validate().expect("example valid");
        assert_eq!(cfg.server.listen, ServerConfig::default().listen);
        assert_eq!(cfg.edge.capacity, EdgeConfig::default().capacity);
    }

    /// Replicas on PostgreSQL seal with one configured key: none generates its own.
    #[test]
    fn postgres_needs_the_secret_key_from_configuration() {
        let mut cfg = Config::default();
        cfg.apply_env(
            [
                ("BERTH_META_BACKEND", "postgres"),
                ("BERTH_META_URL", "postgres://berth@db/berth"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into_iter(),
        )
        .expect("env");
        let err = cfg.validate().expect_err("no secret_key");
        assert!(err.to_string().contains("controller.secret_key"), "{err}");
        cfg.apply_env(
            [("BERTH_CONTROLLER_SECRET_KEY", "ab".repeat(32))]
                .map(|(k, v)| (k.to_string(), v))
                .into_iter(),
        )
        .expect("env");
        cfg.validate().expect("valid with the key");
    }

    #[test]
    fn console_sessions_are_checked_and_overridable() {
        let mut cfg = Config::default();
        assert!(cfg.console.enabled);
        cfg.apply_env(
            [
                ("BERTH_CONSOLE_SESSION_IDLE", "10m"),
                ("BERTH_CONSOLE_ENABLED", "false"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into_iter(),
        )
        .expect("env");
        assert_eq!(cfg.console.session_idle, Duration::from_secs(600));
        assert!(!cfg.console.enabled);
        cfg.validate().expect("valid");
        cfg.console.session_idle = Duration::from_secs(30);
        assert!(cfg.validate().is_err(), "idle under a minute");
        cfg.console.session_idle = Duration::from_secs(3600);
        cfg.console.session_lifetime = Duration::from_secs(600);
        let err = cfg.validate().expect_err("idle longer than the lifetime");
        assert!(
            err.to_string().contains("console.session_lifetime"),
            "{err}"
        );
    }

    #[test]
    fn proxy_capacity_and_expiry_come_from_file_or_env() {
        let cfg = Config::default();
        assert_eq!(cfg.proxy.capacity, None);
        assert!(cfg.proxy.expire_after.is_zero(), "no expiry unless asked");
        let file: Config =
            toml::from_str("[proxy]\ncapacity = \"20GiB\"\nexpire_after = \"30days\"\n")
                .expect("file");
        assert_eq!(file.proxy.capacity, Some(ByteSize(20 << 30)));
        assert_eq!(file.proxy.expire_after, Duration::from_secs(30 * 86400));
        let mut env = Config::default();
        env.apply_env(
            [
                ("BERTH_PROXY_CAPACITY", "2GiB"),
                ("BERTH_PROXY_EXPIRE_AFTER", "1h"),
                ("BERTH_PROXY_SWEEP_INTERVAL", "30s"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("env applies");
        assert_eq!(env.proxy.capacity, Some(ByteSize(2 << 30)));
        assert_eq!(env.proxy.expire_after, Duration::from_secs(3600));
        assert_eq!(env.proxy.sweep_interval, Duration::from_secs(30));
        let zero: Result<Config, _> = toml::from_str("[proxy]\nsweep_interval = \"0s\"\n");
        assert!(zero.expect("parses").validate().is_err());
    }

    #[test]
    fn the_default_project_quota_is_optional_and_set_from_file_or_env() {
        let cfg = Config::default();
        assert_eq!(cfg.quota.default_project, None);
        let file: Config = toml::from_str("[quota]\ndefault_project = \"50GiB\"\n").expect("file");
        assert_eq!(file.quota.default_project, Some(ByteSize(50 << 30)));
        let mut env = Config::default();
        env.apply_env(std::iter::once((
            "BERTH_QUOTA_DEFAULT_PROJECT".to_string(),
            "2GiB".to_string(),
        )))
        .expect("env applies");
        assert_eq!(env.quota.default_project, Some(ByteSize(2 << 30)));
        let bad = Config::default().apply_env(std::iter::once((
            "BERTH_QUOTA_DEFAULT_PROJECT".to_string(),
            "lots".to_string(),
        )));
        assert!(bad.is_err(), "a size that is no size is refused");
    }

    #[test]
    fn a_part_size_s3_refuses_is_refused() {
        let mut cfg = Config::default();
        cfg.validate().expect("the default part size is valid");
        for bad in [
            ByteSize(4 << 20),
            ByteSize((5 << 20) + 1),
            ByteSize(6 << 30),
        ] {
            cfg.storage.part_size = bad;
            let err = cfg.validate().expect_err("refused");
            assert!(err.to_string().contains("storage.part_size"), "{err}");
        }
        cfg.storage.part_size = ByteSize(5 << 20);
        cfg.validate().expect("S3's minimum is fine");
    }

    #[test]
    fn redirects_need_a_bucket_and_an_expiry_s3_accepts() {
        let mut cfg = Config::default();
        cfg.storage.redirect = true;
        let err = cfg.validate().expect_err("no bucket to presign in");
        assert!(err.to_string().contains("storage.redirect"), "{err}");
        cfg.storage.backend = StorageBackend::S3;
        cfg.storage.bucket = "blobs".into();
        cfg.validate().expect("redirects from a bucket");
        for bad in [Duration::from_secs(1), Duration::from_secs(8 * 24 * 3600)] {
            cfg.storage.redirect_expiry = bad;
            let err = cfg.validate().expect_err("out of S3's bounds");
            assert!(err.to_string().contains("storage.redirect_expiry"), "{err}");
        }
    }

    #[test]
    fn a_metadata_cache_ttl_past_an_hour_is_refused() {
        let mut cfg = Config::default();
        cfg.meta.cache_ttl = Duration::from_secs(7200);
        let err = cfg.validate().expect_err("2h");
        assert!(err.to_string().contains("meta.cache_ttl"), "{err}");
        cfg.meta.cache_ttl = Duration::ZERO;
        cfg.validate().expect("0s turns the cache off");
    }

    #[test]
    fn env_overrides_every_kind_of_key() {
        let mut cfg = Config::default();
        let vars = [
            ("BERTH_SERVER_LISTEN", "0.0.0.0:6000"),
            ("BERTH_SERVER_READ_ONLY", "true"),
            ("BERTH_SERVER_HEADER_TIMEOUT", "2s"),
            ("BERTH_SERVER_MAX_CONNECTIONS_PER_IP", "8"),
            ("BERTH_SERVER_MIN_BODY_RATE", "1KiB"),
            ("BERTH_AUTH_BCRYPT_COST", "4"),
            ("BERTH_GC_GRACE", "10m"),
            ("BERTH_GC_SCHEDULE", "0 3 * * *"),
            ("BERTH_GC_RETENTION_SCHEDULE", "30 2 * * *"),
            ("BERTH_GC_HISTORY", "50"),
            ("BERTH_EDGE_CAPACITY", "2GiB"),
            ("BERTH_EDGE_PLATFORMS", "linux/amd64, linux/arm64"),
            ("BERTH_UPSTREAM_USER", "robot$edge"),
            ("BERTH_SERVER_TLS_CERT", "/tmp/cert.pem"),
            ("BERTH_ADMIN_PASSWORD", "ignored-here"),
            ("BERTH_CONTROLLER_KUBECONFIG_MAX_TTL", "2h"),
            ("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true"),
            ("BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES", "true"),
            ("BERTH_PROXY_HOSTS", "docker.io=dockerhub, ghcr.io=ghcr"),
            ("BERTH_STORAGE_PART_SIZE", "8MiB"),
            ("BERTH_META_CACHE_SIZE", "16MiB"),
            ("BERTH_META_CACHE_TTL", "3s"),
            ("BERTH_STORAGE_REDIRECT", "true"),
            ("BERTH_STORAGE_REDIRECT_EXPIRY", "5m"),
        ];
        cfg.apply_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("env applies");
        assert_eq!(cfg.server.listen.port(), 6000);
        assert!(cfg.server.read_only);
        assert_eq!(cfg.server.header_timeout, Duration::from_secs(2));
        assert_eq!(cfg.server.max_connections_per_ip, 8);
        assert_eq!(cfg.server.min_body_rate, ByteSize(1024));
        assert_eq!(cfg.auth.bcrypt_cost, 4);
        assert_eq!(cfg.gc.grace, Duration::from_secs(600));
        assert_eq!(cfg.gc.schedule, "0 3 * * *");
        assert!(cfg.gc.retention_cron().is_some());
        assert_eq!(cfg.gc.history, 50);
        assert!(cfg.gc.cron().is_some());
        assert_eq!(cfg.controller.kubeconfig_max_ttl, Duration::from_secs(7200));
        assert_eq!(cfg.edge.capacity, ByteSize(2 << 30));
        assert_eq!(cfg.edge.platforms, vec!["linux/amd64", "linux/arm64"]);
        assert_eq!(cfg.edge.upstream_user, "robot$edge");
        assert!(cfg.proxy.allow_private_upstreams);
        assert!(cfg.replication.allow_private_remotes);
        assert_eq!(cfg.storage.part_size, ByteSize(8 << 20));
        assert_eq!(cfg.meta.cache_size, ByteSize(16 << 20));
        assert_eq!(cfg.meta.cache_ttl, Duration::from_secs(3));
        assert!(cfg.storage.redirect);
        assert_eq!(cfg.storage.redirect_expiry, Duration::from_secs(300));
        assert_eq!(
            cfg.proxy.hosts.get("docker.io").map(String::as_str),
            Some("dockerhub")
        );
        assert_eq!(
            cfg.proxy.hosts.get("ghcr.io").map(String::as_str),
            Some("ghcr")
        );
        assert_eq!(
            cfg.server.tls_cert.as_deref(),
            Some(Path::new("/tmp/cert.pem"))
        );
    }

    #[test]
    fn previous_secret_keys_from_the_environment_and_checked() {
        let mut cfg = Config::default();
        assert!(cfg.controller.previous_secret_keys.is_empty());
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        cfg.apply_env(
            [(
                "BERTH_CONTROLLER_PREVIOUS_SECRET_KEYS".to_string(),
                format!("{a}, {b}"),
            )]
            .into_iter(),
        )
        .expect("env");
        assert_eq!(cfg.controller.previous_secret_keys, vec![a.clone(), b]);
        cfg.validate().expect("valid");
        cfg.controller.previous_secret_keys = vec![a, "s3cr3t-not-hex".into()];
        let err = cfg.validate().expect_err("not hex").to_string();
        assert!(err.contains("previous_secret_keys[1]"), "{err}");
        assert!(!err.contains("s3cr3t"), "the value is never shown: {err}");
    }

    #[test]
    fn drift_check_interval_defaults_overrides_and_validates() {
        let mut cfg = Config::default();
        assert_eq!(cfg.controller.drift_check_interval, Duration::from_secs(60));
        cfg.apply_env(
            [("BERTH_CONTROLLER_DRIFT_CHECK_INTERVAL", "5m")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("env applies");
        assert_eq!(
            cfg.controller.drift_check_interval,
            Duration::from_secs(300)
        );
        cfg.controller.drift_check_interval = Duration::ZERO;
        assert!(cfg.validate().is_ok(), "0s turns it off");
        cfg.controller.drift_check_interval = Duration::from_millis(10);
        let err = cfg.validate().expect_err("too short").to_string();
        assert!(err.contains("controller.drift_check_interval"), "{err}");
    }

    #[test]
    fn poll_interval_defaults_overrides_and_validates() {
        let mut cfg = Config::default();
        assert_eq!(cfg.controller.poll_interval, Duration::from_secs(2));
        cfg.apply_env(
            [("BERTH_CONTROLLER_POLL_INTERVAL", "60s")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("env applies");
        assert_eq!(cfg.controller.poll_interval, Duration::from_secs(60));
        assert!(cfg.validate().is_ok());
        cfg.controller.poll_interval = Duration::from_millis(10);
        let err = cfg.validate().expect_err("too short").to_string();
        assert!(err.contains("controller.poll_interval"), "{err}");
    }

    #[test]
    fn reconcile_concurrency_defaults_overrides_and_validates() {
        let mut cfg = Config::default();
        assert_eq!(cfg.controller.reconcile_concurrency, 64);
        cfg.apply_env(
            [("BERTH_CONTROLLER_RECONCILE_CONCURRENCY", "16")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("env applies");
        assert_eq!(cfg.controller.reconcile_concurrency, 16);
        assert!(cfg.validate().is_ok());
        cfg.controller.reconcile_concurrency = 0;
        let err = cfg.validate().expect_err("zero").to_string();
        assert!(err.contains("controller.reconcile_concurrency"), "{err}");
    }

    #[test]
    fn leader_lease_defaults_overrides_and_validates() {
        let mut cfg = Config::default();
        assert_eq!(cfg.controller.leader_lease, Duration::from_secs(15));
        cfg.apply_env(
            [("BERTH_CONTROLLER_LEADER_LEASE", "30s")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("env applies");
        assert_eq!(cfg.controller.leader_lease, Duration::from_secs(30));
        cfg.controller.leader_lease = Duration::from_secs(1);
        let err = cfg.validate().expect_err("too short").to_string();
        assert!(err.contains("controller.leader_lease"), "{err}");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let mut cfg = Config::default();
        let err = cfg
            .apply_env([("BERTH_AUTH_BCRYPT_COST".to_string(), "ten".to_string())].into_iter())
            .expect_err("must fail");
        assert!(err.to_string().contains("BERTH_AUTH_BCRYPT_COST"), "{err}");
    }

    #[test]
    fn connection_limits_are_checked() {
        let mut cfg = Config::default();
        cfg.server.max_connections_per_ip = cfg.server.max_connections + 1;
        let err = cfg.validate().expect_err("per-address cap above the total");
        assert!(err.to_string().contains("max_connections_per_ip"), "{err}");
        cfg.server.max_connections_per_ip = 0;
        cfg.validate().expect("0 turns the per-address cap off");
        cfg.server.body_rate_window = Duration::ZERO;
        let err = cfg.validate().expect_err("a rate needs a window");
        assert!(err.to_string().contains("body_rate_window"), "{err}");
        cfg.server.min_body_rate = ByteSize(0);
        cfg.validate().expect("no minimum rate, no window needed");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!("50GiB".parse::<ByteSize>(), Ok(ByteSize(50 << 30)));
        assert_eq!("1000".parse::<ByteSize>(), Ok(ByteSize(1000)));
        assert_eq!("1.5 MiB".parse::<ByteSize>(), Ok(ByteSize(3 << 19)));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(50 << 30).to_string(), "50GiB");
    }

    #[test]
    fn throttle_and_proxy_keys() {
        let cfg: Config = toml::from_str(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.10\", \"2001:db8::1\"]\n[auth]\nlockout_window = \"10m\"\nmax_failed_logins = 3\n",
        )
        .expect("parse");
        let nets: Vec<String> = cfg
            .server
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.10/32", "2001:db8::1/128"]);
        // The keys before the throttle was keyed by address still load, under their new names.
        assert_eq!(cfg.auth.failure_window, Duration::from_secs(600));
        assert_eq!(cfg.auth.account_failure_threshold, 3);
        let err = toml::from_str::<Config>("[server]\ntrusted_proxies = [\"lb.local\"]")
            .expect_err("not a network");
        assert!(err.to_string().contains("lb.local"), "{err}");

        let mut cfg = Config::default();
        let vars = [
            ("BERTH_SERVER_TRUSTED_PROXIES", "127.0.0.2, 10.1.0.0/16"),
            ("BERTH_AUTH_LOGIN_BACKOFF", "2s"),
            ("BERTH_AUTH_MAX_FAILED_LOGINS", "7"),
        ];
        cfg.apply_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("env applies");
        assert_eq!(cfg.server.trusted_proxies.len(), 2);
        assert_eq!(cfg.auth.login_backoff, Duration::from_secs(2));
        assert_eq!(cfg.auth.account_failure_threshold, 7);
        cfg.validate().expect("valid");

        cfg.auth.login_backoff_max = Duration::from_millis(500);
        assert!(cfg.validate().is_err());
        cfg.auth.login_backoff_max = Duration::from_secs(60);
        cfg.auth.account_failure_threshold = 0;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err =
            toml::from_str::<Config>("[server]\nlisten_addr = \"1.2.3.4:5\"").expect_err("unknown");
        assert!(err.to_string().contains("listen_addr"));
    }

    #[test]
    fn a_gc_schedule_is_a_cron_expression_and_excludes_the_interval() {
        let mut cfg = Config::default();
        cfg.gc.schedule = "0 3 * *".into();
        let e = cfg.validate().expect_err("four fields").to_string();
        assert!(
            e.contains("gc.schedule") && e.contains("five fields"),
            "{e}"
        );
        cfg.gc.retention_schedule = "0 3 * *".into();
        let e = cfg.validate().expect_err("three fields").to_string();
        assert!(e.contains("gc.retention_schedule"), "{e}");
        cfg.gc.retention_schedule = String::new();
        cfg.gc.schedule = "*/30 * * * *".into();
        cfg.validate().expect("valid");
        cfg.gc.interval = Duration::from_secs(60);
        let e = cfg.validate().expect_err("both").to_string();
        assert!(e.contains("gc.interval"), "{e}");
    }
}
