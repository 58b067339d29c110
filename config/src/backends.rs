//! The `[storage]` and `[meta]` sections: where blobs and metadata are kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{duration_str, ByteSize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Files under `<data_dir>/blobs` (object_store LocalFileSystem).
    Local,
    /// An S3-compatible bucket.
    S3,
    /// In memory; for tests and throwaway instances only.
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// S3 bucket name (backend = "s3").
    pub bucket: String,
    /// S3 endpoint, e.g. http://127.0.0.1:9000 for MinIO. Empty: AWS.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow plain-HTTP endpoints.
    pub allow_http: bool,
    /// backend = "s3": the size of the multipart parts an upload's bytes are
    /// sent to the bucket in. Smaller PATCH chunks wait in small objects
    /// under `_uploads/<id>/` until a part is full; one part per upload may
    /// be held in memory by the process serving it. At least 5 MiB (S3's
    /// minimum part), a multiple of 1 MiB; a blob can have 10,000 parts, so
    /// this times 10,000 is the largest blob.
    pub part_size: ByteSize,
    /// backend = "s3": answer a blob GET with a `307` to a presigned URL of
    /// the object, so that clients fetch its bytes from the bucket rather
    /// than through berth (distribution's and Harbor's `redirect`). Only
    /// after the usual checks: a caller who may not pull gets no URL.
    /// Clients must reach the bucket at `endpoint`.
    pub redirect: bool,
    /// How long a presigned URL stays valid (S3 allows up to 7 days).
    #[serde(with = "duration_str")]
    pub redirect_expiry: Duration,
}

/// S3's smallest part of a multipart upload (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Local,
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
            part_size: ByteSize(16 << 20),
            redirect: false,
            redirect_expiry: Duration::from_secs(20 * 60),
        }
    }
}

/// Where the registry keeps its metadata (repositories, accounts, audit,
/// the controller's records, ...).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetaBackend {
    /// One embedded redb file in the data directory: the default, one process.
    #[default]
    Redb,
    /// A PostgreSQL database several `berth serve` replicas share.
    Postgres,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    pub backend: MetaBackend,
    /// `postgres://user:password@host:port/database` (backend = "postgres").
    /// Never logged; prefer the environment (`BERTH_META_URL`) for the password.
    pub url: String,
    /// Connections each process keeps open to PostgreSQL at most.
    pub max_connections: u32,
    /// How much each process keeps of its hot reads (manifests by digest,
    /// tags, blob links) in memory, so that pulls rarely ask the database.
    /// 0: no cache. On redb every metadata write empties it before it
    /// returns; on PostgreSQL it is kept true by the changes other replicas
    /// announce (see README, "Running several replicas").
    pub cache_size: ByteSize,
    /// backend = "postgres": the longest a cached read is served, whatever
    /// was announced: the bound on staleness should a replica's listening
    /// connection die without a word (until TCP keepalives notice, about a
    /// minute). 0s: no cache.
    #[serde(with = "duration_str")]
    pub cache_ttl: Duration,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            backend: MetaBackend::Redb,
            url: String::new(),
            max_connections: 16,
            cache_size: ByteSize(64 << 20),
            cache_ttl: Duration::from_secs(10),
        }
    }
}
