//! The request body: a stream for the service layer, and shared with `dispatch`, which drains what a handler left unread.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use futures::TryStreamExt;
use http_body_util::BodyExt;

use super::request::Ctx;
use crate::service::BodyStream;

/// After an answer that left the request body unread (a refused chunk, a
/// manifest over the limit, a failed login), at most this much of it is read
/// and discarded, so the client can finish sending and read the answer.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn body_stream(body: Body) -> BodyStream {
    Box::pin(TryStreamExt::map_err(
        body.into_data_stream(),
        std::io::Error::other,
    ))
}

/// The request body, shared between the handler and `dispatch`.
///
/// A server that answers before reading the body (a 416 for an out-of-order
/// chunk, a 413, a 401) and then closes the connection makes the client's
/// send fail with a reset or broken pipe, often before it has read the
/// answer: the client never sees the 416's `Range` and cannot resume. So
/// whatever the handler leaves unread is drained (bounded) before answering.
#[derive(Clone)]
pub(super) struct SharedBody(Arc<Mutex<SharedState>>);

struct SharedState {
    body: Body,
    /// The handler asked for the body (and so a `100 Continue` went out).
    polled: bool,
    done: bool,
}

impl SharedBody {
    pub(super) fn new(body: Body) -> Self {
        SharedBody(Arc::new(Mutex::new(SharedState {
            body,
            polled: false,
            done: false,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and discards what is left of the body, up to `DRAIN_LIMIT`.
    pub(super) async fn drain(&self, ctx: &Ctx) {
        {
            let s = self.state();
            if s.done || http_body::Body::is_end_stream(&s.body) {
                return;
            }
            // A client waiting for `100 Continue` that never came has sent nothing.
            let expects_continue = ctx
                .header(header::EXPECT)
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
            if expects_continue && !s.polled {
                return;
            }
        }
        let mut body = self.clone();
        let mut left = DRAIN_LIMIT;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while left > 0 {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let n = frame.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                        left = left.saturating_sub(n);
                    }
                    _ => break,
                }
            }
        })
        .await;
    }
}

impl http_body::Body for SharedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut s = self.state();
        s.polled = true;
        let res = Pin::new(&mut s.body).poll_frame(cx);
        if matches!(res, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            s.done = true;
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        let s = self.state();
        s.done || http_body::Body::is_end_stream(&s.body)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.state().body)
    }
}
