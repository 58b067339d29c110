//! Which network addresses berth may connect to on a user's behalf (webhook
//! endpoints and proxy-cache upstreams): never loopback, link-local,
//! private or unique-local ranges, unspecified, multicast or broadcast
//! addresses, nor any address of this machine, unless the operator allows
//! private targets.
//!
//! Owns: the address rule (`refused_address`), the check of a URL before it
//! is saved (`check_outbound_url`), and a resolver for the HTTP client that
//! applies the same rule at every connection (`PublicOnlyResolver`), so a
//! name that later resolves to a private address (DNS rebinding) is refused
//! too. Must not touch: configuration or HTTP routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Why `ip` may not be connected to on a user's behalf, or None when it may.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let rule = match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    };
    rule.or_else(|| is_own_address(ip).then_some("an address of this machine"))
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Some("a private address")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 || o[0] == 0 {
        Some("a multicast, broadcast or reserved address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("a link-local address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("a unique local (private) address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

/// Whether `ip` belongs to this machine: only a local address can be bound.
fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Parses an http(s) URL and, unless `allow_private`, refuses it when its
/// host is or resolves to an address `refused_address` refuses. The message
/// says what was wrong.
pub async fn check_outbound_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    check_outbound_url_for(raw, allow_private, WEBHOOKS_SETTING).await
}

/// `check_outbound_url`, naming `setting` (the one that would allow private
/// targets for this kind of connection) in its refusals.
pub async fn check_outbound_url_for(
    raw: &str,
    allow_private: bool,
    setting: &str,
) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?} is not an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{raw:?} carries credentials; the endpoint authenticates deliveries by their signature"
        ));
    }
    let Some(host) = url.host_str().map(str::to_string) else {
        return Err(format!("{raw:?} names no host"));
    };
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    for ip in addrs {
        if let Some(why) = refused_address(ip) {
            return Err(private_target_message(&host, ip, why, setting));
        }
    }
    Ok(url)
}

/// The setting that lets webhook endpoints target private addresses.
pub const WEBHOOKS_SETTING: &str = "webhooks.allow_private_targets";

fn private_target_message(host: &str, ip: IpAddr, why: &str, setting: &str) -> String {
    format!(
        "{host} is {why} ({ip}); outbound connections may not target loopback, link-local, \
         private or this machine's addresses unless {setting} is set"
    )
}

/// A resolver for outbound clients that fails a lookup when any address it
/// returns is refused. Literal IP hosts never reach a resolver: check them
/// with `check_outbound_url` before connecting.
#[derive(Debug, Clone)]
pub struct PublicOnlyResolver {
    /// The setting that would allow private targets, named in refusals.
    setting: &'static str,
}

impl PublicOnlyResolver {
    pub fn new(setting: &'static str) -> Self {
        PublicOnlyResolver { setting }
    }
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let setting = self.setting;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some((ip, why)) = found
                .iter()
                .find_map(|a| refused_address(a.ip()).map(|w| (a.ip(), w)))
            {
                return Err(private_target_message(&host, ip, why, setting).into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The resolver as the HTTP client builder takes it, naming `setting` in
/// its refusals.
pub fn public_only_resolver(setting: &'static str) -> Arc<PublicOnlyResolver> {
    Arc::new(PublicOnlyResolver::new(setting))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_own_addresses_are_refused_public_ones_not() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(refused_address(ip).is_some(), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(refused_address(ip), None, "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_unless_private_targets_are_allowed() {
        for bad in [
            "http://127.0.0.1:9/hook",
            "http://[::1]/hook",
            "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let err = check_outbound_url(bad, false).await.expect_err(bad);
            assert!(err.contains("allow_private_targets"), "{err}");
            check_outbound_url(bad, true).await.expect("allowed");
        }
        for bad in [
            "ftp://example.com/",
            "not a url",
            "http://user:pw@example.com/",
        ] {
            assert!(check_outbound_url(bad, true).await.is_err(), "{bad}");
        }
        check_outbound_url("https://93.184.216.34/hook", false)
            .await
            .expect("a public address");
    }
}
