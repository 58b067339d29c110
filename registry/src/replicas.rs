//! What a `berth serve` replica on PostgreSQL (`meta.backend = "postgres"`)
//! opens instead of the embedded file: the registry over `PgMeta`, the
//! accounts over `PgAccounts` (following other replicas' changes) and the
//! login throttle shared through the database (the token keys: `app`).
//!
//! The schema is migrated by the caller (the composition root migrates the
//! registry's, the accounts' and the controller's sets together), except
//! in `connect_and_migrate`, for callers without a controller.

use std::sync::Arc;

use berth_config::Config;

use crate::app::{open_content, StartError};
use crate::auth::accounts::{Accounts, Backstop};
use crate::auth::throttle::{LoginThrottle, ThrottleConfig};
use crate::meta::pg::{self, Pool};
use crate::service::{metrics::Metrics, LocalRegistry};

fn other(e: impl std::fmt::Display) -> StartError {
    StartError::Other(e.to_string())
}

/// A pool to `meta.url` with the registry's and the accounts' schema up to date.
pub async fn connect_and_migrate(config: &Config) -> Result<Pool, StartError> {
    let pool = pg::connect(&config.meta.url, config.meta.max_connections as usize)?;
    pg::migrate(&pool, &[pg::MIGRATIONS, pg::ACCOUNT_MIGRATIONS]).await?;
    Ok(pool)
}

/// The registry over `pool`, its blobs where the storage section says
/// (every replica must see the same blobs: a shared directory or S3).
pub fn registry(
    config: &Config,
    pool: &Pool,
    metrics: Arc<Metrics>,
) -> Result<LocalRegistry, StartError> {
    let cache = pg::CacheLimits {
        budget: config.meta.cache_size.0,
        ttl: config.meta.cache_ttl,
    };
    // Cached reads are kept true by a listener of their own connection.
    let meta = if cache.budget == 0 || cache.ttl.is_zero() {
        pg::PgMeta::new(pool.clone())
    } else {
        pg::PgMeta::with_cache(pool.clone(), &config.meta.url, cache)?
    };
    let content = open_content(config, &config.server.data_dir)?;
    Ok(LocalRegistry::new(
        Arc::new(meta.clone()),
        Arc::new(meta),
        content,
        metrics,
    ))
}

/// The accounts kept in `pool`, following what other replicas change.
pub async fn accounts(config: &Config, pool: &Pool) -> Result<Arc<Accounts>, StartError> {
    let store = Arc::new(pg::PgAccounts::new(pool.clone()));
    let accounts = Arc::new(
        Accounts::open(store, config.auth.bcrypt_cost)
            .await
            .map_err(other)?,
    );
    let feed = pg::account_feed(&config.meta.url).map_err(other)?;
    accounts.follow(feed, Backstop::default());
    Ok(accounts)
}

/// The login throttle every replica counts in.
pub fn throttle(pool: &Pool, cfg: ThrottleConfig) -> Arc<dyn LoginThrottle> {
    Arc::new(pg::PgThrottle::new(pool.clone(), cfg))
}
