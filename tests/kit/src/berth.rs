//! Starting the built `berth` binary for end-to-end tests, and the admin
//! calls every test needs (projects, accounts, robots), over real HTTP.

use std::path::{Path, PathBuf};

use crate::proc::{free_port, ServerProcess};

/// The admin password tests start registries with.
pub const ADMIN_PASSWORD: &str = "admin12345";

/// A running `berth serve` with its own data directory.
pub struct Registry {
    pub server: ServerProcess,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// Path of the built binary: pass [`berth_bin!()`](crate::berth_bin).
pub fn registry(bin: &str) -> Registry {
    registry_with(bin, &[], &[])
}

/// A registry with extra `serve` arguments and environment (e.g. `BERTH_GC_GRACE=0s`).
pub fn registry_with(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Registry {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let mut r = registry_in(bin, &data, args, env);
    r._tmp = Some(tmp);
    r
}

/// A registry serving TLS with `cert` and `key` (PEM).
pub fn registry_tls(bin: &str, cert: &Path, key: &Path) -> Registry {
    registry_tls_with(bin, cert, key, &[])
}

/// A registry serving TLS, with extra environment.
pub fn registry_tls_with(bin: &str, cert: &Path, key: &Path, env: &[(&str, &str)]) -> Registry {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let port = free_port();
    let server = ServerProcess::builder(bin, port)
        .name("berth-registry")
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_AUTH_BCRYPT_COST", "4")
        .env("BERTH_SERVER_TLS_CERT", cert)
        .env("BERTH_SERVER_TLS_KEY", key)
        .ready_tcp();
    let server = env.iter().fold(server, |b, (k, v)| b.env(k, v)).spawn();
    Registry {
        server,
        data_dir: data,
        _tmp: Some(tmp),
    }
}

/// A registry started with an open-file limit of `open_files` (`ulimit -n`).
pub fn registry_with_open_files(bin: &str, open_files: u32, env: &[(&str, &str)]) -> Registry {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let b = registry_builder(bin, &data, &[], env).open_file_limit(open_files);
    Registry {
        server: b.spawn(),
        data_dir: data,
        _tmp: Some(tmp),
    }
}

/// A registry on an existing data directory (restarts keep their data).
pub fn registry_in(bin: &str, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Registry {
    Registry {
        server: registry_builder(bin, data, args, env).spawn(),
        data_dir: data.to_path_buf(),
        _tmp: None,
    }
}

fn registry_builder(
    bin: &str,
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> crate::proc::ServerBuilder {
    let port = free_port();
    let mut b = ServerProcess::builder(bin, port)
        .name("berth-registry")
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .args(args.iter())
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_AUTH_BCRYPT_COST", "4")
        .ready_path("/healthz");
    for (k, v) in env {
        b = b.env(k, v);
    }
    b
}

impl Registry {
    pub fn host(&self) -> String {
        self.server.host()
    }
    pub fn url(&self) -> String {
        self.server.base_url()
    }
    /// The value of a counter or gauge at `/metrics` (summed over its labels; 0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        crate::metrics::Metrics::scrape(&self.url()).sum(name)
    }
    pub fn admin(&self) -> Admin {
        Admin {
            base: self.url(),
            user: "admin".into(),
            password: ADMIN_PASSWORD.into(),
            http: reqwest::blocking::Client::new(),
        }
    }
}

/// Admin API calls as one account.
pub struct Admin {
    pub base: String,
    pub user: String,
    pub password: String,
    pub http: reqwest::blocking::Client,
}

impl Admin {
    pub fn as_user(&self, user: &str, password: &str) -> Admin {
        Admin {
            base: self.base.clone(),
            user: user.into(),
            password: password.into(),
            http: self.http.clone(),
        }
    }

    /// Polls the audit log with `query` until `check` accepts its events (audit
    /// writes leave the request path); panics naming `what` after 10 s.
    pub fn audit_until(
        &self,
        query: &str,
        what: &str,
        check: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let what = format!("the audit log to show {what}");
        crate::wait_until(&what, std::time::Duration::from_secs(10), || {
            let (s, v) = self.call("GET", &format!("/api/v1/audit?{query}"), None);
            assert_eq!(s, 200, "audit: {v}");
            let events = v.as_array().cloned().unwrap_or_default();
            if check(&events) {
                Ok(events)
            } else {
                Err(format!("{v:#}"))
            }
        })
    }

    /// GETs `path` as this account; returns status and the body as text (for
    /// answers that are not JSON, such as a kubeconfig).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("{}{}", self.base, path))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .expect("admin API reachable");
        (res.status().as_u16(), res.text().unwrap_or_default())
    }

    /// Sends a JSON request; returns status and body (JSON or Null).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().expect("admin API reachable");
        let status = res.status().as_u16();
        let text = res.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    fn ok(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let (s, v) = self.call(method, path, body);
        assert!((200..300).contains(&s), "{method} {path} answered {s}: {v}");
        v
    }

    pub fn create_project(&self, name: &str, public: bool) {
        self.ok(
            "POST",
            "/api/v1/projects",
            Some(serde_json::json!({"name": name, "public": public})),
        );
    }

    /// Creates an account and resets its initial password to `password`.
    pub fn create_user(&self, name: &str, password: &str) {
        let initial = "initial123";
        self.ok(
            "POST",
            "/api/v1/users",
            Some(serde_json::json!({"name": name, "password": initial})),
        );
        self.ok(
            "PUT",
            &format!("/api/v1/users/{name}/password"),
            Some(serde_json::json!({"old_password": initial, "new_password": password})),
        );
    }

    pub fn add_member(&self, project: &str, user: &str, role: &str) {
        self.ok(
            "PUT",
            &format!("/api/v1/projects/{project}/members/{user}"),
            Some(serde_json::json!({ "role": role })),
        );
    }

    /// Creates a robot; returns (name, secret).
    pub fn create_robot(&self, project: &str, name: &str, access: &str) -> (String, String) {
        let v = self.ok(
            "POST",
            &format!("/api/v1/projects/{project}/robots"),
            Some(serde_json::json!({"name": name, "access": access})),
        );
        (
            v["name"].as_str().expect("robot name").to_string(),
            v["secret"].as_str().expect("robot secret").to_string(),
        )
    }
}

/// A running `berth edge` in front of `upstream`.
pub fn edge(
    bin: &str,
    upstream: &str,
    cache_dir: &Path,
    creds: Option<(&str, &str)>,
    env: &[(&str, &str)],
) -> ServerProcess {
    let port = free_port();
    let mut b = ServerProcess::builder(bin, port)
        .name("berth-edge")
        .arg("edge")
        .arg("--upstream")
        .arg(upstream)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--cache-dir")
        .arg(cache_dir)
        .ready_path("/healthz");
    if let Some((u, p)) = creds {
        b = b
            .env("BERTH_UPSTREAM_USER", u)
            .env("BERTH_UPSTREAM_PASSWORD", p);
    }
    for (k, v) in env {
        b = b.env(k, v);
    }
    b.spawn()
}

/// A kubeconfig whose one context, `edge`, names the cluster
/// `https://k8s.invalid:6443` and authenticates with `token`: enough for the
/// controller to accept the cluster (the directory deployer never calls it),
/// and `token` is what tests look for where secrets must not show.
pub fn kubeconfig(token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: edge\nclusters:\n- name: edge\n  cluster:\n    server: https://k8s.invalid:6443\ncontexts:\n- name: edge\n  context:\n    cluster: edge\n    user: berth\nusers:\n- name: berth\n  user:\n    token: {token}\n"
    )
}
