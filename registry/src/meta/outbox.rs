//! The webhook records the metadata keeps: endpoints, the outbox of events
//! waiting for each endpoint, and each endpoint's delivery log.
//!
//! Types only; the operations are on `MetaStore`. An endpoint's queue is the
//! contiguous run of sequence numbers from its oldest undelivered event to
//! the newest: delivery takes the head only, so events leave in the order
//! they came, and the cap drops from the head.

use serde::{Deserialize, Serialize};

/// A secret sealed by the caller: the metadata never sees it in the clear.
pub use crate::sealing::SealedSecret;

/// A project's webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Unique across projects.
    pub id: String,
    pub project: String,
    pub url: String,
    /// The event kinds it receives (`push`, `delete`, `pull`, `publication`).
    pub events: Vec<String>,
    pub enabled: bool,
    /// The HMAC key, sealed.
    pub secret: SealedSecret,
    pub created_at: u64,
    /// The key a rotation replaced, still signing beside `secret` (in
    /// `X-Berth-Signature-Previous`) until its time; sealed as `secret` is,
    /// at its own place (`webhook_previous_secret_place`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousSecret>,
}

/// A rotated-out webhook secret and the end of its overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: SealedSecret,
    /// Unix seconds: from then on it signs nothing and is dropped.
    pub until: u64,
}

/// An event to append to one endpoint's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub webhook: String,
    pub event_id: String,
    pub event_type: String,
    pub subject: String,
    /// The request body, exactly as it will be signed and sent.
    pub body: Vec<u8>,
}

/// An event to queue, in the transaction of the write it reports, for every
/// enabled endpoint of `project` subscribed to `topic` (a push's, queued
/// with its manifest: a crash cannot keep the manifest and lose the event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub project: String,
    pub topic: String,
    pub event_id: String,
    pub event_type: String,
    pub subject: String,
    /// The request body, exactly as it will be signed and sent.
    pub body: Vec<u8>,
    /// The queues' cap and the log entries kept past it (`outbox_push`'s).
    pub cap: u64,
    pub log_keep: u64,
}

impl OutboxEvent {
    /// Its deliveries to those of `hooks` that take it.
    pub fn deliveries(&self, hooks: &[Webhook]) -> Vec<NewDelivery> {
        hooks
            .iter()
            .filter(|w| w.project == self.project && w.enabled)
            .filter(|w| w.events.contains(&self.topic))
            .map(|w| NewDelivery {
                webhook: w.id.clone(),
                event_id: self.event_id.clone(),
                event_type: self.event_type.clone(),
                subject: self.subject.clone(),
                body: self.body.clone(),
            })
            .collect()
    }
}

/// The event at the head of an endpoint's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub webhook: String,
    pub seq: u64,
    pub body: Vec<u8>,
    pub attempts: u32,
    /// Unix seconds; due when not after now.
    pub next_attempt_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Queued, perhaps tried and waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed; the queue moved on.
    Failed,
    /// Dropped unsent: the endpoint's queue was full.
    Dropped,
}

/// One event's entry in an endpoint's delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    pub subject: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The status of the last answer, if any came.
    pub response_code: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    pub enqueued_at: u64,
    pub last_attempt_at: Option<u64>,
}

/// What became of one attempt to deliver a queue's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: u64,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub next: AttemptNext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptNext {
    /// Delivered: the event leaves the queue.
    Done,
    /// Failed: try again at this time (Unix seconds).
    RetryAt(u64),
    /// Failed for the last time: the event leaves the queue.
    GiveUp,
}
