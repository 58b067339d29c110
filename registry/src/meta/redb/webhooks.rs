//! Webhook endpoints, their outbox and their delivery log.
//!
//! A queue is the contiguous run of sequence numbers `[head, next)` of one
//! endpoint in `webhook_queue`: events are appended at `next` and leave from
//! the head (delivered, given up, or dropped when the queue is over its cap).

use ::redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{corrupt, RedbMeta, WEBHOOKS, WEBHOOK_LOG, WEBHOOK_QUEUE, WEBHOOK_SEQ};
use crate::meta::{
    now, Attempt, AttemptNext, Delivery, DeliveryStatus, NewDelivery, OutboxEvent, QueuedEvent,
    Result, Webhook,
};

/// A queue entry as stored.
#[derive(Serialize, Deserialize)]
struct Queued {
    body: Vec<u8>,
    attempts: u32,
    next_attempt_at: u64,
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(corrupt)
}

fn from_json<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(corrupt)
}

type LogTable<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

/// Rewrites log entry `seq` of `id` with `f`, if it is there.
fn update_log(
    log: &mut LogTable<'_>,
    id: &str,
    seq: u64,
    f: impl FnOnce(&mut Delivery),
) -> Result<()> {
    let found = log.get((id, seq))?.map(|v| v.value().to_vec());
    if let Some(bytes) = found {
        let mut d: Delivery = from_json(&bytes)?;
        f(&mut d);
        log.insert((id, seq), to_json(&d)?.as_slice())?;
    }
    Ok(())
}

impl RedbMeta {
    pub(super) fn webhook_put_now(&self, w: &Webhook) -> Result<()> {
        let tx = self.db().begin_write()?;
        tx.open_table(WEBHOOKS)?
            .insert(w.id.as_str(), to_json(w)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Rewrites endpoint `id` with `change` in one transaction, if it is
    /// there and `change` says it changed something.
    pub(super) fn webhook_change_now(
        &self,
        id: &str,
        change: impl FnOnce(&mut Webhook) -> bool,
    ) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let changed = {
            let mut t = tx.open_table(WEBHOOKS)?;
            let found = t.get(id)?.map(|v| v.value().to_vec());
            match found {
                Some(bytes) => {
                    let mut w: Webhook = from_json(&bytes)?;
                    let changed = change(&mut w);
                    if changed {
                        t.insert(id, to_json(&w)?.as_slice())?;
                    }
                    changed
                }
                None => false,
            }
        };
        tx.commit()?;
        Ok(changed)
    }

    pub(super) fn webhook_get_now(&self, id: &str) -> Result<Option<Webhook>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(WEBHOOKS)?;
        let v = t.get(id)?;
        v.map(|v| from_json(v.value())).transpose()
    }

    pub(super) fn webhooks_now(&self, project: Option<&str>) -> Result<Vec<Webhook>> {
        let tx = self.db().begin_read()?;
        let mut out = Vec::new();
        for r in tx.open_table(WEBHOOKS)?.iter()? {
            let w: Webhook = from_json(r?.1.value())?;
            if project.is_none_or(|p| p == w.project) {
                out.push(w);
            }
        }
        Ok(out)
    }

    pub(super) fn webhook_delete_now(&self, id: &str) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let existed = tx.open_table(WEBHOOKS)?.remove(id)?.is_some();
        tx.open_table(WEBHOOK_QUEUE)?
            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
        tx.open_table(WEBHOOK_LOG)?
            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
        tx.open_table(WEBHOOK_SEQ)?.remove(id)?;
        tx.commit()?;
        Ok(existed)
    }

    pub(super) fn outbox_push_now(
        &self,
        events: &[NewDelivery],
        cap: u64,
        log_keep: u64,
    ) -> Result<u64> {
        let tx = self.db().begin_write()?;
        let mut dropped = 0;
        let t = now();
        for e in events {
            dropped += push_one(&tx, e, cap.max(1), log_keep, t)?;
        }
        tx.commit()?;
        Ok(dropped)
    }

    pub(super) fn outbox_heads_now(&self) -> Result<Vec<QueuedEvent>> {
        let tx = self.db().begin_read()?;
        let hooks = tx.open_table(WEBHOOKS)?;
        let queue = tx.open_table(WEBHOOK_QUEUE)?;
        let mut out = Vec::new();
        for r in hooks.iter()? {
            let (k, _) = r?;
            let id = k.value();
            let head = queue.range((id, 0)..=(id, u64::MAX))?.next().transpose()?;
            if let Some((k, v)) = head {
                let q: Queued = from_json(v.value())?;
                out.push(QueuedEvent {
                    webhook: id.to_string(),
                    seq: k.value().1,
                    body: q.body,
                    attempts: q.attempts,
                    next_attempt_at: q.next_attempt_at,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn outbox_attempt_now(&self, id: &str, seq: u64, a: &Attempt) -> Result<bool> {
        let tx = self.db().begin_write()?;
        {
            let mut queue = tx.open_table(WEBHOOK_QUEUE)?;
            let head = queue
                .range((id, 0)..=(id, u64::MAX))?
                .next()
                .transpose()?
                .map(|(k, v)| (k.value().1, v.value().to_vec()));
            let stored = match head {
                Some((s, v)) if s == seq => from_json::<Queued>(&v)?,
                _ => return Ok(false),
            };
            let attempts = stored.attempts + 1;
            let status = match a.next {
                AttemptNext::Done => DeliveryStatus::Delivered,
                AttemptNext::GiveUp => DeliveryStatus::Failed,
                AttemptNext::RetryAt(_) => DeliveryStatus::Pending,
            };
            match a.next {
                AttemptNext::RetryAt(at) => {
                    let q = Queued {
                        body: stored.body,
                        attempts,
                        next_attempt_at: at,
                    };
                    queue.insert((id, seq), to_json(&q)?.as_slice())?;
                }
                AttemptNext::Done | AttemptNext::GiveUp => {
                    queue.remove((id, seq))?;
                }
            }
            let mut log = tx.open_table(WEBHOOK_LOG)?;
            update_log(&mut log, id, seq, |d| {
                d.status = status;
                d.attempts = attempts;
                d.response_code = a.response_code;
                d.error = a.error.clone();
                d.last_attempt_at = Some(a.at);
            })?;
        }
        tx.commit()?;
        Ok(true)
    }

    pub(super) fn webhook_deliveries_now(&self, id: &str, limit: usize) -> Result<Vec<Delivery>> {
        let tx = self.db().begin_read()?;
        let log = tx.open_table(WEBHOOK_LOG)?;
        let mut out = Vec::new();
        for r in log.range((id, 0)..=(id, u64::MAX))?.rev().take(limit) {
            out.push(from_json(r?.1.value())?);
        }
        Ok(out)
    }
}

/// Queues `e` for its project's endpoints that take it, inside `tx` (the
/// write it reports); how many older events the queues' caps dropped.
pub(super) fn queue_in(tx: &WriteTransaction, e: &OutboxEvent, t: u64) -> Result<u64> {
    let mut hooks = Vec::new();
    for r in tx.open_table(WEBHOOKS)?.iter()? {
        let w: Webhook = from_json(r?.1.value())?;
        if w.project == e.project {
            hooks.push(w);
        }
    }
    let mut dropped = 0;
    for d in e.deliveries(&hooks) {
        dropped += push_one(tx, &d, e.cap.max(1), e.log_keep, t)?;
    }
    Ok(dropped)
}

/// Appends one event to its endpoint's queue and log, then trims both. How
/// many events the queue dropped.
fn push_one(
    tx: &WriteTransaction,
    e: &NewDelivery,
    cap: u64,
    log_keep: u64,
    t: u64,
) -> Result<u64> {
    let id = e.webhook.as_str();
    if tx.open_table(WEBHOOKS)?.get(id)?.is_none() {
        return Ok(0);
    }
    let mut seqs = tx.open_table(WEBHOOK_SEQ)?;
    let seq = seqs.get(id)?.map(|v| v.value()).unwrap_or(0);
    seqs.insert(id, seq + 1)?;
    let mut queue = tx.open_table(WEBHOOK_QUEUE)?;
    let q = Queued {
        body: e.body.clone(),
        attempts: 0,
        next_attempt_at: 0,
    };
    queue.insert((id, seq), to_json(&q)?.as_slice())?;
    let mut log = tx.open_table(WEBHOOK_LOG)?;
    let d = Delivery {
        seq,
        event_id: e.event_id.clone(),
        event_type: e.event_type.clone(),
        subject: e.subject.clone(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        response_code: None,
        error: None,
        enqueued_at: t,
        last_attempt_at: None,
    };
    log.insert((id, seq), to_json(&d)?.as_slice())?;
    // The queue is [head, seq]; everything before seq + 1 - cap goes.
    let mut dropped = 0;
    if let Some(keep_from) = (seq + 1).checked_sub(cap) {
        let old: Vec<u64> = queue
            .range((id, 0)..(id, keep_from))?
            .map(|r| r.map(|(k, _)| k.value().1))
            .collect::<std::result::Result<_, _>>()?;
        for s in old {
            queue.remove((id, s))?;
            update_log(&mut log, id, s, |d| d.status = DeliveryStatus::Dropped)?;
            dropped += 1;
        }
    }
    if let Some(keep_from) = (seq + 1).checked_sub(cap.saturating_add(log_keep)) {
        log.retain_in((id, 0)..(id, keep_from), |_, _| false)?;
    }
    Ok(dropped)
}
