//! Names and references a person writes: DNS names, label keys and values,
//! port names and numbers, digests and image references.
//!
//! Owns: these grammars and their messages. Must not touch: what the names
//! refer to (whether a node or an image exists is not decided here).

use std::collections::BTreeMap;

use berth_reference::{Digest, FullRef, NameError};

use super::check::Check;

/// DNS-1123 label: what Kubernetes accepts for namespaces and most object names.
pub fn validate_dns_label(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid name: use 1 to 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit (e.g. \"web-api\")"
        ))
    }
}

/// DNS-1123 subdomain: what Kubernetes accepts for node names.
pub fn validate_dns_subdomain(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .split('.')
            .all(|part| validate_dns_label(part).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid Kubernetes node name: use at most 253 lowercase letters, \
             digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"
        ))
    }
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && s.as_bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A Kubernetes label key: `[prefix/]name`.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| validate_dns_subdomain(p).is_ok());
    if prefix_ok && is_label_name(name) {
        Ok(())
    } else {
        Err(format!(
            "label key {key:?} is not valid: use an optional DNS prefix and '/', then 1 to 63 \
             letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// A Kubernetes label value (may be empty).
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is not valid: use at most 63 letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit"
        ))
    }
}

pub(super) fn validate_labels(check: &mut Check, field: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        check.check(format!("{field}.{k}"), validate_label_key(k));
        check.check(format!("{field}.{k}"), validate_label_value(v));
        if k.starts_with("berth.dev/") || k == "app" || k.starts_with("app.kubernetes.io/") {
            check.fail(
                format!("{field}.{k}"),
                "this label is set by berth itself; choose another key",
            );
        }
    }
}

/// An image reference as an app names it. The rule:
/// - a name with a registry host (`ghcr.io/org/app:1`,
///   `docker.io/library/nginx:1.25`, `registry.local:5000/x:1`) means that
///   registry;
/// - a one-part name (`nginx:1.25`) means Docker Hub's official image
///   (`docker.io/library/nginx:1.25`);
/// - any other name without a host (`team-a/web:1.0`) is a project of this
///   registry, never Docker Hub.
///
/// The grammar and Docker's normalisation are `berth_reference`'s, shared
/// with the registry; this adds the controller's rule that a tag or a digest
/// is written. Which project serves an image of another registry (a
/// proxy-cache project) is the resolver's to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry, normalised (`docker.io`); `None` for this registry's projects.
    pub host: Option<String>,
    /// The path in that registry, normalised (`library/nginx`, `shop/web`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let r: FullRef = s.parse().map_err(|e| grammar_message(s, &e))?;
        if r.tag().is_none() && r.digest().is_none() {
            return Err(format!(
                "image {s:?} has neither a tag nor a digest: add one (e.g. \"{s}:1.0\") so every \
                 node runs the same thing"
            ));
        }
        let public = r.host().is_some() || !r.repo().as_str().contains('/');
        let (host, repository) = if public {
            let n = r.normalized();
            (
                n.host().map(|h| h.as_str().to_string()),
                n.repo().to_string(),
            )
        } else {
            (None, r.repo().to_string())
        };
        Ok(ImageRef {
            host,
            repository,
            tag: r.tag().map(ToString::to_string),
            digest: r.digest().map(ToString::to_string),
        })
    }

    /// The project of this registry a host-less name is in (`team-a` for `team-a/web:1.0`).
    pub fn project(&self) -> Option<&str> {
        match self.host {
            Some(_) => None,
            None => self.repository.split('/').next(),
        }
    }
}

/// The grammar's refusal in the words this API has always used.
fn grammar_message(s: &str, e: &NameError) -> String {
    match e.what {
        "digest" => format!("image {s:?}: {}", digest_message(&e.value)),
        "tag" => format!(
            "image {s:?} has an invalid tag: use up to 128 letters, digits, '_', '.' and \
             '-', not starting with '.' or '-'"
        ),
        "repository name" => format!(
            "image {s:?} has an invalid repository name ({}): use lowercase letters, digits \
             and separators ('.', '_', '__', '-') between them, path parts joined by '/'",
            e.reason
        ),
        _ => format!("image {s:?}: {}", e.reason),
    }
}

fn digest_message(d: &str) -> String {
    format!(
        "{d:?} is not a digest: expected sha256: followed by 64 lowercase hex digits, or \
         sha512: followed by 128"
    )
}

/// `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`, the algorithms
/// the registry stores.
pub fn validate_digest(d: &str) -> Result<(), String> {
    d.parse::<Digest>()
        .map(|_| ())
        .map_err(|_| digest_message(d))
}

/// A container port name (IANA service name rules, as Kubernetes checks them).
pub(super) fn validate_port_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "port name {name:?} is not valid: use 1 to 15 lowercase letters, digits and single \
             '-', with at least one letter (e.g. \"http\")"
        ))
    }
}

/// A TCP/UDP/SCTP port number.
pub(super) fn validate_port_number(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port {port} is outside 1-65535"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(validate_dns_label("web-1").is_ok());
        assert!(validate_dns_label("a").is_ok());
        for bad in ["", "Web", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(validate_dns_label(bad).is_err(), "{bad}");
        }
        assert!(validate_dns_subdomain("node-1.edge.local").is_ok());
        assert!(validate_dns_subdomain("node..x").is_err());
    }

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("shop/web:1.0").expect("valid");
        assert_eq!(r.repository, "shop/web");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("shop/tools/cli@{d}")).expect("valid");
        assert_eq!(r.repository, "shop/tools/cli");
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(ImageRef::parse("shop/web:1.0@sha256:abc")
            .expect_err("must be refused")
            .contains("64 lowercase hex"));
        // A one-part name is Docker Hub's official image.
        let r = ImageRef::parse("web:1.0").expect("valid");
        assert_eq!(r.host.as_deref(), Some("docker.io"));
        assert_eq!(r.repository, "library/web");
        assert_eq!(r.project(), None);
        assert!(ImageRef::parse("shop/web")
            .expect_err("must be refused")
            .contains("neither a tag"));
        let r = ImageRef::parse("docker.io/library/nginx:1").expect("valid");
        assert_eq!(
            (r.host.as_deref(), r.repository.as_str()),
            (Some("docker.io"), "library/nginx")
        );
        let r = ImageRef::parse("localhost:5000/shop/web:1").expect("valid");
        assert_eq!(
            (r.host.as_deref(), r.repository.as_str()),
            (Some("localhost:5000"), "shop/web")
        );
        assert!(ImageRef::parse("Shop/web:1").is_err());
        assert!(ImageRef::parse("shop/web:.bad").is_err());
        assert!(ImageRef::parse("shop/we--b:1").is_ok());
        assert!(ImageRef::parse("shop/we..b:1").is_err());
    }

    #[test]
    fn image_refs_take_sha512_digests_and_name_their_registry() {
        let d = format!("sha512:{}", "b".repeat(128));
        let r = ImageRef::parse(&format!("shop/web:2@{d}")).expect("valid");
        assert_eq!(r.repository, "shop/web");
        assert_eq!(r.tag.as_deref(), Some("2"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(validate_digest(&d).is_ok());
        assert!(validate_digest(&format!("sha512:{}", "b".repeat(64)))
            .expect_err("must be refused")
            .contains("128"));
        // A name without a host is a project here, never Docker Hub's library.
        let r = ImageRef::parse("team-a/web:1.0").expect("valid");
        assert_eq!(r.repository, "team-a/web");
        assert_eq!((r.host.as_deref(), r.project()), (None, Some("team-a")));
        let r = ImageRef::parse("nginx:1").expect("valid");
        assert_eq!(
            (r.host.as_deref(), r.repository.as_str()),
            (Some("docker.io"), "library/nginx")
        );
        for (written, host, repo) in [
            ("index.docker.io/a/b:1", "docker.io", "a/b"),
            ("[::1]:5000/a/b:1", "[::1]:5000", "a/b"),
            ("registry:5000/a/b:1", "registry:5000", "a/b"),
            ("ghcr.io/org/app:1", "ghcr.io", "org/app"),
        ] {
            let r = ImageRef::parse(written).expect("valid");
            assert_eq!(
                (r.host.as_deref(), r.repository.as_str()),
                (Some(host), repo),
                "{written}"
            );
        }
    }
}
