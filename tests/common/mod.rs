//! Shared helpers for the registry's end-to-end tests: one `berth serve` per
//! test on its own port and data directory, an HTTP client that speaks as
//! admin, the upload steps one request at a time, raw connections, and OCI
//! error assertions. Manifests over hand-chosen bytes come from the kit's
//! `manifest` module, pushes from its `http` module.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use berth_testkit::berth::{self, Registry, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::http::{self, Auth};
use berth_testkit::manifest::config_for;
use berth_testkit::proc::files_under;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::HeaderMap;
use reqwest::Method;

/// The public project every test registry starts with.
pub const PUBLIC: &str = "pub";

/// Pseudo-random bytes from a seed (xorshift), so tests need no RNG state.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

pub fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// A running registry with a public project `pub`, and an admin HTTP client.
pub struct Reg {
    pub reg: Registry,
    pub http: Client,
    /// The replicated setup (`start_replicated`): `reg` is replica A.
    pub replicated: Option<Replicated>,
}

/// Two replicas on one PostgreSQL database and one Garage bucket, behind a
/// round-robin balancer: what `Reg` talks to when `replicated` is set.
pub struct Replicated {
    pub others: Vec<Registry>,
    pub front: berth_testkit::balancer::Balancer,
    bucket: std::sync::Arc<dyn object_store::ObjectStore>,
    rt: tokio::runtime::Runtime,
    _garage: berth_testkit::GarageCluster,
}

impl Replicated {
    /// Object keys under `prefix` in the bucket.
    fn keys(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from(prefix);
        self.rt.block_on(async {
            self.bucket
                .list(Some(&prefix))
                .map_ok(|m| m.location.to_string())
                .try_collect::<Vec<_>>()
                .await
                .expect("listing the bucket")
        })
    }
}

impl Reg {
    pub fn start() -> Reg {
        Reg::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Reg {
        let reg = berth::registry_with(berth_bin!(), &[], env);
        let r = Reg::wrap(reg);
        r.reg.admin().create_project(PUBLIC, true);
        r
    }

    /// Wraps a registry started elsewhere (e.g. on an existing data dir).
    pub fn wrap(reg: Registry) -> Reg {
        Reg {
            reg,
            http: http(),
            replicated: None,
        }
    }

    /// Two `berth serve` replicas as operators run them: metadata on one
    /// PostgreSQL database (the kit's), blobs and uploads in one bucket of a
    /// three-node Garage cluster (each replica through its own node), a
    /// round-robin balancer in front. None (the test skips) without Garage.
    pub fn start_replicated() -> Option<Reg> {
        let garage = berth_testkit::GarageCluster::start()?;
        let db = berth_testkit::postgres::Postgres::shared().database();
        let front = berth_testkit::balancer::Balancer::start(&[]);
        let key = "3c".repeat(32);
        let replica = |node: usize| {
            let mut env = garage.berth_env(node);
            let front_url = front.url();
            for (k, v) in [
                ("BERTH_META_BACKEND", "postgres"),
                ("BERTH_META_URL", db.as_str()),
                ("BERTH_CONTROLLER_SECRET_KEY", key.as_str()),
                ("BERTH_STORAGE_PART_SIZE", "5MiB"),
                ("BERTH_SERVER_EXTERNAL_URL", front_url.as_str()),
            ] {
                env.push((k.into(), v.into()));
            }
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            berth::registry_with(berth_bin!(), &[], &env)
        };
        let (a, b) = (replica(0), replica(1));
        front.set_backends(&[a.server.port(), b.server.port()]);
        let cfg = garage.berth_env(0);
        let get = |k: &str| {
            cfg.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let bucket = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(get("BERTH_STORAGE_BUCKET"))
            .with_endpoint(get("BERTH_STORAGE_ENDPOINT"))
            .with_region(get("BERTH_STORAGE_REGION"))
            .with_access_key_id(get("BERTH_STORAGE_ACCESS_KEY_ID"))
            .with_secret_access_key(get("BERTH_STORAGE_SECRET_ACCESS_KEY"))
            .with_allow_http(true)
            .build()
            .expect("an S3 client of the bucket");
        let r = Reg {
            reg: a,
            http: http(),
            replicated: Some(Replicated {
                others: vec![b],
                front,
                bucket: std::sync::Arc::new(bucket),
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime"),
                _garage: garage,
            }),
        };
        // Created on one replica, the project is the other's once it has heard.
        r.reg.admin().create_project(PUBLIC, true);
        if let Some(rep) = &r.replicated {
            for other in &rep.others {
                let admin = other.admin();
                berth_testkit::wait_until(
                    "the project on every replica",
                    Duration::from_secs(30),
                    || admin.call("GET", "/api/v1/projects/pub", None).0 == 200,
                );
            }
        }
        Some(r)
    }

    /// Where clients reach the registry: the balancer, or the one server.
    pub fn base(&self) -> String {
        match &self.replicated {
            Some(r) => r.front.url(),
            None => self.reg.url(),
        }
    }

    pub fn port(&self) -> u16 {
        match &self.replicated {
            Some(r) => r.front.port(),
            None => self.reg.server.port(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base(), path)
        }
    }

    /// Whether the registry keeps metadata in an embedded file (not replicas).
    pub fn embedded(&self) -> bool {
        self.replicated.is_none()
    }

    /// Every server's log, one after the other.
    pub fn logs(&self) -> String {
        let mut log = self.reg.server.log();
        if let Some(r) = &self.replicated {
            for o in &r.others {
                log.push_str(&o.server.log());
            }
        }
        log
    }

    /// A request as admin.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().expect("GET")
    }

    pub fn head(&self, path: &str) -> Response {
        self.req(Method::HEAD, path).send().expect("HEAD")
    }

    pub fn delete(&self, path: &str) -> Response {
        self.req(Method::DELETE, path).send().expect("DELETE")
    }

    /// Monolithic `POST ?digest=` upload as admin; returns the digest.
    pub fn push_blob(&self, repo: &str, content: &[u8]) -> String {
        http::push_blob(&self.http, &self.base(), &admin(), repo, content.to_vec())
    }

    /// `POST` to start an upload; returns the Location.
    pub fn start_upload(&self, repo: &str) -> String {
        let res = self
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .expect("POST upload");
        assert_eq!(res.status(), 202, "start upload: {}", describe(res));
        header(&res, "location")
    }

    /// `PATCH` one chunk with a Content-Range; returns the response.
    pub fn patch(&self, location: &str, start: u64, chunk: &[u8]) -> Response {
        self.req(Method::PATCH, location)
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{}-{}", start, start + chunk.len() as u64 - 1),
            )
            .body(chunk.to_vec())
            .send()
            .expect("PATCH")
    }

    /// `PUT location?digest=` with `body` (may be empty).
    pub fn finish(&self, location: &str, digest: &str, body: &[u8]) -> Response {
        let sep = if location.contains('?') { '&' } else { '?' };
        self.req(Method::PUT, &format!("{location}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(body.to_vec())
            .send()
            .expect("PUT upload")
    }

    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .expect("PUT manifest")
    }

    /// Pushes [`config_for`]`(repo, tag)` and `layers` as blobs, then the
    /// manifest over them under `tag`. Returns the manifest bytes and digest.
    pub fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (Vec<u8>, String) {
        let config = config_for(repo, tag);
        let base = self.base();
        http::push_image_with(&self.http, &base, &admin(), (repo, tag), &config, layers)
    }

    /// Files under `<data>/blobs` (the content store's objects).
    pub fn blob_files(&self) -> Vec<PathBuf> {
        match &self.replicated {
            Some(r) => r.keys("blobs").into_iter().map(PathBuf::from).collect(),
            None => files_under(&self.reg.data_dir.join("blobs")),
        }
    }

    /// Entries under `<data>/uploads` (upload sessions in progress).
    pub fn upload_entries(&self) -> Vec<PathBuf> {
        if let Some(r) = &self.replicated {
            // Uploads in progress are `_uploads/<id>/...` in the bucket. A
            // listing may still show objects deleted a moment ago: ask again
            // for a while before answering that something is left.
            let mut ids = Vec::new();
            for _ in 0..20 {
                ids = r
                    .keys("_uploads")
                    .iter()
                    .filter_map(|k| k.split('/').nth(1).map(str::to_string))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .map(PathBuf::from)
                    .collect();
                if ids.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            return ids;
        }
        std::fs::read_dir(self.reg.data_dir.join("uploads"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    /// The size of a stored object `blob_files` named.
    pub fn stored_size(&self, file: &std::path::Path) -> u64 {
        match &self.replicated {
            Some(r) => {
                let key = object_store::path::Path::from(file.to_string_lossy().as_ref());
                r.rt.block_on(r.bucket.head(&key))
                    .expect("blob object")
                    .size
            }
            None => std::fs::metadata(file).expect("blob file").len(),
        }
    }

    /// Whether the content store holds an object for `digest` (`alg:hex`).
    pub fn has_blob_file(&self, digest: &str) -> bool {
        let (alg, hex) = digest.split_once(':').expect("alg:hex");
        if let Some(r) = &self.replicated {
            let key = object_store::path::Path::from(format!("blobs/{alg}/{}/{hex}", &hex[..2]));
            return r.rt.block_on(r.bucket.head(&key)).is_ok();
        }
        self.reg
            .data_dir
            .join("blobs")
            .join(alg)
            .join(&hex[..2])
            .join(hex)
            .is_file()
    }

    /// `GET /v2/` still answers: the server did not fall over.
    pub fn assert_alive(&self) {
        let res = self.get("/v2/");
        assert_eq!(res.status(), 200, "registry still serves /v2/");
    }

    /// Panics (with the log) if the server panicked or answered a request with
    /// an internal error. Checked again when the test ends.
    pub fn assert_healthy_log(&self) {
        let log = self.logs();
        for bad in ["panicked at", "request failed"] {
            assert!(
                !log.contains(bad),
                "the registry log has {bad:?}:\n{}",
                self.reg.server.log_tail(80)
            );
        }
    }

    /// Sends raw bytes to the server and returns what it answered (status line,
    /// headers and body as text), reading until the connection closes.
    pub fn raw(&self, request: &[u8]) -> String {
        raw_request(self.port(), request)
    }
}

/// Like [`Reg::raw`], but closes the sending side after the bytes, so a
/// request cut short (a body shorter than its Content-Length) ends there.
pub fn raw_truncated(port: u16, request: &[u8]) -> String {
    raw_exchange(port, request, true)
}

impl Drop for Reg {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_healthy_log();
        }
    }
}

pub fn raw_request(port: u16, request: &[u8]) -> String {
    raw_exchange(port, request, false)
}

fn raw_exchange(port: u16, request: &[u8], close_write: bool) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // The server may answer and close before reading everything; that is fine.
    let _ = s.write_all(request);
    if close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The admin account's credentials.
pub fn admin() -> Auth {
    http::basic("admin", ADMIN_PASSWORD)
}

/// `Authorization: Basic` value for the admin account, for raw requests.
pub fn basic_admin() -> String {
    http::basic_credentials("admin", ADMIN_PASSWORD)
}

pub fn header(res: &Response, name: &str) -> String {
    header_of(res.headers(), name)
}

pub fn header_of(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
        .to_str()
        .expect("ASCII header")
        .to_string()
}

pub fn headers_all(res: &Response, name: &str) -> Vec<String> {
    res.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// Status, headers and body, for assertion messages.
pub fn describe(res: Response) -> String {
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.text().unwrap_or_default();
    format!("{status} {headers:?} {body}")
}

/// Asserts an OCI error answer: status, `errors[0].code`, a non-empty message,
/// and the API version header. Returns the first error object.
#[track_caller]
pub fn expect_error(res: Response, status: u16, code: &str) -> serde_json::Value {
    let got = res.status().as_u16();
    let api = res
        .headers()
        .get("docker-distribution-api-version")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let text = res.text().unwrap_or_default();
    assert_eq!(got, status, "status (want {status} {code}); body: {text}");
    assert_eq!(api.as_deref(), Some("registry/2.0"), "API version header");
    assert_eq!(
        ctype.as_deref(),
        Some("application/json"),
        "error content type"
    );
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    let e = v["errors"][0].clone();
    assert_eq!(e["code"], code, "error code in {text}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error message in {text}"
    );
    e
}
