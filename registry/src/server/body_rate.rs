//! The minimum rate of a request body (`server.min_body_rate` over
//! `server.body_rate_window`).
//!
//! [`MinRate`] wraps every request body that has one, so blob uploads (PATCH,
//! PUT, monolithic POST), manifests and token requests all get it. Only the
//! time the server spends waiting for the client counts: while the handler is
//! busy elsewhere (writing to disk, say) the body is not polled and the clock
//! does not run, so the server's own slowness never cuts a client. The client
//! starts with one window of credit; each byte earns `1 / rate` seconds more,
//! up to one window; waiting spends it. A transfer that keeps up with the
//! rate on average never runs out; one that stalls for a whole window, or
//! trickles slower than the rate, does. Responses are never wrapped.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The credit a body has left: how much longer the server will wait for it.
#[derive(Clone, Copy, Debug)]
struct RateBudget {
    rate: u64,
    window: Duration,
    credit: Duration,
}

impl RateBudget {
    fn new(rate: u64, window: Duration) -> Self {
        RateBudget {
            rate: rate.max(1),
            window,
            credit: window,
        }
    }

    fn waited(&mut self, d: Duration) {
        self.credit = self.credit.saturating_sub(d);
    }

    fn received(&mut self, bytes: u64) {
        let earned = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        self.credit = (self.credit + earned).min(self.window);
    }
}

/// The error a body cut for slowness ends with.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body arrived slower than {rate} bytes/s over {window:?} (server.min_body_rate)"
)]
pub struct BodyTooSlow {
    pub rate: u64,
    pub window: Duration,
}

/// A request body that fails with [`BodyTooSlow`] when its client falls behind.
pub struct MinRate<B> {
    inner: B,
    budget: RateBudget,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    on_cut: Option<Box<dyn FnOnce() + Send>>,
    cut: bool,
}

impl<B> MinRate<B> {
    /// `on_cut` runs once, when the body is cut.
    pub fn new(inner: B, rate: u64, window: Duration, on_cut: Box<dyn FnOnce() + Send>) -> Self {
        MinRate {
            inner,
            budget: RateBudget::new(rate, window),
            waiting_since: None,
            timer: None,
            on_cut: Some(on_cut),
            cut: false,
        }
    }

    fn error(&self) -> BoxError {
        Box::new(BodyTooSlow {
            rate: self.budget.rate,
            window: self.budget.window,
        })
    }

    /// The client kept the server waiting: has it run out of credit?
    fn out_of_time(&mut self, cx: &mut Context<'_>) -> bool {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let deadline = since + self.budget.credit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl<B> Body for MinRate<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.cut {
            return Poll::Ready(Some(Err(this.error())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(since) = this.waiting_since.take() {
                    this.budget.waited(since.elapsed());
                }
                if let Some(data) = frame.data_ref() {
                    this.budget.received(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if !this.out_of_time(cx) {
                    return Poll::Pending;
                }
                this.cut = true;
                if let Some(report) = this.on_cut.take() {
                    report();
                }
                Poll::Ready(Some(Err(this.error())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.cut && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn credit_is_earned_by_bytes_and_spent_by_waiting() {
        let mut b = RateBudget::new(100, Duration::from_secs(10));
        assert_eq!(b.credit, Duration::from_secs(10), "one window to start");
        b.waited(Duration::from_secs(4));
        b.received(200);
        assert_eq!(b.credit, Duration::from_secs(8));
        b.received(1_000_000);
        assert_eq!(
            b.credit,
            Duration::from_secs(10),
            "never more than a window"
        );
        // Ten bytes a second at a minimum of 100: one second earned per ten spent.
        for _ in 0..10 {
            b.waited(Duration::from_secs(1));
            b.received(10);
        }
        assert_eq!(b.credit, Duration::from_secs(1));
        b.waited(Duration::from_secs(2));
        assert_eq!(b.credit, Duration::ZERO);
    }

    /// A body fed by hand through a channel.
    fn channel() -> (
        tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
        impl Body<Data = Bytes, Error = std::io::Error> + Unpin,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (
            tx,
            StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_and_reported_once() {
        let (tx, inner) = channel();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let mut body = MinRate::new(
            inner,
            1000,
            Duration::from_millis(100),
            Box::new(move || assert!(!flag.swap(true, Ordering::SeqCst))),
        );
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .expect("send");
        let first = body.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data"), "abc");
        let err = body.frame().await.expect("an error").expect_err("cut");
        assert!(err.downcast_ref::<BodyTooSlow>().is_some(), "{err}");
        assert!(cut.load(Ordering::SeqCst));
        assert!(body.frame().await.expect("still an error").is_err());
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_that_keeps_up_is_not_cut() {
        let (tx, inner) = channel();
        let mut body = MinRate::new(
            inner,
            100,
            Duration::from_millis(500),
            Box::new(|| panic!("cut a body that kept up")),
        );
        let feed = tokio::spawn(async move {
            // 100 bytes every 20 ms is 5000 bytes/s, for longer than the window.
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let chunk = Bytes::from(vec![7u8; 100]);
                if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
            }
        });
        let mut total = 0;
        while let Some(frame) = body.frame().await {
            total += frame
                .expect("not cut")
                .into_data()
                .map(|d| d.len())
                .unwrap_or(0);
        }
        assert_eq!(total, 6000);
        feed.await.expect("feeder");
    }
}
