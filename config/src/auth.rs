//! The `[auth]` section: password hashing, tokens and login throttling.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration_str;

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
