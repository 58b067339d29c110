//! The file's format version: `open` refuses a database written by a newer
//! berth and brings an older one up to `SCHEMA_VERSION`.

use ::redb::{ReadableTable, TableDefinition};

use super::{
    retention, usage, RedbMeta, BLOBS, BLOB_LINKS, GC_RUNS, MANIFESTS, MANIFEST_BYTES,
    MANIFEST_HOLDERS, MANIFEST_REFS, PULLS, REFERRERS, REPLICATIONS, REPLICATION_RUNS, REPOS,
    REPO_BLOBS, TAGS, WEBHOOKS, WEBHOOK_LOG, WEBHOOK_QUEUE, WEBHOOK_SEQ,
};
use crate::meta::{MetaError, Result};

pub(super) const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("schema");

/// The registry's metadata format. 1: the first release (which wrote no version);
/// 2: credentials sealed at rest, files private (the data itself is unchanged);
/// 3: per-project usage counted (`usage.rs`; recounted from the links on
/// upgrade), and `blob_links` and `manifest_holders`, the reverse of
/// `repo_blobs` and `manifests` (built from them on upgrade; a berth that
/// does not keep them must not write to this file, hence the version).
pub const SCHEMA_VERSION: u64 = 3;

impl RedbMeta {
    pub(super) fn create_tables(&self) -> Result<()> {
        let tx = self.db().begin_write()?;
        tx.open_table(BLOBS)?;
        tx.open_table(REPO_BLOBS)?;
        tx.open_table(MANIFESTS)?;
        tx.open_table(MANIFEST_BYTES)?;
        tx.open_table(MANIFEST_REFS)?;
        tx.open_table(TAGS)?;
        tx.open_table(REFERRERS)?;
        tx.open_table(REPOS)?;
        tx.open_table(WEBHOOKS)?;
        tx.open_table(WEBHOOK_QUEUE)?;
        tx.open_table(WEBHOOK_LOG)?;
        tx.open_table(WEBHOOK_SEQ)?;
        tx.open_table(usage::PROJECT_CONTENT)?;
        tx.open_table(usage::PROJECT_USAGE)?;
        tx.open_table(usage::QUOTA_LIMITS)?;
        tx.open_table(usage::IMMUTABLE_TAGS)?;
        tx.open_table(REPLICATIONS)?;
        tx.open_table(REPLICATION_RUNS)?;
        tx.open_table(BLOB_LINKS)?;
        tx.open_table(MANIFEST_HOLDERS)?;
        tx.open_table(GC_RUNS)?;
        tx.open_table(PULLS)?;
        tx.open_table(retention::RETENTION)?;
        // A database without a version was written by the first release, or
        // is new: new when it holds no blob and no repository.
        let fresh = {
            use ::redb::ReadableTableMetadata;
            tx.open_table(BLOBS)?.is_empty()? && tx.open_table(REPOS)?.is_empty()?
        };
        let upgrade_from = {
            let mut schema = tx.open_table(SCHEMA)?;
            let found = schema.get("registry")?.map(|v| v.value());
            let found = match found {
                Some(v) => v,
                None if fresh => SCHEMA_VERSION,
                None => 1,
            };
            if found > SCHEMA_VERSION {
                return Err(MetaError::Db(format!(
                    "this data directory was written by a newer berth (metadata format {found}; \
                     this berth reads formats up to {SCHEMA_VERSION}): run the newer berth, or \
                     restore a backup taken before the upgrade"
                )));
            }
            if found < SCHEMA_VERSION {
                tracing::info!(
                    from = found,
                    to = SCHEMA_VERSION,
                    "upgrading the metadata format"
                );
            }
            if found < 3 {
                build_reverse_indexes(&tx)?;
            }
            schema.insert("registry", SCHEMA_VERSION)?;
            found
        };
        if upgrade_from < 3 {
            usage::recount_all(&tx)?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Builds `blob_links` and `manifest_holders` from `repo_blobs` and
/// `manifests` (the upgrade to format 3).
fn build_reverse_indexes(tx: &::redb::WriteTransaction) -> Result<()> {
    let links = tx.open_table(REPO_BLOBS)?;
    let mut index = tx.open_table(BLOB_LINKS)?;
    for row in links.iter()? {
        let (k, _) = row?;
        let (repo, digest) = k.value();
        index.insert((digest, repo), ())?;
    }
    let manifests = tx.open_table(MANIFESTS)?;
    let mut holders = tx.open_table(MANIFEST_HOLDERS)?;
    for row in manifests.iter()? {
        let (k, _) = row?;
        let (repo, digest) = k.value();
        holders.insert((digest, repo), ())?;
    }
    Ok(())
}
