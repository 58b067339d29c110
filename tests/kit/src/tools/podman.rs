//! podman, isolated: its own storage (`--root`, `--runroot`, vfs), libpod tmp
//! dir, events file, network config dir, containers.conf, registries.conf,
//! storage.conf and auth file, all in a temp dir.
//!
//! Found on Debian 12 (podman 4.3.1) as root without systemd: these flags are
//! enough for login/pull/push/tag/rmi/inspect; no runtime, network plugin,
//! uidmap or fuse-overlayfs is needed because nothing is run:
//!
//! ```text
//! podman --root R --runroot RR --storage-driver vfs --cgroup-manager cgroupfs \
//!        --events-backend file --tmpdir T  pull|push --tls-verify=false ...
//! ```
//! with `CONTAINERS_CONF`, `CONTAINERS_REGISTRIES_CONF`, `CONTAINERS_STORAGE_CONF`,
//! `REGISTRY_AUTH_FILE`, `XDG_RUNTIME_DIR`, `HOME` pointing into the temp dir.
//! `podman pull oci:DIR:TAG` names the image `localhost/<DIR without leading
//! slash>:latest` (not TAG), and fails ("invalid reference format") unless
//! every component of DIR is a valid lowercase repository path component: a
//! `tempfile` dir such as `/tmp/.tmpAbC123` is not. [`Podman::pull_layout`]
//! pulls from a hard-linked copy of the layout under this podman's own,
//! lowercase temp dir and then tags the image with a useful name.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::{run, try_run, CommandFailure, Creds};
use crate::fixtures::OciLayout;

/// An isolated podman. Dropping it removes its image store.
#[derive(Debug)]
pub struct Podman {
    dir: TempDir,
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Podman {
    pub fn new() -> Self {
        // Lowercase hex only: layouts staged under here must be valid image names.
        let dir = tempfile::Builder::new()
            .prefix(&format!("podman-{:016x}", rand::random::<u64>()))
            .rand_bytes(0)
            .tempdir()
            .expect("creating podman dir");
        let root = dir.path();
        for sub in ["root", "runroot", "tmp", "run", "home", "networks", "conf"] {
            std::fs::create_dir_all(root.join(sub)).expect("creating podman subdir");
        }
        let p = |s: &str| root.join(s).display().to_string();
        std::fs::write(
            root.join("conf/containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{}\"\ntmp_dir = \"{}\"\n\n\
                 [network]\nnetwork_config_dir = \"{}\"\n",
                p("tmp/events.log"),
                p("tmp"),
                p("networks")
            ),
        )
        .expect("writing containers.conf");
        std::fs::write(
            root.join("conf/storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                p("runroot"),
                p("root")
            ),
        )
        .expect("writing storage.conf");
        std::fs::write(
            root.join("conf/registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("writing registries.conf");
        std::fs::write(root.join("conf/auth.json"), "{}\n").expect("writing auth.json");
        Podman { dir }
    }

    pub fn authfile(&self) -> PathBuf {
        self.dir.path().join("conf/auth.json")
    }

    /// The private registries.conf; tests may overwrite it (e.g. with mirrors).
    pub fn registries_conf(&self) -> PathBuf {
        self.dir.path().join("conf/registries.conf")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `podman` with the isolation flags and environment; add a subcommand.
    pub fn command(&self) -> Command {
        let root = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .arg("--tmpdir")
            .arg(root.join("tmp"))
            .env("CONTAINERS_CONF", root.join("conf/containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", root.join("conf/storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.registries_conf())
            .env("REGISTRY_AUTH_FILE", self.authfile())
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env("XDG_CONFIG_HOME", root.join("home/.config"))
            .env("XDG_DATA_HOME", root.join("home/.local/share"))
            .env("HOME", root.join("home"))
            .env("TMPDIR", root.join("tmp"))
            .env_remove("DOCKER_CONFIG")
            .env_remove("CONTAINER_HOST");
        cmd
    }

    pub fn try_run<I, S>(&self, args: I) -> Result<String, CommandFailure>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        try_run(self.command().args(args))
    }

    pub fn run<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.command().args(args))
    }

    pub fn try_login(&self, registry: &str, creds: &Creds) -> Result<String, CommandFailure> {
        let mut cmd = self.command();
        cmd.args(["login", "--tls-verify=false", "--authfile"])
            .arg(self.authfile())
            .args([
                "--username",
                &creds.username,
                "--password",
                &creds.password,
                registry,
            ]);
        try_run(&mut cmd)
    }

    pub fn login(&self, registry: &str, creds: &Creds) {
        self.try_login(registry, creds)
            .unwrap_or_else(|failure| panic!("{failure}"));
    }

    pub fn logout(&self, registry: &str) {
        let mut cmd = self.command();
        cmd.args(["logout", "--authfile"])
            .arg(self.authfile())
            .arg(registry);
        run(&mut cmd);
    }

    fn pull_command(&self, reference: &str, platform: Option<&str>) -> Command {
        let mut cmd = self.command();
        cmd.args(["pull", "--quiet", "--tls-verify=false", "--authfile"])
            .arg(self.authfile());
        if let Some(p) = platform {
            cmd.args(["--platform", p]);
        }
        cmd.arg(reference);
        cmd
    }

    /// `podman pull` (registry `HOST/REPO:TAG`, or any transport such as
    /// `oci:DIR:TAG`); returns the image ID.
    pub fn pull(&self, reference: &str) -> String {
        last_line(&run(&mut self.pull_command(reference, None)))
    }

    /// Pull one platform of a list, e.g. `linux/arm64`.
    pub fn pull_platform(&self, reference: &str, platform: &str) -> String {
        last_line(&run(&mut self.pull_command(reference, Some(platform))))
    }

    pub fn try_pull(&self, reference: &str) -> Result<String, CommandFailure> {
        try_run(&mut self.pull_command(reference, None)).map(|out| last_line(&out))
    }

    /// Pulls `tag` from an OCI layout (`podman pull oci:DIR:TAG`) and names it
    /// `name` (e.g. `127.0.0.1:PORT/repo:tag`, ready to push). Returns the image ID.
    pub fn pull_layout(&self, layout: &OciLayout, tag: &str, name: &str) -> String {
        let staged = self
            .dir
            .path()
            .join("layouts")
            .join(format!("{:016x}", rand::random::<u64>()));
        assert!(
            is_valid_repo_path(&staged),
            "podman derives an image name from the layout path, and {} is not a valid one; \
             set TMPDIR to a plain lowercase directory",
            staged.display()
        );
        let copy = layout.link_copy(&staged);
        let id = self.pull(&copy.reference(tag));
        self.tag(&id, name);
        let _ = std::fs::remove_dir_all(&staged);
        id
    }

    fn push_command(&self, source: &str, dest: Option<&str>, digestfile: &Path) -> Command {
        let mut cmd = self.command();
        cmd.args(["push", "--quiet", "--tls-verify=false", "--authfile"])
            .arg(self.authfile())
            .arg("--digestfile")
            .arg(digestfile)
            .arg(source);
        if let Some(d) = dest {
            cmd.arg(d);
        }
        cmd
    }

    /// `podman push SOURCE [DEST]`; returns the manifest digest the registry
    /// stored (from `--digestfile`).
    pub fn push(&self, source: &str, dest: Option<&str>) -> String {
        self.try_push(source, dest)
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    pub fn try_push(&self, source: &str, dest: Option<&str>) -> Result<String, CommandFailure> {
        let digestfile = self
            .dir
            .path()
            .join(format!("tmp/digest-{:016x}", rand::random::<u64>()));
        try_run(&mut self.push_command(source, dest, &digestfile))?;
        let digest = std::fs::read_to_string(&digestfile)
            .unwrap_or_else(|e| panic!("reading podman --digestfile: {e}"));
        let _ = std::fs::remove_file(&digestfile);
        Ok(digest.trim().to_owned())
    }

    pub fn tag(&self, source: &str, target: &str) {
        self.run(["tag", source, target]);
    }

    /// The manifest digest podman recorded for the image (what it pulled or pushed).
    pub fn image_digest(&self, reference: &str) -> String {
        self.image_format(reference, "{{.Digest}}")
    }

    pub fn image_id(&self, reference: &str) -> String {
        self.image_format(reference, "{{.Id}}")
    }

    /// `podman image inspect --format FORMAT`, trimmed.
    pub fn image_format(&self, reference: &str, format: &str) -> String {
        self.run(["image", "inspect", "--format", format, reference])
            .trim()
            .to_owned()
    }

    /// `podman image inspect` as JSON (the first element).
    pub fn image_inspect(&self, reference: &str) -> serde_json::Value {
        let out = self.run(["image", "inspect", reference]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("podman image inspect output: {e}\n{out}"));
        v.get(0).cloned().unwrap_or(serde_json::Value::Null)
    }

    pub fn image_exists(&self, reference: &str) -> bool {
        self.command()
            .args(["image", "exists", reference])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running podman image exists")
            .success()
    }

    /// `podman rmi --force`.
    pub fn rmi(&self, reference: &str) {
        self.run(["rmi", "--force", reference]);
    }

    /// Removes every image from this podman's store.
    pub fn rmi_all(&self) {
        self.run(["rmi", "--all", "--force"]);
    }
}

/// Whether every component of `path` is a lowercase repository path component
/// (`[a-z0-9]+` separated by `.`, `_`, `__` or dashes).
fn is_valid_repo_path(path: &Path) -> bool {
    path.components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .all(|c| {
            let bytes = c.as_bytes();
            let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            !bytes.is_empty()
                && alnum(&bytes[0])
                && alnum(&bytes[bytes.len() - 1])
                && bytes.iter().all(|b| alnum(b) || b"._-".contains(b))
                && !c.contains("..")
                && !c.contains("___")
        })
}

fn last_line(out: &str) -> String {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::is_valid_repo_path;
    use std::path::Path;

    #[test]
    fn repo_paths() {
        assert!(is_valid_repo_path(Path::new("/tmp/podman-00ff/layouts/0a")));
        assert!(!is_valid_repo_path(Path::new("/tmp/.tmpAbC/src")));
        assert!(!is_valid_repo_path(Path::new("/tmp/Upper")));
        assert!(!is_valid_repo_path(Path::new("/tmp/x-")));
    }
}
