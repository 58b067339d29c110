//! skopeo, isolated: private auth file, registries.conf, trust policy,
//! registries.d, HOME and TMPDIR in a temp dir.
//!
//! skopeo 1.9 (Debian 12) has no `--registries-conf` flag; the registries
//! config is passed through `CONTAINERS_REGISTRIES_CONF` (and the legacy
//! `REGISTRIES_CONFIG_PATH`). As root, containers/image keeps its blob-info
//! cache in `/var/lib/containers/cache` whatever we set; that cache only
//! speeds up copies and never changes what is pushed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::{run, try_run, CommandFailure, Creds};
use crate::fixtures::digest_of;

/// Options of `skopeo copy` beyond the always-on `--src-tls-verify=false
/// --dest-tls-verify=false`.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// `--all`: copy every image of a list/index, not just this platform's.
    pub all: bool,
    /// `--preserve-digests`: fail rather than change a manifest.
    pub preserve_digests: bool,
    pub src_creds: Option<Creds>,
    pub dest_creds: Option<Creds>,
    /// `--format oci|v2s2`.
    pub format: Option<String>,
    /// `--override-arch`, to pick one platform of a list without `--all`.
    pub override_arch: Option<String>,
}

impl CopyOptions {
    pub fn all() -> Self {
        CopyOptions {
            all: true,
            ..Self::default()
        }
    }
    pub fn with_dest_creds(mut self, creds: &Creds) -> Self {
        self.dest_creds = Some(creds.clone());
        self
    }
    pub fn with_src_creds(mut self, creds: &Creds) -> Self {
        self.src_creds = Some(creds.clone());
        self
    }
    pub fn preserving_digests(mut self) -> Self {
        self.preserve_digests = true;
        self
    }
}

/// An isolated skopeo. Dropping it removes its auth file and config.
#[derive(Debug)]
pub struct Skopeo {
    dir: TempDir,
}

impl Default for Skopeo {
    fn default() -> Self {
        Self::new()
    }
}

impl Skopeo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("skopeo-")
            .tempdir()
            .expect("creating skopeo dir");
        let root = dir.path();
        for sub in ["home", "tmp", "registries.d", "run"] {
            std::fs::create_dir_all(root.join(sub)).expect("creating skopeo subdir");
        }
        std::fs::write(root.join("auth.json"), "{}\n").expect("writing auth.json");
        std::fs::write(
            root.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("writing registries.conf");
        std::fs::write(
            root.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("writing policy.json");
        Skopeo { dir }
    }

    pub fn authfile(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// The private registries.conf; tests may overwrite it (e.g. with mirrors).
    pub fn registries_conf(&self) -> PathBuf {
        self.dir.path().join("registries.conf")
    }

    /// `skopeo` with the global isolation flags and environment; add a subcommand.
    pub fn command(&self) -> Command {
        let root = self.dir.path();
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(root.join("policy.json"))
            .arg("--registries.d")
            .arg(root.join("registries.d"))
            .arg("--tmpdir")
            .arg(root.join("tmp"))
            .env("HOME", root.join("home"))
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env("XDG_CONFIG_HOME", root.join("home/.config"))
            .env("TMPDIR", root.join("tmp"))
            .env("REGISTRY_AUTH_FILE", self.authfile())
            .env("CONTAINERS_REGISTRIES_CONF", self.registries_conf())
            .env("REGISTRIES_CONFIG_PATH", self.registries_conf())
            .env_remove("DOCKER_CONFIG");
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

    fn copy_command(&self, src: &str, dest: &str, opts: &CopyOptions) -> Command {
        let mut cmd = self.command();
        if let Some(arch) = &opts.override_arch {
            cmd.args(["--override-arch", arch]);
        }
        cmd.args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--authfile",
        ])
        .arg(self.authfile());
        if opts.all {
            cmd.arg("--all");
        }
        if opts.preserve_digests {
            cmd.arg("--preserve-digests");
        }
        if let Some(c) = &opts.src_creds {
            cmd.args(["--src-creds", &c.joined()]);
        }
        if let Some(c) = &opts.dest_creds {
            cmd.args(["--dest-creds", &c.joined()]);
        }
        if let Some(f) = &opts.format {
            cmd.args(["--format", f]);
        }
        cmd.args([src, dest]);
        cmd
    }

    /// `skopeo copy SRC DEST` between any transports (`oci:DIR:TAG`,
    /// `dir:DIR`, `docker://HOST/REPO:TAG`).
    pub fn copy(&self, src: &str, dest: &str, opts: &CopyOptions) -> String {
        run(&mut self.copy_command(src, dest, opts))
    }

    pub fn try_copy(
        &self,
        src: &str,
        dest: &str,
        opts: &CopyOptions,
    ) -> Result<String, CommandFailure> {
        try_run(&mut self.copy_command(src, dest, opts))
    }

    fn inspect_command(&self, reference: &str, raw: bool, creds: Option<&Creds>) -> Command {
        let mut cmd = self.command();
        cmd.args(["inspect", "--tls-verify=false", "--authfile"])
            .arg(self.authfile());
        if raw {
            cmd.arg("--raw");
        }
        if let Some(c) = creds {
            cmd.args(["--creds", &c.joined()]);
        }
        cmd.arg(reference);
        cmd
    }

    /// The manifest (or index) bytes exactly as served (`inspect --raw`).
    pub fn inspect_raw(&self, reference: &str, creds: Option<&Creds>) -> Vec<u8> {
        let mut cmd = self.inspect_command(reference, true, creds);
        let output = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running skopeo inspect --raw");
        if !output.status.success() {
            panic!(
                "skopeo inspect --raw {reference} failed: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output.stdout
    }

    pub fn try_inspect_raw(
        &self,
        reference: &str,
        creds: Option<&Creds>,
    ) -> Result<String, CommandFailure> {
        try_run(&mut self.inspect_command(reference, true, creds))
    }

    /// `sha256:` of the raw manifest the registry serves for `reference`.
    pub fn manifest_digest(&self, reference: &str, creds: Option<&Creds>) -> String {
        digest_of(&self.inspect_raw(reference, creds))
    }

    /// `skopeo inspect` (the image summary JSON, for this platform).
    pub fn inspect(&self, reference: &str, creds: Option<&Creds>) -> serde_json::Value {
        let out = run(&mut self.inspect_command(reference, false, creds));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("skopeo inspect output: {e}\n{out}"))
    }

    /// Tags of `docker://HOST/REPO`.
    pub fn list_tags(&self, repository_ref: &str, creds: Option<&Creds>) -> Vec<String> {
        let mut cmd = self.command();
        cmd.args(["list-tags", "--tls-verify=false", "--authfile"])
            .arg(self.authfile());
        if let Some(c) = creds {
            cmd.args(["--creds", &c.joined()]);
        }
        cmd.arg(repository_ref);
        let out = run(&mut cmd);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("list-tags output: {e}\n{out}"));
        v["Tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `skopeo delete` (by tag or digest).
    pub fn try_delete(
        &self,
        reference: &str,
        creds: Option<&Creds>,
    ) -> Result<String, CommandFailure> {
        let mut cmd = self.command();
        cmd.args(["delete", "--tls-verify=false", "--authfile"])
            .arg(self.authfile());
        if let Some(c) = creds {
            cmd.args(["--creds", &c.joined()]);
        }
        cmd.arg(reference);
        try_run(&mut cmd)
    }

    /// `skopeo login` into the private auth file.
    pub fn login(&self, registry: &str, creds: &Creds) {
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
        run(&mut cmd);
    }

    pub fn logout(&self, registry: &str) {
        let mut cmd = self.command();
        cmd.args(["logout", "--authfile"])
            .arg(self.authfile())
            .arg(registry);
        run(&mut cmd);
    }

    /// The private state dir (auth file, configs, temp files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `docker://HOST/REPO:TAG_OR_DIGEST` (a digest reference joins with `@`).
pub fn docker_ref(host: &str, repository: &str, reference: &str) -> String {
    if reference.contains(':') {
        format!("docker://{host}/{repository}@{reference}")
    } else {
        format!("docker://{host}/{repository}:{reference}")
    }
}
