//! A TCP load balancer on 127.0.0.1, as operators put in front of several
//! `berth serve` replicas: each accepted connection goes to the next backend
//! in turn (round robin), skipping a backend that refuses the connection,
//! and is spliced byte for byte both ways. A client that keeps its
//! connection open stays on one replica, as behind any L4 balancer; tests
//! that must alternate replicas within one client's work open connections
//! of their own.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Balancer {
    port: u16,
    backends: Arc<Mutex<Vec<u16>>>,
    served: Arc<Mutex<Vec<(u16, u64)>>>,
    stop: Arc<AtomicBool>,
}

impl Balancer {
    /// A balancer over the servers listening on 127.0.0.1 at `backends`.
    pub fn start(backends: &[u16]) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("balancer listen");
        let port = listener.local_addr().expect("balancer addr").port();
        let b = Balancer {
            port,
            backends: Arc::new(Mutex::new(backends.to_vec())),
            served: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (list, served, stop) = (b.backends.clone(), b.served.clone(), b.stop.clone());
        let next = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let (list, served, next) = (list.clone(), served.clone(), next.clone());
                std::thread::spawn(move || {
                    let ports = list.lock().map(|l| l.clone()).unwrap_or_default();
                    let start = next.fetch_add(1, Ordering::SeqCst);
                    for i in 0..ports.len() {
                        let port = ports[(start + i) % ports.len()];
                        let Ok(backend) = TcpStream::connect(("127.0.0.1", port)) else {
                            continue;
                        };
                        if let Ok(mut s) = served.lock() {
                            match s.iter_mut().find(|(p, _)| *p == port) {
                                Some((_, n)) => *n += 1,
                                None => s.push((port, 1)),
                            }
                        }
                        splice(client, backend);
                        return;
                    }
                    // No backend answers: the client sees its connection closed.
                });
            }
        });
        b
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the backends new connections go to.
    pub fn set_backends(&self, ports: &[u16]) {
        if let Ok(mut l) = self.backends.lock() {
            *l = ports.to_vec();
        }
    }

    /// Connections each backend port took so far.
    pub fn served(&self) -> Vec<(u16, u64)> {
        self.served.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(200),
        );
    }
}

/// Copies both ways until either side closes; closes the other's write side.
fn splice(client: TcpStream, backend: TcpStream) {
    let (Ok(c2), Ok(b2)) = (client.try_clone(), backend.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pipe(c2, b2));
    pipe(backend, client);
    let _ = up.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
