//! Raw TCP clients for tests of connection handling: sockets that send part of
//! a request and stop, sockets that send nothing, sockets from another
//! loopback address (all of 127.0.0.0/8 is loopback on Linux, so a test can
//! play a second client machine), and waiting for the server to close one.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A connection to 127.0.0.1:`port` from `local` (any 127.x.y.z address).
pub fn connect_from(local: Ipv4Addr, port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((local, 0)).into())
        .unwrap_or_else(|e| panic!("binding {local}: {e}"));
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    socket
        .connect_timeout(&server.into(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connecting from {local} to {server}: {e}"));
    socket.into()
}

/// A connection from 127.0.0.1 that has sent `bytes` (e.g. half a request line).
pub fn send_partial(port: u16, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(bytes).expect("send");
    s
}

/// How a wait for the server to close a connection ended.
#[derive(Debug)]
pub struct Ending {
    /// The server closed the connection (end of stream or reset).
    pub closed: bool,
    /// What the server sent before that (or before the wait ran out).
    pub received: Vec<u8>,
}

impl Ending {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

/// Reads until the server closes `s` or `bound` passes.
pub fn wait_closed(s: &mut TcpStream, bound: Duration) -> Ending {
    let deadline = Instant::now() + bound;
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ending {
                closed: false,
                received,
            };
        }
        s.set_read_timeout(Some(left.min(Duration::from_secs(1))))
            .expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => {
                return Ending {
                    closed: true,
                    received,
                }
            }
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                return Ending {
                    closed: true,
                    received,
                }
            }
        }
    }
}

/// Whether the server has closed `s` already (without waiting for it).
pub fn is_closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).expect("blocking");
    closed
}

/// Sends `request` from `local` to 127.0.0.1:`port` and reads the answer until
/// the server closes (send `Connection: close`) or `bound` passes.
pub fn request_from(local: Ipv4Addr, port: u16, request: &[u8], bound: Duration) -> Ending {
    let mut s = connect_from(local, port);
    s.write_all(request).expect("send request");
    wait_closed(&mut s, bound)
}

/// `GET path` with `Connection: close`, as raw bytes.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n").into_bytes()
}
