//! berth's one grammar of image names, shared by the registry, the edge cache
//! and the controller: digests (and the streaming digester), repository names,
//! tags, and references within a registry. Pure: no I/O.

#![forbid(unsafe_code)]

mod digest;
mod name;

pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use name::{ImageRef, NameError, Reference, RepoName, Tag, MAX_REPO_NAME};

/// With the `serde` feature, each type travels as its string form and is
/// checked on the way in.
#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Digest, ImageRef, Reference, RepoName, Tag};

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

    as_string!(Digest, RepoName, Tag, Reference, ImageRef);
}
