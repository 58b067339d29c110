//! The sections of the registry's project services: `[webhooks]`, `[replication]`, `[console]`, `[quota]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{duration_str, ByteSize, ConfigError};

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
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
