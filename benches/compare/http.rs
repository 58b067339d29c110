//! A minimal HTTP/1.1 client over one keep-alive connection (hyper's
//! connection API, no pool, no redirects, no decompression): the cheapest
//! client we can build, so that the servers, not the client, set the pace.
//!
//! [`Conn`] reconnects by itself when the server closed the connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Body = Full<Bytes>;

/// A request to send: method, origin-form target (`/v2/...?...`), headers, body.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub target: String,
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub body: Bytes,
}

impl Req {
    pub fn new(method: Method, target: impl Into<String>) -> Self {
        Req {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
    pub fn get(target: impl Into<String>) -> Self {
        Req::new(Method::GET, target)
    }
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((
            name,
            HeaderValue::from_str(value).expect("header value is visible ASCII"),
        ));
        self
    }
    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

/// What came back. The body is kept only when asked for.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Body bytes received (also when not kept).
    pub len: u64,
    /// Request sent to first body byte (or to the head, for an empty body).
    pub ttfb: Duration,
    pub elapsed: Duration,
    /// Whether the body was cut off at the deadline.
    pub cut: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// `Location` as an origin-form target (distribution sends absolute URLs).
    pub fn location(&self) -> Option<String> {
        self.header("location").map(origin_form)
    }
}

/// `http://host:port/path?q` -> `/path?q`; a relative location is kept.
pub fn origin_form(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        },
        None => location.to_owned(),
    }
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One keep-alive connection to a server.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Body>>,
    /// Connections opened so far (1 for a well-behaved server).
    pub connects: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).expect("address is a header value"),
            sender: None,
            connects: 0,
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Body>, Error> {
        let alive = match &mut self.sender {
            Some(s) => !s.is_closed() && s.ready().await.is_ok(),
            None => false,
        };
        if !alive {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // Ends when the server closes or the sender is dropped.
                let _ = conn.await;
            });
            self.connects += 1;
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| "no connection".into())
    }

    /// Sends `req` and reads the whole body (keeping it if `keep_body`), or
    /// stops reading at `deadline` (then the connection is dropped).
    pub async fn send(
        &mut self,
        req: &Req,
        keep_body: bool,
        deadline: Option<Instant>,
    ) -> Result<Reply, Error> {
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(req.target.as_str())
            .header(http::header::HOST, self.host.clone());
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.clone());
        }
        let request = builder.body(Full::new(req.body.clone()))?;
        let sender = self.sender().await?;
        let start = Instant::now();
        let res = sender.send_request(request).await?;
        let head_at = start.elapsed();
        let (parts, mut body) = res.into_parts();
        let mut kept = Vec::new();
        let mut len = 0u64;
        let mut ttfb = None;
        let mut cut = false;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Ok(data) = frame.into_data() {
                if ttfb.is_none() && !data.is_empty() {
                    ttfb = Some(start.elapsed());
                }
                len += data.len() as u64;
                if keep_body {
                    kept.extend_from_slice(&data);
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                cut = true;
                break;
            }
        }
        if cut {
            // The rest of the body is still on the wire.
            self.sender = None;
        }
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(kept),
            len,
            ttfb: ttfb.unwrap_or(head_at),
            elapsed: start.elapsed(),
            cut,
        })
    }

    /// [`send`](Self::send), keeping the body, no deadline.
    pub async fn call(&mut self, req: &Req) -> Result<Reply, Error> {
        self.send(req, true, None).await
    }
}
