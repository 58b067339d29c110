//! `Config::validate`: the checks across keys and sections that serde cannot make.

use std::time::Duration;

use crate::{Config, ConfigError, MetaBackend, StorageBackend, MIN_PART_SIZE};

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_security()?;
        self.validate_backends()?;
        self.validate_limits()?;
        self.validate_login_throttle()?;
        self.server.validate_connection_limits()?;
        self.webhooks.validate()?;
        self.console.validate()?;
        self.gc.validate()?;
        self.validate_intervals()?;
        self.validate_controller()
    }

    /// The TLS pair, the bcrypt cost and the longest kubeconfig.
    fn validate_security(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// What the storage and metadata backends need: a bucket, a URL, one secret key
    /// on every replica, and previous keys that are keys.
    fn validate_backends(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The metadata's cache and pool, the storage's parts and redirects, the
    /// largest manifest.
    fn validate_limits(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The login throttle and the token keys' refresh.
    fn validate_login_throttle(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The proxy sweep and the pull-count flushes.
    fn validate_intervals(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The controller's lease, checks, polling, concurrency and deployer, and
    /// proxy.hosts.
    fn validate_controller(&self) -> Result<(), ConfigError> {
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
