//! The full image reference a person writes: `[host[:port]/]path[:tag][@digest]`,
//! and Docker's normalisation of it (`nginx` → `docker.io/library/nginx:latest`).
//!
//! Owns: telling the host from the path, the Docker Hub conventions (default
//! host, `library/`, default tag `latest`), and the canonical and familiar
//! forms. Must not touch: which registries a caller may use, or how it pulls.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::host::{looks_like_host, Host};
use crate::name::{ImageRef, NameError, Reference, RepoName, Tag, MAX_REPO_NAME};

/// Docker Hub's namespace for official images (`nginx` is `library/nginx`).
pub const OFFICIAL_PREFIX: &str = "library/";

/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";

/// An image reference with an optional registry host, kept as written.
///
/// `Display` prints it as written, and parsing that gives the same value back.
/// [`FullRef::normalized`] fills in what Docker's conventions imply;
/// [`FullRef::canonical`] and [`FullRef::familiar`] are the long and short
/// spellings of the normalised reference. Both a tag and a digest may be
/// given (`name:tag@digest`); the digest then decides what is pulled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FullRef {
    host: Option<Host>,
    repo: RepoName,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

/// 64 lower-case hex digits: how Docker writes an image ID, so refused as a
/// one-component name without a host (as `docker` refuses it).
fn is_image_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The rules that tie the host to the path, for a reference that reads back the
/// same and normalises without failing.
fn check_name(host: Option<&Host>, repo: &RepoName) -> Result<(), String> {
    let path = repo.as_str();
    let one_component = !path.contains('/');
    if host.is_none() && !one_component && looks_like_host(repo.project()) {
        return Err(format!(
            "without a host, the first part {:?} would be read as a registry host",
            repo.project()
        ));
    }
    if host.is_none() && one_component && is_image_id(path) {
        return Err(
            "a name of 64 hex digits reads as an image ID; write it with its host or namespace \
             (e.g. \"library/<name>\")"
                .into(),
        );
    }
    let on_hub = host.is_none_or(Host::is_docker_hub);
    if on_hub && one_component && path.len() + OFFICIAL_PREFIX.len() > MAX_REPO_NAME {
        return Err(format!(
            "on Docker Hub this is {OFFICIAL_PREFIX}{path:.20}..., longer than {MAX_REPO_NAME} characters"
        ));
    }
    Ok(())
}

impl FullRef {
    /// A reference to `repo` on `host` (Docker Hub if `None`), without tag or digest.
    pub fn new(host: Option<Host>, repo: RepoName) -> Result<FullRef, NameError> {
        check_name(host.as_ref(), &repo).map_err(|reason| NameError {
            what: "image reference",
            value: match &host {
                Some(h) => format!("{h}/{repo}"),
                None => repo.to_string(),
            },
            reason,
        })?;
        Ok(FullRef {
            host,
            repo,
            tag: None,
            digest: None,
        })
    }

    pub fn with_tag(self, tag: Tag) -> FullRef {
        FullRef {
            tag: Some(tag),
            ..self
        }
    }

    pub fn with_digest(self, digest: Digest) -> FullRef {
        FullRef {
            digest: Some(digest),
            ..self
        }
    }

    /// The registry host as written; `None` means Docker Hub.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }

    /// The repository path as written (without `library/` added).
    pub fn repo(&self) -> &RepoName {
        &self.repo
    }

    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Docker's normalisation: the host is always written (`docker.io` for
    /// none, and for Docker Hub's other names), a one-component name on Docker
    /// Hub gains `library/`, and a reference with neither tag nor digest gains
    /// the tag `latest`. A tag next to a digest stays. Normalising twice
    /// changes nothing.
    pub fn normalized(&self) -> FullRef {
        let host = self
            .host
            .as_ref()
            .map_or_else(Host::docker_hub, Host::normalized);
        let repo = if host.is_docker_hub() && !self.repo.as_str().contains('/') {
            // check_name made sure the prefixed name stays within MAX_REPO_NAME.
            RepoName(format!("{OFFICIAL_PREFIX}{}", self.repo))
        } else {
            self.repo.clone()
        };
        let tag = match (&self.tag, &self.digest) {
            (None, None) => Some(Tag(DEFAULT_TAG.to_string())),
            (t, _) => t.clone(),
        };
        FullRef {
            host: Some(host),
            repo,
            tag,
            digest: self.digest.clone(),
        }
    }

    /// The normalised reference in full: `docker.io/library/nginx:latest`.
    pub fn canonical(&self) -> String {
        self.normalized().to_string()
    }

    /// The normalised reference as Docker shows it: without `docker.io/`, and
    /// without `library/` for official images (`nginx:latest`). A name whose
    /// first part would read as a host keeps `docker.io/`; a 64-hex official
    /// name keeps `library/`. It parses back to the same normalised reference.
    pub fn familiar(&self) -> String {
        let n = self.normalized();
        let mut s = match &n.host {
            Some(h) if h.is_docker_hub() => {
                let path = n.repo.as_str();
                let short = path
                    .strip_prefix(OFFICIAL_PREFIX)
                    .filter(|rest| !rest.contains('/') && !is_image_id(rest))
                    .unwrap_or(path);
                if short.contains('/') && looks_like_host(n.repo.project()) {
                    format!("{h}/{path}")
                } else {
                    short.to_string()
                }
            }
            Some(h) => format!("{h}/{}", n.repo),
            None => n.repo.to_string(),
        };
        n.write_suffix(&mut s);
        s
    }

    /// What to pull, after normalisation: the registry to ask (its name in
    /// references; see [`Host::endpoint`] for where to connect) and the
    /// reference within it. The digest wins over the tag.
    pub fn registry_ref(&self) -> (Host, ImageRef) {
        let n = self.normalized();
        let reference = match n.digest {
            Some(d) => Reference::Digest(d),
            None => Reference::Tag(n.tag.unwrap_or_else(|| Tag(DEFAULT_TAG.to_string()))),
        };
        let host = n.host.unwrap_or_else(Host::docker_hub);
        (
            host,
            ImageRef {
                repo: n.repo,
                reference,
            },
        )
    }

    fn write_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t.as_str());
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl FromStr for FullRef {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let value = || s.chars().take(300).collect::<String>();
        if s.is_empty() {
            return Err(NameError {
                what: "image reference",
                value: value(),
                reason: "empty".into(),
            });
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a host's port.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        let (host, path) = match name.split_once('/') {
            Some((first, path)) if looks_like_host(first) => (Some(first.parse::<Host>()?), path),
            _ => (None, name),
        };
        let repo: RepoName = path.parse()?;
        let tag = tag.map(str::parse::<Tag>).transpose()?;
        let digest = digest
            .map(|d| {
                d.parse::<Digest>().map_err(|e| NameError {
                    what: "digest",
                    value: e.value,
                    reason: e.reason.to_string(),
                })
            })
            .transpose()?;
        check_name(host.as_ref(), &repo).map_err(|reason| NameError {
            what: "image reference",
            value: value(),
            reason,
        })?;
        Ok(FullRef {
            host,
            repo,
            tag,
            digest,
        })
    }
}

impl fmt::Display for FullRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = match &self.host {
            Some(h) => format!("{h}/{}", self.repo),
            None => self.repo.to_string(),
        };
        self.write_suffix(&mut s);
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";

    fn parse(s: &str) -> FullRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn hosts_are_told_from_paths_as_docker_does() {
        for (input, host, path) in [
            ("nginx", None, "nginx"),
            ("team-a/web:1.0", None, "team-a/web"),
            ("library/foo/bar", None, "library/foo/bar"),
            ("localhost/fooo", Some("localhost"), "fooo"),
            ("localhost:5000/a/b", Some("localhost:5000"), "a/b"),
            ("registry:5000/app", Some("registry:5000"), "app"),
            (
                "example.com/privatebase",
                Some("example.com"),
                "privatebase",
            ),
            (
                "127.0.0.1:8000/private/moonbase",
                Some("127.0.0.1:8000"),
                "private/moonbase",
            ),
            (
                "[fc00::1]:5000/docker/docker",
                Some("[fc00::1]:5000"),
                "docker/docker",
            ),
            ("[::1]/x", Some("[::1]"), "x"),
            (
                "index.docker.io/fooo/bar",
                Some("index.docker.io"),
                "fooo/bar",
            ),
            // No '/': one component, whatever it looks like (Docker's FIXME too).
            ("localhost", None, "localhost"),
            ("192.168.0.1", None, "192.168.0.1"),
            ("localhost:5000", None, "localhost"),
        ] {
            let r = parse(input);
            assert_eq!(r.host().map(Host::as_str), host, "{input}");
            assert_eq!(r.repo().as_str(), path, "{input}");
            assert_eq!(r.to_string(), input, "printed as written");
        }
        assert_eq!(parse("localhost:5000").tag().map(Tag::as_str), Some("5000"));
    }

    #[test]
    fn normalisation_follows_docker() {
        for (input, canonical, familiar) in [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("registry-1.docker.io/a/b:2", "docker.io/a/b:2", "a/b:2"),
            ("fooo/bar", "docker.io/fooo/bar:latest", "fooo/bar:latest"),
            (
                "other/library",
                "docker.io/other/library:latest",
                "other/library:latest",
            ),
            (
                "library/foo/bar",
                "docker.io/library/foo/bar:latest",
                "library/foo/bar:latest",
            ),
            (
                "gcr.io/library/busybox",
                "gcr.io/library/busybox:latest",
                "gcr.io/library/busybox:latest",
            ),
            (
                "localhost/fooo",
                "localhost/fooo:latest",
                "localhost/fooo:latest",
            ),
            (
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase:latest",
                "127.0.0.1:8000/privatebase:latest",
            ),
            (
                "docker.io:443/x",
                "docker.io:443/x:latest",
                "docker.io:443/x:latest",
            ),
            // A Docker Hub namespace that would read as a host keeps docker.io/.
            (
                "docker.io/my.org/app",
                "docker.io/my.org/app:latest",
                "docker.io/my.org/app:latest",
            ),
            (
                "docker.io/localhost/app",
                "docker.io/localhost/app:latest",
                "docker.io/localhost/app:latest",
            ),
        ] {
            let r = parse(input);
            assert_eq!(r.canonical(), canonical, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(
                parse(familiar).canonical(),
                canonical,
                "{input}: familiar parses back"
            );
            assert_eq!(r.normalized().normalized(), r.normalized(), "{input}");
        }
        let hex = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let r = parse(&format!("docker.io/{hex}"));
        assert_eq!(r.canonical(), format!("docker.io/library/{hex}:latest"));
        assert_eq!(r.familiar(), format!("library/{hex}:latest"));
    }

    #[test]
    fn tags_and_digests() {
        let r = parse(&format!("busybox@{D}"));
        assert_eq!(r.canonical(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.familiar(), format!("busybox@{D}"));
        let r = parse(&format!("gcr.io/library/busybox:latest@{D}"));
        assert_eq!(r.tag().map(Tag::as_str), Some("latest"));
        assert_eq!(r.to_string(), format!("gcr.io/library/busybox:latest@{D}"));
        let (host, pull) = r.registry_ref();
        assert_eq!(host.as_str(), "gcr.io");
        assert_eq!(
            pull.to_string(),
            format!("library/busybox@{D}"),
            "the digest wins"
        );
        let (host, pull) = parse("nginx").registry_ref();
        assert_eq!(
            (host.as_str(), host.endpoint()),
            ("docker.io", "registry-1.docker.io")
        );
        assert_eq!(pull.to_string(), "library/nginx:latest");
        let sha512 = Digest::of(crate::Algorithm::Sha512, b"x");
        assert_eq!(parse(&format!("a/b@{sha512}")).digest(), Some(&sha512));
    }

    #[test]
    fn refusals() {
        let hex = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        for bad in [
            "",
            "https://github.com/docker/docker",
            "docker/Docker",
            "Foo/bar",
            "FOO.example/bar",
            "-docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            hex,
            &format!("{hex}:1"),
            "a:",
            "a@",
            "a:.x",
            "a@sha256:abc",
            "a@md5:d41d8cd98f00b204e9800998ecf8427e",
            "a@@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
            "example.com/",
            "/a",
            "a b",
        ] {
            assert!(bad.parse::<FullRef>().is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(MAX_REPO_NAME - OFFICIAL_PREFIX.len());
        assert!(long.parse::<FullRef>().is_ok());
        assert!(
            format!("{long}b").parse::<FullRef>().is_err(),
            "too long with library/"
        );
        assert!(format!("example.com/{long}b").parse::<FullRef>().is_ok());
    }

    #[test]
    fn built_references_read_back() {
        let repo: RepoName = "my.org/app".parse().expect("valid");
        assert!(
            FullRef::new(None, repo.clone()).is_err(),
            "would read as a host"
        );
        let host: Host = "docker.io".parse().expect("valid");
        let r = FullRef::new(Some(host), repo)
            .expect("valid")
            .with_tag("1".parse().expect("tag"))
            .with_digest(D.parse().expect("digest"));
        assert_eq!(r.to_string(), format!("docker.io/my.org/app:1@{D}"));
        assert_eq!(parse(&r.to_string()), r);
    }
}
