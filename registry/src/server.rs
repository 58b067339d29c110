//! Serving a router over TCP or TLS, with connection limits and graceful shutdown.
//!
//! Each connection is served by hyper (HTTP/1.1 and HTTP/2), under the limits
//! in `limits` (caps at accept), `watchdog` (header and idle timeouts) and
//! `body_rate` (a minimum request-body rate). `berth serve` and `berth edge`
//! both serve through here. On shutdown the listener closes at once, idle
//! connections are closed, and requests in flight get `grace` to finish; a
//! blob upload cut short by the deadline is simply not acknowledged (its
//! ingest stays at the last synced offset).

mod body_rate;
mod limits;
mod throttle;
mod watchdog;

pub use limits::{raise_open_file_limit, ConnectionPolicy, Connections};

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use limits::{refusal_response, AcceptBackoff, Permit, Refusal};
use watchdog::{ConnClock, Expired, Tracked, Watched};

/// What a listener answers requests with: a router, or a front that
/// answers some paths itself before one (`app::Front`).
pub trait App: Clone + Send + Sync + 'static {
    fn answer(
        &self,
        req: axum::extract::Request,
    ) -> impl Future<Output = axum::response::Response> + Send + 'static;
}

impl App for Router {
    fn answer(
        &self,
        req: axum::extract::Request,
    ) -> impl Future<Output = axum::response::Response> + Send + 'static {
        let call = self.clone().oneshot(req);
        async move {
            match call.await {
                Ok(res) => res,
                Err(never) => match never {},
            }
        }
    }
}

/// A TLS handshake gets at most this long, whatever `header_timeout` says.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

/// Loads a rustls server config from PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{} holds no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves `app` on `listener` under `conns`' limits until `shutdown`
/// resolves, then drains for at most `grace`.
pub async fn serve<A: App>(
    listener: TcpListener,
    app: A,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    conns: Arc<Connections>,
) {
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            res = listener.accept() => res,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff.succeeded();
                x
            }
            Err(e) => {
                let pause = conns.accept_failed(&e, &mut backoff);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = &mut shutdown => break,
                }
            }
        };
        let permit = match conns.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                refuse(stream, why, tls.is_some());
                conns.refused(why, peer);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            peer,
            conns: conns.clone(),
            builder: builder.clone(),
            stop: stop.clone(),
        };
        tracker.spawn(conn.run(stream, tls.clone(), permit));
    }
    drop(listener);
    tracing::info!(
        "shutting down: waiting up to {:?} for requests in flight",
        grace
    );
    stop.cancel();
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// Tells a refused plaintext client why (best effort, without waiting) and
/// closes. A TLS client just sees the connection close.
fn refuse(stream: TcpStream, why: Refusal, tls: bool) {
    if !tls {
        // Read what the client already sent, so the close is a FIN and not a
        // reset that could discard the answer before the client reads it.
        let mut sink = [0u8; 4096];
        let _ = stream.try_read(&mut sink);
        let _ = stream.try_write(&refusal_response(why));
    }
}

/// One accepted connection and what serving it needs.
struct Connection<A> {
    app: A,
    peer: SocketAddr,
    conns: Arc<Connections>,
    builder: Arc<Builder<TokioExecutor>>,
    /// Cancelled when the server shuts down.
    stop: CancellationToken,
}

impl<A: App> Connection<A> {
    /// Serves the connection until it ends, its clock runs out or the server
    /// stops; `permit` holds its place under the caps until then.
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>, permit: Permit) {
        let _permit = permit;
        let policy = self.conns.policy();
        let clock = ConnClock::new(policy.header_timeout, policy.idle_timeout);
        let io = Watched::new(stream, clock.clone());
        let Some(acceptor) = tls else {
            return self.serve(io, clock).await;
        };
        // The handshake is part of the head: header_timeout covers it too.
        let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io));
        let tls = tokio::select! {
            res = handshake => match res {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            },
            what = clock.expired() => return self.conns.expired(what, self.peer),
            _ = self.stop.cancelled() => return,
        };
        self.serve(tls, clock).await
    }

    /// Runs hyper on `io`. A connection whose request head is late is dropped;
    /// one that idled out, or that is open when the server stops, is shut down
    /// gracefully (an HTTP/2 client gets GOAWAY and can retry elsewhere), and
    /// dropped if it idles out once more before it has closed.
    async fn serve<I>(self, io: I, clock: Arc<ConnClock>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (peer, conns, stop) = (self.peer, self.conns.clone(), self.stop.clone());
        let svc = PerRequest {
            app: self.app,
            peer,
            clock: clock.clone(),
            conns: self.conns,
        };
        let builder = self.builder;
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                what = clock.expired() => {
                    if !closing {
                        conns.expired(what, peer);
                    }
                    if closing || what == Expired::Head {
                        return;
                    }
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    clock.restart();
                }
            }
        }
    }
}

/// The per-request service of one connection: counts the request in flight
/// until its response body is sent, puts request bodies under the minimum
/// rate, and tells the router the client's address.
#[derive(Clone)]
struct PerRequest<A> {
    app: A,
    peer: SocketAddr,
    clock: Arc<ConnClock>,
    conns: Arc<Connections>,
}

type Answer = Result<http::Response<Tracked<axum::body::Body>>, Infallible>;

impl<A: App> hyper::service::Service<http::Request<hyper::body::Incoming>> for PerRequest<A> {
    type Response = http::Response<Tracked<axum::body::Body>>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let in_flight = self.clock.request_started(req.version());
        let policy = self.conns.policy();
        let (rate, window) = (policy.min_body_rate, policy.body_rate_window);
        let mut req = req.map(|body| {
            if rate == 0 || http_body::Body::is_end_stream(&body) {
                return axum::body::Body::new(body);
            }
            let (conns, peer) = (self.conns.clone(), self.peer);
            let on_cut = Box::new(move || conns.body_cut(peer));
            axum::body::Body::new(body_rate::MinRate::new(body, rate, window, on_cut))
        });
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let call = self.app.answer(req);
        Box::pin(async move {
            let res = call.await;
            Ok(res.map(|body| Tracked::new(body, in_flight)))
        })
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::metrics::Metrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn policy(tick: Duration) -> ConnectionPolicy {
        ConnectionPolicy {
            header_timeout: Some(tick),
            idle_timeout: Some(tick),
            max_connections: 16,
            max_connections_per_ip: 16,
            min_body_rate: 100,
            body_rate_window: Duration::from_secs(10),
        }
    }

    async fn start(app: Router, policy: ConnectionPolicy) -> SocketAddr {
        let conns = Connections::new(policy, &Metrics::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let grace = Duration::from_secs(1);
        tokio::spawn(serve(
            listener,
            app,
            None,
            std::future::pending(),
            grace,
            conns,
        ));
        addr
    }

    /// HTTP/2 (as containerd speaks over TLS): requests with and without
    /// bodies on one connection, which is closed once it idles.
    #[tokio::test]
    async fn http2_requests_are_served_and_an_idle_connection_closed() {
        use http_body_util::{BodyExt, Full};
        let app = Router::new().route(
            "/echo",
            axum::routing::post(|body: bytes::Bytes| async move { body }),
        );
        let addr = start(app, policy(Duration::from_millis(300))).await;
        let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        let conn = tokio::spawn(conn);
        for i in 0..3u8 {
            let req = http::Request::post(format!("http://{addr}/echo"))
                .body(Full::new(bytes::Bytes::from(vec![i; 1000])))
                .expect("request");
            let res = send.send_request(req).await.expect("answer");
            assert_eq!(res.status(), 200);
            let body = res.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(body, vec![i; 1000]);
        }
        tokio::time::timeout(Duration::from_secs(60), conn)
            .await
            .expect("the server closed the idle HTTP/2 connection")
            .expect("connection task")
            .expect("closed cleanly");
    }

    /// A long poll that answers after several timeouts, then streams
    /// heartbeats further apart than either timeout: never cut.
    #[tokio::test]
    async fn a_response_slower_than_the_timeouts_is_not_cut() {
        let tick = Duration::from_millis(200);
        let app = Router::new().route(
            "/poll",
            axum::routing::get(move || async move {
                tokio::time::sleep(tick * 4).await;
                let beats = futures::stream::unfold(0, move |i| async move {
                    if i == 4 {
                        return None;
                    }
                    tokio::time::sleep(tick * 2).await;
                    Some((Ok::<_, Infallible>(bytes::Bytes::from("beat\n")), i + 1))
                });
                axum::body::Body::from_stream(beats)
            }),
        );
        let addr = start(app, policy(tick)).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /poll HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
            .await
            .expect("answered")
            .expect("read");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert_eq!(text.matches("beat").count(), 4, "{text}");
    }
}
