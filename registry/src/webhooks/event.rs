//! The events webhooks carry, as CloudEvents 1.0 in structured JSON mode, and
//! their signature. Pure: no I/O.
//!
//! A delivery's body is one CloudEvent (`Content-Type:
//! application/cloudevents+json; charset=utf-8`):
//!
//! ```json
//! {"specversion": "1.0", "id": "<uuid>", "source": "<external URL>/<project>",
//!  "type": "io.berth.artifact.pushed", "subject": "<repository>@<digest>",
//!  "time": "<RFC 3339>", "datacontenttype": "application/json", "data": {...}}
//! ```
//!
//! and `X-Berth-Signature: sha256=<hex>` is the HMAC-SHA256 of exactly those
//! bytes, keyed with the endpoint's secret (its UTF-8 bytes, as shown once
//! at creation or rotation). While a rotated-out secret's overlap lasts,
//! `X-Berth-Signature-Previous: sha256=<hex>` is the same HMAC keyed with
//! that previous secret: a receiver accepts a delivery when either matches
//! the secret it holds, and can switch secrets without refusing any.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The signature header on every delivery.
pub const SIGNATURE_HEADER: &str = "x-berth-signature";
/// The signature by the previous secret, during a rotation's overlap.
pub const PREVIOUS_SIGNATURE_HEADER: &str = "x-berth-signature-previous";
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// What happened. Endpoints subscribe to kinds by their `topic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A manifest was pushed (with its tags).
    Push,
    /// A manifest, tag or repository was deleted.
    Delete,
    /// A manifest was pulled (GET); opt-in, as it is frequent.
    Pull,
    /// A publication of the controller changed state.
    Publication,
    /// Not emitted yet: a project went over its quota.
    QuotaExceeded,
    /// Not emitted yet: a retention policy ran.
    RetentionRun,
    /// Not emitted yet: a replication finished.
    ReplicationDone,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Push,
        EventKind::Delete,
        EventKind::Pull,
        EventKind::Publication,
        EventKind::QuotaExceeded,
        EventKind::RetentionRun,
        EventKind::ReplicationDone,
    ];

    /// The name endpoints subscribe with.
    pub fn topic(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::Delete => "delete",
            EventKind::Pull => "pull",
            EventKind::Publication => "publication",
            EventKind::QuotaExceeded => "quota_exceeded",
            EventKind::RetentionRun => "retention_run",
            EventKind::ReplicationDone => "replication_done",
        }
    }

    /// The CloudEvents `type`.
    pub fn cloud_event_type(self) -> &'static str {
        match self {
            EventKind::Push => "io.berth.artifact.pushed",
            EventKind::Delete => "io.berth.artifact.deleted",
            EventKind::Pull => "io.berth.artifact.pulled",
            EventKind::Publication => "io.berth.publication.changed",
            EventKind::QuotaExceeded => "io.berth.quota.exceeded",
            EventKind::RetentionRun => "io.berth.retention.completed",
            EventKind::ReplicationDone => "io.berth.replication.completed",
        }
    }

    pub fn from_topic(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.topic() == s)
    }
}

/// An event of one project, before it becomes a CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectEvent {
    pub kind: EventKind,
    pub project: String,
    /// What it is about: `<repository>@<digest>`, `<repository>:<tag>`, ...
    pub subject: String,
    pub data: serde_json::Value,
}

/// The CloudEvent envelope (structured mode).
#[derive(Debug, Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    ty: &'static str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    data: &'a serde_json::Value,
}

/// The body of a delivery of `e`: a CloudEvent with `id`, sent by the
/// registry at `base_url` at `time`.
pub fn cloud_event(
    e: &ProjectEvent,
    id: &str,
    base_url: &str,
    time: std::time::SystemTime,
) -> Vec<u8> {
    let ce = CloudEvent {
        specversion: "1.0",
        id,
        source: format!("{}/{}", base_url.trim_end_matches('/'), e.project),
        ty: e.kind.cloud_event_type(),
        subject: &e.subject,
        time: humantime::format_rfc3339_seconds(time).to_string(),
        datacontenttype: "application/json",
        data: &e.data,
    };
    serde_json::to_vec(&ce).unwrap_or_default()
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_rfc_4231_hmac_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_push_becomes_a_cloud_event() {
        let e = ProjectEvent {
            kind: EventKind::Push,
            project: "shop".into(),
            subject: "shop/web@sha256:ab".into(),
            data: serde_json::json!({"repository": "shop/web"}),
        };
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let body = cloud_event(&e, "id-1", "https://r.example/", t);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "id-1");
        assert_eq!(v["source"], "https://r.example/shop");
        assert_eq!(v["type"], "io.berth.artifact.pushed");
        assert_eq!(v["subject"], "shop/web@sha256:ab");
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
        assert_eq!(v["data"]["repository"], "shop/web");
    }

    #[test]
    fn topics_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_topic(k.topic()), Some(k));
        }
        assert_eq!(EventKind::from_topic("nope"), None);
    }
}
