//! The account changes other replicas make, as `StoreSignal`s: one
//! connection of its own (outside the pool, which drops notifications)
//! LISTENs on `ACCOUNTS_CHANNEL`, which every account write notifies in
//! its transaction. When the connection drops, `Lost`; it reconnects with
//! backoff and says `Listening` again once LISTEN is in place, so the
//! follower reloads whatever it missed meanwhile.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::accounts::ACCOUNTS_CHANNEL;
use crate::auth::store::{AccountError, StoreSignal};

/// Starts listening to the database at `url`; the signals end when the
/// receiver is dropped.
pub fn account_feed(url: &str) -> Result<mpsc::Receiver<StoreSignal>, AccountError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| AccountError::Db(format!("meta.url is not a PostgreSQL URL: {e}")))?;
    config.application_name("berth accounts listener");
    // A peer gone without a word is noticed in about a minute.
    config.keepalives_idle(Duration::from_secs(30));
    config.keepalives_interval(Duration::from_secs(10));
    config.keepalives_retries(3);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(listen(config, tx));
    Ok(rx)
}

async fn listen(config: tokio_postgres::Config, signals: mpsc::Sender<StoreSignal>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match listen_once(&config, &signals).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => tracing::warn!(error = %e, "account change listener: connection failed"),
        }
        if signals.send(StoreSignal::Lost).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One connection: LISTEN, then forward notifications until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    signals: &mpsc::Sender<StoreSignal>,
) -> Result<(), String> {
    let (client, mut conn) = config
        .connect(NoTls)
        .await
        .map_err(|e| super::accounts::pg("connecting")(e).to_string())?;
    let forward = signals.clone();
    let driver = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                m = std::future::poll_fn(|cx| conn.poll_message(cx)) => m,
                // Nobody follows any more.
                () = forward.closed() => return Ok(()),
            };
            match message {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    // Full: a reload is pending anyway.
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        forward.try_send(StoreSignal::Changed)
                    {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(()),
            }
        }
    });
    let listening = client
        .batch_execute(&format!("LISTEN {ACCOUNTS_CHANNEL}"))
        .await;
    if let Err(e) = listening {
        driver.abort();
        return Err(super::accounts::pg("LISTEN")(e).to_string());
    }
    if signals.send(StoreSignal::Listening).await.is_err() {
        return Ok(());
    }
    tracing::debug!("listening for account changes");
    let ended = driver.await.map_err(|e| e.to_string())?;
    drop(client);
    match ended {
        Ok(()) => {
            tracing::warn!("account change listener: the connection closed; reconnecting");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
