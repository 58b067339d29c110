//! The controller under test: its API and reconciler over real sockets
//! (`Harness`), started, stopped and restarted over the same data directory
//! and outside world (`World`), with settings fast enough for tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use berth_controller::deploy::DirectoryDeployer;
use berth_controller::model::Publication;
use berth_controller::{
    ControllerSettings, ControllerState, HttpEdgeClient, Ports, ReconcileSettings,
};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{pg_pool, BasicAuthorizer, CheckedDeployer, Edge, FakeResolver, MemAudit};

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
