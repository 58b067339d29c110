//! Shared by the controller's end-to-end tests (`controller_e2e.rs`,
//! `controller_resources_e2e.rs`): one `berth serve` (registry and controller,
//! directory deployer) with a private project, real `berth edge` caches as the
//! nodes, images pushed with skopeo, and small readers of what the controller,
//! the edges and the manifest files say.
//!
//! Everything here waits for states with a deadline and panics with what it
//! last saw; nothing asserts on durations.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_testkit::berth::{self, Admin, Registry, ADMIN_PASSWORD};
use berth_testkit::fixtures::{Image, ImageBuilder, OciLayout};
use berth_testkit::tools::{docker_ref, require_tools, CopyOptions, Creds, Skopeo};
use berth_testkit::ServerProcess;
use serde_json::{json, Value};

/// The private project every test publishes from.
pub const PROJECT: &str = "acme";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// Skips (or fails under CI) when skopeo is missing.
pub fn tools_present() -> bool {
    require_tools(&["skopeo"])
}

/// Waits until `f` returns `Some`, polling every 20 ms; panics after `limit`
/// with `what` and the last value `describe` gives.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}; last seen:\n{}",
                describe()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A node: a running `berth edge` and its cache directory.
pub struct EdgeNode {
    pub name: String,
    pub process: ServerProcess,
    pub cache_dir: PathBuf,
}

impl EdgeNode {
    pub fn url(&self) -> String {
        self.process.base_url()
    }

    fn get(&self, path: &str) -> Value {
        let res = reqwest::blocking::get(format!("{}{path}", self.url()))
            .unwrap_or_else(|e| panic!("edge {} GET {path}: {e}", self.name));
        assert!(
            res.status().is_success(),
            "edge {} GET {path}: {}",
            self.name,
            res.status()
        );
        res.json().expect("edge answers JSON")
    }

    /// `GET /api/v1/images`: what the cache holds and which images are pinned.
    pub fn images(&self) -> Vec<Value> {
        self.get("/api/v1/images")
            .as_array()
            .cloned()
            .expect("images is a list")
    }

    /// Whether `repo@digest` is listed as pinned.
    pub fn pinned(&self, by_digest: &str) -> bool {
        self.images()
            .iter()
            .any(|i| i["image"] == by_digest && i["pinned"] == true)
    }

    /// `GET /api/v1/prefetch`: every prefetch job the edge knows.
    pub fn jobs(&self) -> Vec<Value> {
        self.get("/api/v1/prefetch")
            .as_array()
            .cloned()
            .expect("jobs is a list")
    }

    /// Jobs whose images include `by_digest`.
    pub fn jobs_for(&self, by_digest: &str) -> Vec<Value> {
        self.jobs()
            .into_iter()
            .filter(|j| {
                j["images"]
                    .as_array()
                    .is_some_and(|imgs| imgs.iter().any(|i| i["image"] == by_digest))
            })
            .collect()
    }

    /// Hex digests of the blobs committed in the cache directory
    /// (`blobs/sha256/..`); ingests in progress are elsewhere.
    pub fn blob_files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        walk(&self.cache_dir.join("blobs"), &mut |p| {
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                    out.insert(name.to_string());
                }
            }
        });
        out
    }

    /// Which of `digests` (`sha256:..`) are not committed in the cache directory.
    pub fn missing_blobs(&self, digests: &[String]) -> Vec<String> {
        let have = self.blob_files();
        digests
            .iter()
            .filter(|d| !have.contains(d.trim_start_matches("sha256:")))
            .cloned()
            .collect()
    }
}

fn walk(dir: &Path, f: &mut impl FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

/// One registry with the controller in it, a private project with a pull
/// robot, a cluster, and edge caches registered as nodes.
pub struct Site {
    pub registry: Registry,
    pub admin: Admin,
    pub skopeo: Skopeo,
    pub layout: OciLayout,
    pub robot: (String, String),
    pub edges: Vec<EdgeNode>,
    pub tmp: tempfile::TempDir,
}

/// Any kubeconfig with a current context: the directory deployer never uses it.
pub const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: edge\nclusters:\n- name: edge\n  cluster:\n    server: https://k8s.invalid:6443\ncontexts:\n- name: edge\n  context:\n    cluster: edge\n    user: berth\nusers:\n- name: berth\n  user:\n    token: cluster-token\n";

impl Site {
    /// A registry (controller enabled, directory deployer) with project
    /// `acme` (private), its pull robot, and cluster `edge`.
    pub fn start() -> Site {
        Site::start_with(&[])
    }

    /// Like [`Site::start`], with extra environment for `berth serve`.
    pub fn start_with(env: &[(&str, &str)]) -> Site {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let registry = berth::registry_in(bin(), &data, &[], env);
        let admin = registry.admin();
        admin.create_project(PROJECT, false);
        let robot = admin.create_robot(PROJECT, "edge", "pull");
        let (s, v) = admin.call(
            "POST",
            "/api/v1/clusters",
            Some(json!({"name": "edge", "kubeconfig": KUBECONFIG})),
        );
        assert_eq!(s, 201, "{v}");
        let layout = OciLayout::create(tmp.path().join("layout"));
        Site {
            registry,
            admin,
            skopeo: Skopeo::new(),
            layout,
            robot,
            edges: Vec::new(),
            tmp,
        }
    }

    pub fn registry_url(&self) -> String {
        self.registry.url()
    }

    /// Starts `berth edge` in front of `upstream` (the registry, or a proxy to
    /// it) with the pull robot's credentials, and registers it as node `name`.
    pub fn add_edge(&mut self, name: &str, upstream: &str, labels: Value) {
        self.start_edge(name, upstream);
        let url = self.edge(name).url();
        self.register_node(name, &url, labels);
    }

    /// Starts `berth edge` for node `name` without registering the node.
    pub fn start_edge(&mut self, name: &str, upstream: &str) {
        let cache_dir = self.tmp.path().join(format!("edge-{name}"));
        let process = berth::edge(
            bin(),
            upstream,
            &cache_dir,
            Some((&self.robot.0, &self.robot.1)),
            &[],
        );
        self.edges.push(EdgeNode {
            name: name.to_string(),
            process,
            cache_dir,
        });
    }

    /// Registers node `name` whose edge cache the controller reaches at `edge_url`.
    pub fn register_node(&self, name: &str, edge_url: &str, labels: Value) {
        let (s, v) = self.admin.call(
            "POST",
            "/api/v1/nodes",
            Some(json!({"name": name, "cluster": "edge", "edge_url": edge_url, "labels": labels})),
        );
        assert_eq!(s, 201, "registering node {name}: {v}");
    }

    pub fn edge(&self, name: &str) -> &EdgeNode {
        self.edges
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no edge {name}"))
    }

    pub fn edge_mut(&mut self, name: &str) -> &mut EdgeNode {
        self.edges
            .iter_mut()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no edge {name}"))
    }

    pub fn admin_creds(&self) -> Creds {
        Creds::new("admin", ADMIN_PASSWORD)
    }

    /// Builds an image into the local layout and pushes it as `acme/<repo>:<tag>`.
    pub fn push(&self, repo: &str, tag: &str, builder: ImageBuilder) -> Image {
        let local_tag = format!("{repo}-{tag}-{:08x}", rand::random::<u32>());
        let image = builder.tag(&local_tag).build(&self.layout);
        self.push_built(&image, repo, tag);
        image
    }

    /// Pushes an image already in the layout as `acme/<repo>:<tag>`.
    pub fn push_built(&self, image: &Image, repo: &str, tag: &str) {
        let local = image.tag.as_deref().expect("image built with a tag");
        self.skopeo.copy(
            &self.layout.reference(local),
            &docker_ref(&self.registry.host(), &format!("{PROJECT}/{repo}"), tag),
            &CopyOptions::default()
                .preserving_digests()
                .with_dest_creds(&self.admin_creds()),
        );
    }

    /// Where the directory deployer writes a node's files.
    pub fn manifests_dir(&self, node: &str) -> PathBuf {
        self.registry.data_dir.join("manifests").join(node)
    }

    /// File names in a node's manifest directory, sorted (temporary files excluded).
    pub fn manifests(&self, node: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.manifests_dir(node))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn read_manifest(&self, node: &str, file: &str) -> Value {
        let path = self.manifests_dir(node).join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
    }

    /// Runs `berth <args> --url <registry> --user admin` (password from the
    /// environment); returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(bin())
            .args(args)
            .args(["--url", &self.registry_url(), "--user", "admin"])
            .env("BERTH_PASSWORD", ADMIN_PASSWORD)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running berth");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.admin.call(method, path, body)
    }

    pub fn app_path(&self, app: &str) -> String {
        format!("/api/v1/projects/{PROJECT}/apps/{app}")
    }

    pub fn create_app(&self, body: Value) -> Value {
        let (s, v) = self.api(
            "POST",
            &format!("/api/v1/projects/{PROJECT}/apps"),
            Some(body),
        );
        assert_eq!(s, 201, "creating app: {v}");
        v
    }

    pub fn publish(&self, app: &str, body: Value) -> Value {
        let (s, v) = self.api(
            "POST",
            &format!("{}/publish", self.app_path(app)),
            Some(body),
        );
        assert_eq!(s, 202, "publishing {app}: {v}");
        v
    }

    pub fn unpublish(&self, app: &str, body: Value) -> Value {
        let (s, v) = self.api(
            "POST",
            &format!("{}/unpublish", self.app_path(app)),
            Some(body),
        );
        assert_eq!(s, 202, "unpublishing {app}: {v}");
        v
    }

    pub fn publications(&self, app: &str) -> Vec<Value> {
        let (s, v) = self.api("GET", &format!("{}/publications", self.app_path(app)), None);
        assert_eq!(s, 200, "{v}");
        v["publications"].as_array().cloned().expect("publications")
    }

    pub fn publication(&self, app: &str, node: &str) -> Option<Value> {
        self.publications(app)
            .into_iter()
            .find(|p| p["node"] == node)
    }

    /// Waits until `app@node` is in `state`; panics (with the publication) on a timeout.
    pub fn wait_state(&self, app: &str, node: &str, state: &str, limit: Duration) -> Value {
        self.wait_publication(app, node, state, limit, |p| {
            p.is_some_and(|p| p["state"] == state)
        })
        .expect("publication")
    }

    /// Waits until `pred` holds for `app@node`'s publication (`None`: gone).
    pub fn wait_publication(
        &self,
        app: &str,
        node: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let mut last = None;
        let deadline = Instant::now() + limit;
        loop {
            let p = self.publication(app, node);
            if pred(p.as_ref()) {
                return p;
            }
            last = p.or(last);
            if Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?} waiting for {app}@{node} to be {what}; last: {:#}",
                    last.unwrap_or(Value::Null)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The states of a publication's history, in order.
pub fn history_states(p: &Value) -> Vec<String> {
    p["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["state"].as_str().expect("state").to_string())
        .collect()
}

/// Time (unix seconds) of the first history entry in `state`.
pub fn first_at(p: &Value, state: &str) -> Option<u64> {
    p["history"]
        .as_array()?
        .iter()
        .find(|h| h["state"] == state)
        .and_then(|h| h["at"].as_u64())
}

/// Every `sha256:` digest the image's manifest references (config and layers).
pub fn blob_digests(image: &Image) -> Vec<String> {
    image.blob_digests().into_iter().map(|(d, _)| d).collect()
}

/// A TCP proxy to 127.0.0.1:`target` that can slow down what comes back
/// from the target: at most `rate` bytes per second per connection (0:
/// unthrottled), and the start of every answer held back for `delay` (0:
/// none). A connection made while the target is down waits
/// for it (up to 15 s), as behind a load balancer, instead of being refused.
/// Stops accepting when dropped.
pub struct SlowProxy {
    pub port: u16,
    rate: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
}

impl SlowProxy {
    pub fn start(target: u16, rate: u64, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let rate = Arc::new(AtomicU64::new(rate));
        let delay_ms = Arc::new(AtomicU64::new(delay.as_millis() as u64));
        let stop = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(true));
        let (r, d, s, h) = (rate.clone(), delay_ms.clone(), stop.clone(), hold.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let (r, d) = (r.clone(), d.clone());
                let wait = if h.load(Ordering::SeqCst) {
                    HOLD_WHILE_DOWN
                } else {
                    Duration::ZERO
                };
                std::thread::spawn(move || {
                    let Some(upstream) = connect_within(target, wait) else {
                        let _ = client.shutdown(Shutdown::Both);
                        return;
                    };
                    let (c2, u2) = match (client.try_clone(), upstream.try_clone()) {
                        (Ok(c), Ok(u)) => (c, u),
                        _ => return,
                    };
                    let asked = Arc::new(AtomicBool::new(false));
                    let a = asked.clone();
                    std::thread::spawn(move || pipe_answers(u2, c2, (r, d, a)));
                    pipe_requests(client, upstream, asked);
                });
            }
        });
        SlowProxy {
            port,
            rate,
            delay_ms,
            stop,
            hold,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::SeqCst);
    }

    /// Whether new connections wait for a target that is down (the default)
    /// or are closed at once, as if the target refused them.
    pub fn set_hold_while_down(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// How long a new connection waits for a target that is down (restarting)
/// before the proxy gives up on it.
const HOLD_WHILE_DOWN: Duration = Duration::from_secs(15);

fn connect_within(port: u16, limit: Duration) -> Option<TcpStream> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return Some(s),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return None,
        }
    }
}

/// Rate, answer delay, and "a request went out since the last answer began".
type Slowness = (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicBool>);

/// Copies requests `from` the client `to` the target, noting each in `asked`.
fn pipe_requests(mut from: TcpStream, mut to: TcpStream, asked: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        asked.store(true, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Copies answers `from` the target `to` the client, slowed as `slow` says:
/// the start of each answer (the first bytes after a request) is held back
/// for the delay, and every chunk paced to the rate.
fn pipe_answers(mut from: TcpStream, mut to: TcpStream, slow: Slowness) {
    let (rate, delay, asked) = slow;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let d = delay.load(Ordering::SeqCst);
        if asked.swap(false, Ordering::SeqCst) && d > 0 {
            std::thread::sleep(Duration::from_millis(d));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        let r = rate.load(Ordering::SeqCst);
        if r > 0 {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / r as f64));
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
