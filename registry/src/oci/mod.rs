//! Pure OCI types, no I/O: digests and the streaming digester, the one name
//! grammar (repository, tag, reference), media types, manifest decoding, and
//! the error-code table.

mod digest;
pub mod error;
pub mod manifest;
pub mod media;
mod name;

pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use error::ErrorCode;
pub use manifest::{Descriptor, ManifestSummary, Platform};
pub use name::{ImageRef, NameError, Reference, RepoName, Tag, MAX_REPO_NAME};
