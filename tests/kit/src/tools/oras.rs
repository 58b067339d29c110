//! oras-py (the `oras` PyPI package) through `py/oras_referrers.py`: push an
//! OCI 1.1 artifact with a `subject` over plain HTTP, and list referrers.
//!
//! oras-py 0.2.x cannot set `artifactType` and has no referrers call; the
//! script subclasses its `Registry` for the former and uses the client's
//! authenticated session for `GET /v2/<repo>/referrers/<digest>` (see the
//! script's docstring).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run, try_run, CommandFailure, Creds};

/// The script shipped with the kit.
pub const ORAS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/oras_referrers.py");

fn command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new("python3");
    cmd.arg(ORAS_SCRIPT)
        .args(args)
        // No user-level docker credentials leak into the client.
        .env_remove("DOCKER_CONFIG")
        .env_remove("ORAS_USER")
        .env_remove("ORAS_PASS")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Runs the script with `args` and returns stdout; panics with stderr on failure.
pub fn oras_py<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run(&mut command(args))
}

pub fn oras_py_try<I, S>(args: I) -> Result<String, CommandFailure>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    try_run(&mut command(args))
}

/// An artifact push: `repository:tag` on `registry`, referring to `subject`
/// (a tag or digest in the same repository).
#[derive(Clone, Debug)]
pub struct OrasPush {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    /// `(path, media type)`; an empty list pushes the empty descriptor `{}`.
    pub files: Vec<(PathBuf, String)>,
    pub annotations: Vec<(String, String)>,
    /// Annotations on every file's layer.
    pub file_annotations: Vec<(String, String)>,
    /// The subject's media type and size, when `subject` is a digest the
    /// script must not fetch (a registry may refuse to serve it).
    pub subject_descriptor: Option<(String, u64)>,
    pub creds: Option<Creds>,
}

impl OrasPush {
    pub fn new(registry: &str, repository: &str, tag: &str) -> Self {
        OrasPush {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            artifact_type: None,
            subject: None,
            files: Vec::new(),
            annotations: Vec::new(),
            file_annotations: Vec::new(),
            subject_descriptor: None,
            creds: None,
        }
    }
    pub fn artifact_type(mut self, artifact_type: &str) -> Self {
        self.artifact_type = Some(artifact_type.to_owned());
        self
    }
    pub fn subject(mut self, tag_or_digest: &str) -> Self {
        self.subject = Some(tag_or_digest.to_owned());
        self
    }
    pub fn file(mut self, path: impl AsRef<Path>, media_type: &str) -> Self {
        self.files
            .push((path.as_ref().to_owned(), media_type.to_owned()));
        self
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_owned(), value.to_owned()));
        self
    }
    pub fn file_annotation(mut self, key: &str, value: &str) -> Self {
        self.file_annotations
            .push((key.to_owned(), value.to_owned()));
        self
    }
    /// The subject by digest, media type and size, without fetching it.
    pub fn subject_descriptor(mut self, digest: &str, media_type: &str, size: u64) -> Self {
        self.subject = Some(digest.to_owned());
        self.subject_descriptor = Some((media_type.to_owned(), size));
        self
    }
    pub fn creds(mut self, creds: &Creds) -> Self {
        self.creds = Some(creds.clone());
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "push".to_owned(),
            "--registry".to_owned(),
            self.registry.clone(),
            "--repo".to_owned(),
            self.repository.clone(),
            "--tag".to_owned(),
            self.tag.clone(),
        ];
        if let Some(t) = &self.artifact_type {
            args.extend(["--artifact-type".to_owned(), t.clone()]);
        }
        if let Some(s) = &self.subject {
            args.extend(["--subject".to_owned(), s.clone()]);
        }
        for (path, media_type) in &self.files {
            args.extend([
                "--file".to_owned(),
                format!("{}:{media_type}", path.display()),
            ]);
        }
        for (k, v) in &self.annotations {
            args.extend(["--annotation".to_owned(), format!("{k}={v}")]);
        }
        for (k, v) in &self.file_annotations {
            args.extend(["--file-annotation".to_owned(), format!("{k}={v}")]);
        }
        if let Some((media_type, size)) = &self.subject_descriptor {
            args.extend([
                "--subject-size".to_owned(),
                size.to_string(),
                "--subject-media-type".to_owned(),
                media_type.clone(),
            ]);
        }
        push_creds(&mut args, self.creds.as_ref());
        args
    }
}

fn push_creds(args: &mut Vec<String>, creds: Option<&Creds>) {
    if let Some(c) = creds {
        args.extend([
            "--username".to_owned(),
            c.username.clone(),
            "--password".to_owned(),
            c.password.clone(),
        ]);
    }
}

fn parse(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("oras script output is not JSON: {e}\n{out}"))
}

/// Pushes the artifact. Returns the script's JSON: `digest` (of the manifest
/// bytes the registry serves back), `header_digest` (`Docker-Content-Digest`),
/// `status`, `size`, `subject` (the descriptor put in the manifest),
/// `subject_header` (`OCI-Subject`), `manifest`.
pub fn oras_push(push: &OrasPush) -> serde_json::Value {
    parse(&oras_py(push.args()))
}

pub fn oras_push_try(push: &OrasPush) -> Result<serde_json::Value, CommandFailure> {
    oras_py_try(push.args()).map(|out| parse(&out))
}

/// Lists the referrers of `digest` in `repository`, following pagination.
/// Returns `{status, pages, filters_applied, content_type, manifests}`. With
/// `allow_404`, a registry without the referrers API gives `status: 404` and
/// no manifests instead of a panic.
pub fn oras_discover(
    registry: &str,
    repository: &str,
    digest: &str,
    artifact_type: Option<&str>,
    allow_404: bool,
    creds: Option<&Creds>,
) -> serde_json::Value {
    let mut args = vec![
        "discover".to_owned(),
        "--registry".to_owned(),
        registry.to_owned(),
        "--repo".to_owned(),
        repository.to_owned(),
        "--digest".to_owned(),
        digest.to_owned(),
    ];
    if let Some(t) = artifact_type {
        args.extend(["--artifact-type".to_owned(), t.to_owned()]);
    }
    if allow_404 {
        args.push("--allow-404".to_owned());
    }
    push_creds(&mut args, creds);
    parse(&oras_py(args))
}

/// Whether python3 can import `oras`.
pub fn oras_available() -> bool {
    Command::new("python3")
        .args(["-c", "import oras.provider"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
