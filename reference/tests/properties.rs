//! Property tests of the full reference grammar: references built from the
//! grammar's parts print as written and parse back the same; normalisation
//! matches a model of Docker's rules and is idempotent; the canonical and
//! familiar forms parse back to the same reference; no input makes parsing
//! panic, and whatever is accepted reads back the same.

use std::net::{Ipv4Addr, Ipv6Addr};

use berth_reference::{looks_like_host, Digest, FullRef, Host, ImageRef, MAX_REPO_NAME};
use proptest::prelude::*;

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}"
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..5).prop_map(|c| c.join("/"))
}

fn port() -> impl Strategy<Value = String> {
    (1u32..=65535).prop_map(|p| format!(":{p}"))
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

/// Every kind of host the grammar has, each with and without a port.
fn host() -> impl Strategy<Value = String> {
    let domain = prop::collection::vec(label(), 2..5).prop_map(|l| l.join("."));
    let ipv4 = any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string());
    // Rust prints IPv4-mapped addresses in dotted form, which the grammar refuses.
    let ipv6 = any::<[u16; 8]>()
        .prop_map(|s| format!("[{}]", Ipv6Addr::from(s)))
        .prop_filter("no dotted IPv6", |s| !s.contains('.'));
    let named = prop_oneof![
        Just("localhost".to_string()),
        Just("docker.io".to_string()),
        Just("index.docker.io".to_string()),
        Just("registry-1.docker.io".to_string()),
        domain,
        ipv4,
        ipv6,
    ];
    let with_port = (named.clone(), port()).prop_map(|(h, p)| format!("{h}{p}"));
    let bare_with_port = (label(), port()).prop_map(|(h, p)| format!("{h}{p}"));
    prop_oneof![named, with_port, bare_with_port]
}

fn tag() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
    ]
}

/// The parts of a reference the grammar generates.
#[derive(Debug, Clone)]
struct Parts {
    host: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Parts {
    fn text(&self) -> String {
        let mut s = self.host.clone().map(|h| h + "/").unwrap_or_default();
        s.push_str(&self.path);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// Reads as generated: a host-less path whose first part looks like a
    /// host would be read as one, so it is not a host-less reference.
    fn unambiguous(&self) -> bool {
        let first = self.path.split('/').next().unwrap_or_default();
        self.path.len() <= MAX_REPO_NAME
            && (self.host.is_some() || !self.path.contains('/') || !looks_like_host(first))
    }

    /// Docker's normalisation, written out independently of the crate.
    fn canonical(&self) -> String {
        let host = match self.host.as_deref() {
            None | Some("index.docker.io") | Some("registry-1.docker.io") => "docker.io",
            Some(h) => h,
        };
        let path = if host == "docker.io" && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        };
        let tag = match (&self.tag, &self.digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.clone(),
        };
        Parts {
            host: Some(host.to_string()),
            path,
            tag,
            digest: self.digest.clone(),
        }
        .text()
    }
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        prop::option::of(host()),
        path(),
        prop::option::of(tag()),
        prop::option::of(digest()),
    )
        .prop_map(|(host, path, tag, digest)| Parts {
            host,
            path,
            tag,
            digest,
        })
}

/// Strings near the grammar: its alphabet plus the characters that break it.
fn near_miss() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._:/@\\[\\]% -]{0,80}"
}

/// Pieces of references glued in any order, so parsing gets past its first checks.
fn shuffled_pieces() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        host(),
        component(),
        tag(),
        digest(),
        Just("/".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

/// Everything an accepted reference promises.
fn check_accepted(r: &FullRef) -> Result<(), TestCaseError> {
    let again: FullRef = r.to_string().parse().expect("printed form parses");
    prop_assert_eq!(&again, r);
    let n = r.normalized();
    prop_assert_eq!(&n.normalized(), &n);
    prop_assert!(n.host().is_some());
    prop_assert!(n.tag().is_some() || n.digest().is_some());
    let canonical: FullRef = r.canonical().parse().expect("canonical form parses");
    prop_assert_eq!(&canonical, &n);
    let familiar: FullRef = r.familiar().parse().expect("familiar form parses");
    prop_assert_eq!(familiar.normalized(), n.clone());
    prop_assert!(r.familiar().len() <= r.canonical().len());
    let (host, pull) = r.registry_ref();
    prop_assert_eq!(host.to_string().parse::<Host>().expect("host parses"), host);
    prop_assert_eq!(
        pull.to_string()
            .parse::<ImageRef>()
            .expect("registry ref parses"),
        pull
    );
    let name = match r.host() {
        Some(h) => format!("{h}/{}", r.repo()),
        None => r.repo().to_string(),
    };
    prop_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_references_print_as_written(p in parts()) {
        prop_assume!(p.unambiguous());
        let text = p.text();
        let r: FullRef = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(r.to_string(), text.clone());
        prop_assert_eq!(r.host().map(Host::to_string), p.host.clone());
        prop_assert_eq!(r.repo().as_str(), p.path.as_str());
        prop_assert_eq!(r.tag().map(ToString::to_string), p.tag.clone());
        prop_assert_eq!(r.digest().map(Digest::to_string), p.digest.clone());
        check_accepted(&r)?;
    }

    #[test]
    fn normalisation_is_dockers(p in parts()) {
        prop_assume!(p.unambiguous());
        let r: FullRef = p.text().parse().expect("generated reference parses");
        prop_assert_eq!(r.canonical(), p.canonical());
        let (host, pull) = r.registry_ref();
        let expected = p.canonical();
        let (expected_host, _) = expected.split_once('/').expect("canonical has a host");
        prop_assert_eq!(host.as_str(), expected_host);
        if let Some(d) = &p.digest {
            prop_assert!(pull.to_string().ends_with(&format!("@{d}")), "the digest wins");
        }
    }

    #[test]
    fn docker_hub_names_lose_their_host_when_familiar(path in path(), hub in prop_oneof![
        Just(None), Just(Some("docker.io")), Just(Some("index.docker.io")), Just(Some("registry-1.docker.io")),
    ]) {
        let first = path.split('/').next().unwrap_or_default();
        prop_assume!(hub.is_some() || !path.contains('/') || !looks_like_host(first));
        let text = match hub { Some(h) => format!("{h}/{path}"), None => path.clone() };
        let r: FullRef = text.parse().expect("valid");
        let full = if path.contains('/') { path.clone() } else { format!("library/{path}") };
        let short = match full.strip_prefix("library/") {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => full.clone(),
        };
        let full_first = full.split('/').next().unwrap_or_default();
        let expected = if short.contains('/') && looks_like_host(full_first) {
            format!("docker.io/{full}")
        } else {
            short
        };
        prop_assert_eq!(r.familiar(), format!("{expected}:latest"));
    }

    #[test]
    fn image_id_names_need_a_host_or_namespace(
        id in "[0-9a-f]{64}",
        hub in prop_oneof![Just("docker.io/"), Just("index.docker.io/"), Just("library/")],
        suffix in prop_oneof![Just(String::new()), tag().prop_map(|t| format!(":{t}"))],
    ) {
        prop_assert!(format!("{id}{suffix}").parse::<FullRef>().is_err(), "reads as an image ID");
        let r: FullRef = format!("{hub}{id}{suffix}").parse().expect("with a host or namespace");
        let familiar_prefix = format!("library/{id}");
        prop_assert!(r.familiar().starts_with(&familiar_prefix), "{}", r.familiar());
        check_accepted(&r)?;
    }

    #[test]
    fn any_text_is_refused_or_reads_back(s in prop_oneof![any::<String>(), near_miss(), shuffled_pieces()]) {
        if let Ok(r) = s.parse::<FullRef>() {
            prop_assert_eq!(r.to_string(), s.clone(), "accepted text is printed as written");
            check_accepted(&r)?;
        }
    }

    #[test]
    fn any_host_is_refused_or_reads_as_a_host(s in prop_oneof![any::<String>(), near_miss(), host()]) {
        if let Ok(h) = s.parse::<Host>() {
            prop_assert_eq!(h.to_string(), s.clone());
            prop_assert!(looks_like_host(h.as_str()));
            let r: FullRef = format!("{h}/x").parse().expect("a host in front of a path");
            prop_assert_eq!(r.host(), Some(&h));
            prop_assert_eq!(h.normalized().normalized(), h.normalized());
        }
    }
}
