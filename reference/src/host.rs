//! Registry hosts: `domain[:port]`, `ipv4[:port]` or `[ipv6][:port]`, and the
//! Docker Hub aliases.
//!
//! Owns: the host grammar, the rule that tells a host from a repository's first
//! path component, and Docker Hub's names. Must not touch: resolving or
//! connecting (no I/O here).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::name::NameError;

/// The name Docker Hub goes by in references (distribution's `defaultDomain`).
pub const DOCKER_HUB: &str = "docker.io";

/// Other names of Docker Hub that normalise to [`DOCKER_HUB`]: the legacy
/// "Docker Index" and the host its API is served from.
pub const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];

/// Where Docker Hub's `/v2` API answers (what clients connect to for `docker.io`).
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// Longest domain name (without the port), as DNS allows.
const MAX_DOMAIN: usize = 253;
/// Longest label of a domain name, as DNS allows.
const MAX_LABEL: usize = 63;

/// A registry host as written in an image reference, lower-case.
///
/// It always reads as a host in front of a path: it contains a `.` or a `:`
/// (a port, or an IPv6 address), or is `localhost`. `registry/app` is the
/// repository `registry/app` on Docker Hub, not the host `registry`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host(String);

/// Docker's rule for the first component of `first/rest`: it names a registry
/// host if it contains a `.` or a `:`, or is `localhost`. (Docker also takes a
/// component with upper-case letters for a host; berth refuses upper case, so
/// that rule only changes which message such a name gets.)
pub fn looks_like_host(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

impl Host {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Docker Hub, under any of its names.
    pub fn is_docker_hub(&self) -> bool {
        self.0 == DOCKER_HUB || DOCKER_HUB_ALIASES.contains(&self.0.as_str())
    }

    /// Docker Hub as [`DOCKER_HUB`].
    pub fn docker_hub() -> Host {
        Host(DOCKER_HUB.to_string())
    }

    /// The same registry under its canonical name: Docker Hub's aliases become
    /// `docker.io`; every other host stays as written.
    pub fn normalized(&self) -> Host {
        if self.is_docker_hub() {
            Host::docker_hub()
        } else {
            self.clone()
        }
    }

    /// The `host[:port]` to send `/v2` requests to: Docker Hub's API host for
    /// `docker.io` and its aliases, otherwise the host itself.
    pub fn endpoint(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_ENDPOINT
        } else {
            &self.0
        }
    }

    /// The port, if one is written.
    pub fn port(&self) -> Option<u16> {
        let after_address = match self.0.rfind(']') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        };
        after_address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
    }
}

fn valid_label(label: &str) -> Result<(), String> {
    let b = label.as_bytes();
    if b.is_empty() {
        return Err("empty label (two dots in a row, or a leading or trailing dot)".into());
    }
    if b.len() > MAX_LABEL {
        return Err(format!(
            "label {label:?} is longer than {MAX_LABEL} characters"
        ));
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(format!(
            "label {label:?} must start and end with a lower-case letter or digit"
        ));
    }
    if !b.iter().all(|&x| alnum(x) || x == b'-') {
        return Err(format!(
            "label {label:?} may contain only lower-case letters, digits and '-'"
        ));
    }
    Ok(())
}

fn valid_port(port: &str) -> Result<(), String> {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u32>() {
        Ok(p) if digits && (1..=65535).contains(&p) => Ok(()),
        _ => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

/// `[ipv6]` followed by nothing or `:port`.
fn valid_bracketed(s: &str) -> Result<(), String> {
    let Some((inner, after)) = s[1..].split_once(']') else {
        return Err("an IPv6 address opened with '[' is not closed with ']'".into());
    };
    let hex_or_colon = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b':';
    if !inner.bytes().all(hex_or_colon) || inner.parse::<Ipv6Addr>().is_err() {
        return Err(format!(
            "{inner:?} is not an IPv6 address in lower-case hex (zones and dotted forms are not accepted)"
        ));
    }
    match after {
        "" => Ok(()),
        _ => match after.strip_prefix(':') {
            Some(port) => valid_port(port),
            None => Err("after an IPv6 address's ']' only ':port' may follow".into()),
        },
    }
}

fn valid_domain_and_port(s: &str) -> Result<(), String> {
    let (domain, port) = match s.split_once(':') {
        Some((d, p)) => (d, Some(p)),
        None => (s, None),
    };
    if domain.len() > MAX_DOMAIN {
        return Err(format!("the domain is longer than {MAX_DOMAIN} characters"));
    }
    for label in domain.split('.') {
        valid_label(label)?;
    }
    port.map_or(Ok(()), valid_port)
}

impl FromStr for Host {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |reason: String| NameError {
            what: "registry host",
            value: s.chars().take(300).collect(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty".into()));
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err(format!(
                "write registry hosts in lower case ({:?})",
                s.to_ascii_lowercase()
            )));
        }
        if s.starts_with('[') {
            valid_bracketed(s).map_err(err)?;
        } else {
            valid_domain_and_port(s).map_err(err)?;
        }
        if !looks_like_host(s) {
            return Err(err(
                "a registry host contains a '.' or a ':port', or is localhost \
                 (without them it reads as the first part of a repository name)"
                    .into(),
            ));
        }
        Ok(Host(s.to_string()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "localhost",
            "localhost:5000",
            "docker.io",
            "registry-1.docker.io",
            "ghcr.io",
            "my-registry.internal:443",
            "127.0.0.1",
            "10.0.0.1:5000",
            "registry:5000",
            "[::1]",
            "[::1]:5000",
            "[fe80::1:2]:443",
            "[2001:db8:0:0:0:0:0:1]",
            "xn--bcher-kva.example",
        ] {
            let h: Host = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(h.as_str(), ok);
        }
        for bad in [
            "",
            "registry",
            "Registry.example.com",
            "LOCALHOST",
            "example..com",
            ".example.com",
            "example.com.",
            "-a.example",
            "a-.example",
            "a_b.example",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:123456",
            "example.com:port",
            "example.com:+80",
            "example.com:80:80",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[FE80::1]",
            "[fe80::1%eth0]",
            "[::ffff:1.2.3.4]",
            "[not:an:address]",
            "[]",
            "ex ample.com",
            "exämple.com",
        ] {
            assert!(bad.parse::<Host>().is_err(), "{bad:?} accepted");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(long_label.parse::<Host>().is_err());
        let long_domain = vec!["abcdefghi"; 26].join(".");
        assert!(long_domain.len() > 253);
        assert!(long_domain.parse::<Host>().is_err());
        let msg = "Registry.Example.com"
            .parse::<Host>()
            .expect_err("upper case")
            .to_string();
        assert!(msg.contains("\"registry.example.com\""), "{msg}");
    }

    #[test]
    fn docker_hub_and_ports() {
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            let h: Host = hub.parse().expect("valid");
            assert!(h.is_docker_hub());
            assert_eq!(h.normalized().as_str(), "docker.io");
            assert_eq!(h.endpoint(), "registry-1.docker.io");
        }
        let h: Host = "docker.io:443".parse().expect("valid");
        assert!(!h.is_docker_hub(), "a port makes it another address");
        let h: Host = "ghcr.io".parse().expect("valid");
        assert_eq!(h.normalized(), h);
        assert_eq!(h.endpoint(), "ghcr.io");
        assert_eq!(h.port(), None);
        assert_eq!(
            "localhost:5000".parse::<Host>().expect("valid").port(),
            Some(5000)
        );
        assert_eq!("[::1]".parse::<Host>().expect("valid").port(), None);
        assert_eq!(
            "[::1]:8443".parse::<Host>().expect("valid").port(),
            Some(8443)
        );
    }
}
