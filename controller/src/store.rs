//! Persistence of the controller's records in redb.
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
//! ```
//!
//! Publications carry a `revision` that every write bumps; the reconciler writes
//! with compare-and-swap on it (`update_publication`), so a publish or unpublish
//! request that lands while a reconcile is in flight is never overwritten.
//!
//! The methods block (redb commits fsync); async callers run them on the blocking
//! pool.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{
    summarize_change, App, AppSpec, Cluster, Desired, Node, Publication, PublicationKey,
    PublicationState, TemplateVersion, ValidationError,
};
use crate::resources::{
    Binding, BindingState, LoadBalancerSpec, Resource, ResourceKind, ResourceSpec, ServiceType,
};
use crate::sealed_records::{RecordSealer, SealError};

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

const SCHEMA_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored (exists already, still in use...).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Boxed: redb's error is large and this one travels through every call.
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
    #[error("corrupt record in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("storage task failed: {0}")]
    Task(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
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

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
pub struct Store {
    db: Arc<Database>,
    /// Seals the credentials that cluster and node records carry.
    sealer: RecordSealer,
}

impl Store {
    /// Creates the controller's tables if needed. With a key in `sealer`, cluster
    /// and node credentials are sealed at rest, and records an earlier release wrote
    /// in the clear are sealed now, in the same transaction.
    pub fn open(db: Arc<Database>, sealer: RecordSealer) -> Result<Store> {
        let txn = db.begin_write()?;
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
            let sealed = seal_clear_records(&txn, &sealer)?;
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
        }
        txn.commit()?;
        Ok(Store { db, sealer })
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    // ----- clusters -------------------------------------------------------

    pub fn create_cluster(&self, cluster: &Cluster) -> Result<()> {
        cluster.validate()?;
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(CLUSTERS)?;
            if t.get(cluster.name.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "cluster {:?} already exists",
                    cluster.name
                )));
            }
            let bytes = self
                .sealer
                .encode_cluster(cluster)
                .map_err(sealing("ctl_clusters"))?;
            t.insert(cluster.name.as_str(), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
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

    pub fn get_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        self.get_named(CLUSTERS_T, name, RecordSealer::decode_cluster)
    }

    pub fn list_clusters(&self) -> Result<Vec<Cluster>> {
        self.list_named(CLUSTERS_T, RecordSealer::decode_cluster)
    }

    pub fn delete_cluster(&self, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let nodes = txn.open_table(NODES)?;
            let mut users = Vec::new();
            for item in nodes.iter()? {
                let (_, v) = item?;
                let n: Node = decode("ctl_nodes", v.value())?;
                if n.cluster == name {
                    users.push(n.name);
                }
            }
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "cluster {name:?} still has nodes {}; delete them first",
                    users.join(", ")
                )));
            }
            let mut t = txn.open_table(CLUSTERS)?;
            if t.remove(name)?.is_none() {
                return Err(StoreError::NotFound(format!("no cluster named {name:?}")));
            }
        }
        txn.commit()?;
        Ok(())
    }

    // ----- nodes ----------------------------------------------------------

    /// Stores a new node (normalized and validated); its cluster must exist.
    pub fn create_node(&self, node: &mut Node) -> Result<()> {
        node.normalize_and_validate()?;
        let txn = self.db.begin_write()?;
        {
            let clusters = txn.open_table(CLUSTERS)?;
            if clusters.get(node.cluster.as_str())?.is_none() {
                return Err(ValidationError::one(
                    "cluster",
                    format!(
                        "no cluster named {:?}; create it first (POST /api/v1/clusters)",
                        node.cluster
                    ),
                )
                .into());
            }
            let mut t = txn.open_table(NODES)?;
            if t.get(node.name.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "node {:?} already exists",
                    node.name
                )));
            }
            let bytes = self
                .sealer
                .encode_node(node)
                .map_err(sealing("ctl_nodes"))?;
            t.insert(node.name.as_str(), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get_node(&self, name: &str) -> Result<Option<Node>> {
        self.get_named(NODES_T, name, RecordSealer::decode_node)
    }

    pub fn list_nodes(&self) -> Result<Vec<Node>> {
        self.list_named(NODES_T, RecordSealer::decode_node)
    }

    pub fn delete_node(&self, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let pubs = txn.open_table(PUBLICATIONS)?;
            let mut users = Vec::new();
            for item in pubs.iter()? {
                let (k, _) = item?;
                let (project, app, node) = k.value();
                if node == name {
                    users.push(format!("{project}/{app}"));
                }
            }
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "node {name:?} still has apps published: {}; unpublish them first",
                    users.join(", ")
                )));
            }
            let bindings = txn.open_table(BINDINGS)?;
            let mut bound = Vec::new();
            for item in bindings.iter()? {
                let (k, _) = item?;
                let (project, node, kind, res) = k.value();
                if node == name {
                    bound.push(format!("{kind} {project}/{res}"));
                }
            }
            if !bound.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "node {name:?} still has resources bound: {}; release them first",
                    bound.join(", ")
                )));
            }
            let mut t = txn.open_table(NODES)?;
            if t.remove(name)?.is_none() {
                return Err(StoreError::NotFound(format!("no node named {name:?}")));
            }
        }
        txn.commit()?;
        Ok(())
    }

    // ----- apps and versions ----------------------------------------------

    /// Creates an app with its first template version, in one transaction.
    pub fn create_app(
        &self,
        project: &str,
        name: &str,
        spec: &AppSpec,
        author: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<(App, TemplateVersion)> {
        let mut check = Vec::new();
        if let Err(m) = crate::model::validate_dns_label(project) {
            check.push(format!("project: {m}"));
        }
        if let Err(m) = crate::model::validate_dns_label(name) {
            check.push(format!("name: {m}"));
        }
        if let Err(e) = spec.validate() {
            check.extend(e.problems);
        }
        if !check.is_empty() {
            return Err(ValidationError { problems: check }.into());
        }
        let app = App {
            project: project.into(),
            name: name.into(),
            kind: spec.kind,
            latest_version: 1,
            created_at: now,
            created_by: author.into(),
        };
        let version = TemplateVersion {
            version: 1,
            spec: spec.clone(),
            author: author.into(),
            created_at: now,
            summary: message
                .filter(|m| !m.trim().is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| summarize_change(None, spec)),
        };
        let txn = self.db.begin_write()?;
        {
            let mut apps = txn.open_table(APPS)?;
            if apps.get((project, name))?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "app {project}/{name} already exists; PUT to it to make a new version"
                )));
            }
            apps.insert((project, name), encode(&app).as_slice())?;
            let mut versions = txn.open_table(VERSIONS)?;
            versions.insert((project, name, 1u32), encode(&version).as_slice())?;
        }
        txn.commit()?;
        Ok((app, version))
    }

    pub fn get_app(&self, project: &str, name: &str) -> Result<Option<App>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(APPS)?;
        let v = t.get((project, name))?;
        v.map(|g| decode("ctl_apps", g.value())).transpose()
    }

    pub fn list_apps(&self, project: &str) -> Result<Vec<App>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(APPS)?;
        let mut out = Vec::new();
        for item in t.range((project, "")..)? {
            let (k, v) = item?;
            if k.value().0 != project {
                break;
            }
            out.push(decode("ctl_apps", v.value())?);
        }
        Ok(out)
    }

    /// Adds a template version. The same spec as the latest version adds nothing
    /// and returns the latest (`false`).
    pub fn add_version(
        &self,
        project: &str,
        name: &str,
        spec: &AppSpec,
        author: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<(TemplateVersion, bool)> {
        spec.validate()?;
        let txn = self.db.begin_write()?;
        let result;
        {
            let mut apps = txn.open_table(APPS)?;
            let mut app: App = match apps.get((project, name))? {
                Some(g) => decode("ctl_apps", g.value())?,
                None => return Err(not_found_app(project, name)),
            };
            if app.kind != spec.kind {
                return Err(StoreError::Conflict(format!(
                    "app {project}/{name} is a {}; its kind cannot change to {}. Create a new app \
                     (or unpublish and delete this one first)",
                    app.kind, spec.kind
                )));
            }
            let mut versions = txn.open_table(VERSIONS)?;
            let latest: TemplateVersion = match versions.get((project, name, app.latest_version))? {
                Some(g) => decode("ctl_app_versions", g.value())?,
                None => {
                    return Err(StoreError::Corrupt {
                        table: "ctl_app_versions",
                        message: format!(
                            "{project}/{name} version {} is missing",
                            app.latest_version
                        ),
                    })
                }
            };
            if latest.spec == *spec {
                return Ok((latest, false));
            }
            let version = TemplateVersion {
                version: app.latest_version + 1,
                spec: spec.clone(),
                author: author.into(),
                created_at: now,
                summary: message
                    .filter(|m| !m.trim().is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| summarize_change(Some(&latest.spec), spec)),
            };
            app.latest_version = version.version;
            versions.insert(
                (project, name, version.version),
                encode(&version).as_slice(),
            )?;
            apps.insert((project, name), encode(&app).as_slice())?;
            result = version;
        }
        txn.commit()?;
        Ok((result, true))
    }

    pub fn get_version(
        &self,
        project: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<TemplateVersion>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(VERSIONS)?;
        let v = t.get((project, name, version))?;
        v.map(|g| decode("ctl_app_versions", g.value())).transpose()
    }

    pub fn list_versions(&self, project: &str, name: &str) -> Result<Vec<TemplateVersion>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(VERSIONS)?;
        let mut out = Vec::new();
        for item in t.range((project, name, 0u32)..=(project, name, u32::MAX))? {
            let (_, v) = item?;
            out.push(decode("ctl_app_versions", v.value())?);
        }
        Ok(out)
    }

    /// Deletes an app and all its versions; refused while it is published anywhere.
    pub fn delete_app(&self, project: &str, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let pubs = txn.open_table(PUBLICATIONS)?;
            let mut nodes = Vec::new();
            for item in pubs.range((project, name, "")..)? {
                let (k, _) = item?;
                let (p, a, n) = k.value();
                if p != project || a != name {
                    break;
                }
                nodes.push(n.to_string());
            }
            if !nodes.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "app {project}/{name} is still published on {}; unpublish it first",
                    nodes.join(", ")
                )));
            }
            let resources = txn.open_table(RESOURCES)?;
            let lbs: Vec<String> = list_kind(&resources, project, ResourceKind::LoadBalancers)?
                .into_iter()
                .filter(|r| matches!(&r.spec, ResourceSpec::LoadBalancer(lb) if lb.app == name))
                .map(|r| r.name)
                .collect();
            if !lbs.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "rule: an app with load balancers cannot be deleted; delete load balancer {} \
                     first",
                    lbs.join(", ")
                )));
            }
            let mut apps = txn.open_table(APPS)?;
            if apps.remove((project, name))?.is_none() {
                return Err(not_found_app(project, name));
            }
            let mut versions = txn.open_table(VERSIONS)?;
            let keys: Vec<u32> = versions
                .range((project, name, 0u32)..=(project, name, u32::MAX))?
                .map(|item| item.map(|(k, _)| k.value().2))
                .collect::<Result<_, _>>()?;
            for v in keys {
                versions.remove((project, name, v))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    // ----- publications ---------------------------------------------------

    /// Records a publish of `version` (latest when `None`) on `nodes`, in one
    /// transaction: new publications start resolving, existing ones start over.
    pub fn publish(
        &self,
        project: &str,
        app: &str,
        version: Option<u32>,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<Publication>> {
        if nodes.is_empty() {
            return Err(ValidationError::one("nodes", "name at least one node").into());
        }
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let apps = txn.open_table(APPS)?;
            let app_rec: App = match apps.get((project, app))? {
                Some(g) => decode("ctl_apps", g.value())?,
                None => return Err(not_found_app(project, app)),
            };
            let version = version.unwrap_or(app_rec.latest_version);
            let versions = txn.open_table(VERSIONS)?;
            if versions.get((project, app, version))?.is_none() {
                return Err(StoreError::NotFound(format!(
                    "app {project}/{app} has no version {version} (latest is {})",
                    app_rec.latest_version
                )));
            }
            let node_table = txn.open_table(NODES)?;
            let mut unknown = Vec::new();
            for n in nodes {
                if node_table.get(n.as_str())?.is_none() {
                    unknown.push(n.as_str());
                }
            }
            if !unknown.is_empty() {
                return Err(ValidationError::one(
                    "nodes",
                    format!("no node named {}", unknown.join(", ")),
                )
                .into());
            }
            let mut pubs = txn.open_table(PUBLICATIONS)?;
            let unique: BTreeSet<&String> = nodes.iter().collect();
            for n in unique {
                let existing: Option<Publication> = pubs
                    .get((project, app, n.as_str()))?
                    .map(|g| decode("ctl_publications", g.value()))
                    .transpose()?;
                let p = match existing {
                    Some(mut p) => {
                        p.restart_publish(version, now);
                        p.revision += 1;
                        p
                    }
                    None => Publication::new(project, app, n, version, now),
                };
                pubs.insert((project, app, n.as_str()), encode(&p).as_slice())?;
                out.push(p);
            }
        }
        txn.commit()?;
        Ok(out)
    }

    /// Marks publications for removal, in one transaction.
    pub fn unpublish(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        cascade: bool,
        now: u64,
    ) -> Result<Vec<Publication>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let mut pubs = txn.open_table(PUBLICATIONS)?;
            let unique: BTreeSet<&String> = nodes.iter().collect();
            let mut missing = Vec::new();
            for n in unique {
                let existing: Option<Publication> = pubs
                    .get((project, app, n.as_str()))?
                    .map(|g| decode("ctl_publications", g.value()))
                    .transpose()?;
                match existing {
                    Some(mut p) => {
                        p.request_removal(cascade, now);
                        p.revision += 1;
                        pubs.insert((project, app, n.as_str()), encode(&p).as_slice())?;
                        out.push(p);
                    }
                    None => missing.push(n.as_str()),
                }
            }
            if !missing.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "{project}/{app} is not published on {}",
                    missing.join(", ")
                )));
            }
        }
        txn.commit()?;
        Ok(out)
    }

    pub fn get_publication(&self, key: &PublicationKey) -> Result<Option<Publication>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PUBLICATIONS)?;
        let v = t.get((key.project.as_str(), key.app.as_str(), key.node.as_str()))?;
        v.map(|g| decode("ctl_publications", g.value())).transpose()
    }

    pub fn list_publications(&self) -> Result<Vec<Publication>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PUBLICATIONS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(decode("ctl_publications", v.value())?);
        }
        Ok(out)
    }

    pub fn list_app_publications(&self, project: &str, app: &str) -> Result<Vec<Publication>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PUBLICATIONS)?;
        let mut out = Vec::new();
        for item in t.range((project, app, "")..)? {
            let (k, v) = item?;
            let (p, a, _) = k.value();
            if p != project || a != app {
                break;
            }
            out.push(decode("ctl_publications", v.value())?);
        }
        Ok(out)
    }

    /// Writes `p` if nobody changed it since it was read (same `revision`); bumps
    /// the revision on success. `false`: it changed or is gone; read it again.
    pub fn update_publication(&self, p: &mut Publication) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(PUBLICATIONS)?;
            let key = (p.project.as_str(), p.app.as_str(), p.node.as_str());
            let current: Option<Publication> = t
                .get(key)?
                .map(|g| decode("ctl_publications", g.value()))
                .transpose()?;
            match current {
                Some(c) if c.revision == p.revision => {}
                _ => return Ok(false),
            }
            p.revision += 1;
            t.insert(key, encode(&*p).as_slice())?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Deletes the publication if it is still at `revision`.
    pub fn delete_publication(&self, key: &PublicationKey, revision: u64) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(PUBLICATIONS)?;
            let k = (key.project.as_str(), key.app.as_str(), key.node.as_str());
            let current: Option<Publication> = t
                .get(k)?
                .map(|g| decode("ctl_publications", g.value()))
                .transpose()?;
            match current {
                Some(c) if c.revision == revision => {}
                _ => return Ok(false),
            }
            t.remove(k)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Images pinned on `node` by publications other than `except`.
    pub fn pinned_by_others(
        &self,
        node: &str,
        except: &PublicationKey,
    ) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for p in self.list_publications()? {
            if p.node == node && p.key() != *except {
                out.extend(p.pinned.iter().cloned());
                out.extend(p.images_by_digest());
            }
        }
        Ok(out)
    }

    // ----- resources (issue 6) -----------------------------------------------

    /// Creates a resource after checking, in the same transaction, what it refers
    /// to: a load balancer's app, an EIP's load balancer, a route's load
    /// balancer (which must be ClusterIP and have the port).
    pub fn create_resource(&self, r: &Resource) -> Result<()> {
        crate::resources::validate(r.kind, &r.name, &r.spec)?;
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(RESOURCES)?;
            let key = (r.project.as_str(), r.kind.as_str(), r.name.as_str());
            if t.get(key)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "{} {}/{} already exists; PUT to change it",
                    r.kind.singular(),
                    r.project,
                    r.name
                )));
            }
            check_references(&txn, &t, r)?;
            t.insert(key, encode(r).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Replaces a resource's spec (same rules as create, plus: a volume's
    /// capacity is immutable; a load balancer with routes stays ClusterIP).
    /// Returns the publications that must apply again (their app uses it).
    pub fn update_resource(&self, r: &Resource) -> Result<Vec<PublicationKey>> {
        crate::resources::validate(r.kind, &r.name, &r.spec)?;
        let txn = self.db.begin_write()?;
        let keys;
        {
            let mut t = txn.open_table(RESOURCES)?;
            let key = (r.project.as_str(), r.kind.as_str(), r.name.as_str());
            let current: Resource = match t.get(key)? {
                Some(g) => decode("ctl_resources", g.value())?,
                None => return Err(not_found_resource(r.kind, &r.project, &r.name)),
            };
            match (&current.spec, &r.spec) {
                (ResourceSpec::Volume(a), ResourceSpec::Volume(b)) if a.capacity != b.capacity => {
                    return Err(StoreError::Conflict(format!(
                        "rule: a volume's capacity cannot change; {}/{} stays {} (create a new \
                         volume for {})",
                        r.project, r.name, a.capacity, b.capacity
                    )));
                }
                (ResourceSpec::Volume(a), ResourceSpec::Volume(b))
                    if a.storage_class != b.storage_class =>
                {
                    return Err(StoreError::Conflict(format!(
                        "rule: a volume's storage class cannot change; {}/{} stays {}",
                        r.project, r.name, a.storage_class
                    )));
                }
                (ResourceSpec::LoadBalancer(a), ResourceSpec::LoadBalancer(b)) => {
                    if b.service_type == ServiceType::LoadBalancer {
                        let routes = referrers(&t, &r.project, ResourceKind::Routes, &r.name)?;
                        if !routes.is_empty() {
                            return Err(StoreError::Conflict(format!(
                                "rule: a route needs a ClusterIP load balancer; {} is used by \
                                 route {}, so it cannot become LoadBalancer",
                                r.name,
                                routes.join(", ")
                            )));
                        }
                    }
                    if a.app != b.app {
                        return Err(StoreError::Conflict(format!(
                            "rule: a load balancer stays with its app; {} belongs to {} (create \
                             another for {})",
                            r.name, a.app, b.app
                        )));
                    }
                }
                _ => {}
            }
            check_references(&txn, &t, r)?;
            let mut updated = r.clone();
            updated.created_at = current.created_at;
            t.insert(key, encode(&updated).as_slice())?;
            keys = reapply_users(&txn, &t, r)?;
        }
        txn.commit()?;
        Ok(keys)
    }

    pub fn get_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Resource>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(RESOURCES)?;
        let v = t.get((project, kind.as_str(), name))?;
        v.map(|g| decode("ctl_resources", g.value())).transpose()
    }

    pub fn list_resources(&self, project: &str, kind: ResourceKind) -> Result<Vec<Resource>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(RESOURCES)?;
        list_kind(&t, project, kind)
    }

    /// Deletes a resource. Refused (naming the rule) while a published app uses
    /// it, while a volume is bound to a node and not released, and while a load
    /// balancer has EIPs or routes or its app is published.
    pub fn delete_resource(&self, project: &str, kind: ResourceKind, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut bindings = txn.open_table(BINDINGS)?;
            let mut bound = Vec::new();
            let mut released = Vec::new();
            for item in bindings.iter()? {
                let (k, v) = item?;
                let (p, node, kd, n) = k.value();
                if p == project && kd == kind.as_str() && n == name {
                    let b: Binding = decode("ctl_bindings", v.value())?;
                    match b.state {
                        BindingState::Bound => bound.push(node.to_string()),
                        BindingState::Released => released.push(node.to_string()),
                    }
                }
            }
            if !bound.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "rule: a {} can only be deleted after it is released; {project}/{name} is \
                     still bound on {} (POST .../volumes/{name}/release)",
                    kind.singular(),
                    bound.join(", ")
                )));
            }
            let users = users_in_txn(&txn, project, kind, name)?;
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "rule: a resource in use cannot be deleted; {} {project}/{name} is used by \
                     published {}",
                    kind.singular(),
                    users.join(", ")
                )));
            }
            let mut t = txn.open_table(RESOURCES)?;
            let current: Resource = match t.get((project, kind.as_str(), name))? {
                Some(g) => decode("ctl_resources", g.value())?,
                None => return Err(not_found_resource(kind, project, name)),
            };
            if let ResourceSpec::LoadBalancer(lb) = &current.spec {
                let mut refs = referrers(&t, project, ResourceKind::Eips, name)?;
                refs.extend(referrers(&t, project, ResourceKind::Routes, name)?);
                if !refs.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "rule: a load balancer in use cannot be deleted; {name} is used by {}",
                        refs.join(", ")
                    )));
                }
                let nodes = published_nodes(&txn, project, &lb.app)?;
                if !nodes.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "rule: the load balancer of a published app cannot be deleted; unpublish \
                         {} from {} first",
                        lb.app,
                        nodes.join(", ")
                    )));
                }
            }
            // Objects are not pruned on apply, so what travels with a published
            // app stays until the app is unpublished.
            let lb_name = match &current.spec {
                ResourceSpec::Eip(e) => Some(e.load_balancer.as_str()),
                ResourceSpec::Route(r) => Some(r.load_balancer.as_str()),
                _ => None,
            };
            if let Some(lb) = lb_name
                .map(|n| load_balancer(&t, project, n))
                .transpose()?
                .flatten()
            {
                let nodes = published_nodes(&txn, project, &lb.app)?;
                if !nodes.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "rule: the {} of a published app cannot be deleted; unpublish {} from {} \
                         first",
                        kind.singular(),
                        lb.app,
                        nodes.join(", ")
                    )));
                }
            }
            t.remove((project, kind.as_str(), name))?;
            for node in released {
                bindings.remove((project, node.as_str(), kind.as_str(), name))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Publications (as `app@node`) whose version uses the resource.
    pub fn resource_users(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<String>> {
        let txn = self.db.begin_write()?;
        let users = users_in_txn(&txn, project, kind, name)?;
        txn.abort()?;
        Ok(users)
    }

    /// Records that a volume is bound on a node (again, if it was released).
    pub fn bind(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
        now: u64,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(BINDINGS)?;
            let b = Binding {
                project: project.into(),
                node: node.into(),
                kind,
                name: name.into(),
                state: BindingState::Bound,
                bound_at: now,
            };
            t.insert((project, node, kind.as_str(), name), encode(&b).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get_binding(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Binding>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BINDINGS)?;
        let v = t.get((project, node, kind.as_str(), name))?;
        v.map(|g| decode("ctl_bindings", g.value())).transpose()
    }

    pub fn list_bindings(&self, project: &str) -> Result<Vec<Binding>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BINDINGS)?;
        let mut out = Vec::new();
        for item in t.range((project, "", "", "")..)? {
            let (k, v) = item?;
            if k.value().0 != project {
                break;
            }
            out.push(decode("ctl_bindings", v.value())?);
        }
        Ok(out)
    }

    /// Checks that a volume may be released on a node: bound there and no app
    /// using it published there. The caller removes the claim, then calls
    /// `mark_released`.
    pub fn check_release(&self, project: &str, node: &str, name: &str) -> Result<()> {
        let kind = ResourceKind::Volumes;
        if self.get_binding(project, node, kind, name)?.is_none() {
            return Err(StoreError::NotFound(format!(
                "volume {project}/{name} is not bound on {node}"
            )));
        }
        let users: Vec<String> = self
            .published_specs_on_node(project, node)?
            .into_iter()
            .filter(|(_, (p, spec))| {
                p.desired == Desired::Published && crate::resources::spec_uses(spec, kind, name)
            })
            .map(|(app, _)| app)
            .collect();
        if !users.is_empty() {
            return Err(StoreError::Conflict(format!(
                "rule: a volume cannot be released while an app using it is published on that \
                 node; unpublish {} from {node} first",
                users.join(", ")
            )));
        }
        Ok(())
    }

    pub fn mark_released(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(BINDINGS)?;
            let key = (project, node, kind.as_str(), name);
            let b: Option<Binding> = t
                .get(key)?
                .map(|g| decode("ctl_bindings", g.value()))
                .transpose()?;
            if let Some(mut b) = b {
                b.state = BindingState::Released;
                t.insert(key, encode(&b).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Drops a released binding; refused while still bound.
    pub fn unbind(&self, project: &str, node: &str, name: &str) -> Result<()> {
        let kind = ResourceKind::Volumes;
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(BINDINGS)?;
            let key = (project, node, kind.as_str(), name);
            let b: Binding = match t.get(key)? {
                Some(g) => decode("ctl_bindings", g.value())?,
                None => {
                    return Err(StoreError::NotFound(format!(
                        "volume {project}/{name} is not bound on {node}"
                    )))
                }
            };
            if b.state == BindingState::Bound {
                return Err(StoreError::Conflict(format!(
                    "rule: a volume is unbound only after it is released; release {project}/{name} \
                     on {node} first"
                )));
            }
            t.remove(key)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every publication in `project` on `node` with the spec of its version, by app.
    pub fn published_specs_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeMap<String, (Publication, AppSpec)>> {
        let txn = self.db.begin_read()?;
        let pubs = txn.open_table(PUBLICATIONS)?;
        let versions = txn.open_table(VERSIONS)?;
        let mut out = BTreeMap::new();
        for item in pubs.range((project, "", "")..)? {
            let (k, v) = item?;
            let (p, app, n) = k.value();
            if p != project {
                break;
            }
            if n != node {
                continue;
            }
            let publication: Publication = decode("ctl_publications", v.value())?;
            if let Some(g) = versions.get((p, app, publication.version))? {
                let tv: TemplateVersion = decode("ctl_app_versions", g.value())?;
                out.insert(app.to_string(), (publication, tv.spec));
            }
        }
        Ok(out)
    }
}

type ResourceTable<'t> = redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>;

fn list_kind(
    t: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    project: &str,
    kind: ResourceKind,
) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    for item in t.range((project, kind.as_str(), "")..)? {
        let (k, v) = item?;
        let (p, kd, _) = k.value();
        if p != project || kd != kind.as_str() {
            break;
        }
        out.push(decode("ctl_resources", v.value())?);
    }
    Ok(out)
}

/// EIPs or routes (`kind`) that point at load balancer `lb`.
fn referrers(
    t: &ResourceTable<'_>,
    project: &str,
    kind: ResourceKind,
    lb: &str,
) -> Result<Vec<String>> {
    Ok(list_kind(t, project, kind)?
        .into_iter()
        .filter(|r| match &r.spec {
            ResourceSpec::Eip(e) => e.load_balancer == lb,
            ResourceSpec::Route(rt) => rt.load_balancer == lb,
            _ => false,
        })
        .map(|r| format!("{} {}", kind.singular(), r.name))
        .collect())
}

fn load_balancer(
    t: &ResourceTable<'_>,
    project: &str,
    name: &str,
) -> Result<Option<LoadBalancerSpec>> {
    let v = t.get((project, ResourceKind::LoadBalancers.as_str(), name))?;
    let r: Option<Resource> = v.map(|g| decode("ctl_resources", g.value())).transpose()?;
    Ok(r.and_then(|r| match r.spec {
        ResourceSpec::LoadBalancer(lb) => Some(lb),
        _ => None,
    }))
}

/// What a resource refers to must exist (and a route's load balancer must fit).
fn check_references(
    txn: &redb::WriteTransaction,
    t: &ResourceTable<'_>,
    r: &Resource,
) -> Result<()> {
    match &r.spec {
        ResourceSpec::LoadBalancer(lb) => {
            let apps = txn.open_table(APPS)?;
            let exists = apps.get((r.project.as_str(), lb.app.as_str()))?.is_some();
            if !exists {
                return Err(ValidationError::one(
                    "app",
                    format!("no app {}/{}; create it first", r.project, lb.app),
                )
                .into());
            }
        }
        ResourceSpec::Eip(e) => {
            let exists = load_balancer(t, &r.project, &e.load_balancer)?.is_some();
            if !exists {
                return Err(ValidationError::one(
                    "load_balancer",
                    format!("no load balancer {}/{}", r.project, e.load_balancer),
                )
                .into());
            }
        }
        ResourceSpec::Route(rt) => {
            let Some(lb) = load_balancer(t, &r.project, &rt.load_balancer)? else {
                return Err(ValidationError::one(
                    "load_balancer",
                    format!("no load balancer {}/{}", r.project, rt.load_balancer),
                )
                .into());
            };
            if lb.service_type != ServiceType::ClusterIP {
                return Err(StoreError::Conflict(format!(
                    "rule: a route needs a ClusterIP load balancer; {} is LoadBalancer",
                    rt.load_balancer
                )));
            }
            if !lb.ports.iter().any(|p| p.port == rt.port) {
                return Err(ValidationError::one(
                    "port",
                    format!(
                        "load balancer {} has no port {} (it has {})",
                        rt.load_balancer,
                        rt.port,
                        lb.ports
                            .iter()
                            .map(|p| p.port.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Nodes an app is published on (wanted there).
fn published_nodes(txn: &redb::WriteTransaction, project: &str, app: &str) -> Result<Vec<String>> {
    let pubs = txn.open_table(PUBLICATIONS)?;
    let mut nodes = Vec::new();
    for item in pubs.range((project, app, "")..)? {
        let (k, v) = item?;
        let (p, a, n) = k.value();
        if p != project || a != app {
            break;
        }
        let publication: Publication = decode("ctl_publications", v.value())?;
        if publication.desired == Desired::Published {
            nodes.push(n.to_string());
        }
    }
    Ok(nodes)
}

/// After a resource changed: publications whose objects include it apply
/// again. Marks them (applied = false) and returns their keys to trigger.
fn reapply_users(
    txn: &redb::WriteTransaction,
    t: &ResourceTable<'_>,
    r: &Resource,
) -> Result<Vec<PublicationKey>> {
    let apps: BTreeSet<String> = match &r.spec {
        ResourceSpec::LoadBalancer(lb) => [lb.app.clone()].into(),
        ResourceSpec::Eip(e) => load_balancer(t, &r.project, &e.load_balancer)?
            .map(|lb| [lb.app].into())
            .unwrap_or_default(),
        ResourceSpec::Route(rt) => load_balancer(t, &r.project, &rt.load_balancer)?
            .map(|lb| [lb.app].into())
            .unwrap_or_default(),
        _ => users_in_txn(txn, &r.project, r.kind, &r.name)?
            .into_iter()
            .filter_map(|u| u.split_once('@').map(|(a, _)| a.to_string()))
            .collect(),
    };
    let mut pubs = txn.open_table(PUBLICATIONS)?;
    let mut changed = Vec::new();
    for item in pubs.range((r.project.as_str(), "", "")..)? {
        let (k, v) = item?;
        let (p, app, _) = k.value();
        if p != r.project {
            break;
        }
        if !apps.contains(app) {
            continue;
        }
        let publication: Publication = decode("ctl_publications", v.value())?;
        if publication.desired == Desired::Published && publication.applied {
            changed.push(publication);
        }
    }
    let now = crate::reconcile::now_secs();
    let mut keys = Vec::new();
    for mut p in changed {
        p.applied = false;
        p.revision += 1;
        p.record(
            PublicationState::Deploying,
            format!("{} {} changed; applying again", r.kind.singular(), r.name),
            now,
        );
        pubs.insert(
            (p.project.as_str(), p.app.as_str(), p.node.as_str()),
            encode(&p).as_slice(),
        )?;
        keys.push(p.key());
    }
    Ok(keys)
}

/// Published apps (`app@node`) whose current version refers to the resource.
fn users_in_txn(
    txn: &redb::WriteTransaction,
    project: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<Vec<String>> {
    let pubs = txn.open_table(PUBLICATIONS)?;
    let versions = txn.open_table(VERSIONS)?;
    let mut users = Vec::new();
    for item in pubs.range((project, "", "")..)? {
        let (k, v) = item?;
        let (p, app, node) = k.value();
        if p != project {
            break;
        }
        let publication: Publication = decode("ctl_publications", v.value())?;
        if let Some(g) = versions.get((p, app, publication.version))? {
            let tv: TemplateVersion = decode("ctl_app_versions", g.value())?;
            if crate::resources::spec_uses(&tv.spec, kind, name) {
                users.push(format!("{app}@{node}"));
            }
        }
    }
    Ok(users)
}

fn not_found_app(project: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!("no app {project}/{name}"))
}

fn not_found_resource(kind: ResourceKind, project: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!("no {} {project}/{name}", kind.singular()))
}

/// Seals, in `txn`, every cluster and node record that holds its credential in
/// the clear; returns how many it sealed.
fn seal_clear_records(txn: &redb::WriteTransaction, sealer: &RecordSealer) -> Result<usize> {
    let mut count = 0;
    if !sealer.has_key() {
        txn.open_table(CLUSTERS)?;
        txn.open_table(NODES)?;
        return Ok(count);
    }
    let mut clusters = txn.open_table(CLUSTERS)?;
    let mut rewrite = Vec::new();
    for item in clusters.iter()? {
        let (k, v) = item?;
        if sealer.needs_sealing(v.value()) {
            let c = sealer
                .decode_cluster(v.value())
                .map_err(sealing("ctl_clusters"))?;
            rewrite.push((k.value().to_string(), c));
        }
    }
    for (name, c) in rewrite {
        let bytes = sealer.encode_cluster(&c).map_err(sealing("ctl_clusters"))?;
        clusters.insert(name.as_str(), bytes.as_slice())?;
        count += 1;
    }
    let mut nodes = txn.open_table(NODES)?;
    let mut rewrite = Vec::new();
    for item in nodes.iter()? {
        let (k, v) = item?;
        if sealer.needs_sealing(v.value()) {
            let n = sealer
                .decode_node(v.value())
                .map_err(sealing("ctl_nodes"))?;
            rewrite.push((k.value().to_string(), n));
        }
    }
    for (name, n) in rewrite {
        let bytes = sealer.encode_node(&n).map_err(sealing("ctl_nodes"))?;
        nodes.insert(name.as_str(), bytes.as_slice())?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, WorkloadKind};

    pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::create(dir.path().join("berth.redb")).expect("db");
        let store = Store::open(Arc::new(db), test_sealer()).expect("open");
        (dir, store)
    }

    fn test_sealer() -> RecordSealer {
        RecordSealer::new(Some(crate::secrets::SecretBox::new(&[9u8; 32])))
    }

    fn spec(image: &str) -> AppSpec {
        AppSpec {
            kind: WorkloadKind::Deployment,
            containers: vec![Container {
                name: "web".into(),
                image: image.into(),
                command: vec![],
                args: vec![],
                env: vec![],
                env_from: vec![],
                ports: vec![],
                resources: None,
                liveness_probe: None,
                readiness_probe: None,
                volume_mounts: vec![],
            }],
            volumes: vec![],
            replicas: None,
            schedule: None,
            restart_policy: None,
            labels: BTreeMap::new(),
        }
    }

    const KC: &str = "current-context: c\ncontexts:\n- name: c\n  context:\n    cluster: k\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n";

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            cluster: "edge".into(),
            k8s_node_name: String::new(),
            labels: BTreeMap::new(),
            edge_url: "http://127.0.0.1:1".into(),
            edge_credentials: None,
            created_at: 0,
        }
    }

    /// Records an earlier release wrote in the clear are sealed when a store opens
    /// with a key, and still read the same.
    #[test]
    fn clear_credentials_are_sealed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.redb");
        let token = "token: clear-Zq81";
        let kc = format!("{KC}users:\n- name: u\n  user:\n    {token}\n");
        let mut n = node("n1");
        n.edge_credentials = Some(crate::model::EdgeCredentials {
            user: "ctl".into(),
            password: "clear-pw-Yt55".into(),
        });
        {
            let db = Arc::new(Database::create(&path).expect("db"));
            let clear = Store::open(db, RecordSealer::default()).expect("open");
            clear
                .create_cluster(&Cluster {
                    name: "edge".into(),
                    kubeconfig: kc.clone(),
                    created_at: 1,
                })
                .expect("cluster");
            clear.create_node(&mut n).expect("node");
        }
        let raw = |db: &Database| -> String {
            let txn = db.begin_read().expect("read");
            let c = txn.open_table(CLUSTERS).expect("t");
            let c = String::from_utf8_lossy(c.get("edge").expect("get").expect("row").value())
                .into_owned();
            let nodes = txn.open_table(NODES).expect("t");
            let n = String::from_utf8_lossy(nodes.get("n1").expect("get").expect("row").value())
                .into_owned();
            c + &n
        };
        let db = Arc::new(Database::create(&path).expect("db"));
        assert!(
            raw(&db).contains("clear-Zq81"),
            "written in the clear first"
        );
        let sealed = Store::open(db.clone(), test_sealer()).expect("open");
        let stored = raw(&db);
        assert!(!stored.contains("clear-Zq81"), "{stored}");
        assert!(!stored.contains("clear-pw-Yt55"), "{stored}");
        let c = sealed.get_cluster("edge").expect("read").expect("cluster");
        assert_eq!(c.kubeconfig, kc);
        let got = sealed.get_node("n1").expect("read").expect("node");
        assert_eq!(got.edge_credentials, n.edge_credentials);
        // Without the key, the sealed records say what is missing.
        let keyless = Store::open(db, RecordSealer::default()).expect("open");
        let err = keyless.get_cluster("edge").expect_err("needs the key");
        assert!(err.to_string().contains("sealing key"), "{err}");
    }

    #[test]
    fn clusters_nodes_refusals() {
        let (_d, s) = temp_store();
        let c = Cluster {
            name: "edge".into(),
            kubeconfig: KC.into(),
            created_at: 1,
        };
        s.create_cluster(&c).expect("create");
        assert!(matches!(s.create_cluster(&c), Err(StoreError::Conflict(_))));
        let mut n = node("n1");
        s.create_node(&mut n).expect("node");
        assert_eq!(n.k8s_node_name, "n1");
        let mut orphan = node("n2");
        orphan.cluster = "nope".into();
        assert!(matches!(
            s.create_node(&mut orphan),
            Err(StoreError::Invalid(_))
        ));
        let err = s
            .delete_cluster("edge")
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("still has nodes n1"), "{err}");
        assert_eq!(s.list_nodes().expect("list").len(), 1);
    }

    #[test]
    fn versions_and_publications() {
        let (_d, s) = temp_store();
        s.create_cluster(&Cluster {
            name: "edge".into(),
            kubeconfig: KC.into(),
            created_at: 1,
        })
        .expect("cluster");
        s.create_node(&mut node("n1")).expect("n1");
        s.create_node(&mut node("n2")).expect("n2");
        let (app, v1) = s
            .create_app("shop", "web", &spec("shop/web:1"), "alice", None, 10)
            .expect("app");
        assert_eq!(app.latest_version, 1);
        assert!(v1.summary.starts_with("first version"));
        let (v2, created) = s
            .add_version("shop", "web", &spec("shop/web:2"), "bob", None, 11)
            .expect("v2");
        assert!(created);
        assert_eq!(v2.version, 2);
        assert!(v2.summary.contains("shop/web:1 -> shop/web:2"));
        let (same, created) = s
            .add_version("shop", "web", &spec("shop/web:2"), "bob", None, 12)
            .expect("same");
        assert!(!created);
        assert_eq!(same.version, 2);
        assert_eq!(s.list_versions("shop", "web").expect("versions").len(), 2);
        // An app in another project with a name that sorts next to it.
        s.create_app("shop", "web2", &spec("shop/web:1"), "a", None, 1)
            .expect("web2");
        s.create_app("shopx", "web", &spec("shop/web:1"), "a", None, 1)
            .expect("shopx");
        assert_eq!(s.list_apps("shop").expect("apps").len(), 2);

        let pubs = s
            .publish("shop", "web", None, &["n1".into(), "n2".into()], 20)
            .expect("publish");
        assert_eq!(pubs.len(), 2);
        assert!(pubs.iter().all(|p| p.version == 2));
        let err = s
            .publish("shop", "web", Some(9), &["n1".into()], 20)
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("no version 9 (latest is 2)"), "{err}");
        let err = s
            .publish("shop", "web", None, &["n9".into()], 20)
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("no node named n9"), "{err}");
        assert_eq!(s.list_app_publications("shop", "web").expect("l").len(), 2);
        assert!(s
            .list_app_publications("shop", "web2")
            .expect("l")
            .is_empty());

        let err = s
            .delete_app("shop", "web")
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("still published on n1, n2"), "{err}");
        let err = s
            .delete_node("n1")
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("shop/web"), "{err}");

        // Compare-and-swap.
        let key = pubs[0].key();
        let mut a = s.get_publication(&key).expect("get").expect("some");
        let mut b = a.clone();
        assert!(s.update_publication(&mut a).expect("cas"));
        assert!(!s.update_publication(&mut b).expect("stale"));
        assert!(!s
            .delete_publication(&key, b.revision)
            .expect("stale delete"));
        assert!(s.delete_publication(&key, a.revision).expect("delete"));
        let err = s
            .unpublish("shop", "web", &["n1".into()], false, 30)
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("not published on n1"), "{err}");
    }
}
