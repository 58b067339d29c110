//! Pure OCI types, no I/O: media types, manifest decoding, and the error-code
//! table. Digests, the streaming digester and the one name grammar
//! (repository, tag, reference, registry host, full reference) are
//! `berth-reference`'s, re-exported here under the paths the registry and the
//! edge have always used.

pub mod error;
pub mod manifest;
pub mod media;

pub use berth_reference::{
    Algorithm, Digest, DigestError, Digester, FullRef, Host, ImageRef, NameError, Reference,
    RepoName, Tag, MAX_REPO_NAME,
};
pub use error::ErrorCode;
pub use manifest::{Descriptor, ManifestSummary, Platform};
