//! The replication records the metadata keeps: each policy as its
//! administrator saved it (the remote's password sealed).
//!
//! Types only; the operations are on `MetaStore`, and what a policy means
//! (its filters, trigger and bandwidth) is `crate::replication`'s.

use serde::{Deserialize, Serialize};

use super::SealedSecret;

/// Which way a policy copies images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From this registry to the remote.
    Push,
    /// From the remote into this registry.
    Pull,
}

/// The other registry of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRegistry {
    /// `http(s)://HOST[:PORT]`, no path.
    pub url: String,
    /// Empty: anonymous.
    pub username: String,
    pub password_sealed: Option<SealedSecret>,
}

/// What starts a policy's executions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationTrigger {
    Manual,
    /// Every push into a repository the filters select.
    OnPush,
    /// A five-field cron expression, in UTC.
    Schedule(String),
}

/// A replication policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationPolicy {
    /// Unique; `[a-z0-9][a-z0-9._-]*`.
    pub name: String,
    pub direction: Direction,
    pub remote: RemoteRegistry,
    /// Glob over source repository names (`*` within a path component,
    /// `**` across them).
    pub repositories: String,
    /// Glob over tag names.
    pub tags: String,
    /// Where images land at the destination: this project in place of the
    /// source's first path component. Empty: the same names.
    pub dest_project: String,
    pub trigger: ReplicationTrigger,
    /// Bytes per second at most; None: unlimited. `bandwidth_text` is how
    /// the administrator wrote it.
    pub bandwidth: Option<u64>,
    pub bandwidth_text: String,
    /// Tags deleted at the source are deleted at the destination.
    pub deletes: bool,
    pub created_at: u64,
    pub updated_at: u64,
}
