//! Which addresses a proxy project's upstream may reach. An administrator
//! names the upstream URL, but the registry makes the requests from inside
//! its own network: without this rule a project could read the machine's own
//! services (loopback, the metadata endpoint at 169.254.169.254) or the
//! private network through the registry. So unless the configuration allows
//! private targets (`proxy.allow_private_upstreams`), upstream addresses
//! must be public: not loopback, link-local, unspecified, private (RFC 1918,
//! shared 100.64/10, unique-local fc00::/7), multicast or broadcast, nor an
//! address of this machine. The rule is applied to every address a name
//! resolves to (a resolver plugged into the HTTP client), so a redirect, a
//! token realm or a DNS answer that changes later cannot get around it; an
//! address written into a URL is checked where the URL is used.
//!
//! Owns the rule and its resolver; nothing else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why `ip` may not be an upstream's address, or None when it may.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let why = match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    };
    why.or_else(|| is_own(ip).then_some("an address of this machine"))
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("an unspecified address")
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Some("a private address")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("not a unicast address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("a loopback address")
    } else if (first & 0xffc0) == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if (first & 0xfe00) == 0xfc00 {
        Some("a private address")
    } else if ip.is_multicast() {
        Some("not a unicast address")
    } else {
        None
    }
}

/// Whether `ip` is one of this machine's addresses: only those can be bound.
fn is_own(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Checks a URL's host where it is an address; a name is checked when it is
/// resolved (`GuardedResolver`).
pub fn check_url(url: &reqwest::Url) -> Result<(), String> {
    let Some(host) = url.host_str() else {
        return Err(format!("{url} has no host"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if host.eq_ignore_ascii_case("localhost") => {
            return Err(format!(
                "{url} names this machine; upstreams must be public addresses unless proxy.allow_private_upstreams is set"
            ))
        }
        Err(_) => return Ok(()),
    };
    match refused(ip) {
        Some(why) => Err(format!(
            "{ip} is {why}; upstreams must be public addresses unless proxy.allow_private_upstreams is set"
        )),
        None => Ok(()),
    }
}

/// Resolves names with the system resolver and keeps only the addresses
/// `refused` allows; a name with none left fails to resolve.
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut why = "it has no address";
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match refused(a.ip()) {
                    Some(w) => {
                        why = w;
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let msg = format!(
                    "upstream host {host} is refused: {why}; upstreams must be public addresses unless proxy.allow_private_upstreams is set"
                );
                return Err(msg.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_own_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            assert!(refused(ip).is_some(), "{ip} must be refused");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            let ip: IpAddr = ip.parse().expect("address");
            assert_eq!(refused(ip), None, "{ip} must be allowed");
        }
    }

    #[test]
    fn urls_with_addresses_are_checked_names_left_to_the_resolver() {
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(check_url(&u("http://127.0.0.1:5000")).is_err());
        assert!(check_url(&u("http://[::1]:5000")).is_err());
        assert!(check_url(&u("http://localhost:5000")).is_err());
        assert!(check_url(&u("https://registry-1.docker.io")).is_ok());
        assert!(check_url(&u("https://8.8.8.8")).is_ok());
    }
}
