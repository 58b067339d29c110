//! Project webhooks: endpoints that receive the project's events as signed
//! CloudEvents, delivered in order per endpoint from an outbox kept in the
//! metadata, so that a restart loses none and a push never waits for one.
//!
//! Owns: endpoint management (URL policy, secrets sealed through a
//! `SecretSealer`), turning events into queued deliveries (`emit`), and the
//! delivery loop (`deliver.rs`). Must not touch: HTTP routes (the admin API
//! calls it) or the metadata's tables (it goes through `MetaStore`).
//!
//! A secret rotation (`rotate_secret`) keeps the replaced secret signing
//! beside the new one for an overlap, so receivers can switch without
//! refusing a delivery: `X-Berth-Signature` is always by the current
//! secret, `X-Berth-Signature-Previous` by the previous one while its
//! overlap lasts; the delivery loop drops it at rest once it is over.
//!
//! A push's event is queued in the manifest's own transaction
//! (`outbox_event`, then `queued`): a client answered 201 knows its event
//! is queued, and a crash cannot keep the manifest and lose its event.
//! Other events are queued after the operation they report has committed,
//! in a transaction of their own; deletes wait for that one small write,
//! pulls do not. Either way only for the project's enabled endpoints
//! subscribed to the kind: a project without webhooks gets nothing written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::meta::{Delivery, MetaStore, NewDelivery, OutboxEvent, PreviousSecret, Webhook};
use crate::service::metrics::Metrics;

mod deliver;
pub mod event;

pub use self::event::{EventKind, ProjectEvent};

/// Delivery log entries kept per endpoint besides its queue.
const LOG_KEEP: u64 = 200;

/// Seals endpoint secrets at rest: the controller's key and cipher, handed
/// in by `berth serve` (the registry does not link the controller).
/// Seals endpoint secrets: the registry's one sealing port.
pub use crate::sealing::Sealer as SecretSealer;

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub allow_private_targets: bool,
    pub queue_cap: u64,
    pub max_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
    /// How long a rotated-out secret still signs, unless a rotation names its own.
    pub secret_overlap: Duration,
    /// The registry's external URL: the events' `source` starts with it.
    pub base_url: String,
}

impl WebhookSettings {
    pub fn from_config(c: &berth_config::WebhooksConfig, base_url: String) -> Self {
        WebhookSettings {
            allow_private_targets: c.allow_private_targets,
            queue_cap: c.queue_cap,
            max_attempts: c.max_attempts,
            retry_initial: c.retry_initial,
            retry_max: c.retry_max,
            timeout: c.timeout,
            secret_overlap: c.secret_overlap,
            base_url,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::meta::MetaError> for WebhookError {
    fn from(e: crate::meta::MetaError) -> Self {
        WebhookError::Internal(e.to_string())
    }
}

/// What an endpoint is to receive (create, or change with `None` kept).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

pub struct Webhooks {
    meta: Arc<dyn MetaStore>,
    sealer: Arc<dyn SecretSealer>,
    settings: WebhookSettings,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    /// The topics some enabled endpoint of each project subscribes to; None
    /// until loaded and after any endpoint changes. Lets a pull (the hot
    /// path) skip building the event and the metadata read when nobody
    /// listens, without allocating.
    subscribed: std::sync::RwLock<Option<HashMap<String, Vec<&'static str>>>>,
    /// Bumped by every endpoint change, so a load that raced one is dropped.
    changes: std::sync::atomic::AtomicU64,
    /// Told of every event emitted (replication's on_push trigger), set once.
    pub observer: std::sync::OnceLock<EventObserver>,
    /// Whether this process delivers (replicas on one database: one does).
    pub duties: std::sync::OnceLock<Arc<dyn crate::duties::Duties>>,
}

/// Sees each event as it is emitted; must not block.
pub type EventObserver = Arc<dyn Fn(&ProjectEvent) + Send + Sync>;

fn secret_place(id: &str) -> String {
    crate::meta::webhook_secret_place(id)
}

fn previous_secret_place(id: &str) -> String {
    crate::meta::webhook_previous_secret_place(id)
}

/// 32 random bytes in hex: an endpoint's HMAC key, shown once.
fn new_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// The subscribed kinds, checked; push and delete when none are named.
fn topics(events: Option<Vec<String>>) -> Result<Vec<String>, WebhookError> {
    let events = events.unwrap_or_else(|| vec!["push".into(), "delete".into()]);
    if events.is_empty() {
        return Err(WebhookError::Invalid(
            "events is empty: name at least one of push, delete, pull, publication".into(),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let e = e.trim().to_ascii_lowercase();
        if EventKind::from_topic(&e).is_none() {
            let all: Vec<_> = EventKind::ALL.iter().map(|k| k.topic()).collect();
            return Err(WebhookError::Invalid(format!(
                "event {e:?} is not one of {}",
                all.join(", ")
            )));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

impl Webhooks {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        sealer: Arc<dyn SecretSealer>,
        settings: WebhookSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Webhooks {
            meta,
            sealer,
            settings,
            metrics,
            wake: Arc::new(Notify::new()),
            subscribed: std::sync::RwLock::new(None),
            changes: std::sync::atomic::AtomicU64::new(0),
            observer: std::sync::OnceLock::new(),
            duties: std::sync::OnceLock::new(),
        })
    }

    async fn check_url(&self, url: &str) -> Result<String, WebhookError> {
        crate::net_policy::check_outbound_url(url, self.settings.allow_private_targets)
            .await
            .map(|u| u.to_string())
            .map_err(WebhookError::Invalid)
    }

    /// Creates an endpoint; its secret is returned once and kept sealed.
    pub async fn create(
        &self,
        project: &str,
        change: EndpointChange,
    ) -> Result<(Webhook, String), WebhookError> {
        let Some(url) = change.url.as_deref() else {
            return Err(WebhookError::Invalid("url is required".into()));
        };
        let url = self.check_url(url).await?;
        let events = topics(change.events)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = new_secret();
        let sealed = self
            .sealer
            .seal(&secret_place(&id), secret.as_bytes())
            .map_err(WebhookError::Internal)?;
        let w = Webhook {
            id,
            project: project.to_string(),
            url,
            events,
            enabled: change.enabled.unwrap_or(true),
            secret: sealed,
            created_at: crate::meta::now(),
            previous: None,
        };
        self.meta.webhook_put(&w).await?;
        self.forget_subscriptions();
        Ok((w, secret))
    }

    pub async fn list(&self, project: &str) -> Result<Vec<Webhook>, WebhookError> {
        Ok(self.meta.webhooks(Some(project)).await?)
    }

    /// The endpoint `id` of `project` (another project's is not found).
    pub async fn get(&self, project: &str, id: &str) -> Result<Webhook, WebhookError> {
        match self.meta.webhook_get(id).await? {
            Some(w) if w.project == project => Ok(w),
            _ => Err(WebhookError::NotFound(format!(
                "project {project} has no webhook {id}"
            ))),
        }
    }

    pub async fn update(
        &self,
        project: &str,
        id: &str,
        change: EndpointChange,
    ) -> Result<Webhook, WebhookError> {
        let mut w = self.get(project, id).await?;
        if let Some(url) = change.url.as_deref() {
            w.url = self.check_url(url).await?;
        }
        if change.events.is_some() {
            w.events = topics(change.events)?;
        }
        if let Some(e) = change.enabled {
            w.enabled = e;
        }
        self.meta.webhook_put(&w).await?;
        self.forget_subscriptions();
        self.wake.notify_one();
        Ok(w)
    }

    pub async fn delete(&self, project: &str, id: &str) -> Result<(), WebhookError> {
        self.get(project, id).await?;
        self.meta.webhook_delete(id).await?;
        self.forget_subscriptions();
        Ok(())
    }

    /// Gives endpoint `id` a new secret, returned once. The one it replaces
    /// keeps signing beside it (`X-Berth-Signature-Previous`) for `overlap`
    /// (the configured `secret_overlap` when `None`; zero: not at all),
    /// sealed at rest as the new one is, and is dropped after.
    pub async fn rotate_secret(
        &self,
        project: &str,
        id: &str,
        overlap: Option<Duration>,
    ) -> Result<(Webhook, String), WebhookError> {
        let overlap = overlap.unwrap_or(self.settings.secret_overlap);
        if overlap > berth_config::WEBHOOK_MAX_SECRET_OVERLAP {
            return Err(WebhookError::Invalid(format!(
                "an overlap of {} is longer than the 7 days a previous secret may keep signing",
                humantime::format_duration(overlap)
            )));
        }
        let w = self.get(project, id).await?;
        let previous = if overlap.is_zero() {
            None
        } else {
            let old = self
                .sealer
                .open(&secret_place(id), &w.secret)
                .map_err(|e| WebhookError::Internal(format!("cannot open the secret: {e}")))?;
            let secret = self
                .sealer
                .seal(&previous_secret_place(id), &old)
                .map_err(WebhookError::Internal)?;
            Some(PreviousSecret {
                secret,
                until: crate::meta::now() + overlap.as_secs().max(1),
            })
        };
        let secret = new_secret();
        let sealed = self
            .sealer
            .seal(&secret_place(id), secret.as_bytes())
            .map_err(WebhookError::Internal)?;
        if !self
            .meta
            .webhook_rotate(id, &w.secret, &sealed, previous.as_ref())
            .await?
        {
            return Err(WebhookError::Conflict(format!(
                "webhook {id} changed while its secret was rotated (deleted, or rotated by \
                 someone else); look at it and rotate again if needed"
            )));
        }
        let w = Webhook {
            secret: sealed,
            previous,
            ..w
        };
        Ok((w, secret))
    }

    /// Drops the previous secrets whose overlap is over; how many.
    pub(crate) async fn drop_expired_secrets(&self) -> Result<usize, WebhookError> {
        let t = crate::meta::now();
        let mut dropped = 0;
        for w in self.meta.webhooks(None).await? {
            let Some(p) = w.previous.filter(|p| p.until <= t) else {
                continue;
            };
            if self.meta.webhook_drop_previous(&w.id, p.until).await? {
                tracing::info!(webhook = %w.id, project = %w.project,
                    "the previous webhook secret's overlap is over: dropped");
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Removes every endpoint of a deleted project, with its queue and
    /// delivery log: a project of the same name made later starts without
    /// them. The ids of those that went.
    pub async fn delete_project(&self, project: &str) -> Result<Vec<String>, WebhookError> {
        let mut gone = Vec::new();
        for w in self.meta.webhooks(Some(project)).await? {
            if self.meta.webhook_delete(&w.id).await? {
                gone.push(w.id);
            }
        }
        self.forget_subscriptions();
        Ok(gone)
    }

    pub async fn deliveries(
        &self,
        project: &str,
        id: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhookError> {
        self.get(project, id).await?;
        Ok(self.meta.webhook_deliveries(id, limit).await?)
    }

    /// Queues `event` for every enabled endpoint of its project subscribed to
    /// its kind. Failures are logged: an event never fails what it reports.
    pub async fn emit(&self, event: ProjectEvent) {
        if let Some(observe) = self.observer.get() {
            observe(&event);
        }
        let id = uuid::Uuid::new_v4().to_string();
        if let Err(e) = self.queue(&event, &id).await {
            tracing::error!(error = %e, project = %event.project, subject = %event.subject,
                "cannot queue a webhook event");
        }
    }

    /// Queues `event` as `emit` does, with the CloudEvent id `id`, and says
    /// whether the queue write failed: for events forwarded from another
    /// outbox, taken off there only once queued here (at least once: the
    /// same `id` again is the same event, for receivers to drop).
    pub async fn emit_forwarded(&self, event: ProjectEvent, id: &str) -> Result<(), WebhookError> {
        if let Some(observe) = self.observer.get() {
            observe(&event);
        }
        self.queue(&event, id).await
    }

    /// `event` in the outbox's form (with a new CloudEvent id), for a write
    /// to queue in its own transaction (a push: `MetaStore::put_manifest_queued`);
    /// `queued` follows once it committed.
    pub fn outbox_event(&self, event: &ProjectEvent) -> OutboxEvent {
        let id = uuid::Uuid::new_v4().to_string();
        OutboxEvent {
            project: event.project.clone(),
            topic: event.kind.topic().to_string(),
            body: event::cloud_event(event, &id, &self.settings.base_url, SystemTime::now()),
            event_id: id,
            event_type: event.kind.cloud_event_type().to_string(),
            subject: event.subject.clone(),
            cap: self.settings.queue_cap,
            log_keep: LOG_KEEP,
        }
    }

    /// After a write queued `event` in its own transaction: tells the
    /// observer, counts the older events the queues dropped, and wakes the
    /// delivery loop.
    pub fn queued(&self, event: &ProjectEvent, dropped: u64) {
        if let Some(observe) = self.observer.get() {
            observe(event);
        }
        if dropped > 0 {
            self.metrics.webhook_events_dropped.inc_by(dropped);
            tracing::warn!(dropped, project = %event.project,
                "webhook queue full: dropped its oldest events");
        }
        self.wake.notify_one();
    }

    /// `emit` in the background (for pulls, which do not wait for it); nothing
    /// at all, not even the event built, when no endpoint of `project`
    /// subscribes to `kind`.
    pub fn emit_later(
        self: &Arc<Self>,
        project: &str,
        kind: EventKind,
        event: impl FnOnce() -> ProjectEvent,
    ) {
        let topic = kind.topic();
        let known = self.subscribed.read().ok().and_then(|s| {
            s.as_ref()
                .map(|s| s.get(project).is_some_and(|t| t.contains(&topic)))
        });
        if known == Some(false) {
            return;
        }
        let event = event();
        let this = self.clone();
        tokio::spawn(async move {
            if known.is_none() {
                this.load_subscriptions().await;
            }
            this.emit(event).await
        });
    }

    async fn load_subscriptions(&self) {
        let seen = self.changes.load(std::sync::atomic::Ordering::SeqCst);
        let Ok(hooks) = self.meta.webhooks(None).await else {
            return;
        };
        let mut set: HashMap<String, Vec<&'static str>> = HashMap::new();
        for w in hooks.iter().filter(|w| w.enabled) {
            for kind in w.events.iter().filter_map(|e| EventKind::from_topic(e)) {
                let topics = set.entry(w.project.clone()).or_default();
                if !topics.contains(&kind.topic()) {
                    topics.push(kind.topic());
                }
            }
        }
        if let Ok(mut s) = self.subscribed.write() {
            if self.changes.load(std::sync::atomic::Ordering::SeqCst) == seen {
                *s = Some(set);
            }
        }
    }

    fn forget_subscriptions(&self) {
        if let Ok(mut s) = self.subscribed.write() {
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            *s = None;
        }
    }

    async fn queue(&self, event: &ProjectEvent, id: &str) -> Result<(), WebhookError> {
        let topic = event.kind.topic();
        let hooks = self.meta.webhooks(Some(&event.project)).await?;
        let targets: Vec<_> = hooks
            .into_iter()
            .filter(|w| w.enabled && w.events.iter().any(|e| e == topic))
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let body = event::cloud_event(event, id, &self.settings.base_url, SystemTime::now());
        let queued: Vec<_> = targets
            .into_iter()
            .map(|w| NewDelivery {
                webhook: w.id,
                event_id: id.to_string(),
                event_type: event.kind.cloud_event_type().to_string(),
                subject: event.subject.clone(),
                body: body.clone(),
            })
            .collect();
        let dropped = self
            .meta
            .outbox_push(&queued, self.settings.queue_cap, LOG_KEEP)
            .await?;
        if dropped > 0 {
            self.metrics.webhook_events_dropped.inc_by(dropped);
            tracing::warn!(dropped, project = %event.project,
                "webhook queue full: dropped its oldest events");
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Starts the delivery loop; it runs until `stop` is cancelled.
    pub fn spawn_delivery(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, String> {
        let d = deliver::Deliverer::new(self.clone())?;
        Ok(tokio::spawn(d.run(stop)))
    }
}
