//! berth's workload controller: apps with immutable template versions, published
//! to edge nodes through their edge caches onto Kubernetes (or into manifest files).
//!
//! Module map (data flows top to bottom):
//!
//! - `api`: the `/api/v1` JSON endpoints (`router`); thin handlers over the store.
//! - `cli`: functions the `berth app ...` commands call (HTTP client of `api`).
//! - `reconcile`: the level-triggered loop that drives publications.
//! - `render`: pure (app, version, digests, node) -> Kubernetes objects.
//! - `deploy`: put objects on a cluster (`KubeDeployer`) or in files (`DirectoryDeployer`).
//! - `edge`: HTTP client of a node's edge cache (`HttpEdgeClient`).
//! - `ports`: traits the registry implements (`ImageResolver`, `Authorizer`, `AuditSink`)
//!   and the edge contract (`EdgeClient`).
//! - `store`: redb tables (all prefixed `ctl_`) in the registry's database.
//! - `model`, `resources`: the domain types and their validation.
//! - `resources_ctl`: resources that travel with apps (API collections, publish
//!   order, cascade plans).
//! - `secrets`: sealing of secret values at rest.
//!
//! The controller never links to the registry crate: the registry wires a
//! `ControllerState` with its implementations of the ports and mounts `router`:
//!
//! ```ignore
//! let state = berth_controller::ControllerState::new(
//!     db.clone(), // Arc<redb::Database>, shared with the registry
//!     berth_controller::Ports {
//!         resolver: Arc::new(MyResolver),       // ImageResolver over the registry's tags
//!         edge: Arc::new(berth_controller::HttpEdgeClient::new(Duration::from_secs(30))?),
//!         deployer: berth_controller::deployer_from_config(&cfg.controller, &cfg.server.data_dir)?,
//!         authorizer: Arc::new(MyAuthorizer),   // accounts and roles
//!         audit: Arc::new(MyAudit),
//!     },
//!     berth_controller::ControllerSettings {
//!         secret_key: Some(berth_controller::secret_key_from_hex(&cfg.controller.secret_key)?),
//!         render: berth_controller::RenderOptions { image_host: Some("registry.example:5000".into()) },
//!         ..Default::default()
//!     },
//! )?;
//! let reconciler = state.spawn_reconciler(shutdown_signal());
//! let app = registry_router.merge(berth_controller::router(state));
//! ```

#![forbid(unsafe_code)]

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

pub mod api;
pub mod cli;
pub mod deploy;
pub mod edge;
pub mod model;
pub mod ports;
pub mod reconcile;
pub mod render;
pub mod resources;
pub mod resources_ctl;
pub mod sealed_records;
pub mod secrets;
pub mod store;

pub use api::router;
pub use deploy::{Deployer, DirectoryDeployer, KubeDeployer};
pub use edge::HttpEdgeClient;
pub use ports::{
    Actor, AuditSink, AuthError, Authorizer, CtlAction, EdgeClient, ImageResolver, ResolveError,
    ResolvedImage,
};
pub use reconcile::ReconcileSettings;
pub use render::RenderOptions;
pub use store::{Store, StoreError};

use crate::model::PublicationKey;
use crate::reconcile::Context;
use crate::sealed_records::RecordSealer;
use crate::secrets::SecretBox;

/// The implementations the controller works through.
#[derive(Clone)]
pub struct Ports {
    pub resolver: Arc<dyn ImageResolver>,
    pub edge: Arc<dyn EdgeClient>,
    pub deployer: Arc<dyn Deployer>,
    pub authorizer: Arc<dyn Authorizer>,
    pub audit: Arc<dyn AuditSink>,
}

/// Tunables of the controller.
#[derive(Clone, Default)]
pub struct ControllerSettings {
    pub reconcile: ReconcileSettings,
    pub render: RenderOptions,
    /// 32-byte key sealing secret values at rest. `None`: secrets cannot be stored.
    pub secret_key: Option<[u8; 32]>,
}

/// Everything the API handlers and the reconciler share. Cheap to clone.
#[derive(Clone)]
pub struct ControllerState {
    inner: Arc<StateInner>,
}

struct StateInner {
    ctx: Arc<Context>,
    authorizer: Arc<dyn Authorizer>,
    trigger: mpsc::UnboundedSender<PublicationKey>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<PublicationKey>>>,
    secrets: Option<SecretBox>,
}

impl ControllerState {
    /// Opens (creates if needed) the controller's tables in `db`.
    pub fn new(
        db: Arc<redb::Database>,
        ports: Ports,
        settings: ControllerSettings,
    ) -> Result<Self, StoreError> {
        let secrets = settings.secret_key.map(|k| SecretBox::new(&k));
        let store = Store::open(db, RecordSealer::new(secrets.clone()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(Context {
            store,
            resolver: ports.resolver,
            edge: ports.edge,
            deployer: ports.deployer,
            audit: ports.audit,
            settings: settings.reconcile,
            render: settings.render,
            resources: Some(Arc::new(resources_ctl::ResourceRenderer::new(
                secrets.clone(),
            ))),
        });
        Ok(ControllerState {
            inner: Arc::new(StateInner {
                ctx,
                authorizer: ports.authorizer,
                trigger: tx,
                receiver: Mutex::new(Some(rx)),
                secrets,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.ctx.store
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.inner.ctx
    }

    pub(crate) fn authorizer(&self) -> &dyn Authorizer {
        self.inner.authorizer.as_ref()
    }

    pub(crate) fn secrets(&self) -> Option<&SecretBox> {
        self.inner.secrets.as_ref()
    }

    /// Asks the reconciler to look at a publication now.
    pub fn trigger(&self, key: PublicationKey) {
        // Without a running reconciler the key waits in the channel; the
        // reconciler also scans every publication when it starts.
        let _ = self.inner.trigger.send(key);
    }

    /// Runs the reconcile loop on tokio until `shutdown` resolves. Only the first
    /// call starts a loop; later calls return a task that ends at once.
    pub fn spawn_reconciler(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let rx = self.inner.receiver.lock().ok().and_then(|mut r| r.take());
        let ctx = self.inner.ctx.clone();
        match rx {
            Some(rx) => tokio::spawn(reconcile::run(ctx, rx, shutdown)),
            None => {
                tracing::warn!("the reconciler is already running");
                tokio::spawn(async {})
            }
        }
    }
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
