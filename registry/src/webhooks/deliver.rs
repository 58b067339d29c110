//! The delivery loop: takes the head of each endpoint's queue when it is
//! due, POSTs it (no redirects followed; private targets refused at every
//! connection unless allowed), and records the attempt. One delivery in
//! flight per endpoint keeps each endpoint's events in order; endpoints do
//! not wait for each other.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};

use super::event::{
    signature, CONTENT_TYPE as CE_CONTENT_TYPE, PREVIOUS_SIGNATURE_HEADER, SIGNATURE_HEADER,
};
use super::{previous_secret_place, secret_place, Webhooks};
use crate::meta::{now, Attempt, AttemptNext, QueuedEvent, Webhook};

/// Longest sleep between looks at the queues when nothing wakes the loop.
const IDLE: Duration = Duration::from_secs(1);

/// How often rotated-out secrets whose overlap is over are dropped.
const SECRET_SWEEP: Duration = Duration::from_secs(10);

pub(super) struct Deliverer {
    hooks: Arc<Webhooks>,
    http: reqwest::Client,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

/// Wait after `attempts` failed attempts: `initial * 2^(attempts-1)`, at most `max`.
pub(super) fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
    initial.saturating_mul(factor).min(max)
}

impl Deliverer {
    pub(super) fn new(hooks: Arc<Webhooks>) -> Result<Self, String> {
        let s = &hooks.settings;
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(s.timeout)
            .connect_timeout(s.timeout);
        if !s.allow_private_targets {
            b = b.dns_resolver(crate::net_policy::public_only_resolver(
                crate::net_policy::WEBHOOKS_SETTING,
            ));
        }
        let http = b.build().map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Deliverer {
            hooks,
            http,
            in_flight: Arc::default(),
        })
    }

    pub(super) async fn run(self, stop: tokio_util::sync::CancellationToken) {
        let this = Arc::new(self);
        let mut swept: Option<std::time::Instant> = None;
        loop {
            // Replicas on one database: one of them delivers; the others
            // check now and then whether it is still there.
            if let Some(duties) = this.hooks.duties.get() {
                if !duties.hold(crate::duties::Duty::WebhookDelivery).await {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(IDLE * 5) => continue,
                    }
                }
            }
            if swept.is_none_or(|t| t.elapsed() >= SECRET_SWEEP) {
                swept = Some(std::time::Instant::now());
                if let Err(e) = this.hooks.drop_expired_secrets().await {
                    tracing::error!(error = %e, "cannot drop expired webhook secrets");
                }
            }
            let wait = match this.hooks.meta.outbox_heads().await {
                Ok(heads) => this.start_due(heads),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the webhook queues");
                    IDLE
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = this.hooks.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts a delivery for each due head whose endpoint has none in
    /// flight; how long until the next head falls due (at most `IDLE`).
    fn start_due(self: &Arc<Self>, heads: Vec<QueuedEvent>) -> Duration {
        let t = now();
        let mut wait = IDLE;
        for head in heads {
            if head.next_attempt_at > t {
                wait = wait.min(Duration::from_secs(head.next_attempt_at - t));
                continue;
            }
            {
                let mut busy = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if !busy.insert(head.webhook.clone()) {
                    continue;
                }
            }
            let this = self.clone();
            tokio::spawn(async move {
                let id = head.webhook.clone();
                this.deliver(head).await;
                this.in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                this.hooks.wake.notify_one();
            });
        }
        wait
    }

    async fn deliver(&self, head: QueuedEvent) {
        let hooks = &self.hooks;
        let w = match hooks.meta.webhook_get(&head.webhook).await {
            Ok(Some(w)) if w.enabled => w,
            Ok(_) => return, // deleted (its queue went with it) or disabled (held)
            Err(e) => {
                tracing::error!(error = %e, webhook = %head.webhook, "cannot read a webhook");
                return;
            }
        };
        let (code, error) = match self.post(&w, &head).await {
            Ok(code) if (200..300).contains(&code) => (Some(code), None),
            Ok(code) if (300..400).contains(&code) => (
                Some(code),
                Some(format!("answered {code}; redirects are not followed")),
            ),
            Ok(code) => (Some(code), Some(format!("answered {code}"))),
            Err(e) => (None, Some(e)),
        };
        let attempts = head.attempts + 1;
        let next = if error.is_none() {
            hooks.metrics.webhook_deliveries.inc();
            AttemptNext::Done
        } else if attempts >= hooks.settings.max_attempts {
            hooks.metrics.webhook_delivery_failures.inc();
            AttemptNext::GiveUp
        } else {
            hooks.metrics.webhook_delivery_failures.inc();
            let wait = backoff(
                hooks.settings.retry_initial,
                hooks.settings.retry_max,
                attempts,
            );
            AttemptNext::RetryAt(now() + wait.as_secs().max(1))
        };
        if let Some(e) = &error {
            tracing::warn!(webhook = %w.id, project = %w.project, seq = head.seq, attempts,
                error = %e, "webhook delivery failed");
        }
        let attempt = Attempt {
            at: now(),
            response_code: code,
            error,
            next,
        };
        if let Err(e) = hooks.meta.outbox_attempt(&w.id, head.seq, &attempt).await {
            tracing::error!(error = %e, webhook = %w.id, "cannot record a webhook delivery");
        }
    }

    /// POSTs the event; the answer's status, or why there was none.
    async fn post(&self, w: &Webhook, head: &QueuedEvent) -> Result<u16, String> {
        let s = &self.hooks.settings;
        // Names are checked by the client's resolver; literal addresses here.
        let url = crate::net_policy::check_outbound_url(&w.url, s.allow_private_targets).await?;
        let sealer = &self.hooks.sealer;
        let secret = sealer
            .open(&secret_place(&w.id), &w.secret)
            .map_err(|e| format!("cannot open the endpoint's secret: {e}"))?;
        let mut req = self
            .http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static(CE_CONTENT_TYPE))
            .header(
                USER_AGENT,
                concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header(SIGNATURE_HEADER, signature(&secret, &head.body));
        // During a rotation's overlap: a second signature, by the old secret.
        if let Some(p) = w.previous.as_ref().filter(|p| p.until > now()) {
            match sealer.open(&previous_secret_place(&w.id), &p.secret) {
                Ok(old) => req = req.header(PREVIOUS_SIGNATURE_HEADER, signature(&old, &head.body)),
                Err(e) => tracing::error!(webhook = %w.id, error = %e,
                    "cannot open the endpoint's previous secret; signing with the current one only"),
            }
        }
        let res = req
            .header("x-berth-webhook-id", w.id.as_str())
            .header("x-berth-delivery", head.seq.to_string())
            .body(head.body.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(res.status().as_u16())
    }
}

/// A transport error with its causes (reqwest's own message is terse).
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let (i, m) = (Duration::from_secs(5), Duration::from_secs(60));
        let waits: Vec<u64> = (1..=6).map(|a| backoff(i, m, a).as_secs()).collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff(i, m, 200), m);
    }
}
