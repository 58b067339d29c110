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
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_testkit::berth::{self, Admin, Registry, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::{Image, ImageBuilder, OciLayout};
use berth_testkit::proc::files_under;
use berth_testkit::tools::{docker_ref, require_tools, CopyOptions, Creds, Skopeo};
use berth_testkit::{wait_until, ServerProcess};
use serde_json::{json, Value};

/// The private project every test publishes from.
pub const PROJECT: &str = "acme";

/// A site with `acme/web:1.0` pushed and nodes `east` and `west` (both
/// `zone=test`, `side` their name), for the console's browser tests.
pub fn site_with_two_nodes() -> Site {
    let mut site = Site::start();
    site.push(
        "web",
        "1.0",
        ImageBuilder::new().layer_file("srv/index.html", "hello from berth\n"),
    );
    let upstream = site.registry_url();
    site.add_edge("east", &upstream, json!({"zone": "test", "side": "east"}));
    site.add_edge("west", &upstream, json!({"zone": "test", "side": "west"}));
    site
}

/// Skips (or fails under CI) when skopeo is missing.
pub fn tools_present() -> bool {
    require_tools(&["skopeo"])
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
        files_under(&self.cache_dir.join("blobs"))
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .filter(|name| name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()))
            .collect()
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
        let registry = berth::registry_in(berth_bin!(), &data, &[], env);
        let admin = registry.admin();
        admin.create_project(PROJECT, false);
        let robot = admin.create_robot(PROJECT, "edge", "pull");
        let (s, v) = admin.call(
            "POST",
            "/api/v1/clusters",
            Some(json!({"name": "edge", "kubeconfig": berth::kubeconfig("cluster-token")})),
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
        self.start_edge_with(name, upstream, &[]);
    }

    /// Like [`Site::start_edge`], with extra environment for `berth edge`.
    pub fn start_edge_with(&mut self, name: &str, upstream: &str, env: &[(&str, &str)]) {
        let cache_dir = self.tmp.path().join(format!("edge-{name}"));
        let process = berth::edge(
            berth_bin!(),
            upstream,
            &cache_dir,
            Some((&self.robot.0, &self.robot.1)),
            env,
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
        let out = std::process::Command::new(berth_bin!())
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
        // The last publication seen, kept once it is gone, for the message.
        let mut last: Option<Value> = None;
        wait_until(&format!("{app}@{node} to be {what}"), limit, || {
            let p = self.publication(app, node);
            if pred(p.as_ref()) {
                return Ok(p);
            }
            last = p.or(last.take());
            Err(format!("{:#}", last.clone().unwrap_or(Value::Null)))
        })
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

/// `kubernetes-validate --strict` over `files` (plus CRDs); panics with its
/// output unless every object passes.
pub fn kubernetes_validate(files: &[PathBuf], crds: &[PathBuf]) {
    let out = std::process::Command::new("kubernetes-validate")
        .arg("--strict")
        .args(files)
        .args(crds)
        .output()
        .expect("kubernetes-validate must be installed (pip install kubernetes-validate)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert_eq!(
        text.matches(" passed ").count(),
        files.len() + crds.len(),
        "every object validated:\n{text}"
    );
}

pub fn eip_crd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("controller/crds/eip.yaml")
}

/// An ElasticIP object against the CRD berth ships (kubernetes-validate knows
/// only built-in kinds): group/version and kind match, the spec has every
/// required field as a string, and nothing the schema does not declare.
pub fn assert_valid_eip(eip: &Value) {
    let text = std::fs::read_to_string(eip_crd()).expect("CRD");
    let crd: Value = serde_yaml::from_str(&text).expect("CRD YAML");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(
        eip["apiVersion"],
        format!(
            "{}/{}",
            crd["spec"]["group"].as_str().expect("group"),
            version["name"].as_str().expect("version")
        ),
        "{eip:#}"
    );
    assert_eq!(eip["kind"], crd["spec"]["names"]["kind"], "{eip:#}");
    let root = &version["schema"]["openAPIV3Schema"]["properties"];
    for k in eip.as_object().expect("object").keys() {
        assert!(
            ["apiVersion", "kind", "metadata"].contains(&k.as_str()) || root.get(k).is_some(),
            "{k} is not in the CRD: {eip:#}"
        );
    }
    let schema = &root["spec"];
    for req in schema["required"].as_array().expect("required") {
        let f = req.as_str().expect("field");
        assert!(eip["spec"][f].is_string(), "{f} missing: {eip:#}");
    }
    for (k, v) in eip["spec"].as_object().expect("spec") {
        let declared = &schema["properties"][k];
        assert_eq!(declared["type"], "string", "{k} not in the CRD: {eip:#}");
        let max = declared["maxLength"].as_u64().unwrap_or(u64::MAX);
        assert!(
            v.as_str().is_some_and(|s| s.len() as u64 <= max),
            "{k}: {v}"
        );
    }
}
