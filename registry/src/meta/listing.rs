//! What the image list reads from the metadata: pull counts and times
//! (written in batches, see `crate::pulls`) and tags with their manifests'
//! push times.

use serde::{Deserialize, Serialize};

/// Pulls of one manifest in one repository: how many, and the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PullCount {
    pub repository: String,
    pub digest: String,
    pub count: u64,
    /// Unix seconds.
    pub last_pulled_at: u64,
}

/// A tag with its manifest as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    /// Unix seconds the manifest was (last) pushed to this repository.
    pub pushed_at: u64,
}
