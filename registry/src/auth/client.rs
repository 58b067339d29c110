//! Which address a request comes from, for the login throttle and the audit log.
//!
//! The address is the TCP peer, unless the peer is one of the configured trusted
//! proxies (`server.trusted_proxies`): then it is the rightmost `X-Forwarded-For`
//! entry that is not itself a trusted proxy. Entries further left were written by
//! the client or by proxies we do not know and could be anything, so they are
//! never believed. A peer that is not a trusted proxy cannot choose its address
//! by sending the header.
//!
//! `TrustedProxies::resolve` runs once per request in the common layer and records the
//! answer as a `ClientAddr` extension; everything else asks `client_addr`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use http::request::Parts;
use http::{Extensions, HeaderMap};
use ipnet::IpNet;

/// The networks whose connections may name the client in `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client behind a connection from `peer` that sent `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // All X-Forwarded-For headers, in order, form one list; read it from the right.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(ip) = parse_entry(entry) else {
                // Garbage from a hop: believe nothing to its left.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    /// Records the request's `ClientAddr` (see the module doc) where it is not
    /// the peer itself (`client_addr` answers the peer without one); the
    /// common layer calls this first on every request of `berth serve`.
    pub fn resolve(&self, req: &mut Request) {
        if let Some(peer) = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        {
            let client = self.client(peer, req.headers());
            if client != canonical(peer) {
                req.extensions_mut().insert(ClientAddr(client));
            }
        }
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, from dual-stack listeners) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client address `resolve` established for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client address of a request: as resolved by `resolve`, else the TCP peer
/// (listeners without the middleware: the edge cache, tests in-process).
pub fn client_addr(ext: &Extensions) -> Option<IpAddr> {
    ext.get::<ClientAddr>().map(|c| c.0).or_else(|| {
        ext.get::<ConnectInfo<SocketAddr>>()
            .map(|c| canonical(c.0.ip()))
    })
}

/// Extractor for handlers: the request's client address (None in-process).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_addr(&parts.extensions)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().expect("header value"));
        }
        h
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().expect("net")).collect())
    }

    /// What the common layer records, read back the way every handler reads it.
    fn resolved(p: &TrustedProxies, peer: &str, headers: HeaderMap) -> Option<IpAddr> {
        let mut req = Request::new(axum::body::Body::empty());
        *req.headers_mut() = headers;
        let peer = SocketAddr::new(ip(peer), 4711);
        req.extensions_mut().insert(ConnectInfo(peer));
        p.resolve(&mut req);
        client_addr(req.extensions())
    }

    #[test]
    fn resolved_requests_answer_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        // The peer itself (nothing recorded beside the connection's address).
        assert_eq!(
            resolved(&p, "192.0.2.9", xff(&["203.0.113.1"])),
            Some(ip("192.0.2.9"))
        );
        assert_eq!(
            resolved(&p, "::ffff:192.0.2.9", HeaderMap::new()),
            Some(ip("192.0.2.9"))
        );
        // The client behind a trusted proxy.
        assert_eq!(
            resolved(&p, "10.0.0.1", xff(&["203.0.113.1"])),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(
            resolved(&p, "::ffff:10.0.0.1", xff(&["203.0.113.1"])),
            Some(ip("203.0.113.1"))
        );
    }

    #[test]
    fn untrusted_peers_cannot_name_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            p.client(ip("192.0.2.9"), &xff(&["203.0.113.1"])),
            ip("192.0.2.9")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.1.1.1"), &xff(&["203.0.113.1"])),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let peer = ip("10.0.0.1");
        assert_eq!(p.client(peer, &xff(&["203.0.113.7"])), ip("203.0.113.7"));
        // A client that sends its own header cannot choose: its entry is to the left.
        assert_eq!(
            p.client(peer, &xff(&["6.6.6.6, 203.0.113.7"])),
            ip("203.0.113.7")
        );
        // Chains of trusted proxies are skipped; several headers form one list.
        assert_eq!(
            p.client(
                peer,
                &xff(&["6.6.6.6", "203.0.113.7, 10.2.2.2", "10.3.3.3"])
            ),
            ip("203.0.113.7")
        );
        // Ports and IPv6 forms.
        assert_eq!(
            p.client(peer, &xff(&["203.0.113.7:4711"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            p.client(peer, &xff(&["[2001:db8::5]:443"])),
            ip("2001:db8::5")
        );
        assert_eq!(p.client(peer, &xff(&["2001:db8::5"])), ip("2001:db8::5"));
        assert_eq!(
            p.client(ip("::ffff:10.0.0.1"), &xff(&["203.0.113.7"])),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn missing_or_broken_headers_leave_the_last_believable_hop() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        assert_eq!(p.client(peer, &HeaderMap::new()), peer);
        assert_eq!(p.client(peer, &xff(&["unknown"])), peer);
        assert_eq!(
            p.client(peer, &xff(&["203.0.113.7, garbage, 10.2.2.2"])),
            ip("10.2.2.2")
        );
        // Only trusted proxies in the list: the leftmost of them.
        assert_eq!(
            p.client(peer, &xff(&["10.9.9.9, 10.2.2.2"])),
            ip("10.9.9.9")
        );
    }
}
