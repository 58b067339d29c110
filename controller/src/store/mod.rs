//! The controller's records: `ControllerStore`, the interface every backend
//! implements, and its typed errors.
//!
//! Owns: what may be asked of the records and what each call guarantees.
//! Every call is one transaction: the rules checked inside it (uniqueness,
//! references between records, "still in use" refusals, the EIP addresses a
//! publish claims) hold against concurrent calls, and what a caller needs to
//! happen atomically is one call here, never composed by callers. The
//! interface carries no database types and suits an async driver, so a
//! server database can implement it; `conformance.rs` is the suite every
//! implementation runs. `redb/` is the embedded implementation (its table
//! tree is in its module doc), in the registry's database file.
//!
//! Publications carry a `revision` that every write bumps; the reconciler
//! writes with compare-and-swap on it (`replace_publication`), so a publish
//! or unpublish request that lands while a reconcile is in flight is never
//! overwritten. Resource publications work the same way.
//!
//! Publication writes also record each change of state they make (worded by
//! `changes.rs`) in an outbox, in the same transaction, for the registry's
//! webhooks to take (`publication_events`, `ack_publication_events`).
//!
//! Must not touch: HTTP, nodes, or any I/O besides the records.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use crate::model::{
    App, AppSpec, Cluster, Node, Publication, PublicationKey, TemplateVersion, ValidationError,
};
use crate::resources::{
    Binding, PublicationRef, Resource, ResourceKind, ResourcePublication, ResourcePublicationKey,
};

pub(crate) mod changes;
#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
mod conformance_events;
#[cfg(test)]
pub(crate) mod conformance_reseal;
mod export;
#[cfg(test)]
mod fixtures;
pub mod pg;
mod records;
mod redb;

pub use self::export::ControllerRecords;
pub use self::pg::PgControllerStore;
pub use self::records::{EipClaim, ForcedRemoval, ProjectHoldings, ProjectPurge, RecordedChange};
/// An embedded store in a temporary directory, for the crate's tests.
#[cfg(test)]
pub(crate) use self::redb::fixtures::temp_store;
pub use self::redb::RedbControllerStore;
/// The embedded store's rows and outbox form, which `pg` shares.
pub(crate) use self::redb::{rows, Stored};

/// The kinds of sealed values `ControllerStore::reseal` counts, as its
/// report names them.
pub const SECRET_VALUES: &str = "secret_values";
pub const KUBECONFIGS: &str = "cluster_kubeconfigs";
pub const NODE_CREDENTIALS: &str = "node_credentials";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored (exists already, still in use...).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The database failed (its message; no database types cross this boundary).
    #[error("database error: {0}")]
    Db(String),
    #[error("corrupt record in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("storage task failed: {0}")]
    Task(String),
    /// A write of a leadership term that is over (see `ControllerStore::fenced`).
    #[error("{0}")]
    Fenced(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The controller's records. Object safe: the controller holds an
/// `Arc<dyn ControllerStore>`.
#[async_trait]
pub trait ControllerStore: Send + Sync {
    // ---- clusters and nodes (credentials sealed at rest) ----

    async fn create_cluster(&self, cluster: &Cluster) -> Result<()>;
    /// Changes a cluster's EIP pool (`Some("")` removes it), keeping every
    /// address already allocated from it inside.
    async fn update_cluster_pool(&self, name: &str, pool: Option<&str>) -> Result<Cluster>;
    async fn get_cluster(&self, name: &str) -> Result<Option<Cluster>>;
    async fn list_clusters(&self) -> Result<Vec<Cluster>>;
    /// Refused while a node is in the cluster.
    async fn delete_cluster(&self, name: &str) -> Result<()>;
    /// Stores a new node (normalized and validated, into `node`); its
    /// cluster must exist.
    async fn create_node(&self, node: &mut Node) -> Result<()>;
    async fn get_node(&self, name: &str) -> Result<Option<Node>>;
    async fn list_nodes(&self) -> Result<Vec<Node>>;
    /// Changes a node's labels as a JSON merge patch would: a value sets the
    /// label, `None` removes it. Answers the node as stored.
    async fn label_node(
        &self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<Node>;
    /// Refused while an app is published on the node or a volume bound to it.
    async fn delete_node(&self, name: &str) -> Result<()>;

    // ---- apps and their template versions ----

    /// Creates an app with its first template version.
    async fn create_app(
        &self,
        project: &str,
        name: &str,
        spec: &AppSpec,
        author: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<(App, TemplateVersion)>;
    async fn get_app(&self, project: &str, name: &str) -> Result<Option<App>>;
    async fn list_apps(&self, project: &str) -> Result<Vec<App>>;
    /// A new version unless `spec` equals the latest (then that one, and
    /// `false`).
    async fn add_version(
        &self,
        project: &str,
        name: &str,
        spec: &AppSpec,
        author: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<(TemplateVersion, bool)>;
    async fn get_version(
        &self,
        project: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<TemplateVersion>>;
    async fn list_versions(&self, project: &str, name: &str) -> Result<Vec<TemplateVersion>>;
    /// Refused while the app is published anywhere.
    async fn delete_app(&self, project: &str, name: &str) -> Result<()>;

    // ---- app publications ----

    /// Records a publish of `version` (latest when `None`) on `nodes`: new
    /// publications start resolving, existing ones start over.
    async fn publish(
        &self,
        project: &str,
        app: &str,
        version: Option<u32>,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<Publication>>;
    /// Marks publications for removal; with `cascade` the resources only
    /// the app uses there go too.
    async fn unpublish(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        cascade: bool,
        now: u64,
    ) -> Result<Vec<Publication>>;
    async fn get_publication(&self, key: &PublicationKey) -> Result<Option<Publication>>;
    async fn list_publications(&self) -> Result<Vec<Publication>>;
    async fn list_app_publications(&self, project: &str, app: &str) -> Result<Vec<Publication>>;
    /// Writes `p` if nobody changed it since it was read (same `revision`),
    /// bumping `p.revision`; answers with what it replaced (`None`: it
    /// changed or is gone, nothing written).
    async fn replace_publication(&self, p: &mut Publication) -> Result<Option<Publication>>;
    /// `replace_publication`, answering only whether it wrote.
    async fn update_publication(&self, p: &mut Publication) -> Result<bool> {
        Ok(self.replace_publication(p).await?.is_some())
    }
    /// Deletes the publication if it is still at `revision`.
    async fn delete_publication(&self, key: &PublicationKey, revision: u64) -> Result<bool>;
    /// Whether the publication is still at `revision`, and, for a store
    /// fenced with a leadership term (`fenced`), whether that term still
    /// holds (`StoreError::Fenced` once it is over): the reconciler's check
    /// right before a step the store cannot take back (an apply), so that a
    /// reconcile holding stale state (a paused ex-leader's) never makes it.
    async fn confirm_publication(&self, key: &PublicationKey, revision: u64) -> Result<bool> {
        Ok(self
            .get_publication(key)
            .await?
            .is_some_and(|p| p.revision == revision))
    }
    /// `confirm_publication` for a resource's publication on a node.
    async fn confirm_resource_publication(
        &self,
        key: &ResourcePublicationKey,
        revision: u64,
    ) -> Result<bool> {
        Ok(self
            .get_resource_publication(key)
            .await?
            .is_some_and(|p| p.revision == revision))
    }
    /// Images pinned on `node` by publications other than `except`.
    async fn pinned_by_others(
        &self,
        node: &str,
        except: &PublicationKey,
    ) -> Result<BTreeSet<String>>;
    /// Every publication in `project` on `node` with the spec of its version, by app.
    async fn published_specs_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeMap<String, (Publication, AppSpec)>>;

    // ---- the outbox of publication changes ----

    /// The oldest `limit` publication changes not yet acknowledged, oldest
    /// first. `publish`, `unpublish`, `replace_publication` and
    /// `delete_publication` record each change of state they make (as
    /// `store::changes` words it) in their own transaction; so does every
    /// write of a resource's publication on a node (publish and unpublish
    /// requests, an app publish carrying it, the reconciler's
    /// compare-and-swap, its record dropped), except a project's purge.
    async fn publication_events(&self, limit: usize) -> Result<Vec<RecordedChange>>;
    /// Takes off the changes up to and including `through` (a `seq`).
    async fn ack_publication_events(&self, through: u64) -> Result<()>;

    // ---- force-unpublish tombstones ----

    /// Drops the app's publications on `nodes` now, leaving tombstones.
    async fn force_unpublish(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<ForcedRemoval>>;
    async fn list_forced(&self) -> Result<Vec<ForcedRemoval>>;
    /// The node is reconciled to nothing: the tombstone goes.
    async fn forget_forced(&self, k: &PublicationKey) -> Result<()>;

    // ---- projects ----

    async fn project_holdings(&self, project: &str) -> Result<ProjectHoldings>;
    /// Drops everything `project` holds; tombstones take its nodes back to nothing.
    async fn purge_project(&self, project: &str, now: u64) -> Result<ProjectPurge>;

    // ---- resources ----

    /// Creates a resource after checking what it refers to. A load
    /// balancer, EIP or route that serves a published app follows it to its
    /// nodes: the records made are returned, to trigger.
    async fn create_resource(&self, r: &Resource) -> Result<Vec<PublicationRef>>;
    /// Replaces a resource's spec (same rules as create, plus: a volume's
    /// capacity is immutable). Returns the publications that must apply
    /// again, and the records of the nodes a load balancer, EIP or route now
    /// follows an app to (those where it serves none come off by their own
    /// reconcile).
    async fn update_resource(&self, r: &Resource) -> Result<Vec<PublicationRef>>;
    async fn get_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Resource>>;
    async fn list_resources(&self, project: &str, kind: ResourceKind) -> Result<Vec<Resource>>;
    /// Refused (naming the rule) while a published app uses it, while a
    /// volume is bound to a node and not released, and while a load balancer
    /// has EIPs or routes or its app is published.
    async fn delete_resource(&self, project: &str, kind: ResourceKind, name: &str) -> Result<()>;
    /// Publications (as `app@node`) whose version uses the resource.
    async fn resource_users(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<String>>;

    // ---- volumes bound to nodes ----

    /// Records that a volume is bound on a node (again, if it was released).
    async fn bind(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
        now: u64,
    ) -> Result<()>;
    async fn get_binding(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Binding>>;
    async fn list_bindings(&self, project: &str) -> Result<Vec<Binding>>;
    /// Checks that a volume may be released on a node: bound there and no
    /// app using it published there. The caller removes the claim, then
    /// calls `mark_released`.
    async fn check_release(&self, project: &str, node: &str, name: &str) -> Result<()>;
    async fn mark_released(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<()>;
    /// Unbinds a released volume: drops its released binding on `node` (on
    /// every node when `None`; refused while bound there), and once it is
    /// bound nowhere, takes it out of the template of every app that names
    /// it (a new version each). Returns those versions as `(app, version)`.
    async fn unbind(
        &self,
        project: &str,
        node: Option<&str>,
        name: &str,
        author: &str,
        now: u64,
    ) -> Result<Vec<(String, u32)>>;

    // ---- EIP addresses ----

    /// The address EIP `name` holds on `node`, if it holds one.
    async fn eip_address(&self, project: &str, name: &str, node: &str) -> Result<Option<String>>;
    /// (cluster, address, claim) for every address held.
    async fn list_eip_claims(&self) -> Result<Vec<(String, String, EipClaim)>>;

    // ---- resources published per node ----

    /// Records a publish of a resource on `nodes` (default: every node where
    /// an app it serves is published), after its rules.
    async fn publish_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        nodes: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<ResourcePublication>>;
    /// Records an unpublish of a resource from `nodes` (default: every node
    /// it is published on), after its rules.
    async fn unpublish_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        nodes: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<ResourcePublication>>;
    async fn get_resource_publication(
        &self,
        k: &ResourcePublicationKey,
    ) -> Result<Option<ResourcePublication>>;
    /// One resource's records, in node order.
    async fn list_resource_publications(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<ResourcePublication>>;
    /// Resources wanted on `node` in `project`.
    async fn resources_wanted_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeSet<(ResourceKind, String)>>;
    /// The records of the resources travelling with `app`, on the nodes it
    /// has publications on.
    async fn app_resource_publications(
        &self,
        project: &str,
        app: &str,
    ) -> Result<Vec<ResourcePublication>>;
    async fn list_all_resource_publications(&self) -> Result<Vec<ResourcePublication>>;
    /// Compare-and-swap on `rp.revision`, bumping it on success.
    async fn update_resource_publication(&self, rp: &mut ResourcePublication) -> Result<bool>;
    /// Deletes the record if it is still at `revision`.
    async fn delete_resource_publication(
        &self,
        k: &ResourcePublicationKey,
        revision: u64,
    ) -> Result<bool>;
    /// Forgets resources taken off `node` outside their own reconcile (an
    /// app unpublish with cascade, a volume release).
    async fn forget_resource_publications(
        &self,
        project: &str,
        node: &str,
        items: &[(ResourceKind, String)],
    ) -> Result<()>;
    /// After an app's apply carried them: its resources on the node are applied.
    async fn mark_resources_applied(
        &self,
        project: &str,
        node: &str,
        items: &[(ResourceKind, String)],
        detail: &str,
        now: u64,
    ) -> Result<()>;
    /// Whether a resource publication may be applied now: `Ok(None)` yes,
    /// `Ok(Some(reason))` not yet, `Err` never (nothing it serves is on the node).
    async fn resource_readiness(&self, k: &ResourcePublicationKey) -> Result<Option<String>>;
    /// Network resources on `node` that no published app there is served by
    /// any more: they go with it.
    async fn network_left_alone(
        &self,
        project: &str,
        node: &str,
    ) -> Result<Vec<ResourcePublication>>;
    /// Config maps and secrets on `node` that only apps carried there and no
    /// app published there uses any more (a new version dropped them).
    async fn config_left_behind(
        &self,
        project: &str,
        node: &str,
    ) -> Result<Vec<ResourcePublication>>;

    // ---- copying to another backend (see export.rs) ----

    /// Every record, from one snapshot, as stored.
    async fn export_records(&self) -> Result<ControllerRecords>;
    /// Writes `records` in one transaction into this store, which must hold
    /// no record yet (`Conflict` otherwise, and nothing written).
    async fn import_records(&self, records: &ControllerRecords) -> Result<()>;

    // ---- sealing-key rotation ----

    /// Seals every sealed value again with the current key (secret
    /// resources' values, clusters' kubeconfigs, nodes' edge credentials),
    /// in one transaction; the counts by kind (`SECRET_VALUES`,
    /// `KUBECONFIGS`, `NODE_CREDENTIALS`). A value no configured key opens
    /// stays as it is, counted as failed.
    async fn reseal(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::secrets::ResealCount>>;

    // ---- fencing ----

    /// This store as the reconcilers of leadership term `epoch` write
    /// through it: every write is refused (`StoreError::Fenced`) once the
    /// term is over, because another replica took over or the lease lapsed.
    /// A store only one process uses (embedded) has nothing to fence.
    fn fenced(&self, epoch: u64) -> std::sync::Arc<dyn ControllerStore>;
}
