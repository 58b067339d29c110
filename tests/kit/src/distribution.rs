//! The reference registry: CNCF distribution 2.8 as Debian ships it
//! (`/usr/bin/docker-registry`), run as a [`ServerProcess`] on 127.0.0.1 with
//! filesystem storage in a temp dir. Used to validate the kit's clients and as
//! the baseline in benchmarks; [`DistributionBuilder::proxy`] turns it into a
//! pull-through cache of another registry.
//!
//! Facts about 2.8 worth knowing in tests: it stores OCI artifacts with
//! `artifactType` and `subject` as given but has no referrers API (404), and
//! its htpasswd auth works over plain HTTP (answering `401` with a `Basic`
//! challenge).

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::proc::{free_port, write_file, ServerProcess};
use crate::tools::{find_tool, Creds};

/// The binary: `$BERTH_DISTRIBUTION_BIN`, else `docker-registry` on `PATH`.
pub fn distribution_binary() -> Option<PathBuf> {
    match std::env::var_os("BERTH_DISTRIBUTION_BIN") {
        Some(bin) => Some(PathBuf::from(bin)),
        None => find_tool("docker-registry"),
    }
}

/// Settings for a distribution instance; [`DistributionBuilder::start`] runs it.
#[derive(Clone, Debug, Default)]
pub struct DistributionBuilder {
    port: Option<u16>,
    storage_dir: Option<PathBuf>,
    proxy: Option<(String, Option<Creds>)>,
    users: Vec<Creds>,
    log_level: Option<String>,
    no_delete: bool,
    s3: Option<S3Storage>,
    /// With `s3`: blob GETs answered with a redirect to the bucket.
    s3_redirect: bool,
    secret: Option<String>,
}

/// Where an instance with the `s3` storage driver keeps its data: a bucket
/// on an S3 endpoint (e.g. a [`GarageCluster`](crate::GarageCluster) node).
#[derive(Clone, Debug)]
pub struct S3Storage {
    /// `http://host:port`; path-style requests (2.8 uses them with an endpoint).
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl DistributionBuilder {
    /// Listen on this port (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Keep the repository data here (default: inside the instance's temp
    /// dir), e.g. to reuse it across instances.
    pub fn storage_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.storage_dir = Some(dir.as_ref().to_owned());
        self
    }
    /// Pull-through cache mode: `proxy: {remoteurl: URL}` (read-only; pushes fail).
    pub fn proxy(mut self, remote_url: &str) -> Self {
        self.proxy = Some((remote_url.to_owned(), None));
        self
    }
    /// Pull-through cache of a registry that needs credentials.
    pub fn proxy_with_creds(mut self, remote_url: &str, creds: &Creds) -> Self {
        self.proxy = Some((remote_url.to_owned(), Some(creds.clone())));
        self
    }
    /// Require htpasswd basic auth with this user (repeatable).
    pub fn user(mut self, creds: &Creds) -> Self {
        self.users.push(creds.clone());
        self
    }
    /// `log.level` (default `warn`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.to_owned());
        self
    }
    /// Leave `storage.delete.enabled` off (default on).
    pub fn without_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }
    /// The `s3` storage driver instead of `filesystem`. Blob GETs are served
    /// by the registry itself (`redirect.disable`), not redirected to the
    /// bucket, as berth serves them by default; see [`s3_redirect`](Self::s3_redirect).
    pub fn s3(mut self, s3: &S3Storage) -> Self {
        self.s3 = Some(s3.clone());
        self
    }
    /// With [`s3`](Self::s3): blob GETs answered with a `307` to a presigned
    /// URL of the bucket, the driver's own default (`redirect.disable:
    /// false`), instead of the bytes.
    pub fn s3_redirect(mut self) -> Self {
        self.s3_redirect = true;
        self
    }
    /// `http.secret` (default: random per instance). Instances behind one
    /// load balancer need the same one: it signs the upload state a client
    /// carries from one request to the next.
    pub fn http_secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.to_owned());
        self
    }

    /// The config YAML for `storage` and `port` (strings are JSON-quoted,
    /// which YAML accepts).
    fn config_yaml(&self, dir: &Path, storage: &Path, port: u16) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("quoting a string");
        let driver = match &self.s3 {
            None => format!(
                "filesystem:\n    rootdirectory: {}\n",
                q(&storage.display().to_string())
            ),
            Some(s3) => format!(
                "s3:\n    regionendpoint: {}\n    region: {}\n    bucket: {}\n    \
                 accesskey: {}\n    secretkey: {}\n    secure: {}\n    v4auth: true\n  \
                 redirect:\n    disable: {}\n",
                q(&s3.endpoint),
                q(&s3.region),
                q(&s3.bucket),
                q(&s3.access_key),
                q(&s3.secret_key),
                s3.endpoint.starts_with("https:"),
                !self.s3_redirect,
            ),
        };
        let secret = self
            .secret
            .clone()
            .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
        let mut yaml = format!(
            "version: 0.1\n\
             log:\n  level: {level}\n  accesslog:\n    disabled: true\n\
             storage:\n  {driver}  \
             delete:\n    enabled: {delete}\n  \
             cache:\n    blobdescriptor: inmemory\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: {secret}\n  \
             headers:\n    X-Content-Type-Options: [nosniff]\n",
            level = self.log_level.as_deref().unwrap_or("warn"),
            delete = !self.no_delete,
            addr = q(&format!("127.0.0.1:{port}")),
            secret = q(&secret),
        );
        if !self.users.is_empty() {
            let htpasswd: String = self
                .users
                .iter()
                .map(|c| {
                    // Cost 4 (the minimum) keeps logins fast; distribution accepts any cost.
                    let hash = bcrypt::hash(&c.password, 4).expect("bcrypt hashing");
                    format!("{}:{hash}\n", c.username)
                })
                .collect();
            let path = write_file(dir, "htpasswd", htpasswd);
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: {realm}\n    path: {path}\n",
                realm = q("berth-test"),
                path = q(&path.display().to_string()),
            ));
        }
        if let Some((url, creds)) = &self.proxy {
            yaml.push_str(&format!("proxy:\n  remoteurl: {}\n", q(url)));
            if let Some(c) = creds {
                yaml.push_str(&format!(
                    "  username: {}\n  password: {}\n",
                    q(&c.username),
                    q(&c.password)
                ));
            }
        }
        yaml
    }

    /// Writes the config and starts `docker-registry serve CONFIG`; returns
    /// once `/v2/` answers.
    pub fn start(self) -> DistributionProcess {
        let binary = distribution_binary()
            .expect("docker-registry not found (apt-get install docker-registry)");
        let dir = tempfile::Builder::new()
            .prefix("distribution-")
            .tempdir()
            .expect("creating distribution dir");
        let storage = self
            .storage_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("storage"));
        std::fs::create_dir_all(&storage).expect("creating storage dir");
        let port = self.port.unwrap_or_else(free_port);
        let config = write_file(
            dir.path(),
            "config.yml",
            self.config_yaml(dir.path(), &storage, port),
        );
        let server = ServerProcess::builder(&binary, port)
            .name("distribution")
            .arg("serve")
            .arg(&config)
            // Debian's binary also reads REGISTRY_* env overrides; keep the
            // test's environment from reconfiguring it.
            .env_clear()
            .spawn();
        DistributionProcess {
            server,
            storage,
            config,
            proxy: self.proxy.map(|(url, _)| url),
            dir,
        }
    }
}

/// A running distribution registry, killed on drop.
#[derive(Debug)]
pub struct DistributionProcess {
    server: ServerProcess,
    storage: PathBuf,
    config: PathBuf,
    proxy: Option<String>,
    // Declared last: removed after the process is killed.
    dir: TempDir,
}

impl DistributionProcess {
    /// Whether the binary is installed.
    pub fn available() -> bool {
        distribution_binary().is_some()
    }

    pub fn builder() -> DistributionBuilder {
        DistributionBuilder::default()
    }

    /// A plain registry on a free port, no auth.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// A pull-through cache of `remote_url` on a free port.
    pub fn start_proxy(remote_url: &str) -> Self {
        Self::builder().proxy(remote_url).start()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }
    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.host()
    }
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }
    pub fn config_path(&self) -> &Path {
        &self.config
    }
    pub fn proxy_remote(&self) -> Option<&str> {
        self.proxy.as_deref()
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn server(&self) -> &ServerProcess {
        &self.server
    }
    /// For kill9/terminate/restart.
    pub fn server_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }

    /// Whether the blob's data file is in this registry's storage (in proxy
    /// mode: whether it has been cached).
    pub fn has_blob(&self, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
            .is_file()
    }
}
