//! The directory deployer: each node's objects as YAML files under
//! `<root>/<node>/<project>-<owner>-<kind>-<name>.yaml`, where owner is the app
//! (or `shared` for resources used by several apps).
//!
//! Files are written atomically (temporary file, fsync, rename; one fsync of
//! the directory for all of an apply's renames, and of the root when the
//! node's directory is new), so a reader — a GitOps agent, `kubectl apply -f`
//! — never sees half a file, and an acknowledged apply survives a power loss.
//! Removal matches objects by their labels, not by file name, so one
//! project's files can never be taken for another's. Rollouts are not observable:
//! a publication is running once its files are written.
//!
//! The files hold Secret objects with their values: the root and every node's
//! directory are 0700 and every file 0600, so only berth's user (and whoever
//! applies them as that user) can read them.
//!
//! Every apply also appends one line to the node's `APPLY_LOG` (JSON: when,
//! and which files): what an agent watching the directory, or an operator
//! checking that a publish was applied once per node (replicas sharing the
//! directory, a takeover mid-publish), reads. One `write` of a line opened
//! for append, so replicas appending at once never interleave.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{DeployError, DeployTarget, Deployer, OwnerSelector, Rollout};
use crate::render::{object_identity, WorkloadRef, LABEL_BERTH_APP};

/// The apply log in each node's directory (a dot file: never taken for a manifest).
pub const APPLY_LOG: &str = ".applies.jsonl";

pub struct DirectoryDeployer {
    root: Arc<Root>,
}

/// The deployer's root directory, checked once (made, or narrowed to 0700)
/// by the first apply rather than on every one.
struct Root {
    path: PathBuf,
    ready: AtomicBool,
}

impl Root {
    fn prepare(&self) -> Result<(), DeployError> {
        if !self.ready.load(Ordering::Acquire) {
            private_dir(&self.path)?;
            self.ready.store(true, Ordering::Release);
        }
        Ok(())
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DirectoryDeployer {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirectoryDeployer {
            root: Arc::new(Root {
                path: root.into(),
                ready: AtomicBool::new(false),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root.path
    }

    /// Directory holding one node's files.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root.path.join(node)
    }

    /// File name of an object: `<project>-<owner>-<kind>-<name>.yaml`.
    pub fn file_name(obj: &Value) -> Result<String, DeployError> {
        let (_, kind, namespace, name) = object_identity(obj).ok_or_else(|| {
            DeployError::Invalid("object without apiVersion, kind or metadata.name".into())
        })?;
        let owner = obj["metadata"]["labels"][LABEL_BERTH_APP]
            .as_str()
            .unwrap_or("shared");
        let file = format!(
            "{namespace}-{owner}-{}-{name}.yaml",
            kind.to_ascii_lowercase()
        );
        // Names were validated as DNS labels; refuse anything that could leave the directory.
        if file.contains('/') || file.contains("..") || file.starts_with('.') {
            return Err(DeployError::Invalid(format!("unsafe file name {file:?}")));
        }
        Ok(file)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |source| DeployError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `dir/file` so that readers see the old or the new file,
/// never a mix. True when the file was replaced: the rename is durable once
/// `dir` is synced, which the caller does once for all of an apply's files.
fn write_atomic(dir: &Path, file: &str, bytes: &[u8]) -> Result<bool, DeployError> {
    let path = dir.join(file);
    if fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let tmp = dir.join(format!(
        ".{file}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = private_file_options().open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

fn sync_dir(dir: &Path) -> Result<(), DeployError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Options that create a new file readable and writable by its owner only.
fn private_file_options() -> fs::OpenOptions {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

/// Makes sure `dir` exists and is 0700. A directory it creates is made 0700
/// in the same step and its entry is synced in the parent, so that a publish
/// acknowledged before a power loss does not lose its node's directory (an
/// apply that finds the directory just made by another, concurrent one does
/// not wait for that sync). One left 0755 by an earlier release is narrowed.
fn private_dir(dir: &Path) -> Result<(), DeployError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return narrow(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The parent is missing (the root, on the first apply): make it, then this.
            let parent = dir.parent().ok_or_else(|| io_err(dir)(e))?;
            private_dir(parent)?;
            return private_dir(dir);
        }
        Err(e) => return Err(io_err(dir)(e)),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Sets an existing directory to 0700 unless it is already.
fn narrow(dir: &Path) -> Result<(), DeployError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir).map_err(io_err(dir))?.permissions().mode() & 0o777;
        if mode != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        }
    }
    Ok(())
}

fn apply_blocking(root: Arc<Root>, node: String, objects: Vec<Value>) -> Result<(), DeployError> {
    root.prepare()?;
    let dir = root.path.join(node);
    private_dir(&dir)?;
    let mut files = Vec::with_capacity(objects.len());
    let mut replaced = false;
    for obj in &objects {
        let file = DirectoryDeployer::file_name(obj)?;
        let yaml = serde_yaml::to_string(obj)
            .map_err(|e| DeployError::Invalid(format!("cannot write YAML: {e}")))?;
        replaced |= write_atomic(&dir, &file, yaml.as_bytes())?;
        files.push(file);
    }
    // One sync makes every rename of this apply durable before it is logged.
    if replaced {
        sync_dir(&dir)?;
    }
    log_apply(&dir, &files)
}

/// Appends the apply of `files` to the node's `APPLY_LOG`, in one write.
fn log_apply(dir: &Path, files: &[String]) -> Result<(), DeployError> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut line = serde_json::json!({ "at": at, "files": files }).to_string();
    line.push('\n');
    let path = dir.join(APPLY_LOG);
    rotate_apply_log(&path);
    let mut opts = fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(io_err(&path))?;
    f.write_all(line.as_bytes()).map_err(io_err(&path))?;
    f.sync_data().map_err(io_err(&path))
}

/// The size past which the apply log moves aside to `APPLY_LOG.1` (the one
/// before it dropped), so a node's log never holds more than about twice
/// this however long berth runs.
const APPLY_LOG_ROTATE_AT: u64 = 1 << 20;

/// Moves a full apply log aside. Replicas rotating at once: one rename wins,
/// the other finds nothing to move; either way the next line starts a new log.
fn rotate_apply_log(path: &Path) {
    let full = fs::metadata(path).is_ok_and(|m| m.len() >= APPLY_LOG_ROTATE_AT);
    if full {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        if let Err(e) = fs::rename(path, PathBuf::from(old)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not rotate the apply log");
            }
        }
    }
}

fn remove_blocking(dir: PathBuf, selector: OwnerSelector) -> Result<(), DeployError> {
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let path = entry.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yaml")
            && !entry.file_name().to_string_lossy().starts_with('.');
        if !is_yaml {
            continue;
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        // A file someone else put there (or broke) is not ours to delete.
        let Ok(obj) = serde_yaml::from_str::<Value>(&text) else {
            tracing::warn!(path = %path.display(), "skipping unreadable manifest");
            continue;
        };
        if selector.matches(&obj) {
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
    }
    if removed {
        sync_dir(&dir)?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeployError> + Send + 'static,
) -> Result<T, DeployError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DeployError::Invalid(format!("file task failed: {e}")))?
}

#[async_trait]
impl Deployer for DirectoryDeployer {
    async fn apply(&self, target: &DeployTarget, objects: &[Value]) -> Result<(), DeployError> {
        let (root, node) = (self.root.clone(), target.node.name.clone());
        let objects = objects.to_vec();
        blocking(move || apply_blocking(root, node, objects)).await
    }

    /// A file edited or deleted by hand: its bytes differ from what berth writes.
    async fn drifted(
        &self,
        target: &DeployTarget,
        objects: &[Value],
    ) -> Result<Vec<String>, DeployError> {
        let dir = self.node_dir(&target.node.name);
        let objects = objects.to_vec();
        blocking(move || {
            let mut out = Vec::new();
            for obj in &objects {
                let file = DirectoryDeployer::file_name(obj)?;
                let yaml = serde_yaml::to_string(obj)
                    .map_err(|e| DeployError::Invalid(format!("cannot write YAML: {e}")))?;
                if fs::read(dir.join(&file)).map_or(true, |b| b != yaml.as_bytes()) {
                    out.push(file);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn remove(
        &self,
        target: &DeployTarget,
        selector: &OwnerSelector,
    ) -> Result<(), DeployError> {
        let dir = self.node_dir(&target.node.name);
        let selector = selector.clone();
        blocking(move || remove_blocking(dir, selector)).await
    }

    async fn rollout_status(
        &self,
        _target: &DeployTarget,
        _workload: &WorkloadRef,
    ) -> Result<Rollout, DeployError> {
        Ok(Rollout::NotObservable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cluster, WorkloadKind};
    use crate::render::fixtures::{node, render_kind};

    fn target() -> DeployTarget {
        DeployTarget {
            node: node(),
            cluster: Cluster {
                name: "edge".into(),
                kubeconfig: String::new(),
                eip_pool: None,
                created_at: 0,
            },
        }
    }

    const KINDS: [WorkloadKind; 5] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
        WorkloadKind::DaemonSet,
    ];

    /// The applies logged in `node_dir`, oldest first: each the files it wrote.
    fn applies(node_dir: &Path) -> Vec<Vec<String>> {
        let text = fs::read_to_string(node_dir.join(APPLY_LOG)).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                v["files"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    fn rename_app(objs: &mut [Value], app: &str) {
        for o in objs {
            o["metadata"]["name"] = format!("{app}-n1").into();
            o["metadata"]["labels"][LABEL_BERTH_APP] = app.into();
        }
    }

    #[tokio::test]
    async fn a_full_apply_log_moves_aside_and_the_next_apply_starts_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DirectoryDeployer::new(dir.path().join("manifests"));
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop",
                "labels": {LABEL_BERTH_APP: "web"}}, "data": {"a": "1"}});
        d.apply(&target(), std::slice::from_ref(&cm))
            .await
            .expect("apply");
        let log = d.node_dir("n1").join(APPLY_LOG);
        let filler = "{\"at\":0,\"files\":[]}\n".repeat(APPLY_LOG_ROTATE_AT as usize / 20 + 1);
        fs::write(&log, filler).expect("fill the log");
        d.apply(&target(), &[cm]).await.expect("apply");
        assert_eq!(
            applies(&d.node_dir("n1")).len(),
            1,
            "a new log holds the last apply"
        );
        let old = d.node_dir("n1").join(format!("{APPLY_LOG}.1"));
        assert!(fs::metadata(&old).expect("rotated").len() >= APPLY_LOG_ROTATE_AT);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn secrets_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("manifests");
        // A root left open by an earlier release is narrowed.
        fs::create_dir_all(&root).expect("mkdir");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        let d = DirectoryDeployer::new(&root);
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop", "labels": {LABEL_BERTH_APP: "web"}},
            "data": {"password": "aHVudGVyMg=="}});
        d.apply(&target(), std::slice::from_ref(&secret))
            .await
            .expect("apply");
        let file = d.node_dir("n1").join("shop-web-secret-db.yaml");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&d.node_dir("n1")), 0o700);
        // So is a node's directory left open by an earlier release.
        fs::create_dir(d.node_dir("n2")).expect("mkdir");
        fs::set_permissions(d.node_dir("n2"), fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut n2 = target();
        n2.node.name = "n2".into();
        d.apply(&n2, std::slice::from_ref(&secret))
            .await
            .expect("apply");
        assert_eq!(mode(&d.node_dir("n2")), 0o700);
        assert_eq!(
            mode(&d.node_dir("n2").join("shop-web-secret-db.yaml")),
            0o600
        );
        assert_eq!(mode(&file), 0o600);
        // A changed value is written to a new file: still 0600.
        let mut changed = secret.clone();
        changed["data"]["password"] = "b3RoZXI=".into();
        d.apply(&target(), &[changed]).await.expect("apply");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&d.node_dir("n1").join(APPLY_LOG)), 0o600);
    }

    #[tokio::test]
    async fn writes_validates_and_removes_all_kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DirectoryDeployer::new(dir.path());
        let t = target();
        for (i, kind) in KINDS.iter().enumerate() {
            let mut objs = render_kind(*kind);
            // One app per kind so the files do not replace each other.
            rename_app(&mut objs, &format!("app{i}"));
            d.apply(&t, &objs).await.expect("apply");
            d.apply(&t, &objs).await.expect("apply again is a no-op");
        }
        let node_dir = d.node_dir("n1");
        let manifests = |dir: &Path| -> Vec<String> {
            let mut files: Vec<String> = fs::read_dir(dir)
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|f| f != APPLY_LOG)
                .collect();
            files.sort();
            files
        };
        let files = manifests(&node_dir);
        assert_eq!(
            files,
            vec![
                "shop-app0-deployment-app0-n1.yaml",
                "shop-app1-service-app1-n1.yaml",
                "shop-app1-statefulset-app1-n1.yaml",
                "shop-app2-job-app2-n1.yaml",
                "shop-app3-cronjob-app3-n1.yaml",
                "shop-app4-daemonset-app4-n1.yaml",
            ]
        );
        // Every file must be a valid object for a current Kubernetes.
        let out = std::process::Command::new("kubernetes-validate")
            .arg("--strict")
            .args(files.iter().map(|f| node_dir.join(f)))
            .output()
            .expect("kubernetes-validate must be installed (pip install kubernetes-validate)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubernetes-validate failed:\n{stdout}\n{stderr}"
        );
        assert_eq!(stdout.matches(" passed ").count(), files.len(), "{stdout}");

        // Removing one app leaves the others.
        d.remove(&t, &OwnerSelector::app("shop", "app1", "n1"))
            .await
            .expect("remove");
        assert_eq!(manifests(&node_dir).len(), 4);
        d.remove(&t, &OwnerSelector::app("shop", "app1", "n1"))
            .await
            .expect("remove is idempotent");
        // Another project's app with the same name is untouched.
        d.remove(&t, &OwnerSelector::app("other", "app0", "n1"))
            .await
            .expect("remove");
        assert_eq!(manifests(&node_dir).len(), 4);
        // Every apply is in the log, the second of each kind's too.
        let logged = applies(&node_dir);
        assert_eq!(logged.len(), 2 * KINDS.len(), "{logged:?}");
        assert_eq!(logged[0], vec!["shop-app0-deployment-app0-n1.yaml"]);
        assert_eq!(logged[0], logged[1]);
        assert_eq!(
            d.rollout_status(
                &t,
                &crate::render::workload_ref("shop", "app0", WorkloadKind::Deployment, "n1")
            )
            .await
            .expect("status"),
            Rollout::NotObservable
        );
    }

    #[tokio::test]
    async fn resource_objects_validate() {
        use crate::render::*;
        use crate::resources::*;
        let n = node();
        let lb = LoadBalancerSpec {
            app: Some("web".into()),
            selector: Default::default(),
            service_type: ServiceType::LoadBalancer,
            ports: vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(8080),
                protocol: crate::model::Protocol::TCP,
            }],
        };
        let objs = vec![
            render_config_map(
                "shop",
                "settings",
                &[("a.conf".to_string(), "x=1".to_string())].into(),
                &n,
            ),
            render_secret(
                "shop",
                "db",
                &[("password".to_string(), b"hunter2".to_vec())].into(),
                &n,
            ),
            render_volume_claim(
                "shop",
                "data",
                &VolumeSpec {
                    capacity: "10Gi".into(),
                    storage_class: default_storage_class(),
                },
                &n,
            ),
            render_service("shop", "web-lb", &lb, &n),
            render_route(
                "shop",
                "www",
                &RouteSpec {
                    host: "shop.example.com".into(),
                    path: "/".into(),
                    load_balancer: "web-lb".into(),
                    port: 80,
                },
                Some("web"),
                &n,
            ),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DirectoryDeployer::new(dir.path());
        d.apply(&target(), &objs).await.expect("apply");
        let node_dir = d.node_dir("n1");
        let files: Vec<PathBuf> = fs::read_dir(&node_dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| !p.ends_with(APPLY_LOG))
            .collect();
        assert_eq!(files.len(), 5);
        let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/eip.yaml");
        let out = std::process::Command::new("kubernetes-validate")
            .arg("--strict")
            .args(&files)
            .arg(&crd)
            .output()
            .expect("kubernetes-validate must be installed (pip install kubernetes-validate)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
        assert_eq!(text.matches(" passed ").count(), 6, "{text}");

        // The EIP object against its CRD: required fields present, nothing else.
        let eip = render_eip(
            "shop",
            "public",
            &EipSpec {
                address: Some("203.0.113.7".into()),
                load_balancer: Some("web-lb".into()),
                ..EipSpec::default()
            },
            "203.0.113.7",
            Some("web"),
            &n,
        );
        let crd: Value =
            serde_yaml::from_str(&fs::read_to_string(&crd).expect("crd")).expect("yaml");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for req in schema["required"].as_array().expect("required") {
            let f = req.as_str().expect("field");
            assert!(eip["spec"][f].is_string(), "{f} missing in {eip}");
        }
        for k in eip["spec"].as_object().expect("spec").keys() {
            assert!(schema["properties"].get(k).is_some(), "{k} not in the CRD");
        }
        assert_eq!(
            eip["apiVersion"],
            format!("{}/v1", crd["spec"]["group"].as_str().expect("group"))
        );
        assert_eq!(eip["kind"], crd["spec"]["names"]["kind"]);
    }
}
