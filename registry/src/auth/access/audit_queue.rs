//! Recording audited actions: refusals through the refusal budget, and one writer task that appends the events in batches, never dropping one.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::RegistryAccess;
use crate::auth::accounts::{Accounts, AuditEvent};
use crate::auth::audit::Outcome;
use crate::meta::now;

/// Audit events on their way to the store. One task writes them, in order,
/// each time with everything that queued while the last write ran: one
/// append (one durable commit on redb) for a burst such as a publish to a
/// fleet's thousand nodes, not one each, and never dropped.
#[derive(Default)]
pub(super) struct AuditQueue {
    tx: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<AuditEvent>>,
}

/// Events written in one append at most.
const AUDIT_BATCH: usize = 256;

impl AuditQueue {
    /// Queues `events` for the writer (started on first use); `Err` gives
    /// them back when it cannot take them (its runtime is gone).
    fn push(
        &self,
        accounts: &Arc<Accounts>,
        events: Vec<AuditEvent>,
    ) -> Result<(), Vec<AuditEvent>> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(write_audit_batches(accounts.clone(), rx));
            tx
        });
        let mut events = events.into_iter();
        while let Some(e) = events.next() {
            if let Err(back) = tx.send(e) {
                return Err(std::iter::once(back.0).chain(events).collect());
            }
        }
        Ok(())
    }
}

/// The audit writer: appends what has queued, in batches, until every
/// sender is gone. A batch that fails is written again one by one, so one
/// event the store refuses does not take the others with it.
async fn write_audit_batches(
    accounts: Arc<Accounts>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<AuditEvent>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, AUDIT_BATCH).await > 0 {
        if accounts.audit_batch(&batch).await.is_err() {
            for e in batch.drain(..) {
                if let Err(err) = accounts.audit(e).await {
                    tracing::error!(error = %err, "cannot write audit event");
                }
            }
        }
        batch.clear();
    }
}

impl RegistryAccess {
    /// Records an audited action. Refused ones go through the refusal budget
    /// (`audit` module): a flood of them is counted, not recorded one by one.
    pub fn audit(
        &self,
        actor: &str,
        peer: Option<IpAddr>,
        action: &str,
        project: Option<&str>,
        target: &str,
        outcome: Outcome<'_>,
    ) {
        let mut events = Vec::new();
        if let Outcome::Refused(_) = outcome {
            let admission = self.refusals.admit(peer, Instant::now());
            for (addr, n) in admission.suppressed {
                events.push(AuditEvent {
                    id: 0,
                    time: now(),
                    actor: "-".into(),
                    client: addr.map(|a| a.to_string()),
                    action: "refused.suppressed".into(),
                    project: None,
                    target: String::new(),
                    outcome: "refused".into(),
                    detail: Some(format!(
                        "{n} more refused calls from {} within a minute, not recorded one by one",
                        addr.map_or_else(|| "other addresses".to_string(), |a| a.to_string())
                    )),
                });
            }
            if !admission.record {
                self.write_audit(events);
                return;
            }
        }
        events.push(AuditEvent {
            id: 0,
            time: now(),
            actor: actor.to_string(),
            client: peer.map(|p| p.to_string()),
            action: action.to_string(),
            project: project.map(str::to_string),
            target: target.to_string(),
            outcome: outcome.word().to_string(),
            detail: outcome.detail().map(str::to_string),
        });
        self.write_audit(events);
    }

    fn write_audit(&self, events: Vec<AuditEvent>) {
        if events.is_empty() {
            return;
        }
        // Audit writes are durable transactions; keep them off the request's critical path
        // but never drop them.
        let Err(events) = self.audit_queue.push(&self.accounts, events) else {
            return;
        };
        let accounts = self.accounts.clone();
        tokio::spawn(async move {
            for e in events {
                if let Err(err) = accounts.audit(e).await {
                    tracing::error!(error = %err, "cannot write audit event");
                }
            }
        });
    }
}
