//! Shared pieces of the edge-cache end-to-end tests: an origin registry with a
//! private project and a pull robot, images pushed into it, an edge in front
//! of it, Prometheus scraping, and plain HTTP helpers. The fault-injecting
//! proxy between an edge and its upstream is the kit's `proxy::FaultProxy`.
//!
//! Each test file compiles its own copy, and not every file uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_testkit::berth::{self, Registry, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::{digest_of, Image, OciLayout};
use berth_testkit::metrics::Metrics;
use berth_testkit::tools::{docker_ref, CopyOptions, Creds, Skopeo};
use berth_testkit::{wait_until, ServerProcess};

pub const PROJECT: &str = "team";

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A registry with the private project [`PROJECT`] and a pull robot of it.
pub struct Origin {
    pub registry: Registry,
    pub robot: Creds,
    pub skopeo: Skopeo,
    pub tmp: tempfile::TempDir,
}

impl Origin {
    /// An edge in front of this origin, pulling with its robot, cache in `cache_dir`.
    pub fn edge(&self, cache_dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        edge(&self.registry.url(), cache_dir, Some(&self.robot), env)
    }

    pub fn start() -> Origin {
        let registry = berth::registry(berth_bin!());
        let admin = registry.admin();
        admin.create_project(PROJECT, false);
        let (name, secret) = admin.create_robot(PROJECT, "edge", "pull");
        Origin {
            registry,
            robot: Creds::new(&name, &secret),
            skopeo: Skopeo::new(),
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn admin_creds(&self) -> Creds {
        Creds::new("admin", ADMIN_PASSWORD)
    }

    /// A fresh OCI layout in this origin's temp dir.
    pub fn layout(&self, name: &str) -> OciLayout {
        OciLayout::create(self.tmp.path().join(name))
    }

    /// Pushes `layout`'s `tag` (image or index) to `PROJECT/repo:tag`.
    pub fn push(&self, layout: &OciLayout, tag: &str, repo: &str) {
        self.skopeo.copy(
            &layout.reference(tag),
            &docker_ref(&self.registry.host(), &format!("{PROJECT}/{repo}"), tag),
            &CopyOptions::all()
                .preserving_digests()
                .with_dest_creds(&self.admin_creds()),
        );
    }

    pub fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.registry.url())
    }

    /// `berth_http_requests_total{method="GET",route="blob",status="200"}`.
    pub fn blob_gets(&self) -> f64 {
        self.metrics().get(
            "berth_http_requests_total",
            &[("method", "GET"), ("route", "blob"), ("status", "200")],
        )
    }
}

/// An edge in front of `upstream` authenticating with `creds`, cache in `dir`.
pub fn edge(
    upstream: &str,
    cache_dir: &Path,
    creds: Option<&Creds>,
    env: &[(&str, &str)],
) -> ServerProcess {
    let creds = creds.map(|c| (c.username.as_str(), c.password.as_str()));
    let mut env: Vec<(&str, &str)> = env.to_vec();
    if !env.iter().any(|(k, _)| *k == "BERTH_LOG_LEVEL") {
        env.push(("BERTH_LOG_LEVEL", "info"));
    }
    berth::edge(berth_bin!(), upstream, cache_dir, creds, &env)
}

/// Where the edge's content store keeps a committed blob.
pub fn cached_blob_path(cache_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    cache_dir.join("blobs/sha256").join(&hex[..2]).join(hex)
}

pub fn is_cached(cache_dir: &Path, digest: &str) -> bool {
    cached_blob_path(cache_dir, digest).is_file()
}

/// Waits for the edge to have stored `digest`: a fill commits a blob just
/// after its clients have their last byte (once its digest is checked), so
/// a client's complete GET does not mean the commit is done yet.
pub fn wait_cached(cache_dir: &Path, digest: &str) {
    wait_until(
        &format!("{digest} to be committed to the cache"),
        Duration::from_secs(30),
        || is_cached(cache_dir, digest),
    );
}

pub fn edge_metric(edge: &ServerProcess, name: &str) -> f64 {
    Metrics::scrape(&edge.base_url()).edge(name)
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// GET `url`; returns (status, headers, body) or the transport error
/// (a connection cut mid-body is an error, as it is for real clients).
pub fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), String> {
    let mut rb = http().get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let res = rb.send().map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    let h = res.headers().clone();
    let body = res.bytes().map_err(|e| format!("{e:?}"))?;
    Ok((status, h, body.to_vec()))
}

/// GET a blob through `base`; panics unless it is 200 with exactly `digest`.
pub fn get_blob_ok(base: &str, repo: &str, digest: &str) -> Vec<u8> {
    let url = format!("{base}/v2/{PROJECT}/{repo}/blobs/{digest}");
    let (status, _, body) = get(&url, &[]).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    assert_eq!(digest_of(&body), digest, "bytes of {url}");
    body
}

/// Pulls `PROJECT/repo:tag` from `host` into a fresh `oci:` layout with skopeo
/// and checks every blob of `image` arrived intact.
pub fn skopeo_pull_and_verify(skopeo: &Skopeo, host: &str, repo: &str, tag: &str, image: &Image) {
    let dest = tempfile::tempdir().expect("tempdir");
    skopeo.copy(
        &docker_ref(host, &format!("{PROJECT}/{repo}"), tag),
        &format!("oci:{}:{tag}", dest.path().display()),
        &CopyOptions::default().preserving_digests(),
    );
    let got = OciLayout::open(dest.path());
    assert_eq!(
        got.resolve(tag).expect("tag in copy").digest,
        image.digest()
    );
    for (digest, size) in image.blob_digests() {
        let bytes = got.read_blob(&digest);
        assert_eq!((digest_of(&bytes), bytes.len() as u64), (digest, size));
    }
}

// ---------------------------------------------------------------- prefetch API

/// POST /api/v1/prefetch; returns the job id.
pub fn prefetch(base: &str, images: &[&str], pin: bool) -> String {
    let res = http()
        .post(format!("{base}/api/v1/prefetch"))
        .json(&serde_json::json!({ "images": images, "pin": pin }))
        .send()
        .expect("POST /api/v1/prefetch");
    let status = res.status().as_u16();
    let v: serde_json::Value = res.json().expect("prefetch answer is JSON");
    assert_eq!(status, 202, "prefetch answered {status}: {v}");
    v["id"].as_str().expect("job id").to_owned()
}

pub fn prefetch_job(base: &str, id: &str) -> serde_json::Value {
    let res = http()
        .get(format!("{base}/api/v1/prefetch/{id}"))
        .send()
        .expect("GET /api/v1/prefetch/{id}");
    assert_eq!(res.status().as_u16(), 200);
    res.json().expect("job JSON")
}

/// Polls the job until it is done (panics if it fails), checking that
/// `bytes_done` never decreases; returns the final job and every distinct
/// `bytes_done` seen, in order.
pub fn wait_job_done(base: &str, id: &str, secs: u64) -> (serde_json::Value, Vec<u64>) {
    let mut seen: Vec<u64> = Vec::new();
    let what = format!("prefetch job {id} to be done");
    let job = wait_until(&what, Duration::from_secs(secs), || {
        let job = prefetch_job(base, id);
        let done = job["bytes_done"].as_u64().expect("bytes_done");
        if let Some(&last) = seen.last() {
            assert!(done >= last, "bytes_done went from {last} to {done}: {job}");
        }
        if seen.last() != Some(&done) {
            seen.push(done);
        }
        match job["state"].as_str() {
            Some("done") => Ok(job),
            Some("failed") => panic!("prefetch job failed: {job}"),
            _ => Err(job.to_string()),
        }
    });
    (job, seen)
}
