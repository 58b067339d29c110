//! Publication events: the controller's recorded changes forwarded to the
//! registry's webhook outbox, and the webhook event each becomes.

use std::sync::Arc;

use berth_controller::{PublicationChange, PublicationEvents};

/// Recorded publication changes read and queued at a time.
const FORWARD_BATCH: usize = 64;

/// How often the forwarder looks at the controller's outbox without being
/// woken (and waits after a failed queue write).
const FORWARD_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Passes the publication changes the controller's store recorded (in the
/// transaction that made each) on to the webhook outbox, oldest first, and
/// takes them off the store's outbox once queued: a crash in between queues
/// them again on the next start, under the same CloudEvent id (at least
/// once; receivers drop an id they have seen). Without webhooks the changes
/// are taken off as they come.
pub struct PublicationForwarder {
    wake: Arc<tokio::sync::Notify>,
}

impl PublicationForwarder {
    /// Starts the forwarding task; it ends when `stop` is cancelled.
    pub fn spawn(
        store: Arc<dyn berth_controller::ControllerStore>,
        webhooks: Option<Arc<berth_registry::webhooks::Webhooks>>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        let wake = Arc::new(tokio::sync::Notify::new());
        let woken = wake.clone();
        tokio::spawn(async move {
            loop {
                let more = match forward(store.as_ref(), webhooks.as_deref()).await {
                    Ok(more) => more,
                    Err(e) => {
                        tracing::warn!(error = %e, "publication events wait to be queued");
                        false
                    }
                };
                if more {
                    continue;
                }
                tokio::select! {
                    _ = woken.notified() => {}
                    _ = tokio::time::sleep(FORWARD_POLL) => {}
                    _ = stop.cancelled() => break,
                }
            }
        });
        PublicationForwarder { wake }
    }
}

impl PublicationEvents for PublicationForwarder {
    fn recorded(&self) {
        // A permit is kept when the task is busy: no wake-up is lost.
        self.wake.notify_one();
    }
}

/// The controller's publication writes told to the forwarder and, as a
/// counter every watcher sees move, to the console's live publish views
/// (which read the publications again: progress is a write too, not a change).
pub struct PublicationSignals {
    pub forwarder: PublicationForwarder,
    pub written: tokio::sync::watch::Sender<u64>,
}

impl PublicationEvents for PublicationSignals {
    fn recorded(&self) {
        self.forwarder.recorded();
        self.written.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Queues one batch of recorded changes and takes off those queued; whether
/// a full batch went (more may wait).
async fn forward(
    store: &dyn berth_controller::ControllerStore,
    webhooks: Option<&berth_registry::webhooks::Webhooks>,
) -> Result<bool, String> {
    let batch = store
        .publication_events(FORWARD_BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let mut queued = None;
    let mut failed = None;
    for r in &batch {
        if let Some(hooks) = webhooks {
            let event = publication_event(r.change.clone());
            if let Err(e) = hooks.emit_forwarded(event, &r.id).await {
                failed = Some(e.to_string());
                break;
            }
        }
        queued = Some(r.seq);
    }
    if let Some(seq) = queued {
        store
            .ack_publication_events(seq)
            .await
            .map_err(|e| e.to_string())?;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(batch.len() == FORWARD_BATCH),
    }
}

/// The webhook event of a publication change (`io.berth.publication.changed`),
/// for an app or a resource published to a node alike. Data: `project`,
/// `kind` (`app`, or the resource kind: `loadbalancers`, `eips`, `routes`,
/// `configmaps`, `secrets`, `volumes`), `name`, `node`, `state`,
/// `previous_state` (null for a publication just created) and `detail`; an
/// app's also `app` (its name) and `version`. Subject: `<app>@<node>` for an
/// app, `<kind>/<name>@<node>` for a resource.
fn publication_event(c: PublicationChange) -> berth_registry::webhooks::ProjectEvent {
    let is_app = c.kind == berth_controller::APP_KIND;
    let subject = if is_app {
        format!("{}@{}", c.name, c.node)
    } else {
        format!("{}/{}@{}", c.kind, c.name, c.node)
    };
    let mut data = serde_json::json!({
        "project": c.project,
        "kind": c.kind,
        "name": c.name,
        "node": c.node,
        "state": c.state,
        "previous_state": c.previous_state,
        "detail": c.detail,
    });
    if is_app {
        data["app"] = serde_json::json!(c.name);
        data["version"] = serde_json::json!(c.version);
    }
    berth_registry::webhooks::ProjectEvent {
        kind: berth_registry::webhooks::EventKind::Publication,
        subject,
        data,
        project: c.project,
    }
}
