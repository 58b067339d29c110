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
//! Owns the upstream URL check; the address rule and the resolver are the
//! registry's one outbound policy (`net_policy`), shared with webhooks.

use std::net::IpAddr;

/// Why `ip` may not be an upstream's address, or None when it may: the
/// registry's one rule for outbound connections (`net_policy`).
pub use crate::net_policy::refused_address as refused;

/// The setting that lets upstreams be private addresses.
pub const SETTING: &str = "proxy.allow_private_upstreams";

/// Checks a URL's host where it is an address; a name is checked when it is
/// resolved (`GuardedResolver`).
pub fn check_url(url: &reqwest::Url) -> Result<(), String> {
    check_url_for(url, SETTING)
}

/// `check_url` for an outbound client whose private targets `setting` allows.
pub fn check_url_for(url: &reqwest::Url, setting: &str) -> Result<(), String> {
    let Some(host) = url.host_str() else {
        return Err(format!("{url} has no host"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if host.eq_ignore_ascii_case("localhost") => {
            return Err(format!(
                "{url} names this machine; it must be a public address unless {setting} is set"
            ))
        }
        Err(_) => return Ok(()),
    };
    match refused(ip) {
        Some(why) => Err(format!(
            "{ip} is {why}; it must be a public address unless {setting} is set"
        )),
        None => Ok(()),
    }
}

/// The resolver upstream clients use: a name that resolves to an address
/// `refused` refuses fails to resolve (`net_policy::PublicOnlyResolver`).
pub fn guarded_resolver(
    setting: &'static str,
) -> std::sync::Arc<crate::net_policy::PublicOnlyResolver> {
    crate::net_policy::public_only_resolver(setting)
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
