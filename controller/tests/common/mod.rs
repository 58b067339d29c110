//! Test harness: the controller's API and reconciler over real sockets, a fake
//! edge cache that speaks the prefetch contract over HTTP, an in-memory image
//! resolver whose tags can move, and the directory deployer wrapped to check
//! that nothing is applied before the edge reported its prefetch done.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use base64::Engine as _;
use berth_controller::deploy::{
    DeployError, DeployTarget, Deployer, DirectoryDeployer, OwnerSelector, Rollout,
};
use berth_controller::model::{ImageRef, Publication};
use berth_controller::ports::{
    Actor, AuditSink, AuthError, Authorizer, CtlAction, ImageResolver, ResolveError, ResolvedImage,
};
use berth_controller::render::WorkloadRef;
use berth_controller::{
    ControllerSettings, ControllerState, HttpEdgeClient, Ports, ReconcileSettings,
};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub fn digest(seed: &str) -> String {
    use sha2::{Digest as _, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(seed.as_bytes())))
}

// ----- fake edge cache ------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Job {
    pub images: Vec<String>,
    pub pin: bool,
    pub bytes_total: u64,
    pub state: &'static str,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct EdgeState {
    pub jobs: BTreeMap<String, Job>,
    pub next_id: u64,
    /// (images, pin) of every prefetch request.
    pub prefetches: Vec<(Vec<String>, bool)>,
    pub unpins: Vec<Vec<String>>,
    pub pinned: BTreeSet<String>,
    /// Authorization headers seen.
    pub auth: Vec<Option<String>>,
    /// While closed, jobs stay half done.
    pub gate_open: bool,
    /// The next job fails with this error.
    pub fail_next: Option<String>,
    /// Images of jobs this edge reported done.
    pub done_images: BTreeSet<String>,
    /// Credentials the edge requires, if any.
    pub require: Option<(String, String)>,
}

pub type Edge = Arc<Mutex<EdgeState>>;

/// `Some(rejection)` when the edge wants credentials it did not get.
fn check_auth(s: &mut EdgeState, headers: &HeaderMap) -> Option<Response> {
    let got = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.auth.push(got.clone());
    if let Some((u, p)) = &s.require {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        );
        if got.as_deref() != Some(want.as_str()) {
            return Some(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "bad credentials"})),
                )
                    .into_response(),
            );
        }
    }
    None
}

fn job_body(id: &str, j: &Job, done: u64) -> Value {
    json!({
        "id": id, "state": j.state, "bytes_done": done, "bytes_total": j.bytes_total,
        "error": j.error,
        "images": j.images.iter().map(|i| json!({
            "image": i, "digest": i.split('@').nth(1), "state": j.state,
            "bytes_done": done / j.images.len().max(1) as u64,
            "bytes_total": j.bytes_total / j.images.len().max(1) as u64,
            "error": j.error, "layers": []
        })).collect::<Vec<_>>()
    })
}

async fn edge_prefetch(
    State(edge): State<Edge>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut s = edge.lock().expect("edge lock");
    if let Some(r) = check_auth(&mut s, &headers) {
        return r;
    }
    let images: Vec<String> = body["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pin = body["pin"].as_bool().unwrap_or(false);
    s.prefetches.push((images.clone(), pin));
    if pin {
        s.pinned.extend(images.iter().cloned());
    }
    s.next_id += 1;
    let id = format!("job-{}", s.next_id);
    let (state, error) = match s.fail_next.take() {
        Some(e) => ("failed", Some(e)),
        None => ("running", None),
    };
    let job = Job {
        bytes_total: 1000 * images.len() as u64,
        images,
        pin,
        state,
        error,
    };
    let body = job_body(&id, &job, 0);
    s.jobs.insert(id, job);
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

async fn edge_job(
    State(edge): State<Edge>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut s = edge.lock().expect("edge lock");
    if let Some(r) = check_auth(&mut s, &headers) {
        return r;
    }
    let gate = s.gate_open;
    let Some(job) = s.jobs.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such job"}))).into_response();
    };
    if job.state == "running" && gate {
        job.state = "done";
    }
    let done = match job.state {
        "done" => job.bytes_total,
        "failed" => 0,
        _ => job.bytes_total / 2,
    };
    let body = job_body(&id, job, done);
    if job.state == "done" {
        let images = job.images.clone();
        s.done_images.extend(images);
    }
    Json(body).into_response()
}

async fn edge_unpin(
    State(edge): State<Edge>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut s = edge.lock().expect("edge lock");
    if let Some(r) = check_auth(&mut s, &headers) {
        return r;
    }
    let images: Vec<String> = body["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for i in &images {
        s.pinned.remove(i);
    }
    s.unpins.push(images);
    Json(json!({"unpinned": s.unpins.last().map(|v| v.len()).unwrap_or(0)})).into_response()
}

/// Serves a fake edge on `listener`.
pub fn serve_edge(edge: Edge, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/api/v1/prefetch", post(edge_prefetch))
        .route("/api/v1/prefetch/{id}", get(edge_job))
        .route("/api/v1/unpin", post(edge_unpin))
        .with_state(edge);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// A running fake edge and its URL.
pub async fn start_edge() -> (Edge, String, tokio::task::JoinHandle<()>) {
    let edge: Edge = Arc::new(Mutex::new(EdgeState::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = serve_edge(edge.clone(), listener);
    (edge, url, task)
}

/// Polls `check` every 20 ms until it holds; panics naming `what` once
/// `bound` has passed. The async twin of the test kit's `wait_until` (this
/// crate's tests do not depend on the kit).
pub async fn wait_until(what: &str, bound: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nobody listens on (yet).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ----- registry-side fakes ---------------------------------------------------

/// Tags of this "registry": `proj/repo:tag` -> digest. Tags can move.
#[derive(Default)]
pub struct FakeResolver {
    pub tags: Mutex<HashMap<String, String>>,
    pub calls: Mutex<Vec<String>>,
}

impl FakeResolver {
    pub fn tag(&self, reference: &str, digest: &str) {
        self.tags
            .lock()
            .expect("lock")
            .insert(reference.to_string(), digest.to_string());
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl ImageResolver for FakeResolver {
    async fn resolve(&self, image_ref: &str) -> Result<ResolvedImage, ResolveError> {
        self.calls.lock().expect("lock").push(image_ref.to_string());
        let r = ImageRef::parse(image_ref).map_err(ResolveError::InvalidReference)?;
        let digest = match &r.digest {
            Some(d) => d.clone(),
            None => self
                .tags
                .lock()
                .expect("lock")
                .get(image_ref)
                .cloned()
                .ok_or_else(|| {
                    ResolveError::NotFound(format!("{image_ref} is not in the registry"))
                })?,
        };
        Ok(ResolvedImage {
            repository: r.repository,
            upstream: None,
            digest,
            media_type: MANIFEST.into(),
        })
    }
}

/// admin:secret may do anything; viewer:view may only read.
pub struct BasicAuthorizer;

impl Authorizer for BasicAuthorizer {
    fn authorize(
        &self,
        headers: &HeaderMap,
        project: Option<&str>,
        action: CtlAction,
    ) -> Result<Actor, AuthError> {
        let enc = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        let got = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if got == enc("admin", "secret") {
            return Ok(Actor {
                name: "admin".into(),
                admin: true,
            });
        }
        // A developer of project shop, and of nothing else.
        if got == enc("dev", "dev") {
            return match project {
                Some("shop") if action != CtlAction::Admin => Ok(Actor {
                    name: "dev".into(),
                    admin: false,
                }),
                Some(p) => Err(AuthError {
                    status: StatusCode::FORBIDDEN,
                    message: format!("dev may not see project {p}"),
                }),
                None => Err(AuthError {
                    status: StatusCode::FORBIDDEN,
                    message: "dev may not manage clusters and nodes".into(),
                }),
            };
        }
        if got == enc("viewer", "view") {
            if action == CtlAction::Read {
                return Ok(Actor {
                    name: "viewer".into(),
                    admin: false,
                });
            }
            return Err(AuthError {
                status: StatusCode::FORBIDDEN,
                message: "viewer may not change anything here".into(),
            });
        }
        Err(AuthError {
            status: StatusCode::UNAUTHORIZED,
            message: "log in with a registry account".into(),
        })
    }
}

#[derive(Default)]
pub struct MemAudit {
    pub records: Mutex<Vec<[String; 5]>>,
}

impl MemAudit {
    pub fn has(&self, action: &str, outcome_prefix: &str) -> bool {
        self.records
            .lock()
            .expect("lock")
            .iter()
            .any(|r| r[2] == action && r[4].starts_with(outcome_prefix))
    }
}

impl AuditSink for MemAudit {
    fn record(&self, actor: &str, project: &str, action: &str, target: &str, outcome: &str) {
        self.records.lock().expect("lock").push([
            actor.into(),
            project.into(),
            action.into(),
            target.into(),
            outcome.into(),
        ]);
    }
}

/// The directory deployer, counting applies and checking that every image in
/// what is applied was reported prefetched by that node's edge first.
pub struct CheckedDeployer {
    pub inner: DirectoryDeployer,
    pub edges: Mutex<HashMap<String, Edge>>,
    pub applies: Mutex<Vec<(String, Vec<String>)>>,
    pub violations: Mutex<Vec<String>>,
}

impl CheckedDeployer {
    pub fn apply_count(&self, node: &str) -> usize {
        self.applies
            .lock()
            .expect("lock")
            .iter()
            .filter(|(n, _)| n == node)
            .count()
    }
}

fn images_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "image" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                }
                images_in(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| images_in(x, out)),
        _ => {}
    }
}

#[async_trait]
impl Deployer for CheckedDeployer {
    async fn apply(&self, target: &DeployTarget, objects: &[Value]) -> Result<(), DeployError> {
        let mut images = Vec::new();
        for o in objects {
            images_in(o, &mut images);
        }
        let edge = self
            .edges
            .lock()
            .expect("lock")
            .get(&target.node.name)
            .cloned();
        let done = edge
            .map(|e| e.lock().expect("lock").done_images.clone())
            .unwrap_or_default();
        for i in &images {
            if !done.contains(i) {
                self.violations.lock().expect("lock").push(format!(
                    "{} applied with {i} before its edge reported it prefetched",
                    target.node.name
                ));
            }
        }
        self.applies.lock().expect("lock").push((
            target.node.name.clone(),
            objects
                .iter()
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                .collect(),
        ));
        self.inner.apply(target, objects).await
    }

    async fn remove(
        &self,
        target: &DeployTarget,
        selector: &OwnerSelector,
    ) -> Result<(), DeployError> {
        self.inner.remove(target, selector).await
    }

    async fn rollout_status(
        &self,
        target: &DeployTarget,
        workload: &WorkloadRef,
    ) -> Result<Rollout, DeployError> {
        self.inner.rollout_status(target, workload).await
    }
}

// ----- harness ----------------------------------------------------------------

/// What outlives a controller restart: the data directory and the outside world.
#[derive(Clone)]
pub struct World {
    pub dir: Arc<tempfile::TempDir>,
    pub resolver: Arc<FakeResolver>,
    pub deployer: Arc<CheckedDeployer>,
    pub audit: Arc<MemAudit>,
}

impl World {
    pub fn new() -> World {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        World {
            deployer: Arc::new(CheckedDeployer {
                inner: DirectoryDeployer::new(dir.path().join("manifests")),
                edges: Mutex::new(HashMap::new()),
                applies: Mutex::new(Vec::new()),
                violations: Mutex::new(Vec::new()),
            }),
            dir,
            resolver: Arc::new(FakeResolver::default()),
            audit: Arc::new(MemAudit::default()),
        }
    }

    pub fn manifests_dir(&self, node: &str) -> PathBuf {
        self.dir.path().join("manifests").join(node)
    }

    /// File names under the node's manifest directory, sorted.
    pub fn manifests(&self, node: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.manifests_dir(node))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn read_manifest(&self, node: &str, file: &str) -> String {
        std::fs::read_to_string(self.manifests_dir(node).join(file)).expect("manifest")
    }
}

pub struct Harness {
    pub world: World,
    pub url: String,
    pub http: reqwest::Client,
    pub state: Option<ControllerState>,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The database, to know when every task holding it has let go.
    db: std::sync::Weak<redb::Database>,
}

/// A pool of connections to the PostgreSQL database at `url`.
pub fn pg_pool(url: &str) -> deadpool_postgres::Pool {
    let config: tokio_postgres::Config = url.parse().expect("PostgreSQL URL");
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .expect("pool")
}

/// A fresh database with the controller's schema, as the composition root
/// migrates it (through the registry's `meta::pg::migrate`, in short here).
pub async fn pg_database() -> String {
    let url =
        tokio::task::spawn_blocking(|| berth_testkit::postgres::Postgres::shared().database())
            .await
            .expect("createdb");
    let pool = pg_pool(&url);
    let conn = pool.get().await.expect("connection");
    conn.batch_execute(
        "CREATE TABLE berth_schema (component text PRIMARY KEY, version integer NOT NULL, \
         migrated_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .expect("berth_schema");
    let m = berth_controller::store::pg::MIGRATIONS;
    for step in m.steps {
        conn.batch_execute(step).await.expect("migration step");
    }
    let version = m.steps.len() as i32;
    conn.execute(
        "INSERT INTO berth_schema (component, version) VALUES ($1, $2)",
        &[&m.component, &version],
    )
    .await
    .expect("schema version");
    url
}

pub fn fast_settings() -> ControllerSettings {
    ControllerSettings {
        reconcile: ReconcileSettings {
            poll_interval: Duration::from_millis(40),
            report_fallback: Duration::from_millis(40),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            resync_interval: Duration::from_millis(500),
            // Off: these tests count applies; the end-to-end tests cover drift.
            drift_check_interval: Duration::ZERO,
            concurrency: 4,
            shutdown_grace: Duration::from_secs(5),
        },
        secret_key: Some([42u8; 32]),
        ..ControllerSettings::default()
    }
}

impl Harness {
    pub async fn start(world: World) -> Harness {
        // `stop` saw the last handle go, but the file lock is released at the
        // end of the database's destructor, which may still be running on the
        // thread that dropped it: wait for that, as a restarted process would
        // find the lock released by the old one's exit.
        let path = world.dir.path().join("berth.redb");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let db = loop {
            match redb::Database::create(&path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot open the database (still open from before?): {e}"),
            }
        };
        let ports = Ports {
            resolver: world.resolver.clone(),
            edge: Arc::new(HttpEdgeClient::new(Duration::from_secs(2)).expect("edge client")),
            deployer: world.deployer.clone(),
            authorizer: Arc::new(BasicAuthorizer),
            audit: world.audit.clone(),
            events: Arc::new(berth_controller::NoPublicationEvents),
        };
        let db = Arc::new(db);
        let db_weak = Arc::downgrade(&db);
        let store = berth_controller::open_embedded_store(
            db,
            fast_settings()
                .secret_key
                .map(|k| berth_controller::secrets::SecretBox::new(&k)),
        )
        .expect("controller store");
        let state = ControllerState::new(store, ports, fast_settings());
        let (stop_rec, rec_rx) = oneshot::channel::<()>();
        let reconciler = state.spawn_reconciler(async move {
            let _ = rec_rx.await;
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = berth_controller::router(state.clone());
        let (stop_srv, srv_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = srv_rx.await;
                })
                .await;
        });
        Harness {
            world,
            url,
            http: reqwest::Client::new(),
            state: Some(state),
            stop: vec![stop_rec, stop_srv],
            tasks: vec![reconciler, server],
            db: db_weak,
        }
    }

    /// A replica on the PostgreSQL database at `url` (migrated): its
    /// reconciler runs while it holds the reconcilers' lease (`lease` long).
    pub async fn start_replica(world: World, url: &str, lease: Duration) -> Harness {
        Harness::start_replica_with(world, url, lease, fast_settings()).await
    }

    /// A replica with `settings` (its store, relay and leadership as
    /// `berth serve` wires them on PostgreSQL).
    pub async fn start_replica_with(
        world: World,
        url: &str,
        lease: Duration,
        settings: ControllerSettings,
    ) -> Harness {
        let ports = Ports {
            resolver: world.resolver.clone(),
            edge: Arc::new(HttpEdgeClient::new(Duration::from_secs(2)).expect("edge client")),
            deployer: world.deployer.clone(),
            authorizer: Arc::new(BasicAuthorizer),
            audit: world.audit.clone(),
            events: Arc::new(berth_controller::NoPublicationEvents),
        };
        let pool = pg_pool(url);
        let store = berth_controller::open_postgres_store(
            pool.clone(),
            settings
                .secret_key
                .map(|k| berth_controller::secrets::SecretBox::new(&k)),
        )
        .await
        .expect("controller store");
        let state = ControllerState::new(store, ports, settings);
        let (relay, incoming) = berth_controller::postgres_relay(pool.clone(), url).expect("relay");
        state.relay_through(relay, incoming);
        let leadership = berth_controller::postgres_leadership(pool, lease);
        let (stop_rec, rec_rx) = oneshot::channel::<()>();
        let reconciler = state.spawn_reconciler_led(leadership, async move {
            let _ = rec_rx.await;
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = berth_controller::router(state.clone());
        let (stop_srv, srv_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = srv_rx.await;
                })
                .await;
        });
        Harness {
            world,
            url,
            http: reqwest::Client::new(),
            state: Some(state),
            stop: vec![stop_rec, stop_srv],
            tasks: vec![reconciler, server],
            db: std::sync::Weak::new(),
        }
    }

    /// Ends the controller as a kill would: its tasks dropped mid-flight,
    /// nothing handed over (a leader's lease runs out on its own).
    pub fn kill(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.stop.clear();
        self.state.take();
    }

    /// Stops the server and the reconciler and closes the database, as a
    /// process exit would.
    pub async fn stop(mut self) -> World {
        for s in self.stop.drain(..) {
            let _ = s.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.state.take();
        // A blocking database call the reconciler started may still be
        // finishing on the blocking pool; a process exit would end it, here
        // the next start must wait for it to let the file go.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.db.strong_count() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database is still held 20 s after the controller stopped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.world.clone()
    }

    pub fn state(&self) -> &ControllerState {
        self.state.as_ref().expect("running")
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(("admin", "secret"), method, path, body).await
    }

    pub async fn call_as(
        &self,
        (user, password): (&str, &str),
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.url))
            .basic_auth(user, Some(password));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn add_cluster(&self) {
        let kc = "apiVersion: v1\nkind: Config\ncurrent-context: edge\nclusters:\n- name: edge\n  cluster:\n    server: https://10.0.0.1:6443\ncontexts:\n- name: edge\n  context:\n    cluster: edge\n    user: berth\nusers:\n- name: berth\n  user:\n    token: cluster-token\n";
        let (s, v) = self
            .post(
                "/api/v1/clusters",
                json!({"name": "edge", "kubeconfig": kc}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    /// Registers a node and tells the checked deployer which edge is its.
    pub async fn add_node(&self, name: &str, edge_url: &str, edge: &Edge, labels: Value) {
        let (s, v) = self
            .post(
                "/api/v1/nodes",
                json!({"name": name, "cluster": "edge", "edge_url": edge_url, "labels": labels}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        self.world
            .deployer
            .edges
            .lock()
            .expect("lock")
            .insert(name.to_string(), edge.clone());
    }

    pub async fn publications(&self, project: &str, app: &str) -> Vec<Publication> {
        let (s, v) = self
            .get(&format!(
                "/api/v1/projects/{project}/apps/{app}/publications"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        serde_json::from_value(v["publications"].clone()).expect("publications")
    }

    pub async fn publication(&self, project: &str, app: &str, node: &str) -> Option<Publication> {
        self.publications(project, app)
            .await
            .into_iter()
            .find(|p| p.node == node)
    }

    /// Waits until the node's publication satisfies `pred` (or is gone, if `pred(None)`).
    pub async fn wait_for(
        &self,
        project: &str,
        app: &str,
        node: &str,
        what: &str,
        pred: impl Fn(Option<&Publication>) -> bool,
    ) -> Option<Publication> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let p = self.publication(project, app, node).await;
            if pred(p.as_ref()) {
                return p;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {project}/{app}@{node} to be {what}; last: {p:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_state(
        &self,
        project: &str,
        app: &str,
        node: &str,
        label: &str,
    ) -> Publication {
        self.wait_for(project, app, node, label, |p| {
            p.is_some_and(|p| p.state.label() == label)
        })
        .await
        .expect("publication")
    }
}

/// A Deployment app body with the given images (container names c0, c1...).
pub fn app_body(name: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, img)| json!({"name": format!("c{i}"), "image": img}))
        .collect();
    json!({"name": name, "spec": {"kind": "Deployment", "containers": containers, "replicas": 1}})
}
