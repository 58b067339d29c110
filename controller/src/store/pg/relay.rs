//! Wake-ups between replicas through PostgreSQL `LISTEN`/`NOTIFY` on
//! `CHANNEL`: a publish, an unpublish or a change stored through a
//! follower's API, and an edge's prefetch report that a follower took,
//! reach the replica leading the reconcilers at once, not at its next
//! resync (two minutes) or its fallback poll (thirty seconds).
//!
//! Sending (`PgRelay`, the `Relay` port): one `pg_notify` on a pooled
//! connection, after the request's own write committed, so whoever hears
//! it reads the stored change. Listening (`PgRelay::listen`): one
//! connection of its own (the pool drops notifications) LISTENs and passes
//! on what other replicas sent (its own are skipped: the sender already
//! woke its own reconcilers). When that connection drops it reconnects
//! with backoff and says `Listening` again once LISTEN is in place, and the
//! leader then looks at every publication: nothing sent meanwhile is missed.
//!
//! A payload is small JSON (`Wire`); a report whose job is too long for a
//! notification (8000 bytes) travels as a wake-up only, and the leader asks
//! the edge about the job instead of reading it.
//!
//! Owns: the channel, the payload and the listener's connection. Must not
//! touch: what the leader does with a wake-up (`ControllerState`).

use std::time::Duration;

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::model::PublicationKey;
use crate::ports::{Relay, RelaySignal, Relayed};
use crate::resources::{PublicationRef, ResourcePublicationKey};
use crate::store::StoreError;

/// The channel replicas notify each other on.
pub const CHANNEL: &str = "berth_controller";

/// The longest payload sent; PostgreSQL refuses 8000 bytes and more.
const MAX_PAYLOAD: usize = 7900;

/// A notification's payload.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    /// The sending replica (a listener skips its own).
    from: String,
    #[serde(flatten)]
    what: What,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum What {
    App(PublicationKey),
    Resource(ResourcePublicationKey),
    Report { key: PublicationKey, job: String },
}

impl From<Relayed> for What {
    fn from(m: Relayed) -> What {
        match m {
            Relayed::Wake(PublicationRef::App(k)) => What::App(k),
            Relayed::Wake(PublicationRef::Resource(k)) => What::Resource(k),
            Relayed::Report { key, job } => What::Report { key, job },
        }
    }
}

impl From<What> for Relayed {
    fn from(w: What) -> Relayed {
        match w {
            What::App(k) => Relayed::Wake(PublicationRef::App(k)),
            What::Resource(k) => Relayed::Wake(PublicationRef::Resource(k)),
            What::Report { key, job } => Relayed::Report { key, job },
        }
    }
}

/// The payload for `message` from `from`, within the size PostgreSQL takes.
fn payload(from: &str, message: Relayed) -> Option<String> {
    let fallback = match &message {
        Relayed::Report { key, .. } => Some(What::App(key.clone())),
        Relayed::Wake(_) => None,
    };
    let encode = |what: What| {
        serde_json::to_string(&Wire {
            from: from.to_string(),
            what,
        })
        .ok()
    };
    let full = encode(message.into())?;
    if full.len() <= MAX_PAYLOAD {
        return Some(full);
    }
    // A long report goes as a wake-up: the leader asks the edge instead.
    encode(fallback?).filter(|p| p.len() <= MAX_PAYLOAD)
}

/// What another replica sent, or `None` for our own or an unreadable payload.
fn received(own: &str, payload: &str) -> Option<Relayed> {
    match serde_json::from_str::<Wire>(payload) {
        Ok(w) if w.from == own => None,
        Ok(w) => Some(w.what.into()),
        Err(e) => {
            tracing::warn!(error = %e, "skipping an unreadable controller notification");
            None
        }
    }
}

/// This replica's end of the relay over the database of `pool`.
#[derive(Clone)]
pub struct PgRelay {
    pool: Pool,
    /// This replica, unique per process start.
    origin: String,
}

impl PgRelay {
    pub fn new(pool: Pool) -> PgRelay {
        PgRelay {
            pool,
            origin: format!("{:032x}", rand::random::<u128>()),
        }
    }

    /// Starts listening to the database at `url` (the pool's): what other
    /// replicas send, until the receiver is dropped.
    pub fn listen(&self, url: &str) -> Result<mpsc::Receiver<RelaySignal>, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Db(format!("meta.url is not a PostgreSQL URL: {e}")))?;
        config.application_name("berth controller listener");
        // A peer gone without a word is noticed in about a minute.
        config.keepalives_idle(Duration::from_secs(30));
        config.keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(listen(config, self.origin.clone(), tx));
        Ok(rx)
    }
}

impl Relay for PgRelay {
    fn send(&self, message: Relayed) {
        let Some(payload) = payload(&self.origin, message) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            let sent = match pool.get().await {
                Ok(conn) => conn
                    .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                    .await
                    .map(|_| ())
                    .map_err(|e| super::db("notifying the other replicas")(e).to_string()),
                Err(e) => Err(format!("connecting to PostgreSQL: {e}")),
            };
            if let Err(e) = sent {
                // The leader's resync finds the publication anyway.
                tracing::warn!(error = %e, "could not wake the controller's leader");
            }
        });
    }
}

async fn listen(
    config: tokio_postgres::Config,
    origin: String,
    signals: mpsc::Sender<RelaySignal>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match listen_once(&config, &origin, &signals).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => tracing::warn!(error = %e, "controller listener: connection failed"),
        }
        if signals.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One connection: LISTEN, say so, then pass on notifications until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    origin: &str,
    signals: &mpsc::Sender<RelaySignal>,
) -> Result<(), String> {
    let (client, mut conn) = config
        .connect(NoTls)
        .await
        .map_err(|e| super::db("connecting")(e).to_string())?;
    let (forward, own) = (signals.clone(), origin.to_string());
    let driver = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                m = std::future::poll_fn(|cx| conn.poll_message(cx)) => m,
                () = forward.closed() => return Ok(()),
            };
            match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let Some(m) = received(&own, n.payload()) else {
                        continue;
                    };
                    if forward.send(RelaySignal::Message(m)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(()),
            }
        }
    });
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        driver.abort();
        return Err(super::db("LISTEN")(e).to_string());
    }
    if signals.send(RelaySignal::Listening).await.is_err() {
        driver.abort();
        return Ok(());
    }
    tracing::debug!("listening for the other replicas' wake-ups");
    let ended = driver.await.map_err(|e| e.to_string())?;
    drop(client);
    if ended.is_ok() && !signals.is_closed() {
        tracing::warn!("controller listener: the connection closed; reconnecting");
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicationKey {
        PublicationKey {
            project: "acme".into(),
            app: "web".into(),
            node: "n1".into(),
        }
    }

    #[test]
    fn a_payload_comes_back_as_sent_and_never_to_its_sender() {
        let sent = Relayed::Report {
            key: key(),
            job: r#"{"id":"j1","state":"done"}"#.into(),
        };
        let p = payload("a", sent.clone()).expect("fits");
        assert_eq!(received("b", &p), Some(sent));
        assert_eq!(received("a", &p), None);
        let wake = Relayed::Wake(PublicationRef::App(key()));
        let p = payload("a", wake.clone()).expect("fits");
        assert_eq!(received("b", &p), Some(wake));
        assert_eq!(received("b", "not json"), None);
    }

    #[test]
    fn a_report_too_long_to_notify_goes_as_a_wake_up() {
        let long = Relayed::Report {
            key: key(),
            job: "x".repeat(MAX_PAYLOAD),
        };
        let p = payload("a", long).expect("a wake-up");
        assert!(p.len() <= MAX_PAYLOAD);
        assert_eq!(
            received("b", &p),
            Some(Relayed::Wake(PublicationRef::App(key())))
        );
    }
}
