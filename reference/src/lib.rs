//! berth's one grammar of image references, shared by the registry, the edge
//! cache and the controller: digests (and the streaming digester), repository
//! names, tags, references within a registry, registry hosts, and the full
//! reference a person writes with Docker's normalisation. Pure: no I/O.
//!
//! # Grammar
//!
//! ```text
//! full-ref       := [host "/"] path [":" tag] ["@" digest]          FullRef
//! image-ref      := path (":" tag | "@" digest)?  (no tag: latest)   ImageRef
//! host           := (domain | "[" ipv6 "]") [":" port]               Host
//! domain         := label ("." label)*      label := [a-z0-9]([a-z0-9-]*[a-z0-9])?
//! path           := component ("/" component)*                       RepoName
//! component      := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
//! tag            := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}                Tag
//! digest         := ("sha256:" [0-9a-f]{64}) | ("sha512:" [0-9a-f]{128})   Digest
//! ```
//!
//! The first component of `first/rest` is a host if it contains a `.` or a
//! `:`, or is `localhost`; otherwise the whole name is a path on Docker Hub.
//! Normalising ([`FullRef::normalized`]) writes the host `docker.io` for none
//! (and for `index.docker.io` and `registry-1.docker.io`), prefixes a
//! one-component Docker Hub path with `library/`, and gives a reference with
//! neither tag nor digest the tag `latest`. `name:tag@digest` keeps both; the
//! digest decides what is pulled ([`FullRef::registry_ref`]).
//!
//! # Where berth differs from distribution's `reference` package
//!
//! - Upper case is refused everywhere, hosts included (Docker accepts
//!   `Registry.Example.com/app`, and takes an upper-case first component such
//!   as `Foo/bar` for a host). One spelling per image keeps names comparable.
//! - Digests are sha256 or sha512 in lower-case hex of exactly their length
//!   (distribution's grammar admits any algorithm name and 32+ hex digits of
//!   either case, and leaves the rest to go-digest).
//! - Ports are 1 to 65535; domain labels and names keep DNS's 63 and 253
//!   character limits; an IPv6 host must be a valid address (distribution
//!   checks only its characters).
//! - `registry-1.docker.io` normalises to `docker.io` as `index.docker.io`
//!   does (distribution normalises only the latter).
//! - A 64-hex one-component name without a host is refused, with or without
//!   a tag (Docker refuses it only bare); so is a one-component Docker Hub
//!   name too long for `library/` in front of it (Docker refuses that when
//!   it normalises).
//! - The familiar form keeps `docker.io/` when the path's first component
//!   would otherwise read as a host, and `library/` for a 64-hex name, so
//!   that it always parses back to the same reference.
//! - Path components follow the OCI distribution spec's grammar, which is
//!   distribution's; the 255-character limit applies to the path, as there.

#![forbid(unsafe_code)]

mod digest;
mod full;
mod host;
mod name;

pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use full::{FullRef, DEFAULT_TAG, OFFICIAL_PREFIX};
pub use host::{looks_like_host, Host, DOCKER_HUB, DOCKER_HUB_ALIASES, DOCKER_HUB_ENDPOINT};
pub use name::{ImageRef, NameError, Reference, RepoName, Tag, MAX_REPO_NAME};

/// With the `serde` feature, each type travels as its string form and is
/// checked on the way in.
#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Digest, FullRef, Host, ImageRef, Reference, RepoName, Tag};

    macro_rules! as_string {
        ($($t:ty),*) => {$(
            impl serde::Serialize for $t {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_str(self)
                }
            }
            impl<'de> serde::Deserialize<'de> for $t {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let s = std::borrow::Cow::<str>::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                }
            }
        )*};
    }

    as_string!(Digest, RepoName, Tag, Reference, ImageRef, Host, FullRef);
}
