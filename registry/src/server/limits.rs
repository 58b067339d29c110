//! Who may hold a connection, and what the server says about the ones it
//! refuses or cuts.
//!
//! Owns the connection policy taken from `[server]` (both `berth serve` and
//! `berth edge` use it), the global and per-address caps checked when a
//! connection is accepted and released when its task ends, the back-off after
//! `accept` fails for want of file descriptors, the connection counters in
//! `/metrics`, and one rate-limited log line per kind of event. Timing a
//! connection is `watchdog`'s job and timing a request body `body_rate`'s; both
//! report here.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_config::ServerConfig;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::throttle::{LogThrottle, Verdict};
use super::watchdog::Expired;
use crate::service::metrics::Metrics;

/// At most one log line per kind of event in this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// File descriptors kept back for the process itself (database, listener, logs).
const RESERVED_FDS: u64 = 32;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The limits every listener applies, from `[server]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionPolicy {
    pub header_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_connections: usize,
    /// 0: no per-address cap.
    pub max_connections_per_ip: usize,
    /// Bytes per second; 0: no minimum.
    pub min_body_rate: u64,
    pub body_rate_window: Duration,
}

impl ConnectionPolicy {
    pub fn from_config(cfg: &ServerConfig) -> Self {
        let positive = |d: Duration| (!d.is_zero()).then_some(d);
        ConnectionPolicy {
            header_timeout: positive(cfg.header_timeout),
            idle_timeout: positive(cfg.idle_timeout),
            max_connections: cfg.max_connections as usize,
            max_connections_per_ip: cfg.max_connections_per_ip as usize,
            min_body_rate: cfg.min_body_rate.0,
            body_rate_window: cfg.body_rate_window,
        }
    }

    /// The policy lowered to what `open_files` descriptors can hold: two per
    /// connection (the socket, and the blob or upload file it may have open),
    /// after a reserve for the process. When the total is lowered, one address
    /// gets at most half of it, so one client cannot take every connection.
    pub fn within_open_file_limit(mut self, open_files: Option<u64>) -> Self {
        let Some(n) = open_files else {
            return self;
        };
        let fit = (n.saturating_sub(RESERVED_FDS) / 2).max(2) as usize;
        if fit < self.max_connections {
            self.max_connections = fit;
            if self.max_connections_per_ip > 0 {
                self.max_connections_per_ip = self.max_connections_per_ip.min(fit / 2).max(1);
            }
        }
        self
    }
}

/// Raises the soft open-file limit to the hard one, as the Go runtime does for
/// distribution and zot, and returns the limit now in force (`None`: unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let current = lim.current?;
    // Linux refuses more than fs.nr_open (1 Mi by default) even when the hard limit is "unlimited".
    let target = lim.maximum.unwrap_or(1 << 20);
    if target > current
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: lim.maximum,
            },
        )
        .is_ok()
    {
        return Some(target);
    }
    Some(current)
}

fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Why a new connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client's address holds `max_connections_per_ip` already.
    PerAddress,
    /// The server holds `max_connections` already.
    Total,
}

/// The unit the per-address cap counts: an IPv4 address, or an IPv6 /64 (what
/// one subscriber is usually given). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Source(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

/// Connections held, in total and per source.
#[derive(Default, Debug)]
struct Held {
    total: usize,
    by_source: HashMap<Source, usize>,
}

impl Held {
    fn try_add(&mut self, src: Source, policy: &ConnectionPolicy) -> Result<(), Refusal> {
        let mine = self.by_source.get(&src).copied().unwrap_or(0);
        if policy.max_connections_per_ip > 0 && mine >= policy.max_connections_per_ip {
            return Err(Refusal::PerAddress);
        }
        if self.total >= policy.max_connections {
            return Err(Refusal::Total);
        }
        self.total += 1;
        *self.by_source.entry(src).or_insert(0) += 1;
        Ok(())
    }

    fn remove(&mut self, src: Source) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_source.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&src);
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// The policy in force, the connections held, and the counters and log
/// throttles of one listener.
pub struct Connections {
    policy: ConnectionPolicy,
    held: Mutex<Held>,
    open: Gauge,
    refused: Family<Reason, Counter>,
    closed: Family<Reason, Counter>,
    bodies_cut: Counter,
    accept_errors: Counter,
    log_per_address: LogThrottle,
    log_total: LogThrottle,
    log_accept: LogThrottle,
    log_head: LogThrottle,
    log_body: LogThrottle,
}

impl Connections {
    /// The policy lowered to the process's open-file limit (logged if that
    /// lowers it), with its counters registered in `metrics`.
    pub fn new(policy: ConnectionPolicy, metrics: &Metrics) -> Arc<Self> {
        let open_files = open_file_limit();
        let wanted = policy.clone();
        let policy = policy.within_open_file_limit(open_files);
        if policy != wanted {
            tracing::warn!(
                open_files = open_files.unwrap_or(0),
                max_connections = policy.max_connections,
                max_connections_per_ip = policy.max_connections_per_ip,
                "the open-file limit holds fewer connections than server.max_connections; raise it (ulimit -n, LimitNOFILE=) to allow more"
            );
        }
        let c = Connections {
            policy,
            held: Mutex::new(Held::default()),
            open: Gauge::default(),
            refused: Family::default(),
            closed: Family::default(),
            bodies_cut: Counter::default(),
            accept_errors: Counter::default(),
            log_per_address: LogThrottle::new(LOG_EVERY),
            log_total: LogThrottle::new(LOG_EVERY),
            log_accept: LogThrottle::new(LOG_EVERY),
            log_head: LogThrottle::new(LOG_EVERY),
            log_body: LogThrottle::new(LOG_EVERY),
        };
        metrics.register(|r| {
            r.register(
                "connections_open",
                "Client connections held",
                c.open.clone(),
            );
            r.register(
                "connections_refused",
                "Connections closed at accept: over the per-address (per_ip) or total cap",
                c.refused.clone(),
            );
            r.register(
                "connections_closed",
                "Connections closed for sending no request head in time (header_timeout) or idling (idle_timeout)",
                c.closed.clone(),
            );
            r.register(
                "request_bodies_cut",
                "Request bodies cut for arriving slower than server.min_body_rate",
                c.bodies_cut.clone(),
            );
            r.register(
                "accept_errors",
                "Failed accept calls (EMFILE and the like)",
                c.accept_errors.clone(),
            );
        });
        Arc::new(c)
    }

    pub fn policy(&self) -> &ConnectionPolicy {
        &self.policy
    }

    /// Admits a connection from `ip`, or says why not. The permit releases its
    /// place when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let src = Source::of(ip);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.try_add(src, &self.policy)?;
        self.open.set(held.total as i64);
        Ok(Permit {
            conns: self.clone(),
            src,
        })
    }

    /// Counts a refused connection and logs it, rate-limited.
    pub(super) fn refused(self: &Arc<Self>, why: Refusal, peer: SocketAddr) {
        let (reason, event) = match why {
            Refusal::PerAddress => ("per_ip", Event::PerAddress),
            Refusal::Total => ("total", Event::Total),
        };
        self.refused.get_or_create(&Reason { reason }).inc();
        self.note(event, Some(peer), None);
    }

    /// Counts a failed `accept` and logs it, rate-limited; returns how long to
    /// pause before the next one.
    pub(super) fn accept_failed(
        self: &Arc<Self>,
        e: &io::Error,
        backoff: &mut AcceptBackoff,
    ) -> Duration {
        self.accept_errors.inc();
        self.note(Event::AcceptFailed, None, Some(e));
        backoff.failed(e)
    }

    /// Counts a connection the watchdog closed, and logs (rate-limited) the
    /// ones that never completed a request head. Idling out is normal.
    pub(super) fn expired(self: &Arc<Self>, what: Expired, peer: SocketAddr) {
        let reason = match what {
            Expired::Head => "header_timeout",
            Expired::Idle => "idle_timeout",
        };
        self.closed.get_or_create(&Reason { reason }).inc();
        if what == Expired::Head {
            self.note(Event::HeadTimeout, Some(peer), None);
        }
    }

    /// Counts a request body cut for being too slow and logs it, rate-limited.
    pub(super) fn body_cut(self: &Arc<Self>, peer: SocketAddr) {
        self.bodies_cut.inc();
        self.note(Event::BodyCut, Some(peer), None);
    }

    fn throttle(&self, event: Event) -> &LogThrottle {
        match event {
            Event::PerAddress => &self.log_per_address,
            Event::Total => &self.log_total,
            Event::AcceptFailed => &self.log_accept,
            Event::HeadTimeout => &self.log_head,
            Event::BodyCut => &self.log_body,
        }
    }

    /// Logs `event` now, or holds it for a summary line when the interval ends.
    fn note(self: &Arc<Self>, event: Event, peer: Option<SocketAddr>, error: Option<&io::Error>) {
        match self.throttle(event).hit(Instant::now()) {
            Verdict::Write(count) => self.write(event, count, peer, error),
            Verdict::Held => {}
            Verdict::FlushAt(at) => {
                let conns = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    if let Some(count) = conns.throttle(event).flush(Instant::now()) {
                        conns.write(event, count, None, None);
                    }
                });
            }
        }
    }

    /// One line for `count` events of a kind (the latest one's address or
    /// error, when there is one).
    fn write(&self, event: Event, count: u64, peer: Option<SocketAddr>, error: Option<&io::Error>) {
        let address = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        let p = &self.policy;
        match event {
            Event::PerAddress => tracing::warn!(
                count,
                %address,
                cap = p.max_connections_per_ip,
                "refused connections over the per-address cap (server.max_connections_per_ip)"
            ),
            Event::Total => tracing::warn!(
                count,
                %address,
                cap = p.max_connections,
                "refused connections over the total cap (server.max_connections)"
            ),
            Event::AcceptFailed => tracing::warn!(
                count,
                error = %error.map(|e| e.to_string()).unwrap_or_default(),
                "accept failed; pausing before the next (up to 1 s)"
            ),
            Event::HeadTimeout => tracing::info!(
                count,
                %address,
                "closed connections that sent no complete request head within server.header_timeout"
            ),
            Event::BodyCut => tracing::warn!(
                count,
                %address,
                "cut request bodies arriving slower than server.min_body_rate"
            ),
        }
    }
}

/// The kinds of event logged, one throttle each. A line's `count` is the
/// number of such events since the previous line of its kind.
#[derive(Clone, Copy, Debug)]
enum Event {
    PerAddress,
    Total,
    AcceptFailed,
    HeadTimeout,
    BodyCut,
}

/// A connection's place under the caps, given back on drop.
pub struct Permit {
    conns: Arc<Connections>,
    src: Source,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.conns.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(self.src);
        self.conns.open.set(held.total as i64);
    }
}

/// The pause after a failed `accept`. Running out of descriptors or memory
/// leaves the connection in the backlog, so retrying at once would spin; the
/// pause doubles up to a second and resets after a successful accept.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { next: BACKOFF_MIN }
    }
}

impl AcceptBackoff {
    pub fn succeeded(&mut self) {
        self.next = BACKOFF_MIN;
    }

    pub fn failed(&mut self, e: &io::Error) -> Duration {
        // A client that gave up while queued: nothing is wrong with the server.
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        ) {
            return Duration::ZERO;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        pause
    }
}

/// What a refused plaintext client is told before the connection closes.
pub(super) fn refusal_response(why: Refusal) -> Vec<u8> {
    let (status, code, message) = match why {
        Refusal::PerAddress => (
            "429 Too Many Requests",
            "TOOMANYREQUESTS",
            "too many connections from this address",
        ),
        Refusal::Total => (
            "503 Service Unavailable",
            "UNAVAILABLE",
            "the server holds as many connections as it may",
        ),
    };
    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#);
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(total: usize, per_ip: usize) -> ConnectionPolicy {
        ConnectionPolicy {
            header_timeout: None,
            idle_timeout: None,
            max_connections: total,
            max_connections_per_ip: per_ip,
            min_body_rate: 0,
            body_rate_window: Duration::from_secs(1),
        }
    }

    fn ip(s: &str) -> Source {
        Source::of(s.parse().expect("address"))
    }

    #[test]
    fn one_address_at_its_cap_does_not_deny_another() {
        let p = policy(10, 3);
        let mut held = Held::default();
        for _ in 0..3 {
            held.try_add(ip("127.0.0.1"), &p).expect("under the cap");
        }
        assert_eq!(held.try_add(ip("127.0.0.1"), &p), Err(Refusal::PerAddress));
        held.try_add(ip("127.0.0.2"), &p).expect("another address");
        held.remove(ip("127.0.0.1"));
        held.try_add(ip("127.0.0.1"), &p)
            .expect("a place came free");
        assert_eq!(held.total, 4);
    }

    #[test]
    fn the_total_cap_holds_across_addresses() {
        let p = policy(2, 0);
        let mut held = Held::default();
        held.try_add(ip("10.0.0.1"), &p).expect("first");
        held.try_add(ip("10.0.0.2"), &p).expect("second");
        assert_eq!(held.try_add(ip("10.0.0.3"), &p), Err(Refusal::Total));
        held.remove(ip("10.0.0.1"));
        held.remove(ip("10.0.0.2"));
        assert!(held.by_source.is_empty(), "released sources are forgotten");
        assert_eq!(held.total, 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.7"), ip("192.0.2.7"));
    }

    #[test]
    fn a_small_open_file_limit_lowers_both_caps() {
        let p = policy(4096, 256).within_open_file_limit(Some(128));
        assert_eq!(p.max_connections, 48);
        assert_eq!(p.max_connections_per_ip, 24);
        let roomy = policy(4096, 256).within_open_file_limit(Some(1 << 20));
        assert_eq!(roomy, policy(4096, 256));
        let off = policy(4096, 0).within_open_file_limit(Some(128));
        assert_eq!(off.max_connections_per_ip, 0, "an operator's 0 stays off");
        assert_eq!(policy(10, 5).within_open_file_limit(None), policy(10, 5));
    }

    #[test]
    fn backoff_grows_on_exhaustion_and_resets() {
        let mut b = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<Duration> = (0..10).map(|_| b.failed(&emfile)).collect();
        assert_eq!(pauses[0], BACKOFF_MIN);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(pauses[9], BACKOFF_MAX);
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&aborted), Duration::ZERO);
        b.succeeded();
        assert_eq!(b.failed(&emfile), BACKOFF_MIN);
    }

    #[test]
    fn refusals_are_complete_http_answers() {
        let r = String::from_utf8(refusal_response(Refusal::PerAddress)).expect("text");
        let (head, body) = r.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(v["errors"][0]["code"], "TOOMANYREQUESTS");
    }
}
