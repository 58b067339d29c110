//! Names within one registry: repository names, tags, references (a tag or a
//! digest) and `ImageRef`, a repository with its reference.
//!
//! Owns: the OCI grammar of these and their messages. Must not touch: registry
//! hosts and Docker Hub's conventions (see `full`).

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (distribution's limit).
pub const MAX_REPO_NAME: usize = 255;

/// A repository name as the distribution spec defines it:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
/// The first path component is the project.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(pub(crate) String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub reason: String,
}

fn valid_component(c: &str) -> Result<(), String> {
    let b = c.as_bytes();
    if b.is_empty() {
        return Err(
            "empty path component (two slashes in a row, or a leading/trailing slash)".into(),
        );
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(format!(
            "component {c:?} must start and end with a lower-case letter or digit"
        ));
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__", or one or more "-"
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(format!(
                "component {c:?} may contain only lower-case letters, digits and the separators '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The project: the first path component.
    pub fn project(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
    /// The name without its project, or "" for a single-component name.
    pub fn image(&self) -> &str {
        self.0.split_once('/').map(|(_, r)| r).unwrap_or("")
    }
}

impl FromStr for RepoName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |reason: String| NameError {
            what: "repository name",
            value: s.chars().take(300).collect(),
            reason,
        };
        if s.len() > MAX_REPO_NAME {
            return Err(err(format!("longer than {MAX_REPO_NAME} characters")));
        }
        for c in s.split('/') {
            valid_component(c).map_err(err)?;
        }
        Ok(RepoName(s.to_string()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub(crate) String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = |reason: &str| NameError {
            what: "tag",
            value: s.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 128 {
            return Err(err("a tag is 1 to 128 characters"));
        }
        if !(b[0].is_ascii_alphanumeric() || b[0] == b'_') {
            return Err(err("a tag starts with a letter, digit or underscore"));
        }
        if !b
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
        {
            return Err(err(
                "a tag may contain only letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Tag(s.to_string()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            s.parse::<Digest>()
                .map(Reference::Digest)
                .map_err(|e| NameError {
                    what: "digest",
                    value: e.value,
                    reason: e.reason.to_string(),
                })
        } else {
            s.parse().map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// An image reference relative to a registry: `repo:tag`, `repo@digest` or `repo` (tag latest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub repo: RepoName,
    pub reference: Reference,
}

impl FromStr for ImageRef {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        if let Some((repo, digest)) = s.split_once('@') {
            return Ok(ImageRef {
                repo: repo.parse()?,
                reference: Reference::Digest(digest.parse().map_err(|e: DigestError| {
                    NameError {
                        what: "digest",
                        value: e.value,
                        reason: e.reason.to_string(),
                    }
                })?),
            });
        }
        let (repo, tag) = match s.rfind(':') {
            Some(i) if !s[i..].contains('/') => (&s[..i], &s[i + 1..]),
            _ => (s, "latest"),
        };
        Ok(ImageRef {
            repo: repo.parse()?,
            reference: Reference::Tag(tag.parse()?),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(t) => write!(f, "{}:{}", self.repo, t),
            Reference::Digest(d) => write!(f, "{}@{}", self.repo, d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        for ok in [
            "a",
            "library/alpine",
            "my-team-2/app",
            "a.b/c__d/e---f",
            "x0/y_z",
        ] {
            let n: RepoName = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(n.as_str(), ok);
        }
        for bad in [
            "", "A", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a b", "a/../b", "ä",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?} accepted");
        }
        assert!("a".repeat(256).parse::<RepoName>().is_err());
        let n: RepoName = "proj/deep/img".parse().expect("valid");
        assert_eq!(n.project(), "proj");
        assert_eq!(n.image(), "deep/img");
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn image_refs() {
        let r: ImageRef = "proj/app:1.2".parse().expect("valid");
        assert_eq!(r.repo.as_str(), "proj/app");
        assert_eq!(r.reference.to_string(), "1.2");
        let r: ImageRef = "proj/app".parse().expect("valid");
        assert_eq!(r.reference.to_string(), "latest");
        let d = Digest::sha256_of(b"x");
        let r: ImageRef = format!("proj/app@{d}").parse().expect("valid");
        assert_eq!(r.reference, Reference::Digest(d));
    }
}
