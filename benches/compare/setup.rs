//! The two registries under test, started side by side on 127.0.0.1:
//! `berth serve` (default log level; a public project `pub` for anonymous
//! pulls and a private one `priv` for the token case) and distribution 2.8
//! (access log off, no auth). Both are pushed to with skopeo through the
//! test kit.

use std::net::SocketAddr;
use std::path::Path;

use berth_testkit::berth::{self as kit_berth, Registry, ADMIN_PASSWORD};
use berth_testkit::distribution::DistributionProcess;
use berth_testkit::fixtures::{Image, ImageBuilder, OciLayout};
use berth_testkit::tools::{docker_ref, CopyOptions, Creds, Skopeo};

pub const PUBLIC: &str = "pub";
pub const PRIVATE: &str = "priv";

/// Which server a figure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Berth,
    Distribution,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Berth => "berth",
            Kind::Distribution => "distribution",
        }
    }
}

/// The berth executable under test: the one built with the bench, or
/// `BERTH_BENCH_BERTH` (a profiler's wrapper around it, say; the figures
/// of a wrapped run then measure the wrapper's process, not berth's).
pub fn berth_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("BERTH_BENCH_BERTH")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_berth").to_string())
    })
}

pub fn admin_creds() -> Creds {
    Creds::new("admin", ADMIN_PASSWORD)
}

/// One registry under test, as the workloads see it.
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl Target {
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Credentials for pushes (distribution runs without auth).
    pub fn push_creds(&self) -> Option<Creds> {
        match self.kind {
            Kind::Berth => Some(admin_creds()),
            Kind::Distribution => None,
        }
    }
    /// `Authorization` for `actions` (e.g. `pull,push`) on `repo`: a bearer
    /// token from berth's `/v2/token` as admin; none for distribution.
    pub fn auth_header(&self, repo: &str, actions: &str) -> Option<String> {
        match self.kind {
            Kind::Berth => Some(format!("Bearer {}", berth_token(self.addr, repo, actions))),
            Kind::Distribution => None,
        }
    }

    /// Pushes `tag` of `layout` to `repo:tag` with skopeo; returns the wall time.
    pub fn push(&self, skopeo: &Skopeo, layout: &OciLayout, repo: &str, tag: &str) -> f64 {
        let mut opts = CopyOptions::default().preserving_digests();
        opts.dest_creds = self.push_creds();
        let start = std::time::Instant::now();
        skopeo.copy(
            &layout.reference(tag),
            &docker_ref(&self.host(), repo, tag),
            &opts,
        );
        start.elapsed().as_secs_f64()
    }

    /// Pulls `repo:tag` into a new OCI layout at `dest`; returns the wall time.
    pub fn pull(&self, skopeo: &Skopeo, repo: &str, tag: &str, dest: &Path) -> f64 {
        let opts = CopyOptions::default().preserving_digests();
        let start = std::time::Instant::now();
        skopeo.copy(
            &docker_ref(&self.host(), repo, tag),
            &format!("oci:{}:{tag}", dest.display()),
            &opts,
        );
        start.elapsed().as_secs_f64()
    }
}

/// `GET /v2/token?service=berth&scope=repository:<repo>:<actions>` as admin.
pub fn berth_token(addr: SocketAddr, repo: &str, actions: &str) -> String {
    let url = format!("http://{addr}/v2/token?service=berth&scope=repository:{repo}:{actions}");
    let res = reqwest::blocking::Client::new()
        .get(&url)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(res.status().is_success(), "GET {url}: {}", res.status());
    let v: serde_json::Value = res.json().expect("token response is JSON");
    v["token"]
        .as_str()
        .or_else(|| v["access_token"].as_str())
        .expect("token in the response")
        .to_owned()
}

/// The two registries.
pub struct Registries {
    pub berth: Registry,
    pub distribution: DistributionProcess,
}

impl Registries {
    pub fn start(berth_env: &[(String, String)]) -> Registries {
        let mut env: Vec<(&str, &str)> = berth_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Workload 8 replicates to distribution on 127.0.0.1.
        env.push(("BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES", "true"));
        let berth = kit_berth::registry_with(berth_bin(), &[], &env);
        let admin = berth.admin();
        admin.create_project(PUBLIC, true);
        admin.create_project(PRIVATE, false);
        let distribution = DistributionProcess::start();
        Registries {
            berth,
            distribution,
        }
    }

    pub fn target(&self, kind: Kind) -> Target {
        match kind {
            Kind::Berth => Target {
                kind,
                addr: self.berth.host().parse().expect("berth address"),
                pid: self.berth.server.pid().expect("berth is running"),
            },
            Kind::Distribution => Target {
                kind,
                addr: self
                    .distribution
                    .host()
                    .parse()
                    .expect("distribution address"),
                pid: self
                    .distribution
                    .server()
                    .pid()
                    .expect("distribution is running"),
            },
        }
    }

    pub fn both(&self) -> [Target; 2] {
        [self.target(Kind::Berth), self.target(Kind::Distribution)]
    }
}

/// Builds an image of random layers of these sizes in a new layout under
/// `dir` (fresh content on every call), tagged `tag`.
pub fn random_image(dir: &Path, layers: &[u64], tag: &str) -> (OciLayout, Image) {
    let layout = OciLayout::create(dir);
    let mut b = ImageBuilder::new();
    for &size in layers {
        b = b.layer_random(size);
    }
    let image = b.tag(tag).build(&layout);
    (layout, image)
}
