//! The controller's view of the outside world, as traits.
//!
//! Owns: the contracts the registry implements and wires in (`ImageResolver`,
//! `Authorizer`, `AuditSink`, `PublicationEvents`) and the contract with a node's edge cache
//! (`EdgeClient`, whose real HTTP implementation lives in `edge`).
//!
//! Must not touch: any registry type. The controller never links to the registry
//! crate; everything it needs from it crosses these traits.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::Node;

/// An image reference resolved in this registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    /// e.g. `shop/web`, or `dockerhub/library/nginx` for an image of
    /// another registry, served by its proxy-cache project.
    pub repository: String,
    /// For an image of another registry, its name there (`docker.io/library/nginx`):
    /// what a node pulls by, through its edge as its mirror. `None` for this
    /// registry's own images.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Digest (`sha256:...` or `sha512:...`) of the manifest or index the reference points at.
    pub digest: String,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No such repository, tag or manifest.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidReference(String),
    /// The registry could not answer now; try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The registry holds the image but its project's policy refuses to hand it
    /// out (an image `require_signature` finds unsigned); it may be signed later.
    #[error("{0}")]
    Refused(String),
}

/// Turns `project/repo:tag` or `project/repo@sha256:...` into a digest, in
/// this registry; and an image of another registry (`docker.io/library/nginx:1.25`,
/// `nginx:1.25`) into a digest through the proxy-cache project its host maps to.
#[async_trait]
pub trait ImageResolver: Send + Sync + 'static {
    async fn resolve(&self, image_ref: &str) -> Result<ResolvedImage, ResolveError>;

    /// The project of this registry that serves `image_ref`, without fetching
    /// anything: its own for `team-a/web:1.0`, the proxy-cache project its
    /// host maps to for an image of another registry. An error, saying what
    /// to do, when that project does not exist or the host has none.
    fn project_of(&self, image_ref: &str) -> Result<String, ResolveError> {
        let r = crate::model::ImageRef::parse(image_ref).map_err(ResolveError::InvalidReference)?;
        match (r.project(), &r.host) {
            (Some(p), _) => Ok(p.to_string()),
            (None, host) => Err(ResolveError::NotFound(format!(
                "image {image_ref}: this registry has no proxy-cache project for {}",
                host.as_deref().unwrap_or("its registry")
            ))),
        }
    }
}

/// State of a prefetch job on an edge cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
}

/// Progress of one image in a prefetch job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageProgress {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default)]
    pub error: Option<String>,
}

/// What the edge says about a prefetch job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Known {
        state: JobState,
        bytes_done: u64,
        bytes_total: u64,
        /// Set when the job failed, in words.
        error: Option<String>,
        images: Vec<ImageProgress>,
    },
    /// The edge does not know this job (it restarted, or forgot it): submit again.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// Could not reach the edge (connection refused, timeout, DNS...).
    #[error("edge cache of node {node} at {url} is unreachable: {message}")]
    Unreachable {
        node: String,
        url: String,
        message: String,
    },
    /// The edge answered with an error status.
    #[error("edge cache of node {node} refused the request ({status}): {message}")]
    Rejected {
        node: String,
        status: u16,
        message: String,
    },
    /// The edge answered something that does not follow the contract.
    #[error("edge cache of node {node} sent an unexpected answer: {message}")]
    Protocol { node: String, message: String },
}

/// Where an edge reports the end of a prefetch job (the controller's report
/// endpoint for one publication, and the token it takes there).
#[derive(Clone, PartialEq, Eq)]
pub struct ReportTarget {
    pub url: String,
    pub token: String,
}

impl std::fmt::Debug for ReportTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never in a log line.
        f.debug_struct("ReportTarget")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A prefetch job the edge took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub id: String,
    /// The edge will report the job's end to the target it was given.
    pub report: bool,
}

/// The edge cache API of a node (prefetch, job progress, unpin).
#[async_trait]
pub trait EdgeClient: Send + Sync + 'static {
    /// Like `prefetch`, asking the edge to post the finished job to `report`.
    /// An edge that does not report answers `report: false` (and is polled).
    async fn prefetch_reporting(
        &self,
        node: &Node,
        images: Vec<String>,
        pin: bool,
        report: &ReportTarget,
    ) -> Result<Submitted, EdgeError> {
        let _ = report;
        Ok(Submitted {
            id: self.prefetch(node, images, pin).await?,
            report: false,
        })
    }
    /// Starts pulling (and pinning, if `pin`) `images` (`repo@sha256:...`); returns the job id.
    async fn prefetch(
        &self,
        node: &Node,
        images: Vec<String>,
        pin: bool,
    ) -> Result<String, EdgeError>;
    async fn job(&self, node: &Node, id: &str) -> Result<JobStatus, EdgeError>;
    /// Ids of the edge's jobs that prefetch and pin exactly `images` and have
    /// not failed, oldest first. An edge that cannot list its jobs has none.
    async fn matching_jobs(
        &self,
        node: &Node,
        images: &[String],
    ) -> Result<Vec<String>, EdgeError> {
        let _ = (node, images);
        Ok(Vec::new())
    }
    async fn unpin(&self, node: &Node, images: Vec<String>) -> Result<(), EdgeError>;
    /// The node's edge cache now, as its edge reports it.
    async fn cache_status(&self, node: &Node) -> Result<EdgeCacheStatus, EdgeError> {
        Err(EdgeError::Protocol {
            node: node.name.clone(),
            message: "this edge client does not read the edge's status".into(),
        })
    }
    /// The pods of `namespace` that have container logs on the node, newest first.
    async fn log_pods(&self, node: &Node, namespace: &str) -> Result<Vec<LogPod>, EdgeError> {
        let _ = namespace;
        Err(EdgeError::Protocol {
            node: node.name.clone(),
            message: "this edge client does not read container logs".into(),
        })
    }
    /// One container's log from the node's edge, as a stream of text.
    async fn logs(&self, node: &Node, request: &LogRequest) -> Result<LogStream, EdgeError> {
        let _ = request;
        Err(EdgeError::Protocol {
            node: node.name.clone(),
            message: "this edge client does not read container logs".into(),
        })
    }
}

/// A node's edge cache as its edge reports it (`GET /api/v1/status` there):
/// capacity and use, hits and misses since the edge started, pinned images,
/// whether its upstream answers, and its prefetch jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeCacheStatus {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    #[serde(default)]
    pub hits: u64,
    #[serde(default)]
    pub misses: u64,
    /// hits / (hits + misses); absent before the first request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_rate: Option<f64>,
    #[serde(default)]
    pub images_cached: u64,
    #[serde(default)]
    pub pinned_images: Vec<PinnedImage>,
    pub upstream: EdgeUpstream,
    #[serde(default)]
    pub prefetch_jobs: Vec<EdgeJob>,
    #[serde(default)]
    pub prefetch_jobs_total: u64,
}

/// An image pinned on an edge (kept whatever the capacity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedImage {
    pub image: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub cached_bytes: u64,
}

/// Whether an edge's upstream (this registry, or the next tier) answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeUpstream {
    pub reachable: bool,
    #[serde(default)]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A prefetch job as an edge lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeJob {
    pub id: String,
    pub state: JobState,
    #[serde(default)]
    pub pin: bool,
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub images: Vec<ImageProgress>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub updated: u64,
}

/// A pod with container logs on a node, as the edge lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPod {
    pub pod: String,
    #[serde(default)]
    pub containers: Vec<String>,
    #[serde(default)]
    pub modified: u64,
}

/// Which container log to read, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub tail: Option<usize>,
    pub since: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
}

/// Log text as it arrives; an error ends it.
pub type LogStream = futures::stream::BoxStream<'static, Result<axum::body::Bytes, std::io::Error>>;

/// What a request wants to do, for the authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtlAction {
    /// Look at apps, versions, publications (project) or clusters and nodes (no project).
    Read,
    /// Create and change apps, publish and unpublish (project).
    Write,
    /// Manage clusters and nodes (no project), or project-wide admin actions such
    /// as exporting a kubeconfig (project).
    Admin,
}

/// Who made a request, as the registry knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    /// A system administrator (from the account, never from a token's claim).
    #[serde(default)]
    pub admin: bool,
}

/// Why a request was refused; `status` is 401 (who are you?) or 403 (not allowed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub status: http::StatusCode,
    pub message: String,
}

/// Decides whether a request may do `action` in `project` (or globally when `None`).
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(
        &self,
        headers: &http::HeaderMap,
        project: Option<&str>,
        action: CtlAction,
    ) -> Result<Actor, AuthError>;
}

/// Receives one record per controller action, for the registry's audit log.
pub trait AuditSink: Send + Sync + 'static {
    /// `actor` is a user name or `controller`; `outcome` is `ok`, `refused: <why>` or `failed: <why>`.
    fn record(&self, actor: &str, project: &str, action: &str, target: &str, outcome: &str);
}

/// An audit sink that writes to the `berth::audit` tracing target.
#[derive(Debug, Default, Clone)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, actor: &str, project: &str, action: &str, target: &str, outcome: &str) {
        tracing::info!(target: "berth::audit", actor, project, action, target, outcome, "audit");
    }
}

/// A publication that changed state, as the store recorded it: an app's on
/// a node, or a resource's (load balancer, EIP, route, config map, secret,
/// volume) published to a node on its own or with an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationChange {
    pub project: String,
    /// What is published: `app`, or a resource kind as the API names it
    /// (`loadbalancers`, `eips`, `routes`, `configmaps`, `secrets`, `volumes`).
    #[serde(default = "app_kind")]
    pub kind: String,
    /// The app's or the resource's name.
    #[serde(alias = "app")]
    pub name: String,
    pub node: String,
    /// The template version an app's publication deploys; none for a resource.
    pub version: Option<u32>,
    /// An app's: `resolving`, `prefetching`, `deploying`, `running`,
    /// `failed`, `removing`. A resource's: `pending`, `waiting`, `applied`,
    /// `failed`, `removing`. Either's `removed` once it is off the node.
    pub state: String,
    /// `None` for a publication just created.
    pub previous_state: Option<String>,
    /// In words, as the publication's history or detail says it.
    pub detail: String,
}

/// The `kind` of an app's publication (and of changes recorded before resources had any).
pub const APP_KIND: &str = "app";

fn app_kind() -> String {
    APP_KIND.to_string()
}

/// Hears that publication state changes were recorded: the store keeps each
/// change in its outbox in the transaction that made it
/// (`ControllerStore::publication_events`), and whoever forwards them (the
/// registry's webhooks) is woken by this. Called after the write: it must
/// return at once and cannot fail it; a missed wake-up delays, never loses.
pub trait PublicationEvents: Send + Sync + 'static {
    fn recorded(&self);
}

/// Publication changes nobody is woken for.
#[derive(Debug, Default, Clone)]
pub struct NoPublicationEvents;

impl PublicationEvents for NoPublicationEvents {
    fn recorded(&self) {}
}

/// A term of leadership: while it lasts, this replica runs the reconcilers;
/// `epoch` is its fencing token, carried by every write the reconcilers
/// make (`ControllerStore::fenced`), so that a write from an earlier term
/// (a paused ex-leader) is refused once another replica has taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub epoch: u64,
}

/// Which replica runs the controller's reconcilers: exactly one at a time.
/// The embedded setup is always the leader (`AlwaysLeader`); replicas on a
/// shared database elect one through it (a lease the leader renews, taken
/// over once it expires by the database's clock).
#[async_trait]
pub trait Leadership: Send + Sync + 'static {
    /// Becomes the leader, or stays it: the term held, or `None` while
    /// another replica leads. A leader whose lease lapsed before it renewed
    /// gets a new term (a new epoch) even when nobody took over meanwhile.
    async fn lead(&self) -> Result<Option<Term>, String>;
    /// Gives up the lease (on shutdown), so another replica takes over now.
    async fn resign(&self);
    /// How often `lead` is called: well inside the lease's length.
    fn renew_every(&self) -> std::time::Duration;
}

/// The one controller of an embedded setup: always the leader, in epoch 0.
#[derive(Debug, Default, Clone)]
pub struct AlwaysLeader;

#[async_trait]
impl Leadership for AlwaysLeader {
    async fn lead(&self) -> Result<Option<Term>, String> {
        Ok(Some(Term { epoch: 0 }))
    }

    async fn resign(&self) {}

    fn renew_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(3600)
    }
}

/// What one replica passes to the one leading the reconcilers (`Relay`):
/// a request its API stored, or an edge's report it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// Look at this publication now (a publish, an unpublish, a change).
    Wake(crate::resources::PublicationRef),
    /// The edge of `key.node` reported the end of a prefetch job: `job` is
    /// the report's body as the edge sent it (the token already checked).
    Report {
        key: crate::model::PublicationKey,
        job: String,
    },
}

/// What a replica hears from the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelaySignal {
    /// Another replica relayed this.
    Message(Relayed),
    /// Listening (again): whatever was relayed while not listening is lost,
    /// so the leader looks at every publication.
    Listening,
}

/// Carries wake-ups between replicas sharing one database, so that a
/// request or a report taken by a follower reaches the leader's reconcilers
/// at once rather than at its next resync. The embedded setup has one
/// process and no relay.
pub trait Relay: Send + Sync + 'static {
    /// Passes `message` on to the other replicas. Returns at once and
    /// cannot fail the caller: a message lost delays, the leader's resync
    /// finds the publication anyway.
    fn send(&self, message: Relayed);
}
