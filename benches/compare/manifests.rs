//! Workload 2: manifest GETs by digest and by tag from 64 keep-alive
//! connections, with the Accept header containerd sends: requests/s and p99
//! latency. Anonymous on a public repository for both servers; then berth
//! with a bearer token on a private repository (distribution has no auth in
//! this setup, so that row compares against its anonymous figure). Then the
//! same against nginx serving berth's answer (bytes and headers) as a static
//! file (`nginx.rs`): the practical ceiling of HTTP/1.1 here (issue 22).
//!
//! Also resets each server's peak RSS at the start of every run and reads it
//! at the end (workload 7).

use std::sync::Arc;

use crate::http::{Conn, Req};
use crate::load::{self, LoadResult, LoadSpec};
use crate::nginx::{Nginx, StaticManifest};
use crate::report::{Better, Row, Target};
use crate::setup::{random_image, Kind, PRIVATE, PUBLIC};
use crate::{procstat, push_value, Bench};

/// What containerd's resolver sends.
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// The headers nginx must answer with as berth does.
const SAME_HEADERS: [&str; 3] = ["content-type", "docker-content-digest", "etag"];

/// The rows of berth against distribution: for each reference kind,
/// anonymous requests/s and p99, then with a token.
fn rows(conns: usize, refs: &[(&str, &str)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (what, _) in refs {
        rows.push(
            Row::new(
                &format!("2. manifest GET {what}, anonymous, {conns} conns"),
                "requests/s",
                "",
                Better::Higher,
            )
            .target(Target::RatioAtLeast(20.0)),
        );
        rows.push(Row::new(
            &format!("2. manifest GET {what}, anonymous, {conns} conns"),
            "p99 latency",
            "ms",
            Better::Lower,
        ));
        rows.push(
            Row::new(
                &format!("2. manifest GET {what}, bearer token (private), {conns} conns"),
                "requests/s",
                "",
                Better::Higher,
            )
            .target(Target::RatioAtLeast(20.0))
            .note("distribution: its anonymous figure (no auth configured)"),
        );
        rows.push(
            Row::new(
                &format!("2. manifest GET {what}, bearer token (private), {conns} conns"),
                "p99 latency",
                "ms",
                Better::Lower,
            )
            .note("distribution: its anonymous figure"),
        );
    }
    rows
}

/// The rows of berth against nginx: for each reference kind, anonymous
/// requests/s, with a token, anonymous p99.
fn nginx_rows(conns: usize, refs: &[(&str, &str)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (what, _) in refs {
        let anon = format!("2. manifest GET {what}, anonymous, {conns} conns, against nginx");
        let token =
            format!("2. manifest GET {what}, bearer token (private), {conns} conns, against nginx");
        rows.push(
            Row::new(&anon, "requests/s", "", Better::Higher)
                .versus("nginx")
                .target(Target::RatioAtLeast(0.9))
                .note("nginx: the same bytes and headers as a static file"),
        );
        rows.push(
            Row::new(&token, "requests/s", "", Better::Higher)
                .versus("nginx")
                .target(Target::RatioAtLeast(0.9))
                .note("nginx: its anonymous figure (no auth)"),
        );
        rows.push(Row::new(&anon, "p99 latency", "ms", Better::Lower).versus("nginx"));
    }
    rows
}

/// berth's answer to an anonymous GET of the pushed manifest: what nginx serves.
fn berth_answer(b: &Bench, repo: &str, refs: &[(&str, &str)]) -> StaticManifest {
    let t = b.regs.target(Kind::Berth);
    let path = format!("/v2/{repo}/manifests/{}", refs[0].1);
    let reply =
        b.rt.block_on(Conn::new(t.addr).call(&Req::get(&path).header("accept", ACCEPT)))
            .unwrap_or_else(|e| panic!("GET {path} from berth: {e}"));
    assert_eq!(reply.status, 200, "GET {path} from berth");
    let header = |name: &str| {
        reply
            .header(name)
            .unwrap_or_else(|| panic!("berth answered GET {path} without {name}"))
            .to_owned()
    };
    StaticManifest {
        bytes: reply.body.to_vec(),
        content_type: header("content-type"),
        digest: header("docker-content-digest"),
        etag: header("etag"),
        paths: refs
            .iter()
            .map(|(_, r)| format!("/v2/{repo}/manifests/{r}"))
            .collect(),
    }
}

/// nginx, checked to answer every path with berth's bytes and headers;
/// `None` when it is not installed.
fn start_nginx(b: &Bench, m: &StaticManifest) -> Option<Nginx> {
    let nginx = Nginx::start(m)?;
    for path in &m.paths {
        let reply =
            b.rt.block_on(Conn::new(nginx.addr()).call(&Req::get(path).header("accept", ACCEPT)))
                .unwrap_or_else(|e| panic!("GET {path} from nginx: {e}"));
        assert_eq!(reply.status, 200, "GET {path} from nginx");
        assert_eq!(reply.body, m.bytes, "nginx's body for {path}");
        for (name, want) in SAME_HEADERS
            .iter()
            .zip([&m.content_type, &m.digest, &m.etag])
        {
            assert_eq!(
                reply.header(name),
                Some(want.as_str()),
                "nginx's {name} for {path}"
            );
        }
    }
    Some(nginx)
}

/// One load run of `path` on `addr`, with `auth` if given.
fn load_run(
    b: &Bench,
    addr: std::net::SocketAddr,
    pids: Vec<u32>,
    path: String,
    auth: Option<&str>,
) -> LoadResult {
    let spec = LoadSpec {
        addrs: vec![addr],
        connections: b.cfg.manifest_conns,
        warmup: b.cfg.warmup,
        duration: b.cfg.duration,
        expect: 200,
        server_pids: pids,
    };
    let mut req = Req::get(path).header("accept", ACCEPT);
    if let Some(token) = auth {
        req = req.header("authorization", token);
    }
    b.rt.block_on(load::run(&spec, Arc::new(move |_, _| req.clone())))
}

/// nginx's run: anonymous GETs of every reference, into `rows` (from
/// [`nginx_rows`]).
fn run_nginx(b: &mut Bench, nginx: &Nginx, public: &str, refs: &[(&str, &str)], rows: &mut [Row]) {
    for (i, (what, reference)) in refs.iter().enumerate() {
        let path = format!("/v2/{public}/manifests/{reference}");
        let r = load_run(b, nginx.addr(), nginx.pids(), path, None);
        b.progress(&format!(
            "   nginx {what}: {:.0} req/s, p99 {:.2} ms, client {:.2} cores, server {:.2} cores",
            r.rps(),
            r.p99.as_secs_f64() * 1e3,
            r.client_cores(),
            r.server_cores()
        ));
        rows[i * 3].push_versus(r.rps());
        rows[i * 3 + 1].push_versus(r.rps());
        rows[i * 3 + 2].push_versus(r.p99.as_secs_f64() * 1e3);
        b.record_load_of(&format!("2. manifest {what}, anonymous"), "nginx", r);
    }
}

/// One server's run: anonymous and token GETs of every reference, into
/// `rows` (from [`rows`]) and, for berth, the nginx rows' berth column.
fn run_server(
    b: &mut Bench,
    kind: Kind,
    repos: (&str, &str),
    refs: &[(&str, &str)],
    rows: &mut [Row],
    versus: &mut [Row],
) {
    let (public, private) = repos;
    let t = b.regs.target(kind);
    let token = t.auth_header(private, "pull");
    for (i, (what, reference)) in refs.iter().enumerate() {
        let path = format!("/v2/{public}/manifests/{reference}");
        let r = load_run(b, t.addr, vec![t.pid], path, None);
        b.progress(&format!(
            "   {} {what} anonymous: {:.0} req/s, p99 {:.2} ms, client {:.2} cores, server {:.2} cores",
            kind.name(),
            r.rps(),
            r.p99.as_secs_f64() * 1e3,
            r.client_cores(),
            r.server_cores()
        ));
        let (anon_rps, anon_p99) = (r.rps(), r.p99.as_secs_f64() * 1e3);
        push_value(rows, i * 4, kind, anon_rps);
        push_value(rows, i * 4 + 1, kind, anon_p99);
        b.record_load(&format!("2. manifest {what}, anonymous"), kind, r);
        // distribution has no auth here: its token rows take its anonymous figure.
        let token_rps = match &token {
            Some(token) => {
                let path = format!("/v2/{private}/manifests/{reference}");
                let r = load_run(b, t.addr, vec![t.pid], path, Some(token));
                b.progress(&format!(
                    "   {} {what} token: {:.0} req/s, p99 {:.2} ms",
                    kind.name(),
                    r.rps(),
                    r.p99.as_secs_f64() * 1e3
                ));
                let (rps, p99) = (r.rps(), r.p99.as_secs_f64() * 1e3);
                b.record_load(&format!("2. manifest {what}, token"), kind, r);
                push_value(rows, i * 4 + 2, kind, rps);
                push_value(rows, i * 4 + 3, kind, p99);
                rps
            }
            None => {
                push_value(rows, i * 4 + 2, kind, anon_rps);
                push_value(rows, i * 4 + 3, kind, anon_p99);
                anon_rps
            }
        };
        if kind == Kind::Berth && !versus.is_empty() {
            versus[i * 3].push(kind, anon_rps);
            versus[i * 3 + 1].push(kind, token_rps);
            versus[i * 3 + 2].push(kind, anon_p99);
        }
    }
}

pub fn run(b: &mut Bench) {
    let dir = b.scratch("manifest-image");
    let (layout, image) = random_image(&dir, &[4096], "v1");
    let public = format!("{PUBLIC}/mfget");
    let private = format!("{PRIVATE}/mfget");
    for t in b.regs.both() {
        t.push(&b.skopeo, &layout, &public, "v1");
        if t.kind == Kind::Berth {
            t.push(&b.skopeo, &layout, &private, "v1");
        }
    }
    let digest = image.digest().to_owned();
    let conns = b.cfg.manifest_conns;
    let refs = [("by digest", digest.as_str()), ("by tag", "v1")];
    let nginx = start_nginx(b, &berth_answer(b, &public, &refs));

    let mut rows = rows(conns, &refs);
    let mut versus = match nginx {
        Some(_) => nginx_rows(conns, &refs),
        None => Vec::new(),
    };
    let mut peak = Row::new(
        "7. memory",
        "peak RSS during 2 (manifest GETs)",
        "MB",
        Better::Lower,
    )
    .target(Target::RatioAtMost(0.35));

    for run in 0..b.cfg.runs {
        b.progress(&format!("2. manifest GETs, run {}", run + 1));
        // nginx goes last in even runs and first in odd ones, as berth and
        // distribution take turns.
        if let (Some(nginx), 1) = (&nginx, run % 2) {
            run_nginx(b, nginx, &public, &refs, &mut versus);
        }
        for kind in b.order(run) {
            let pid = b.regs.target(kind).pid;
            procstat::reset_peak(pid);
            run_server(b, kind, (&public, &private), &refs, &mut rows, &mut versus);
            let mb = procstat::peak_rss(pid).unwrap_or(0) as f64 / 1e6;
            peak.push(kind, mb);
        }
        if let (Some(nginx), 0) = (&nginx, run % 2) {
            run_nginx(b, nginx, &public, &refs, &mut versus);
        }
    }
    b.rows.extend(rows);
    b.rows.extend(versus);
    b.rows.push(peak);
}
