//! containerd and ctr, isolated: a private containerd (root, state, opt dir,
//! gRPC socket in a temp dir) that is killed on drop, and `ctr` pointed at it.
//!
//! Found on Debian 12 (containerd 1.6.20) as root without systemd, on ext4:
//! - The CRI plugin must be disabled (it wants CNI and its own state); aufs,
//!   btrfs, zfs and devmapper are skipped or fail at load, so they are
//!   disabled too, which keeps the log quiet. The `opt` plugin's default path
//!   (`/opt/containerd`) is moved into the temp dir.
//! - Both the `overlayfs` and the `native` snapshotters load, and
//!   `ctr images pull` unpacks with either (also foreign platforms such as
//!   linux/arm64: unpacking only writes files). `native` is the default here
//!   because it needs no overlay mount and so also works where the temp dir is
//!   itself on overlayfs (containers); choose `overlayfs` with
//!   [`Containerd::with_snapshotter`].
//! - Pulling from a plain-HTTP registry or mirror:
//!   `ctr --address SOCK images pull --plain-http --hosts-dir DIR REF`, where
//!   `DIR/<host:port>/hosts.toml` (see [`write_hosts_toml`]) lists
//!   `[host."http://127.0.0.1:PORT"] capabilities = ["pull", "resolve"]`.
//!   Mirrors are tried in order, then `server`; a failing mirror falls back
//!   silently, so a test that means to exercise the mirror must check the
//!   mirror saw the content.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::{run, try_run, CommandFailure, Creds};
use crate::proc::ServerProcess;

/// Writes `hosts_dir/<host>/hosts.toml` for ctr's `--hosts-dir` and returns its path.
///
/// `host` is the registry part of image references (`127.0.0.1:5000`),
/// `server` the upstream URL (`http://127.0.0.1:5000`), `mirrors` the URLs
/// tried first, each with capabilities `pull` and `resolve`.
pub fn write_hosts_toml(hosts_dir: &Path, host: &str, server: &str, mirrors: &[&str]) -> PathBuf {
    let dir = hosts_dir.join(host);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let mut toml = format!("server = \"{server}\"\n");
    for mirror in mirrors {
        toml.push_str(&format!(
            "\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ));
    }
    let path = dir.join("hosts.toml");
    std::fs::write(&path, toml).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Options of `ctr images pull` beyond `--plain-http --hosts-dir`.
#[derive(Clone, Debug, Default)]
pub struct CtrPull {
    /// `--platform os/arch[/variant]` (default: the host's).
    pub platform: Option<String>,
    pub all_platforms: bool,
    /// `--user user:password`.
    pub creds: Option<Creds>,
}

impl CtrPull {
    pub fn platform(platform: &str) -> Self {
        CtrPull {
            platform: Some(platform.to_owned()),
            ..Self::default()
        }
    }
}

/// A private containerd daemon.
#[derive(Debug)]
pub struct Containerd {
    server: ServerProcess,
    snapshotter: String,
    // Declared last so it is removed after the daemon is killed.
    dir: TempDir,
}

impl Containerd {
    /// Starts containerd with the `native` snapshotter as the pull default.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ctrd-")
            .tempdir()
            .expect("creating containerd dir");
        let root = dir.path();
        for sub in ["root", "state", "opt", "hosts", "mnt"] {
            std::fs::create_dir_all(root.join(sub)).expect("creating containerd subdir");
        }
        let socket = root.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = root.join("root").display(),
            state = root.join("state").display(),
            socket = socket.display(),
            opt = root.join("opt").display(),
        );
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, config).expect("writing containerd config");

        let server = ServerProcess::builder("containerd", 0)
            .name("containerd")
            .arg("--config")
            .arg(&config_path)
            .ready_unix_socket(&socket)
            .ready_timeout(Duration::from_secs(30))
            .spawn();
        let containerd = Containerd {
            server,
            snapshotter: "native".to_owned(),
            dir,
        };
        // The socket accepts before every service is registered; one real call
        // makes sure the API answers.
        containerd.run(["version"]);
        containerd
    }

    /// Use this snapshotter (`native` or `overlayfs`) for pulls and mounts.
    pub fn with_snapshotter(mut self, snapshotter: &str) -> Self {
        self.snapshotter = snapshotter.to_owned();
        self
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// The directory for `--hosts-dir`; fill it with [`Containerd::write_hosts_toml`].
    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    /// [`write_hosts_toml`] into this containerd's hosts dir.
    pub fn write_hosts_toml(&self, host: &str, server: &str, mirrors: &[&str]) -> PathBuf {
        write_hosts_toml(&self.hosts_dir(), host, server, mirrors)
    }

    /// The daemon process (log).
    pub fn server(&self) -> &ServerProcess {
        &self.server
    }

    /// For kill9/terminate/restart.
    pub fn server_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }

    /// `ctr --address SOCK`; add a subcommand.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.socket())
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .env_remove("CONTAINERD_SNAPSHOTTER");
        cmd
    }

    pub fn try_run<I, S>(&self, args: I) -> Result<String, CommandFailure>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        try_run(self.ctr().args(args))
    }

    pub fn run<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.ctr().args(args))
    }

    fn pull_command(&self, reference: &str, opts: &CtrPull) -> Command {
        let mut cmd = self.ctr();
        cmd.args(["images", "pull", "--plain-http", "--hosts-dir"])
            .arg(self.hosts_dir())
            .args(["--snapshotter", &self.snapshotter]);
        if let Some(p) = &opts.platform {
            cmd.args(["--platform", p]);
        }
        if opts.all_platforms {
            cmd.arg("--all-platforms");
        }
        if let Some(c) = &opts.creds {
            cmd.args(["--user", &c.joined()]);
        }
        cmd.arg(reference);
        cmd
    }

    /// `ctr images pull` (fetch and unpack) through the hosts dir; returns ctr's output.
    pub fn pull(&self, reference: &str, opts: &CtrPull) -> String {
        run(&mut self.pull_command(reference, opts))
    }

    pub fn try_pull(&self, reference: &str, opts: &CtrPull) -> Result<String, CommandFailure> {
        try_run(&mut self.pull_command(reference, opts))
    }

    /// The target digest of an image in containerd's image store.
    pub fn image_digest(&self, reference: &str) -> String {
        let out = self.run(["images", "ls"]);
        out.lines()
            .skip(1)
            .find_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                (cols.first() == Some(&reference)).then(|| cols.get(2).map(|d| d.to_string()))?
            })
            .unwrap_or_else(|| panic!("image {reference} not in ctr images ls:\n{out}"))
    }

    /// Digests in containerd's content store.
    pub fn content_digests(&self) -> Vec<String> {
        self.run(["content", "ls", "--quiet"])
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Mounts the unpacked image (read-only), reads `path` from it and unmounts.
    /// Proves that the layers were really unpacked.
    pub fn read_file(&self, reference: &str, platform: Option<&str>, path: &str) -> Vec<u8> {
        let mnt = self
            .dir
            .path()
            .join("mnt")
            .join(format!("{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&mnt).expect("creating mount point");
        let mut mount = self.ctr();
        mount
            .args(["images", "mount", "--snapshotter", &self.snapshotter])
            .args(platform.map(|p| ["--platform", p]).into_iter().flatten())
            .arg(reference)
            .arg(&mnt);
        run(&mut mount);
        let read = std::fs::read(mnt.join(path.trim_start_matches('/')));
        let mut unmount = self.ctr();
        unmount.args(["images", "unmount", "--rm"]).arg(&mnt);
        run(&mut unmount);
        read.unwrap_or_else(|e| panic!("reading {path} from unpacked {reference}: {e}"))
    }

    /// `ctr images rm`.
    pub fn rm(&self, reference: &str) {
        self.run(["images", "rm", reference]);
    }
}
