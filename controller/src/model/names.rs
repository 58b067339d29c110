//! Names and references a person writes: DNS names, label keys and values,
//! port names and numbers, digests and image references.
//!
//! Owns: these grammars and their messages. Must not touch: what the names
//! refer to (whether a node or an image exists is not decided here).

use std::collections::BTreeMap;

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

/// An image reference relative to this registry: `project/repo[/more]:tag` or
/// `project/repo@sha256:<64 hex>`. The edge caches pull under the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag; one before it would be a host port.
        let (repository, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        let components: Vec<&str> = repository.split('/').collect();
        if let Some(first) = components.first() {
            if components.len() > 1
                && (first.contains('.') || first.contains(':') || *first == "localhost")
            {
                return Err(format!(
                    "image {s:?} names a registry host; images come from this registry, so \
                     write them as project/repository:tag (e.g. \"{}\")",
                    components[1..].join("/") + &tag.map(|t| format!(":{t}")).unwrap_or_default()
                ));
            }
        }
        if components.len() < 2 {
            return Err(format!(
                "image {s:?} has no project: write project/repository:tag (e.g. \"shop/web:1.0\")"
            ));
        }
        if repository.len() > 255 || !components.iter().all(|c| is_path_component(c)) {
            return Err(format!(
                "image {s:?} has an invalid repository name: use lowercase letters, digits and \
                 separators ('.', '_', '__', '-') between them, path parts joined by '/'"
            ));
        }
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
                && t.as_bytes()
                    .first()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
            if !ok {
                return Err(format!(
                    "image {s:?} has an invalid tag: use up to 128 letters, digits, '_', '.' and \
                     '-', not starting with '.' or '-'"
                ));
            }
        }
        if let Some(d) = digest {
            validate_digest(d).map_err(|m| format!("image {s:?}: {m}"))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(format!(
                "image {s:?} has neither a tag nor a digest: add one (e.g. \"{s}:1.0\") so every \
                 node runs the same thing"
            ));
        }
        Ok(ImageRef {
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `sha256:<64 lowercase hex>` (the only algorithm the registry stores).
pub fn validate_digest(d: &str) -> Result<(), String> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{d:?} is not a digest: expected sha256: followed by 64 lowercase hex digits"
        )),
    }
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
        assert!(ImageRef::parse("web:1.0")
            .expect_err("must be refused")
            .contains("no project"));
        assert!(ImageRef::parse("shop/web")
            .expect_err("must be refused")
            .contains("neither a tag"));
        assert!(ImageRef::parse("docker.io/library/nginx:1")
            .expect_err("must be refused")
            .contains("registry host"));
        assert!(ImageRef::parse("localhost:5000/shop/web:1")
            .expect_err("must be refused")
            .contains("registry host"));
        assert!(ImageRef::parse("Shop/web:1").is_err());
        assert!(ImageRef::parse("shop/web:.bad").is_err());
        assert!(ImageRef::parse("shop/we--b:1").is_ok());
        assert!(ImageRef::parse("shop/we..b:1").is_err());
    }
}
