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

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Running, or interrupted by a restart (it carries on at start).
    Running,
    Succeeded,
    Failed,
}

/// What happened to one image (a tag) of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    /// The destination already had it.
    UpToDate,
    Copied,
    /// A tag deleted at the destination (`deletes`).
    Deleted,
    Failed,
}

/// One image of an execution: a tag at the source and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageProgress {
    /// `repository:tag` at the source.
    pub source: String,
    /// `repository:tag` at the destination.
    pub dest: String,
    /// The digest the tag had at the source when the execution planned.
    pub digest: String,
    pub status: ItemStatus,
    pub error: Option<String>,
    /// The tag is to be deleted at the destination (it is gone at the source).
    #[serde(default)]
    pub delete: bool,
}

/// How a blob reached the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobStatus {
    Pending,
    /// Some bytes are at the destination, in an upload that resumes.
    Partial,
    /// The destination had it.
    Present,
    /// Mounted from another repository at the destination.
    Mounted,
    Copied,
    Failed,
}

/// One blob of an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobProgress {
    pub digest: String,
    pub size: u64,
    /// Bytes at the destination.
    pub done: u64,
    pub status: BlobStatus,
    /// The destination repository of its upload.
    pub repo: String,
    /// The upload at the destination, to resume after an interruption.
    pub session: Option<String>,
    /// Attempts that failed and were retried.
    pub retries: u32,
    pub error: Option<String>,
}

/// One run of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub policy: String,
    /// Per policy, from 1.
    pub id: u64,
    /// manual, on_push or schedule.
    pub trigger: String,
    pub status: ExecutionStatus,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub images: Vec<ImageProgress>,
    pub blobs: Vec<BlobProgress>,
    /// Why it failed, in words.
    pub error: Option<String>,
}
