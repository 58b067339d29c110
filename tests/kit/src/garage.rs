//! A real distributed S3 server for tests: a three-node Garage cluster on
//! 127.0.0.1, in a temporary directory, replication factor 3 (writes and
//! reads need a quorum of 2, so one node can be killed and the cluster goes
//! on), with one bucket and one key. Stopped (SIGKILL) and removed on drop.
//!
//! The Garage binary is the first of: `$BERTH_GARAGE`; `target/garage`;
//! `../shared/tools/garage-2.5.0-linux-x86_64.xz` (beside the checkout),
//! unpacked into `target/garage` once its sha256 matches the `.sha256` file
//! beside it; `garage` on `PATH`. [`GarageCluster::start`] returns None
//! (printing why, or panicking under CI) only when there is none of these.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::proc::{free_port, http_status};
use crate::tools::{find_tool, skip_or_fail};
use crate::wait::wait_until;

const XZ_NAME: &str = "garage-2.5.0-linux-x86_64";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Garage binary to run, unpacking the shared prebuilt one if needed.
pub fn garage_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_GARAGE").filter(|p| !p.is_empty()) {
        return find_tool(&p.to_string_lossy());
    }
    let target = workspace_root().join("target/garage");
    if target.is_file() {
        return Some(target);
    }
    let shared = workspace_root().join("../shared/tools");
    let xz = shared.join(format!("{XZ_NAME}.xz"));
    if xz.is_file() {
        return Some(unpack(
            &xz,
            &shared.join(format!("{XZ_NAME}.sha256")),
            &target,
        ));
    }
    find_tool("garage")
}

/// Unpacks `xz` into `dest` after checking it against the sha256 in `sum`.
fn unpack(xz: &Path, sum: &Path, dest: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let out = Command::new("xz")
        .arg("-dc")
        .arg(xz)
        .output()
        .unwrap_or_else(|e| panic!("running xz -dc {}: {e}", xz.display()));
    assert!(out.status.success(), "xz -dc {} failed", xz.display());
    let want =
        std::fs::read_to_string(sum).unwrap_or_else(|e| panic!("reading {}: {e}", sum.display()));
    let want = want.split_whitespace().next().unwrap_or_default();
    let got = crate::fixtures::sha256_hex(&out.stdout);
    assert_eq!(
        got,
        want,
        "{} unpacks to a binary with another sha256",
        xz.display()
    );
    // Unpacked beside its final name and renamed: parallel tests never run half a file.
    let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
    std::fs::create_dir_all(dest.parent().expect("target has a parent")).expect("target dir");
    std::fs::write(&tmp, &out.stdout).expect("write the unpacked garage");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, dest).expect("rename the unpacked garage");
    dest.to_path_buf()
}

struct Node {
    config: PathBuf,
    s3_port: u16,
    child: Option<Child>,
}

/// A running three-node Garage cluster; see the module doc.
pub struct GarageCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    _dir: TempDir,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl GarageCluster {
    /// Starts the cluster, or returns None when no Garage binary exists.
    pub fn start() -> Option<Self> {
        let Some(binary) = garage_binary() else {
            skip_or_fail(
                "no Garage binary: set BERTH_GARAGE, or put it in target/garage or on PATH",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temporary directory for garage");
        let secret = random_hex(32);
        let mut nodes = Vec::new();
        for i in 0..3 {
            let root = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&root).expect("node dir");
            let (rpc, s3) = (free_port(), free_port());
            let config = root.join("garage.toml");
            let text = format!(
                "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\n\
                 db_engine = \"sqlite\"\nreplication_factor = 3\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\n[s3_api]\ns3_region = \"garage\"\n\
                 api_bind_addr = \"127.0.0.1:{s3}\"\n",
                root = root.display()
            );
            std::fs::write(&config, text).expect("garage.toml");
            // It holds the cluster's secret: Garage wants it private.
            std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod garage.toml");
            let mut node = Node {
                config,
                s3_port: s3,
                child: None,
            };
            node.child = Some(spawn(&binary, &node.config, &root.join("log")));
            nodes.push(node);
        }
        let mut cluster = GarageCluster {
            binary,
            nodes,
            bucket: "berth".into(),
            key_id: format!("GK{}", random_hex(12)),
            secret: random_hex(32),
            _dir: dir,
        };
        cluster.form();
        Some(cluster)
    }

    /// Connects the nodes, gives each a role, creates the bucket and the key.
    fn form(&mut self) {
        let ids: Vec<String> = (0..3)
            .map(|i| {
                wait_until("a garage node to answer", Duration::from_secs(30), || {
                    self.garage(i, &["node", "id", "-q"]).ok()
                })
            })
            .collect();
        for id in &ids[1..] {
            self.must(0, &["node", "connect", id.trim()]);
        }
        for id in &ids {
            let short = &id[..16];
            wait_until("garage to assign a role", Duration::from_secs(30), || {
                self.garage(0, &["layout", "assign", "-z", "dc1", "-c", "1G", short])
            });
        }
        self.must(0, &["layout", "apply", "--version", "1"]);
        wait_until(
            "garage to create the bucket",
            Duration::from_secs(30),
            || self.garage(0, &["bucket", "create", "berth"]),
        );
        let (key, secret) = (self.key_id.clone(), self.secret.clone());
        self.must(0, &["key", "import", "--yes", "-n", "berth", &key, &secret]);
        self.must(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", "berth", "--key", &key,
            ],
        );
        for n in &self.nodes {
            let port = n.s3_port;
            wait_until("garage's S3 API", Duration::from_secs(30), || {
                http_status(port, "/", Duration::from_secs(2)).is_some()
            });
        }
    }

    /// `garage -c <node i's config> args...`: its stdout, or why it failed.
    pub fn garage(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "garage {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `garage`, tried again for a while: right after start a node may not
    /// yet know its peers or the layout (more so on a loaded machine).
    fn must(&self, i: usize, args: &[&str]) -> String {
        wait_until(
            &format!("garage {args:?} to succeed"),
            Duration::from_secs(30),
            || self.garage(i, args),
        )
    }

    /// Node `i`'s S3 endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// The `BERTH_STORAGE_*` variables of a berth storing in the bucket
    /// through node `i`.
    pub fn berth_env(&self, i: usize) -> Vec<(String, String)> {
        [
            ("BERTH_STORAGE_BACKEND", "s3".to_string()),
            ("BERTH_STORAGE_BUCKET", self.bucket.clone()),
            ("BERTH_STORAGE_ENDPOINT", self.endpoint(i)),
            ("BERTH_STORAGE_REGION", "garage".to_string()),
            ("BERTH_STORAGE_ACCESS_KEY_ID", self.key_id.clone()),
            ("BERTH_STORAGE_SECRET_ACCESS_KEY", self.secret.clone()),
            ("BERTH_STORAGE_ALLOW_HTTP", "true".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    }

    /// Another bucket on the cluster, readable and writable with the key.
    pub fn create_bucket(&self, name: &str) {
        wait_until("garage to create a bucket", Duration::from_secs(30), || {
            self.garage(0, &["bucket", "create", name])
        });
        self.must(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                name,
                "--key",
                &self.key_id,
            ],
        );
    }

    /// distribution's `s3` storage driver settings for `bucket` through node `i`.
    pub fn distribution_s3(&self, i: usize, bucket: &str) -> crate::distribution::S3Storage {
        crate::distribution::S3Storage {
            endpoint: self.endpoint(i),
            region: "garage".into(),
            bucket: bucket.into(),
            access_key: self.key_id.clone(),
            secret_key: self.secret.clone(),
        }
    }

    /// The process ids of the running nodes (for their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// SIGKILL of node `i`: no shutdown, no goodbye to its peers.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(binary: &Path, config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("garage log file");
    Command::new(binary)
        .arg("-c")
        .arg(config)
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()))
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
