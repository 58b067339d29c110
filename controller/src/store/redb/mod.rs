//! The controller's records in redb: the embedded `ControllerStore`.
//!
//! Owns: the controller's tables inside the shared registry database, the
//! transactions that change them, and the rules checked inside those
//! transactions (uniqueness, references between records, "still in use"
//! refusals). Every change that touches more than one record is one write
//! transaction.
//!
//! Must not touch: tables it does not own (every table here starts with `ctl_`),
//! HTTP, or any I/O besides the database.
//!
//! Table tree (values are JSON documents of the `model` types):
//!
//! ```text
//! ctl_meta          &str                       -> u64        "schema" = 1
//! ctl_clusters      name                       -> Cluster
//! ctl_nodes         name                       -> Node
//! ctl_apps          (project, app)             -> App
//! ctl_app_versions  (project, app, version)    -> TemplateVersion   (immutable once written)
//! ctl_publications  (project, app, node)       -> Publication
//! ctl_resources     (project, kind, name)      -> Resource          (issue 6: load balancers,
//!                                                                    EIPs, routes, config maps,
//!                                                                    secrets, volumes)
//! ctl_bindings      (project, node, kind, name)-> Binding           (a resource bound to a node)
//! ctl_resource_publications
//!                   (project, kind, name, node)-> ResourcePublication (a resource on a node)
//! ctl_eip_addresses (cluster, address)         -> EipClaim          (an EIP address held on a node)
//! ctl_forced        (project, app, node)       -> ForcedRemoval     (what a force-unpublish left on a node)
//! ctl_publication_events
//!                   seq                        -> {id, change}      (publication changes, apps' and
//!                                                                    resources', not yet passed on)
//! ```
//!
//! `ctl_meta` also holds "publication_events", the last change's `seq`, and
//! "resource_publications" = 1 once the records of
//! resources published with their apps by an earlier release were made.
//!
//! Publications carry a `revision` that every write bumps; the reconciler writes
//! with compare-and-swap on it (`update_publication`), so a publish or unpublish
//! request that lands while a reconcile is in flight is never overwritten.
//!
//! The methods here block (redb commits fsync); `blocking.rs` implements
//! `ControllerStore` by running each on the blocking pool. Nothing outside
//! this module knows about redb.
//!
//! - `clusters`: clusters and nodes (their credentials sealed through `RecordSealer`);
//! - `apps`: apps and their template versions;
//! - `publications`: publish and unpublish requests, and the reconciler's
//!   compare-and-swap writes;
//! - `publication_events`: the outbox of publication changes those writes record;
//! - `resources`: resources that travel with apps, and the references between them;
//! - `bindings`: volumes bound to (and released from) nodes;
//! - `resource_publications`: resources published per node, and their rules
//!   (every write of a record goes through `put_rp` or `remove_rp`, which
//!   record its change of state in the outbox in the same transaction);
//! - `reseal`: every sealed value sealed again with the current key.

use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Result, StoreError};
use crate::sealed_records::{RecordSealer, SealError};

mod apps;
mod backfill;
mod bindings;
mod blocking;
mod clusters;
mod eips;
#[cfg(test)]
pub(crate) mod fixtures;
mod forced;
mod group_commit;
mod left_behind;
mod projects;
mod publication_events;
mod publications;
mod reseal;
mod resource_publications;
mod resource_reconcile;
mod resource_rules;
mod resources;
pub(crate) mod rows;
#[cfg(test)]
mod tests;

use self::clusters::seal_clear_records;
pub(crate) use self::publication_events::Stored;

const META: TableDefinition<&str, u64> = TableDefinition::new("ctl_meta");
const CLUSTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("ctl_clusters");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("ctl_nodes");
/// A name-keyed table of JSON records, with its name for error messages.
type NamedTable = (
    TableDefinition<'static, &'static str, &'static [u8]>,
    &'static str,
);
const CLUSTERS_T: NamedTable = (CLUSTERS, "ctl_clusters");
const NODES_T: NamedTable = (NODES, "ctl_nodes");
const APPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("ctl_apps");
const VERSIONS: TableDefinition<(&str, &str, u32), &[u8]> =
    TableDefinition::new("ctl_app_versions");
const PUBLICATIONS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("ctl_publications");
const RESOURCES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("ctl_resources");
const BINDINGS: TableDefinition<(&str, &str, &str, &str), &[u8]> =
    TableDefinition::new("ctl_bindings");

const RESOURCE_PUBS: TableDefinition<(&str, &str, &str, &str), &[u8]> =
    TableDefinition::new("ctl_resource_publications");

const SCHEMA_VERSION: u64 = 1;

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    })
}

fn sealing(table: &'static str) -> impl Fn(SealError) -> StoreError {
    move |e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    }
}

/// The controller's records in a database shared with the registry.
#[derive(Clone)]
pub struct RedbControllerStore {
    db: Arc<Database>,
    /// Seals the credentials that cluster and node records carry.
    sealer: RecordSealer,
    /// The reconcilers' publication writes waiting for one commit.
    writes: Arc<group_commit::WriteQueue>,
}

impl RedbControllerStore {
    /// Creates the controller's tables if needed. With a key in `sealer`, cluster
    /// and node credentials are sealed at rest, and records an earlier release wrote
    /// in the clear are sealed now, in the same transaction.
    pub fn open(db: Arc<Database>, sealer: RecordSealer) -> Result<RedbControllerStore> {
        let store = RedbControllerStore::over(db, sealer);
        store.prepare()?;
        Ok(store)
    }

    /// What `open` does to the database: tables made, the schema checked,
    /// clear credentials sealed, records of an earlier release backfilled.
    pub(crate) fn prepare(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let current = meta.get("schema")?.map(|g| g.value());
            match current {
                None => {
                    meta.insert("schema", SCHEMA_VERSION)?;
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::Conflict(format!(
                        "the database holds controller schema {v}, newer than this berth \
                         understands ({SCHEMA_VERSION}); upgrade berth"
                    )));
                }
                Some(_) => {}
            }
            let sealed = seal_clear_records(&txn, &self.sealer)?;
            if sealed > 0 {
                tracing::info!(
                    sealed,
                    "sealed cluster and node credentials stored in the clear"
                );
            }
            txn.open_table(APPS)?;
            txn.open_table(VERSIONS)?;
            txn.open_table(PUBLICATIONS)?;
            txn.open_table(RESOURCES)?;
            txn.open_table(BINDINGS)?;
            txn.open_table(RESOURCE_PUBS)?;
            txn.open_table(self::eips::EIP_ADDRESSES)?;
            txn.open_table(self::forced::FORCED)?;
            txn.open_table(self::publication_events::PUBLICATION_EVENTS)?;
            drop(meta);
            let made = backfill::backfill(&txn)?;
            if made > 0 {
                tracing::info!(
                    made,
                    "recorded the resources published with their apps per node"
                );
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A store over `db` as it is: no tables made, nothing sealed or
    /// backfilled (`open` does that). For a copy of the records another
    /// backend loaded into an in-memory database (`rows`).
    pub(crate) fn over(db: Arc<Database>, sealer: RecordSealer) -> RedbControllerStore {
        RedbControllerStore {
            db,
            sealer,
            writes: Arc::default(),
        }
    }

    /// The database, for tests that write records as an earlier release did.
    #[cfg(test)]
    pub(crate) fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Runs a point read (one record by its key) on the calling task.
    ///
    /// A redb read transaction never waits for a writer (readers see the
    /// last commit) and one lookup is a B-tree walk in redb's page cache:
    /// microseconds, less than the hop to the blocking pool and back costs
    /// (two thread wake-ups). A publish to a fleet makes several such reads
    /// per node and reconcile. Scans and writes stay on the pool.
    fn point_read<T>(&self, f: impl FnOnce(&RedbControllerStore) -> Result<T>) -> Result<T> {
        f(self)
    }

    /// Runs `f` on the blocking pool (redb commits fsync).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbControllerStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// One record of a name-keyed table, read by `read`.
    fn get_named<T>(
        &self,
        table: NamedTable,
        name: &str,
        read: impl Fn(&RecordSealer, &[u8]) -> std::result::Result<T, SealError>,
    ) -> Result<Option<T>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.0)?;
        let v = t.get(name)?;
        v.map(|g| read(&self.sealer, g.value()).map_err(sealing(table.1)))
            .transpose()
    }

    /// Every record of a name-keyed table, in name order.
    fn list_named<T>(
        &self,
        table: NamedTable,
        read: impl Fn(&RecordSealer, &[u8]) -> std::result::Result<T, SealError>,
    ) -> Result<Vec<T>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.0)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(read(&self.sealer, v.value()).map_err(sealing(table.1))?);
        }
        Ok(out)
    }
}
