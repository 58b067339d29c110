//! The `[gc]` section: when garbage collection runs and what it spares.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{cron, duration_str, ConfigError};

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

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
