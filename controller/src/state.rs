//! What the API handlers and the reconciler share: `ControllerState`, built
//! from the ports the registry implements and the controller's settings.
//!
//! Owns: wiring the store, the reconciler's context, the resource renderer and
//! the secret key together, the channel that triggers reconciles, and (with
//! replicas) relaying triggers and edge reports to the replica that leads
//! the reconcilers, and taking those the others relay. Must not touch: HTTP
//! (see `api`) or what a reconcile does (see `reconcile`).

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use crate::deploy::Deployer;
use crate::model::PublicationKey;
use crate::ports::{
    AuditSink, Authorizer, EdgeClient, ImageResolver, JobStatus, PublicationEvents, Relay,
    RelaySignal, Relayed,
};
use crate::reconcile::{self, Context, ReconcileSettings, Wake};
use crate::render::RenderOptions;
use crate::resources::PublicationRef;
use crate::resources_ctl::ResourceRenderer;
use crate::secrets::SecretBox;
use crate::store::{ControllerStore, ProjectHoldings, ProjectPurge, StoreError};

/// The implementations the controller works through.
#[derive(Clone)]
pub struct Ports {
    pub resolver: Arc<dyn ImageResolver>,
    pub edge: Arc<dyn EdgeClient>,
    pub deployer: Arc<dyn Deployer>,
    pub authorizer: Arc<dyn Authorizer>,
    pub audit: Arc<dyn AuditSink>,
    /// Told of every publication state change the reconciler stores.
    pub events: Arc<dyn PublicationEvents>,
}

/// Tunables of the controller.
#[derive(Clone, Default)]
pub struct ControllerSettings {
    pub reconcile: ReconcileSettings,
    pub render: RenderOptions,
    /// 32-byte key sealing secret values at rest. `None`: secrets cannot be stored.
    pub secret_key: Option<[u8; 32]>,
    /// Earlier secret keys (`controller.previous_secret_keys`): they open
    /// what they sealed until `reseal` moves it to `secret_key`.
    pub previous_secret_keys: Vec<[u8; 32]>,
    /// Longest lifetime of a project kubeconfig's token; `None`: 24 hours.
    pub kubeconfig_max_ttl: Option<std::time::Duration>,
    /// The controller's URL as the edges reach it (the registry's external
    /// URL): edges report finished prefetch jobs there (`report_router`).
    /// `None`: edges are polled.
    pub report_url: Option<String>,
}

/// Everything the API handlers and the reconciler share. Cheap to clone.
#[derive(Clone)]
pub struct ControllerState {
    inner: Arc<StateInner>,
}

struct StateInner {
    ctx: Arc<Context>,
    authorizer: Arc<dyn Authorizer>,
    trigger: mpsc::UnboundedSender<Wake>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Wake>>>,
    /// Replicas: where triggers and reports go for the leader (`relay_through`).
    relay: OnceLock<Arc<dyn Relay>>,
    secrets: Option<SecretBox>,
    kubeconfig_max_ttl: std::time::Duration,
}

impl ControllerState {
    /// The controller over `store` (see `open_embedded_store` for the
    /// embedded one; it seals with the same `secret_key`).
    pub fn new(
        store: Arc<dyn ControllerStore>,
        ports: Ports,
        settings: ControllerSettings,
    ) -> Self {
        let previous = &settings.previous_secret_keys;
        let secrets = settings
            .secret_key
            .map(|k| SecretBox::with_previous(&k, previous));
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(Context {
            store,
            resolver: ports.resolver,
            edge: ports.edge,
            deployer: ports.deployer,
            audit: ports.audit,
            events: ports.events,
            settings: settings.reconcile,
            render: settings.render,
            resources: Some(Arc::new(ResourceRenderer::new(secrets.clone()))),
            reports: Arc::new(reconcile::reports::EdgeReports::new(
                settings.report_url,
                settings.secret_key.as_ref(),
                previous,
            )),
            trigger: tx.clone(),
        });
        ControllerState {
            inner: Arc::new(StateInner {
                ctx,
                authorizer: ports.authorizer,
                trigger: tx,
                receiver: Mutex::new(Some(rx)),
                relay: OnceLock::new(),
                secrets,
                kubeconfig_max_ttl: settings
                    .kubeconfig_max_ttl
                    .unwrap_or(std::time::Duration::from_secs(24 * 3600)),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn ControllerStore> {
        &self.inner.ctx.store
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.inner.ctx
    }

    pub(crate) fn authorizer(&self) -> &dyn Authorizer {
        self.inner.authorizer.as_ref()
    }

    pub(crate) fn kubeconfig_max_ttl(&self) -> std::time::Duration {
        self.inner.kubeconfig_max_ttl
    }

    /// What `project` still holds: the registry refuses to delete it without
    /// `force` while it holds anything.
    pub async fn project_holdings(&self, project: &str) -> Result<ProjectHoldings, StoreError> {
        let p = project.to_string();
        self.inner.ctx.store().project_holdings(&p).await
    }

    /// The registry deletes `project` with `force`: every publication of its
    /// apps and resources is dropped like a force-unpublish (tombstones), its
    /// apps and resources deleted, each in the audit log as `actor`'s; the
    /// sweep then takes the nodes that answer back to nothing at once, and
    /// those that do not when they return.
    pub async fn purge_project(
        &self,
        actor: &str,
        project: &str,
    ) -> Result<ProjectPurge, StoreError> {
        let p = project.to_string();
        let purge = self
            .inner
            .ctx
            .store()
            .purge_project(&p, crate::clock::now_secs())
            .await?;
        let audit = &self.inner.ctx.audit;
        for f in &purge.tombstones {
            let what: Vec<String> = f
                .resources
                .iter()
                .map(|(k, n)| format!("{k}/{n}"))
                .collect();
            audit.record(
                actor,
                project,
                "project.unpublish",
                &f.node,
                &format!(
                    "ok; records dropped (app {}; resources: {}); the node is swept",
                    f.app,
                    if what.is_empty() {
                        "none".to_string()
                    } else {
                        what.join(", ")
                    }
                ),
            );
        }
        for a in &purge.holdings.apps {
            audit.record(
                actor,
                project,
                "app.delete",
                a,
                "ok; the project was deleted",
            );
        }
        for (k, n) in &purge.holdings.resources {
            audit.record(
                actor,
                project,
                &format!("{}.delete", k.as_str()),
                n,
                "ok; the project was deleted",
            );
        }
        let ctx = self.inner.ctx.clone();
        tokio::spawn(async move { reconcile::forced::sweep(&ctx).await });
        Ok(purge)
    }

    /// Invalidates every kubeconfig exported for `project`, on every cluster
    /// (a member left, or the project is gone). Failures are logged and
    /// returned in words, one per cluster.
    pub async fn revoke_project_access(&self, project: &str) -> Vec<String> {
        let ctx = self.context().clone();
        let clusters = match ctx.store().list_clusters().await {
            Ok(c) => c,
            Err(e) => return vec![e.to_string()],
        };
        let mut failures = Vec::new();
        for cluster in clusters {
            let outcome = match ctx.deployer.revoke_project_access(&cluster, project).await {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    tracing::warn!(project, cluster = %cluster.name, error = %e, "kubeconfig revocation failed");
                    failures.push(e.to_string());
                    format!("failed: {e}")
                }
            };
            ctx.audit.record(
                "controller",
                project,
                "kubeconfig.revoke",
                &cluster.name,
                &outcome,
            );
        }
        failures
    }

    pub(crate) fn secrets(&self) -> Option<&SecretBox> {
        self.inner.secrets.as_ref()
    }

    /// Asks the reconciler to look at a publication (of an app or a resource)
    /// now: this replica's, and through the relay the leader's.
    pub fn trigger(&self, key: impl Into<PublicationRef>) {
        let key = key.into();
        if let Some(relay) = self.inner.relay.get() {
            relay.send(Relayed::Wake(key.clone()));
        }
        self.wake(key);
    }

    /// Wakes this replica's reconciler only. Without a running reconciler
    /// the key waits in the channel (a follower drops it; the reconciler
    /// also scans every publication when a term starts).
    fn wake(&self, key: PublicationRef) {
        let _ = self.inner.trigger.send(Wake::Publication(key));
    }

    /// The edge of `key.node` reported prefetch job `id` (its report `body`
    /// already checked and read as `status`): kept for the next reconcile
    /// of the publication, here and, through the relay, on the leader.
    pub fn reported(&self, key: PublicationKey, id: &str, status: JobStatus, body: &[u8]) -> bool {
        let kept = self.inner.ctx.reports.deliver(&key.node, id, status);
        if let Some(relay) = self.inner.relay.get() {
            relay.send(Relayed::Report {
                key: key.clone(),
                job: String::from_utf8_lossy(body).into_owned(),
            });
        }
        self.wake(PublicationRef::App(key));
        kept
    }

    /// Replicas sharing one database: triggers and reports taken here go to
    /// the others through `relay`, and what they relay (`incoming`) wakes
    /// this replica's reconciler (it acts on it while it leads). A
    /// `Listening` signal (the relay's connection came back) makes the
    /// reconciler look at every publication: what was relayed meanwhile is
    /// lost. Only the first call takes effect.
    pub fn relay_through(&self, relay: Arc<dyn Relay>, mut incoming: mpsc::Receiver<RelaySignal>) {
        if self.inner.relay.set(relay).is_err() {
            tracing::warn!("the controller already relays through the database");
            return;
        }
        // Weak: the state's end (a process stopping) ends this task, and
        // with it the listening connection.
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while let Some(signal) = incoming.recv().await {
                let Some(inner) = inner.upgrade() else { return };
                ControllerState { inner }.relayed(signal);
            }
        });
    }

    /// Acts on what another replica relayed.
    fn relayed(&self, signal: RelaySignal) {
        match signal {
            RelaySignal::Listening => {
                let _ = self.inner.trigger.send(Wake::Resync);
            }
            RelaySignal::Message(Relayed::Wake(key)) => self.wake(key),
            RelaySignal::Message(Relayed::Report { key, job }) => {
                // Unreadable here too: the reconcile asks the edge instead.
                if let Ok((id, status)) = crate::edge::reported_job(job.as_bytes()) {
                    self.inner.ctx.reports.deliver(&key.node, &id, status);
                }
                self.wake(PublicationRef::App(key));
            }
        }
    }

    /// Runs the reconcile loop on tokio until `shutdown` resolves, as the
    /// only controller (`AlwaysLeader`: the embedded setup). Only the first
    /// call starts a loop; later calls return a task that ends at once.
    pub fn spawn_reconciler(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_reconciler_led(Arc::new(crate::ports::AlwaysLeader), shutdown)
    }

    /// Runs the reconcile loop on tokio while `leadership` says this replica
    /// leads, until `shutdown` resolves (replicas on a shared database: each
    /// calls this; one reconciles at a time, its writes fenced by its term).
    pub fn spawn_reconciler_led(
        &self,
        leadership: Arc<dyn crate::ports::Leadership>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let rx = self.inner.receiver.lock().ok().and_then(|mut r| r.take());
        let ctx = self.inner.ctx.clone();
        match rx {
            Some(rx) => tokio::spawn(reconcile::run_while_leader(ctx, leadership, rx, shutdown)),
            None => {
                tracing::warn!("the reconciler is already running");
                tokio::spawn(async {})
            }
        }
    }
}
