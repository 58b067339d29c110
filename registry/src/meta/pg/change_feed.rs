//! The metadata changes other replicas announce (`changes.rs`), fed to
//! this replica's read cache: one connection of its own (outside the pool,
//! which drops notifications) LISTENs on `CHANGES_CHANNEL`. The cache
//! serves only while that LISTEN is in place: when the connection drops,
//! the cache is emptied and stops serving; it reconnects with backoff and
//! resumes serving once LISTEN is in place again. It ends when the cache
//! is dropped. (The same shape as the accounts' `accounts_feed.rs`.)

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, NoTls};

use super::changes::CHANGES_CHANNEL;
use super::{describe, MetaError};
use crate::meta::read_cache::ReadCache;

/// The application name its connection shows in `pg_stat_activity`.
pub const LISTENER_NAME: &str = "berth metadata listener";

/// Starts feeding `cache` from the database at `url`; `stop` fires (is
/// dropped) when the cache's owner goes.
pub fn follow(
    url: &str,
    cache: &Arc<ReadCache>,
    stop: oneshot::Receiver<()>,
) -> Result<(), MetaError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| MetaError::Db(format!("meta.url is not a PostgreSQL URL: {e}")))?;
    config.application_name(LISTENER_NAME);
    // A peer gone without a word is noticed in about a minute; the
    // cache's TTL bounds what is served meanwhile.
    config.keepalives_idle(Duration::from_secs(30));
    config.keepalives_interval(Duration::from_secs(10));
    config.keepalives_retries(3);
    tokio::spawn(listen(config, Arc::downgrade(cache), stop));
    Ok(())
}

async fn listen(
    config: tokio_postgres::Config,
    cache: Weak<ReadCache>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let ended = tokio::select! {
            r = listen_once(&config, &cache) => r,
            _ = &mut stop => return,
        };
        match ended {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => tracing::warn!(error = %e, "metadata change listener: connection failed"),
        }
        match cache.upgrade() {
            Some(c) => c.suspend(),
            None => return,
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = &mut stop => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One connection: LISTEN, then hand the cache every announcement until
/// the connection ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    cache: &Weak<ReadCache>,
) -> Result<(), String> {
    let (client, mut conn) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting: {}", describe(&e)))?;
    let feed = cache.clone();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => match feed.upgrade() {
                    Some(c) => c.heard(n.payload()),
                    None => return Ok(()),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(describe(&e)),
                None => return Ok(()),
            }
        }
    });
    if let Err(e) = client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
        .await
    {
        driver.abort();
        return Err(format!("LISTEN: {}", describe(&e)));
    }
    // Announcements from here on reach this connection: serve again.
    match cache.upgrade() {
        Some(c) => c.resume(),
        None => {
            driver.abort();
            return Ok(());
        }
    }
    tracing::debug!("listening for metadata changes");
    let ended = driver.await.map_err(|e| e.to_string())?;
    drop(client);
    match ended {
        Ok(()) => {
            tracing::warn!("metadata change listener: the connection closed; reconnecting");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
