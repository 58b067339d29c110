//! The handle of one upload in progress, in the spool or in the bucket, and the verified ingest finishing it yields.

use std::path::PathBuf;

use bytes::Bytes;
use object_store::path::Path as ObjPath;

use super::bucket::BucketIngest;
use super::spool::SpoolIngest;
use super::{IngestState, Result};
use crate::oci::Digest;

/// An ingest whose bytes are synced and verified, ready for `ContentStore::place`.
#[derive(Debug)]
pub struct FinishedIngest {
    pub id: String,
    pub digest: Digest,
    pub size: u64,
    pub(super) kept: Kept,
}

/// Where a finished ingest's verified bytes wait for `place`.
#[derive(Debug)]
pub(super) enum Kept {
    /// The spool directory's `data` file, and the state as last written
    /// (for `mark_placing`).
    Spool { dir: PathBuf, state: IngestState },
    /// The completed upload's `data` object in the bucket.
    Bucket { staged: ObjPath },
}

/// An upload in progress: appended to, hashed on the way in, made durable
/// and acknowledged by `sync`; in the local spool or in the bucket.
pub struct Ingest {
    pub(super) held: Held,
}

pub(super) enum Held {
    Spool(SpoolIngest),
    Bucket(Box<BucketIngest>),
}

impl Ingest {
    pub(super) fn spool(s: SpoolIngest) -> Self {
        Self {
            held: Held::Spool(s),
        }
    }

    pub fn id(&self) -> &str {
        match &self.held {
            Held::Spool(s) => s.id(),
            Held::Bucket(b) => b.id(),
        }
    }

    /// Bytes written so far (acknowledged or not).
    pub fn offset(&self) -> u64 {
        match &self.held {
            Held::Spool(s) => s.offset(),
            Held::Bucket(b) => b.offset(),
        }
    }

    /// The offset last made durable by `sync`.
    pub fn acknowledged(&self) -> u64 {
        match &self.held {
            Held::Spool(s) => s.acknowledged(),
            Held::Bucket(b) => b.acknowledged(),
        }
    }

    pub fn owner(&self) -> &str {
        match &self.held {
            Held::Spool(s) => s.owner(),
            Held::Bucket(b) => b.owner(),
        }
    }

    /// Before a request on an ingest held in memory: in the bucket, reloads
    /// it if another process sharing the bucket has moved it on since, and
    /// fails with `IngestNotFound` if that one finished or cancelled it. The
    /// spool is this process's own: nothing to do.
    pub async fn catch_up(&mut self) -> Result<()> {
        match &mut self.held {
            Held::Spool(_) => Ok(()),
            Held::Bucket(b) => b.catch_up().await,
        }
    }

    /// Appends and hashes `chunk`.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        match &mut self.held {
            Held::Spool(s) => s.write(chunk).await,
            Held::Bucket(b) => b.write(chunk).await,
        }
    }

    /// The digest of every byte written so far, where the ingest hashes
    /// them as they arrive (the spool), without making them durable first: a
    /// fill tells its clients that a blob is good before committing it. None
    /// in the bucket, which learns its digest only in `finish`.
    pub fn digest_so_far(&self) -> Option<Digest> {
        match &self.held {
            Held::Spool(s) => s.digest_so_far(),
            Held::Bucket(_) => None,
        }
    }

    /// Makes everything written so far durable and records it as acknowledged.
    pub async fn sync(&mut self) -> Result<()> {
        match &mut self.held {
            Held::Spool(s) => s.sync().await,
            Held::Bucket(b) => b.sync().await,
        }
    }

    /// Makes the bytes durable and verifies them. On a mismatch nothing
    /// enters the store; the caller aborts the ingest.
    pub async fn finish(
        self,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<FinishedIngest> {
        match self.held {
            Held::Spool(s) => s.finish(expected, expected_size).await,
            Held::Bucket(b) => {
                let id = b.id().to_string();
                let (digest, size, staged) = b.finish(expected, expected_size).await?;
                Ok(FinishedIngest {
                    id,
                    digest,
                    size,
                    kept: Kept::Bucket { staged },
                })
            }
        }
    }
}
