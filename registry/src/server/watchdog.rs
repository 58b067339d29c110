//! Per-connection timeouts: how long a client may take to send a request head,
//! and how long a connection may sit idle between requests.
//!
//! One `ConnClock` is shared by three parties of a connection: the socket
//! wrapper [`Watched`], which reports that bytes arrived; the service, which
//! reports a request's start and, through [`InFlight`] (dropped with the
//! response body), its end; and [`ConnClock::expired`], which the connection's
//! task races against hyper. The clock only runs while no request is in
//! flight, so a response that is still streaming (a slow blob download, a long
//! poll) is never cut here. Request bodies have their own limit (`body_rate`).
//!
//! Phases: from accept until the first request head is complete (TLS handshake
//! and HTTP/2 preface included), `header_timeout`; after a response, `idle_timeout`
//! until the next byte arrives, then `header_timeout` again for that request's
//! head. On HTTP/2 the bytes between requests are mostly control frames
//! (settings, pings, window updates), so there only `idle_timeout` applies
//! between requests.
//!
//! Cost per request: a few uncontended lock operations and no wake-ups. The
//! watcher never sleeps longer than the shorter timeout, so a deadline set
//! while it sleeps is never earlier than its next look and needs no signal.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What a connection was doing when its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expired {
    /// Connecting, or sending a request head.
    Head,
    /// Between requests.
    Idle,
}

#[derive(Debug)]
struct State {
    phase: Expired,
    in_flight: u32,
    /// When the current phase runs out; `None`: it never does.
    deadline: Option<Instant>,
    multiplexed: bool,
}

pub(super) struct ConnClock {
    header: Option<Duration>,
    idle: Option<Duration>,
    /// Set while idle on HTTP/1, so that a read costs one atomic load.
    idle_hint: AtomicBool,
    state: Mutex<State>,
}

impl ConnClock {
    pub(super) fn new(header: Option<Duration>, idle: Option<Duration>) -> Arc<Self> {
        Arc::new(ConnClock {
            header,
            idle,
            idle_hint: AtomicBool::new(false),
            state: Mutex::new(State {
                phase: Expired::Head,
                in_flight: 0,
                deadline: header.map(|h| Instant::now() + h),
                multiplexed: false,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: on an idle HTTP/1 connection, a request head has begun.
    fn bytes_arrived(&self) {
        if !self.idle_hint.load(Ordering::Relaxed) {
            return;
        }
        self.idle_hint.store(false, Ordering::Relaxed);
        let mut s = self.state();
        if s.phase == Expired::Idle && s.in_flight == 0 && !s.multiplexed {
            s.phase = Expired::Head;
            s.deadline = self.header.map(|h| Instant::now() + h);
        }
    }

    /// A request head is complete and the service is called.
    pub(super) fn request_started(self: &Arc<Self>, version: http::Version) -> InFlight {
        self.idle_hint.store(false, Ordering::Relaxed);
        let mut s = self.state();
        s.in_flight += 1;
        s.deadline = None;
        if version == http::Version::HTTP_2 {
            s.multiplexed = true;
        }
        InFlight(self.clone())
    }

    fn request_done(&self) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight > 0 {
            return;
        }
        s.phase = Expired::Idle;
        s.deadline = self.idle.map(|i| Instant::now() + i);
        if !s.multiplexed {
            self.idle_hint.store(true, Ordering::Relaxed);
        }
    }

    /// Starts the current phase over, as if it had just begun.
    pub(super) fn restart(&self) {
        let mut s = self.state();
        let limit = match s.phase {
            Expired::Head => self.header,
            Expired::Idle => self.idle,
        };
        s.deadline = limit.map(|l| Instant::now() + l);
    }

    /// Resolves when the current phase runs out with no request in flight.
    pub(super) async fn expired(&self) -> Expired {
        // Deadlines move only to now + a timeout, so looking at least this
        // often catches each one on time.
        let Some(look) = [self.header, self.idle].into_iter().flatten().min() else {
            return std::future::pending().await;
        };
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            let wake = {
                let s = self.state();
                match (s.in_flight, s.deadline) {
                    (0, Some(d)) if now >= d => return s.phase,
                    (0, Some(d)) => d.min(now + look),
                    _ => now + look,
                }
            };
            sleep.as_mut().reset(wake);
            sleep.as_mut().await;
        }
    }
}

/// A request in flight on its connection: the clock waits until this is
/// dropped, which happens with the response body once it is sent (or when the
/// connection dies).
pub(super) struct InFlight(Arc<ConnClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// A response body that keeps its request counted as in flight.
pub(super) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub(super) fn new(body: B, in_flight: InFlight) -> Self {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A socket that tells its connection's clock when bytes arrive.
pub(super) struct Watched<T> {
    io: T,
    clock: Arc<ConnClock>,
}

impl<T> Watched<T> {
    pub(super) fn new(io: T, clock: Arc<ConnClock>) -> Self {
        Watched { io, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_expires_in_the_head_phase() {
        let clock = ConnClock::new(ms(50), ms(10_000));
        assert_eq!(clock.expired().await, Expired::Head);
    }

    #[tokio::test]
    async fn nothing_expires_while_a_request_is_in_flight() {
        let clock = ConnClock::new(ms(20), ms(20));
        let req = clock.request_started(http::Version::HTTP_11);
        let waited = tokio::time::timeout(Duration::from_millis(300), clock.expired()).await;
        assert!(waited.is_err(), "expired with a request in flight");
        drop(req);
        assert_eq!(clock.expired().await, Expired::Idle);
    }

    #[tokio::test]
    async fn a_byte_after_idling_starts_the_head_clock() {
        let clock = ConnClock::new(ms(30), ms(60_000));
        drop(clock.request_started(http::Version::HTTP_11));
        clock.bytes_arrived();
        assert_eq!(clock.expired().await, Expired::Head);
    }

    #[tokio::test]
    async fn http2_control_frames_do_not_end_an_idle_spell() {
        let clock = ConnClock::new(ms(60_000), ms(30));
        drop(clock.request_started(http::Version::HTTP_2));
        clock.bytes_arrived();
        assert_eq!(clock.expired().await, Expired::Idle);
    }

    #[tokio::test]
    async fn without_timeouts_nothing_expires() {
        let clock = ConnClock::new(None, None);
        let waited = tokio::time::timeout(Duration::from_millis(100), clock.expired()).await;
        assert!(waited.is_err());
    }
}
