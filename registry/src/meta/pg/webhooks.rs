//! Webhook endpoints (`webhooks`), their outbox (`webhook_queue`) and their
//! delivery log (`webhook_log`) on PostgreSQL.
//!
//! An endpoint's queue is its rows in `webhook_queue` in seq order: events
//! are appended with the endpoint's `next_seq` and leave from the head
//! (delivered, given up, or dropped when the queue is over its cap).
//! Deleting an endpoint deletes its queue and log (foreign keys).

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::db::{
    begin_write, big, col, col_u64, col_u64_opt, commit, db_now, from_json, to_json, Cached, Ctx,
    PgMeta,
};
use crate::meta::{
    Attempt, AttemptNext, Delivery, DeliveryStatus, MetaError, NewDelivery, OutboxEvent,
    PreviousSecret, QueuedEvent, Result, SealedSecret, Webhook,
};

fn status_text(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Dropped => "dropped",
    }
}

fn status_of(s: &str) -> Result<DeliveryStatus> {
    Ok(match s {
        "pending" => DeliveryStatus::Pending,
        "delivered" => DeliveryStatus::Delivered,
        "failed" => DeliveryStatus::Failed,
        "dropped" => DeliveryStatus::Dropped,
        other => {
            return Err(MetaError::Corrupt(format!(
                "webhook_log.status {other:?} is not a delivery status"
            )))
        }
    })
}

fn u32_of(row: &Row, i: usize, what: &str) -> Result<u32> {
    let v = col_u64(row, i, what)?;
    u32::try_from(v).map_err(|_| MetaError::Corrupt(format!("{what} is too large ({v})")))
}

const WEBHOOK_COLUMNS: &str =
    "id, project, url, events, enabled, secret::text, created_at, previous::text";

fn webhook(r: &Row) -> Result<Webhook> {
    let secret: String = col(r, 5, "webhooks.secret")?;
    let previous: Option<String> = col(r, 7, "webhooks.previous")?;
    Ok(Webhook {
        id: col(r, 0, "webhooks.id")?,
        project: col(r, 1, "webhooks.project")?,
        url: col(r, 2, "webhooks.url")?,
        events: col(r, 3, "webhooks.events")?,
        enabled: col(r, 4, "webhooks.enabled")?,
        secret: from_json(&secret, "a webhook's sealed secret")?,
        created_at: col_u64(r, 6, "webhooks.created_at")?,
        previous: previous
            .map(|p| from_json(&p, "a webhook's previous secret"))
            .transpose()?,
    })
}

fn delivery(r: &Row) -> Result<Delivery> {
    let status: String = col(r, 4, "webhook_log.status")?;
    let code: Option<i32> = col(r, 6, "webhook_log.response_code")?;
    Ok(Delivery {
        seq: col_u64(r, 0, "webhook_log.seq")?,
        event_id: col(r, 1, "webhook_log.event_id")?,
        event_type: col(r, 2, "webhook_log.event_type")?,
        subject: col(r, 3, "webhook_log.subject")?,
        status: status_of(&status)?,
        attempts: u32_of(r, 5, "webhook_log.attempts")?,
        response_code: code.and_then(|c| u16::try_from(c).ok()),
        error: col(r, 7, "webhook_log.error")?,
        enqueued_at: col_u64(r, 8, "webhook_log.enqueued_at")?,
        last_attempt_at: col_u64_opt(r, 9, "webhook_log.last_attempt_at")?,
    })
}

impl PgMeta {
    pub(super) async fn webhook_put_q(&self, w: &Webhook) -> Result<()> {
        let what = "saving a webhook";
        let secret = to_json(&w.secret, "encoding a webhook's sealed secret")?;
        let previous = w
            .previous
            .as_ref()
            .map(|p| to_json(p, "encoding a webhook's previous secret"))
            .transpose()?;
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        tx.cexec(
            "INSERT INTO webhooks (id, project, url, events, enabled, secret, created_at, previous)
             VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8::text::jsonb)
             ON CONFLICT (id) DO UPDATE SET project = EXCLUDED.project, url = EXCLUDED.url,
               events = EXCLUDED.events, enabled = EXCLUDED.enabled, secret = EXCLUDED.secret,
               created_at = EXCLUDED.created_at, previous = EXCLUDED.previous",
            &[
                &w.id,
                &w.project,
                &w.url,
                &w.events,
                &w.enabled,
                &secret,
                &big(w.created_at),
                &previous,
            ],
        )
        .await
        .ctx(what)?;
        commit(tx, what).await
    }

    /// Sets the secrets of `id` if its secret is still `current`.
    pub(super) async fn webhook_rotate_q(
        &self,
        id: &str,
        current: &SealedSecret,
        secret: &SealedSecret,
        previous: Option<&PreviousSecret>,
    ) -> Result<bool> {
        let what = "rotating a webhook's secret";
        let current = to_json(current, what)?;
        let secret = to_json(secret, what)?;
        let previous = previous.map(|p| to_json(p, what)).transpose()?;
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let n = tx
            .cexec(
                "UPDATE webhooks SET secret = $3::text::jsonb, previous = $4::text::jsonb
                 WHERE id = $1 AND secret = $2::text::jsonb",
                &[&id, &current, &secret, &previous],
            )
            .await
            .ctx(what)?;
        commit(tx, what).await?;
        Ok(n == 1)
    }

    /// Drops the previous secret of `id` if its overlap ends at `until`.
    pub(super) async fn webhook_drop_previous_q(&self, id: &str, until: u64) -> Result<bool> {
        let what = "dropping a webhook's previous secret";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let n = tx
            .cexec(
                "UPDATE webhooks SET previous = NULL
                 WHERE id = $1 AND (previous ->> 'until')::bigint = $2",
                &[&id, &big(until)],
            )
            .await
            .ctx(what)?;
        commit(tx, what).await?;
        Ok(n == 1)
    }

    pub(super) async fn webhook_get_q(&self, id: &str) -> Result<Option<Webhook>> {
        let conn = self.conn().await?;
        let q = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
        let row = conn
            .cq_opt(q.as_str(), &[&id])
            .await
            .ctx("reading a webhook")?;
        row.as_ref().map(webhook).transpose()
    }

    pub(super) async fn webhooks_q(&self, project: Option<&str>) -> Result<Vec<Webhook>> {
        let conn = self.conn().await?;
        let q = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE $1::text IS NULL OR project = $1
             ORDER BY id"
        );
        conn.cq(q.as_str(), &[&project])
            .await
            .ctx("reading webhooks")?
            .iter()
            .map(webhook)
            .collect()
    }

    pub(super) async fn webhook_delete_q(&self, id: &str) -> Result<bool> {
        let what = "deleting a webhook";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let n = tx
            .cexec("DELETE FROM webhooks WHERE id = $1", &[&id])
            .await
            .ctx(what)?;
        commit(tx, what).await?;
        Ok(n > 0)
    }

    pub(super) async fn outbox_push_q(
        &self,
        events: &[NewDelivery],
        cap: u64,
        log_keep: u64,
    ) -> Result<u64> {
        let what = "queueing webhook events";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let t = db_now(&tx).await?;
        let mut dropped = 0;
        for e in events {
            dropped += push_one(&tx, e, cap.max(1), log_keep, t).await?;
        }
        commit(tx, what).await?;
        Ok(dropped)
    }

    pub(super) async fn outbox_heads_q(&self) -> Result<Vec<QueuedEvent>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT DISTINCT ON (webhook) webhook, seq, body, attempts, next_attempt_at
             FROM webhook_queue ORDER BY webhook, seq",
            &[],
        )
        .await
        .ctx("reading the webhook outbox")?
        .iter()
        .map(|r| {
            Ok(QueuedEvent {
                webhook: col(r, 0, "webhook_queue.webhook")?,
                seq: col_u64(r, 1, "webhook_queue.seq")?,
                body: col(r, 2, "webhook_queue.body")?,
                attempts: u32_of(r, 3, "webhook_queue.attempts")?,
                next_attempt_at: col_u64(r, 4, "webhook_queue.next_attempt_at")?,
            })
        })
        .collect()
    }

    pub(super) async fn outbox_attempt_q(&self, id: &str, seq: u64, a: &Attempt) -> Result<bool> {
        let what = "recording a webhook delivery attempt";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let head = tx
            .cq_opt(
                "SELECT seq, attempts FROM webhook_queue WHERE webhook = $1 ORDER BY seq LIMIT 1",
                &[&id],
            )
            .await
            .ctx(what)?;
        let attempts = match head {
            Some(r) if col_u64(&r, 0, "webhook_queue.seq")? == seq => {
                u32_of(&r, 1, "webhook_queue.attempts")?.saturating_add(1)
            }
            _ => return Ok(false),
        };
        let status = match a.next {
            AttemptNext::Done => DeliveryStatus::Delivered,
            AttemptNext::GiveUp => DeliveryStatus::Failed,
            AttemptNext::RetryAt(_) => DeliveryStatus::Pending,
        };
        match a.next {
            AttemptNext::RetryAt(at) => tx
                .cexec(
                    "UPDATE webhook_queue SET attempts = $3, next_attempt_at = $4
                     WHERE webhook = $1 AND seq = $2",
                    &[&id, &big(seq), &i64::from(attempts), &big(at)],
                )
                .await
                .ctx(what)?,
            AttemptNext::Done | AttemptNext::GiveUp => tx
                .cexec(
                    "DELETE FROM webhook_queue WHERE webhook = $1 AND seq = $2",
                    &[&id, &big(seq)],
                )
                .await
                .ctx(what)?,
        };
        tx.cexec(
            "UPDATE webhook_log SET status = $3, attempts = $4, response_code = $5, error = $6,
               last_attempt_at = $7
             WHERE webhook = $1 AND seq = $2",
            &[
                &id,
                &big(seq),
                &status_text(status),
                &i64::from(attempts),
                &a.response_code.map(i32::from),
                &a.error,
                &big(a.at),
            ],
        )
        .await
        .ctx(what)?;
        commit(tx, what).await?;
        Ok(true)
    }

    pub(super) async fn webhook_deliveries_q(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let conn = self.conn().await?;
        conn.cq(
            "SELECT seq, event_id, event_type, subject, status, attempts, response_code, error,
                    enqueued_at, last_attempt_at
             FROM webhook_log WHERE webhook = $1 ORDER BY seq DESC LIMIT $2",
            &[&id, &big(limit as u64)],
        )
        .await
        .ctx("reading a webhook's delivery log")?
        .iter()
        .map(delivery)
        .collect()
    }
}

/// Queues `e` for its project's endpoints that take it, inside `tx` (the
/// write it reports); how many older events the queues' caps dropped.
pub(super) async fn queue_in(tx: &Transaction<'_>, e: &OutboxEvent, t: u64) -> Result<u64> {
    let q = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE project = $1 ORDER BY id");
    let hooks = tx
        .cq(q.as_str(), &[&e.project])
        .await
        .ctx("reading the endpoints an event goes to")?
        .iter()
        .map(webhook)
        .collect::<Result<Vec<_>>>()?;
    let mut dropped = 0;
    for d in e.deliveries(&hooks) {
        dropped += push_one(tx, &d, e.cap.max(1), e.log_keep, t).await?;
    }
    Ok(dropped)
}

/// Appends one event to its endpoint's queue and log, then trims both. How
/// many events the queue dropped.
async fn push_one(
    tx: &Transaction<'_>,
    e: &NewDelivery,
    cap: u64,
    log_keep: u64,
    t: u64,
) -> Result<u64> {
    let what = "queueing a webhook event";
    let id = e.webhook.as_str();
    let Some(row) = tx
        .cq_opt(
            "UPDATE webhooks SET next_seq = next_seq + 1 WHERE id = $1 RETURNING next_seq - 1",
            &[&id],
        )
        .await
        .ctx(what)?
    else {
        return Ok(0);
    };
    let seq = col_u64(&row, 0, "webhooks.next_seq")?;
    tx.cexec(
        "INSERT INTO webhook_queue (webhook, seq, body, attempts, next_attempt_at)
         VALUES ($1, $2, $3, 0, 0)",
        &[&id, &big(seq), &e.body],
    )
    .await
    .ctx(what)?;
    tx.cexec(
        "INSERT INTO webhook_log (webhook, seq, event_id, event_type, subject, status, attempts,
                                  enqueued_at)
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        &[
            &id,
            &big(seq),
            &e.event_id,
            &e.event_type,
            &e.subject,
            &status_text(DeliveryStatus::Pending),
            &big(t),
        ],
    )
    .await
    .ctx(what)?;
    // The queue is [head, seq]; everything before seq + 1 - cap goes.
    let mut dropped = 0;
    if let Some(keep_from) = (seq + 1).checked_sub(cap) {
        let row = tx
            .cq_one(
                "WITH gone AS (DELETE FROM webhook_queue WHERE webhook = $1 AND seq < $2
                               RETURNING seq),
                      logged AS (UPDATE webhook_log SET status = $3
                                 WHERE webhook = $1 AND seq IN (SELECT seq FROM gone))
                 SELECT count(*) FROM gone",
                &[&id, &big(keep_from), &status_text(DeliveryStatus::Dropped)],
            )
            .await
            .ctx(what)?;
        dropped = col_u64(&row, 0, "dropped events")?;
    }
    if let Some(keep_from) = (seq + 1).checked_sub(cap.saturating_add(log_keep)) {
        tx.cexec(
            "DELETE FROM webhook_log WHERE webhook = $1 AND seq < $2",
            &[&id, &big(keep_from)],
        )
        .await
        .ctx(what)?;
    }
    Ok(dropped)
}
