//! berth's workload controller: apps with immutable template versions, published
//! to edge nodes through their edge caches onto Kubernetes (or into manifest files).
//!
//! Modules, in dependency order: each imports only modules listed below it, so
//! there are no import cycles. Requests flow down: `api` (HTTP) records them in
//! the `store` and triggers the `reconcile` loop, which drives them through the
//! ports and deployers; nothing below `api` knows about HTTP. A test
//! (`module_order`) holds every module to this order.
//!
//! - `cli`: functions the `berth app ...` commands call (HTTP client of `api`,
//!   reading its request and answer bodies).
//! - `api`: the `/api/v1` JSON endpoints (`router`); thin handlers over the store,
//!   the reconciler's trigger and `resources_ctl`; `report_router`, the route
//!   edges report finished prefetch jobs to (its own token, no account).
//! - `state`: `ControllerState`, what the handlers and the reconciler share.
//! - `reconcile`: the level-triggered loop that drives publications.
//! - `resources_ctl`: resources that travel with apps, in motion (publish order,
//!   cascade plans, volume release).
//! - `deploy`: put objects on a cluster (`KubeDeployer`) or in files (`DirectoryDeployer`).
//! - `edge`: HTTP client of a node's edge cache (`HttpEdgeClient`).
//! - `manifest`: Kubernetes YAML in and out: a multi-document manifest read
//!   into an app's template and its resources, and written back.
//! - `store`: the `ControllerStore` interface; its embedded implementation keeps redb
//!   tables (all prefixed `ctl_`) in the registry's database, `store::pg` the same
//!   tables in PostgreSQL.
//! - `render`: pure (app, version, digests, node) -> Kubernetes objects.
//! - `sealed_records`: cluster and node credentials sealed inside their records.
//! - `secrets`: sealing of secret values at rest.
//! - `ports`: traits the registry implements (`ImageResolver`, `Authorizer`, `AuditSink`,
//!   `PublicationEvents`)
//!   and the edge contract (`EdgeClient`).
//! - `resources`: the records of resources that travel with apps, and their rules.
//! - `model`: the domain types and their validation.
//! - `clock`: now, in Unix seconds and milliseconds.
//!
//! The controller never links to the registry crate: the registry wires a
//! `ControllerState` with its implementations of the ports and mounts `router`:
//!
//! ```ignore
//! let key = berth_controller::secret_key_from_hex(&cfg.controller.secret_key)?;
//! // The records: here in the registry's embedded database; any `ControllerStore`.
//! let secrets = berth_controller::secrets::SecretBox::new(&key);
//! let store = berth_controller::open_embedded_store(db.clone(), Some(secrets))?;
//! let state = berth_controller::ControllerState::new(
//!     store,
//!     berth_controller::Ports {
//!         resolver: Arc::new(MyResolver),       // ImageResolver over the registry's tags
//!         edge: Arc::new(berth_controller::HttpEdgeClient::new(Duration::from_secs(30))?),
//!         deployer: berth_controller::deployer_from_config(&cfg.controller, &cfg.server.data_dir)?,
//!         authorizer: Arc::new(MyAuthorizer),   // accounts and roles
//!         audit: Arc::new(MyAudit),
//!         events: Arc::new(MyEvents),         // woken when publication changes are recorded
//!     },
//!     berth_controller::ControllerSettings {
//!         secret_key: Some(key),
//!         render: berth_controller::RenderOptions { image_host: Some("registry.example:5000".into()) },
//!         ..Default::default()
//!     },
//! );
//! let reconciler = state.spawn_reconciler(shutdown_signal());
//! let app = registry_router
//!     .merge(berth_controller::router(state.clone()))
//!     .merge(berth_controller::report_router(state)); // set report_url in the settings
//! ```
//!
//! With `meta.backend = "postgres"` (replicas), the records are shared and
//! one replica at a time reconciles, its writes fenced by its lease's term:
//!
//! ```ignore
//! let ctl = berth_controller::store::pg::MIGRATIONS;
//! berth_registry::meta::pg::migrate(&pool, &[/* registry's sets, */
//!     berth_registry::meta::pg::Migrations { component: ctl.component, steps: ctl.steps }]).await?;
//! let store = berth_controller::open_postgres_store(pool.clone(), Some(secrets)).await?;
//! let state = berth_controller::ControllerState::new(store, ports, settings);
//! let (relay, incoming) = berth_controller::postgres_relay(pool.clone(), &cfg.meta.url)?;
//! state.relay_through(relay, incoming);
//! let leadership = berth_controller::postgres_leadership(pool, cfg.controller.leader_lease);
//! let reconciler = state.spawn_reconciler_led(leadership, shutdown_signal());
//! ```

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

pub mod api;
pub mod cli;
mod clock;
pub mod deploy;
pub mod edge;
pub mod manifest;
pub mod model;
pub mod ports;
pub mod reconcile;
pub mod render;
pub mod resources;
pub mod resources_ctl;
pub mod sealed_records;
pub mod secrets;
pub mod state;
pub mod store;

#[cfg(test)]
mod module_order;

pub use api::{openapi_paths, report_router, route_paths, router};
pub use deploy::{Deployer, DirectoryDeployer, KubeDeployer};
pub use edge::HttpEdgeClient;
pub use ports::{
    Actor, AlwaysLeader, AuditSink, AuthError, Authorizer, CtlAction, EdgeClient, ImageResolver,
    Leadership, NoPublicationEvents, PublicationChange, PublicationEvents, Relay, RelaySignal,
    Relayed, ResolveError, ResolvedImage, Term, APP_KIND,
};
pub use reconcile::ReconcileSettings;
pub use render::RenderOptions;
pub use state::{ControllerSettings, ControllerState, Ports};
pub use store::{ControllerStore, PgControllerStore, RedbControllerStore, StoreError};

/// The controller's records in the registry's embedded database `db`
/// (tables of their own), cluster and node credentials sealed with
/// `secrets` (the keys `ControllerSettings` holds).
pub fn open_embedded_store(
    db: Arc<redb::Database>,
    secrets: Option<secrets::SecretBox>,
) -> Result<Arc<dyn ControllerStore>, StoreError> {
    let sealer = sealed_records::RecordSealer::new(secrets);
    Ok(Arc::new(RedbControllerStore::open(db, sealer)?))
}

/// The controller's records in PostgreSQL (`meta.backend = "postgres"`),
/// shared by every replica: `pool` is the registry's pool, its database
/// already migrated with `store::pg::MIGRATIONS` (the composition root runs
/// them through the registry's `meta::pg::migrate`). Credentials sealed
/// with `secrets`, as `open_embedded_store` seals them.
pub async fn open_postgres_store(
    pool: deadpool_postgres::Pool,
    secrets: Option<secrets::SecretBox>,
) -> Result<Arc<dyn ControllerStore>, StoreError> {
    let sealer = sealed_records::RecordSealer::new(secrets);
    Ok(Arc::new(PgControllerStore::open(pool, sealer).await?))
}

/// Leadership of the reconcilers among replicas sharing the PostgreSQL
/// database of `pool` (migrated with `store::pg::MIGRATIONS`): a lease of
/// `lease` (renewed every third of it) that another replica takes over once
/// it expires. Hand it to `ControllerState::spawn_reconciler_led`.
pub fn postgres_leadership(
    pool: deadpool_postgres::Pool,
    lease: std::time::Duration,
) -> Arc<dyn Leadership> {
    Arc::new(store::pg::PgLeadership::new(pool, lease))
}

/// The relay between replicas sharing the PostgreSQL database of `pool`
/// (at `url`, for a listening connection of its own): hand both halves to
/// `ControllerState::relay_through`, so that requests and edge reports a
/// follower takes wake the leader's reconcilers at once.
pub fn postgres_relay(
    pool: deadpool_postgres::Pool,
    url: &str,
) -> Result<(Arc<dyn Relay>, tokio::sync::mpsc::Receiver<RelaySignal>), StoreError> {
    let relay = store::pg::PgRelay::new(pool);
    let incoming = relay.listen(url)?;
    Ok((Arc::new(relay), incoming))
}

/// The deployer named by the configuration: "directory" (files under
/// `manifests_dir`, default `<data_dir>/manifests`) or "kubernetes".
pub fn deployer_from_config(
    config: &berth_config::ControllerConfig,
    data_dir: &Path,
) -> Result<Arc<dyn Deployer>, String> {
    match config.deployer.as_str() {
        "directory" => {
            let dir = config
                .manifests_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("manifests"));
            Ok(Arc::new(DirectoryDeployer::new(dir)))
        }
        "kubernetes" => Ok(Arc::new(KubeDeployer::new())),
        other => Err(format!(
            "controller.deployer {other:?} is not known; use \"directory\" or \"kubernetes\""
        )),
    }
}

/// Reads the 32-byte secret key from its hex form in the configuration.
pub fn secret_key_from_hex(hex_key: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_key.trim())
        .map_err(|e| format!("controller.secret_key is not hex: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "controller.secret_key must be 32 bytes (64 hex digits), not {}",
            b.len()
        )
    })
}
