//! Wrappers that run the real client CLIs, each isolated from the machine's
//! own configuration (private auth file, registries.conf, storage, state in a
//! temp dir), and return stdout or panic with the full command, status,
//! stdout and stderr.
//!
//! Every wrapper has `run`/`try_run` for arbitrary arguments; the typed
//! helpers cover what the end-to-end tests do all the time. `try_*` variants
//! return a [`CommandFailure`] for tests that expect a refusal.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

mod containerd;
mod oras;
mod podman;
mod sigstore;
mod skopeo;

pub use containerd::{write_hosts_toml, Containerd, CtrPull};
pub use oras::{
    oras_available, oras_discover, oras_push, oras_push_try, oras_py, oras_py_try, OrasPush,
    ORAS_SCRIPT,
};
pub use podman::Podman;
pub use sigstore::{signer_available, CosignKey, SimpleSignature};
pub use skopeo::{docker_ref, CopyOptions, Skopeo};

/// `user`/`password` for a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub username: String,
    pub password: String,
}

impl Creds {
    pub fn new(username: &str, password: &str) -> Self {
        Creds {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }
    /// `user:password`, as `--creds` options take it.
    pub fn joined(&self) -> String {
        format!("{}:{}", self.username, self.password)
    }
}

/// Where `name` is on `PATH` (or `name` itself if it is a path to an executable).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Whether `name` can be run (found on `PATH`).
pub fn tool_available(name: &str) -> bool {
    find_tool(name).is_some()
}

/// `true` if every tool is on `PATH`. Otherwise prints a `SKIP:` line and
/// returns `false` so the test can return early, except under CI (`CI` set to
/// anything but `false`/`0`), where `.ci/run` installs every tool and a missing
/// one is a failure: it panics.
///
/// ```no_run
/// if !berth_testkit::tools::require_tools(&["skopeo", "docker-registry"]) {
///     return;
/// }
/// ```
pub fn require_tools(names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !tool_available(n))
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&format!("missing tools {missing:?}"))
}

/// Like [`require_tools`] for the cosign-format signer (python3 with pynacl, cryptography, oras).
pub fn require_signer() -> bool {
    signer_available() || skip_or_fail("python3 cannot import nacl, cryptography and oras (pip install pynacl cryptography oras)")
}

/// Like [`require_tools`] for python3 with the `oras` package importable.
pub fn require_oras() -> bool {
    oras_available() || skip_or_fail("python3 cannot import oras (pip install oras)")
}

pub(crate) fn skip_or_fail(what: &str) -> bool {
    let in_ci = std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false);
    let message =
        format!("{what}; .ci/run installs skopeo podman containerd docker-registry and pip oras");
    if in_ci {
        panic!("{message}");
    }
    eprintln!("SKIP: {message}");
    false
}

/// A command that exited unsuccessfully (or could not be started).
#[derive(Debug)]
pub struct CommandFailure {
    pub command: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Some(status) => writeln!(f, "`{}` failed: {status}", self.command)?,
            None => writeln!(f, "`{}` could not be started", self.command)?,
        }
        writeln!(f, "---- stdout ----\n{}", self.stdout.trim_end())?;
        write!(f, "---- stderr ----\n{}", self.stderr.trim_end())
    }
}

impl std::error::Error for CommandFailure {}

/// The command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(arg));
    }
    s
}

fn shell_quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` to completion (stdin closed) and returns stdout, or the failure.
pub fn try_run(cmd: &mut Command) -> Result<String, CommandFailure> {
    let command = describe(cmd);
    let output = match cmd.stdin(Stdio::null()).output() {
        Ok(o) => o,
        Err(e) => {
            return Err(CommandFailure {
                command,
                status: None,
                stdout: String::new(),
                stderr: e.to_string(),
            })
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(CommandFailure {
            command,
            status: Some(output.status),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Runs `cmd` and returns stdout; panics with the full failure otherwise.
pub fn run(cmd: &mut Command) -> String {
    try_run(cmd).unwrap_or_else(|failure| panic!("{failure}"))
}
