//! Soak: concurrent chunked and monolithic pushes, pulls through an edge cache,
//! tag deletes, GC with a short grace window, and kill -9 of the registry and of
//! the edge at random moments, for `BERTH_SOAK_SECS` (default 150) seconds.
//!
//! What must hold at the end:
//! - every manifest whose PUT was answered 201, and whose tag was not deleted,
//!   pulls completely, with matching digests, from the registry and through the edge;
//! - no response that arrived whole was ever wrong (a body cut off by a kill is a
//!   transport error the client sees, never bytes of the wrong blob);
//! - after the upload TTL and a GC, no upload directory is left, and the blob store
//!   holds exactly the blobs of the manifests still tagged.
//!
//! The seed and the kill schedule are printed; `BERTH_SOAK_SEED=<seed>` replays
//! the same schedule and the same images (thread interleaving still varies).
//! `BERTH_SOAK_DEBUG=1` prints every refused pull (404s of deleted tags are expected).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_testkit::berth::{self, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::digest_of;
use berth_testkit::proc::files_under;
use berth_testkit::ServerProcess;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use reqwest::blocking::Client;
use serde_json::{json, Value};

const PROJECT: &str = "soak";
const GRACE: &str = "2s";
const UPLOAD_TTL: Duration = Duration::from_secs(4);

/// An image whose manifest PUT was acknowledged.
#[derive(Clone)]
struct Pushed {
    repo: String,
    tag: String,
    digest: String,
    /// config and layers: (digest, size)
    blobs: Vec<(String, u64)>,
}

#[derive(Default)]
struct Ledger {
    acked: Vec<Pushed>,
    /// Tags a DELETE was sent for (whatever its answer: a kill may hide it).
    deleting: BTreeSet<(String, String)>,
    violations: Vec<String>,
}

#[derive(Default)]
struct Stats {
    pushes: AtomicU64,
    push_retries: AtomicU64,
    pulls: AtomicU64,
    pull_errors: AtomicU64,
    blobs_verified: AtomicU64,
    deletes: AtomicU64,
    gcs: AtomicU64,
}

struct World {
    registry_url: String,
    edge_url: String,
    http: Client,
    ledger: Mutex<Ledger>,
    stats: Stats,
    stop: AtomicBool,
}

impl World {
    fn violation(&self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .violations
            .push(what);
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn admin(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        rb.basic_auth("admin", Some(ADMIN_PASSWORD))
            .timeout(Duration::from_secs(20))
    }
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A 5xx is a server bug; a transport error or 404 during a kill is expected.
fn check_status(world: &World, what: &str, status: u16) {
    if status >= 500 {
        world.violation(format!("{what}: answered {status}"));
    }
}

/// Uploads one blob, monolithically or in chunks; Err on anything but success.
fn upload_blob(
    world: &World,
    rng: &mut StdRng,
    repo: &str,
    bytes: &[u8],
) -> Result<String, String> {
    let digest = digest_of(bytes);
    let base = format!("{}/v2/{repo}/blobs/uploads/", world.registry_url);
    let fail = |what: &str, e: String| Err(format!("{what}: {e}"));
    if rng.gen_bool(0.4) {
        let res = world
            .admin(world.http.post(format!("{base}?digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .map_err(|e| e.to_string())?;
        check_status(world, "monolithic upload", res.status().as_u16());
        return match res.status().as_u16() {
            201 => Ok(digest),
            s => fail("monolithic upload", s.to_string()),
        };
    }
    let res = world
        .admin(world.http.post(&base))
        .send()
        .map_err(|e| e.to_string())?;
    check_status(world, "start upload", res.status().as_u16());
    if res.status().as_u16() != 202 {
        return fail("start upload", res.status().to_string());
    }
    let mut location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Location")?
        .to_string();
    let chunk = rng.gen_range(64 * 1024..512 * 1024);
    let mut offset = 0usize;
    while offset < bytes.len() {
        let end = (offset + chunk).min(bytes.len());
        let url = absolute(&world.registry_url, &location);
        let res = world
            .admin(world.http.patch(url))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{}-{}", offset, end - 1))
            .body(bytes[offset..end].to_vec())
            .send()
            .map_err(|e| e.to_string())?;
        check_status(world, "PATCH", res.status().as_u16());
        if res.status().as_u16() != 202 {
            return fail("PATCH", res.status().to_string());
        }
        location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or("no Location")?
            .to_string();
        offset = end;
    }
    let url = absolute(&world.registry_url, &location);
    let sep = if url.contains('?') { '&' } else { '?' };
    let res = world
        .admin(world.http.put(format!("{url}{sep}digest={digest}")))
        .send()
        .map_err(|e| e.to_string())?;
    check_status(world, "final PUT", res.status().as_u16());
    match res.status().as_u16() {
        201 => Ok(digest),
        s => fail("final PUT", s.to_string()),
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

/// Pushes one image (1 to 3 layers, chunked or monolithic) and its tag.
fn push_image(world: &World, rng: &mut StdRng, repo: &str, tag: &str) -> Result<Pushed, String> {
    let layers: Vec<Vec<u8>> = (0..rng.gen_range(1..=3))
        .map(|_| {
            let len = rng.gen_range(1_000..1_500_000);
            random_bytes(rng, len)
        })
        .collect();
    let config = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest_of(l)).collect::<Vec<_>>()},
        "soak": rng.next_u64()})
    .to_string()
    .into_bytes();
    let mut blobs = Vec::new();
    for b in std::iter::once(&config).chain(layers.iter()) {
        let d = upload_blob(world, rng, repo, b)?;
        blobs.push((d, b.len() as u64));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blobs[0].0, "size": blobs[0].1},
        "layers": blobs[1..].iter().map(|(d, s)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let res = world
        .admin(
            world
                .http
                .put(format!("{}/v2/{repo}/manifests/{tag}", world.registry_url)),
        )
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .map_err(|e| e.to_string())?;
    check_status(world, "manifest PUT", res.status().as_u16());
    if res.status().as_u16() != 201 {
        return Err(format!("manifest PUT: {}", res.status()));
    }
    Ok(Pushed {
        repo: repo.to_string(),
        tag: tag.to_string(),
        digest: digest_of(&manifest),
        blobs,
    })
}

fn pusher(world: Arc<World>, seed: u64, id: usize) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64 * 0x9e37_79b9));
    let mut n = 0;
    while !world.stopped() {
        let repo = format!("{PROJECT}/r{}", rng.gen_range(0..4));
        let tag = format!("p{id}-{n}");
        match push_image(&world, &mut rng, &repo, &tag) {
            Ok(p) => {
                n += 1;
                world.stats.pushes.fetch_add(1, Ordering::Relaxed);
                world
                    .ledger
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .acked
                    .push(p);
            }
            Err(_) => {
                world.stats.push_retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// GETs `url` and checks a whole body against `digest`: Ok(true) verified,
/// Ok(false) not there or cut off, Err on a wrong body.
fn fetch_verified(world: &World, url: &str, digest: &str, accept: bool) -> Result<bool, String> {
    let mut rb = world.http.get(url).timeout(Duration::from_secs(30));
    if accept {
        rb = rb.header("Accept", "application/vnd.oci.image.manifest.v1+json");
    }
    let res = match rb.send() {
        Ok(r) => r,
        Err(_) => return Ok(false),
    };
    let status = res.status().as_u16();
    check_status(world, url, status);
    if status != 200 {
        if std::env::var("BERTH_SOAK_DEBUG").is_ok() {
            eprintln!("{status} {url}");
        }
        return Ok(false);
    }
    let announced = res.content_length();
    let body = match res.bytes() {
        Ok(b) => b,
        Err(_) => return Ok(false),
    };
    if announced.is_some_and(|n| n != body.len() as u64) {
        return Ok(false);
    }
    let got = digest_of(&body);
    if got != digest {
        return Err(format!(
            "{url} served {} bytes with digest {got}, not {digest}",
            body.len()
        ));
    }
    Ok(true)
}

fn puller(world: Arc<World>, seed: u64, id: usize) {
    let mut rng = StdRng::seed_from_u64(seed ^ (0xabcd + id as u64));
    while !world.stopped() {
        let pick = {
            let l = world.ledger.lock().unwrap_or_else(|p| p.into_inner());
            if l.acked.is_empty() {
                None
            } else {
                Some(l.acked[rng.gen_range(0..l.acked.len())].clone())
            }
        };
        let Some(p) = pick else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        world.stats.pulls.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}/v2/{}/manifests/{}", world.edge_url, p.repo, p.digest);
        match fetch_verified(&world, &url, &p.digest, true) {
            Ok(true) => {}
            Ok(false) => {
                world.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                // The edge may be down for a moment: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => world.violation(e),
        }
        for (d, _) in &p.blobs {
            let url = format!("{}/v2/{}/blobs/{d}", world.edge_url, p.repo);
            match fetch_verified(&world, &url, d, false) {
                Ok(true) => {
                    world.stats.blobs_verified.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {
                    world.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => world.violation(e),
            }
        }
    }
}

/// Deletes a random acknowledged tag now and then, and runs GC.
fn janitor(world: Arc<World>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut last_gc = Instant::now();
    while !world.stopped() {
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..2000)));
        let pick = {
            let mut l = world.ledger.lock().unwrap_or_else(|p| p.into_inner());
            if l.acked.len() < 4 {
                None
            } else {
                let p = l.acked[rng.gen_range(0..l.acked.len())].clone();
                l.deleting.insert((p.repo.clone(), p.tag.clone()));
                Some(p)
            }
        };
        if let Some(p) = pick {
            let url = format!("{}/v2/{}/manifests/{}", world.registry_url, p.repo, p.tag);
            if let Ok(res) = world.admin(world.http.delete(url)).send() {
                check_status(&world, "tag delete", res.status().as_u16());
                world.stats.deletes.fetch_add(1, Ordering::Relaxed);
            }
        }
        if last_gc.elapsed() > Duration::from_secs(3) {
            last_gc = Instant::now();
            let url = format!("{}/api/v1/gc", world.registry_url);
            if let Ok(res) = world.admin(world.http.post(url)).send() {
                check_status(&world, "GC", res.status().as_u16());
                world.stats.gcs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn kill_and_restart(name: &str, p: &Mutex<ServerProcess>, rng: &mut StdRng, t0: Instant) {
    let down = Duration::from_millis(rng.gen_range(100..1500));
    println!(
        "t={:>6.1}s kill -9 {name}, down for {:?}",
        t0.elapsed().as_secs_f64(),
        down
    );
    let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
    p.kill9();
    std::thread::sleep(down);
    p.start_again();
}

#[test]
fn soak_pushes_pulls_deletes_gc_and_kill9() {
    let secs: u64 = std::env::var("BERTH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let seed: u64 = std::env::var("BERTH_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("soak: {secs} s, seed {seed} (replay: BERTH_SOAK_SEED={seed} BERTH_SOAK_SECS={secs})");
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let (world, registry, edge) = start_registry_and_edge(tmp.path(), &data);
    let (registry, edge) = (Mutex::new(registry), Mutex::new(edge));
    workers_run_while_the_servers_are_killed_and_restarted(&world, seed, secs, &registry, &edge);
    let kept = every_acknowledged_image_not_deleted_pulls_whole_from_both(&world, seed);
    after_the_upload_ttl_and_gc_the_store_holds_exactly_the_tagged_blobs(
        &world, seed, &data, &kept,
    );
    drop(registry);
    drop(edge);
}

/// A registry on `data` (short GC grace and upload TTL) with the soak project
/// and a pull robot, and an edge in front of it pulling with that robot.
fn start_registry_and_edge(tmp: &Path, data: &Path) -> (Arc<World>, ServerProcess, ServerProcess) {
    let bin = berth_bin!();
    let ttl = format!("{}s", UPLOAD_TTL.as_secs());
    let reg = berth::registry_in(
        bin,
        data,
        &[],
        &[("BERTH_GC_GRACE", GRACE), ("BERTH_GC_UPLOAD_TTL", &ttl)],
    );
    let admin = reg.admin();
    admin.create_project(PROJECT, false);
    let robot = admin.create_robot(PROJECT, "edge", "pull");
    let edge = berth::edge(
        bin,
        &reg.url(),
        &tmp.join("edge"),
        Some((&robot.0, &robot.1)),
        &[],
    );
    let world = Arc::new(World {
        registry_url: reg.url(),
        edge_url: edge.base_url(),
        http: Client::builder()
            .pool_max_idle_per_host(4)
            .build()
            .expect("client"),
        ledger: Mutex::default(),
        stats: Stats::default(),
        stop: AtomicBool::new(false),
    });
    (world, reg.server, edge)
}

/// Two pushers, two pullers and a janitor run for `secs` seconds while the
/// registry and the edge are killed (SIGKILL) and restarted on a schedule
/// from `seed`; at least one push must get through.
fn workers_run_while_the_servers_are_killed_and_restarted(
    world: &Arc<World>,
    seed: u64,
    secs: u64,
    registry: &Mutex<ServerProcess>,
    edge: &Mutex<ServerProcess>,
) {
    let mut workers = Vec::new();
    for id in 0..2 {
        let w = world.clone();
        workers.push(std::thread::spawn(move || pusher(w, seed, id)));
        let w = world.clone();
        workers.push(std::thread::spawn(move || puller(w, seed, id)));
    }
    let w = world.clone();
    workers.push(std::thread::spawn(move || janitor(w, seed)));

    // The kill schedule, from the seed.
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let mut kills = 0;
    loop {
        let next = Duration::from_millis(rng.gen_range(3_000..9_000));
        if Instant::now() + next >= deadline {
            break;
        }
        std::thread::sleep(next);
        if rng.gen_bool(0.5) {
            kill_and_restart("registry", registry, &mut rng, t0);
        } else {
            kill_and_restart("edge", edge, &mut rng, t0);
        }
        kills += 1;
    }
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    world.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let s = &world.stats;
    println!(
        "soak: {kills} kills; {} images pushed ({} attempts retried), {} pulls ({} cut short), {} blobs verified through the edge, {} tag deletes, {} GC runs",
        s.pushes.load(Ordering::Relaxed),
        s.push_retries.load(Ordering::Relaxed),
        s.pulls.load(Ordering::Relaxed),
        s.pull_errors.load(Ordering::Relaxed),
        s.blobs_verified.load(Ordering::Relaxed),
        s.deletes.load(Ordering::Relaxed),
        s.gcs.load(Ordering::Relaxed),
    );
    assert!(s.pushes.load(Ordering::Relaxed) > 0, "no push got through");
}

/// Every acknowledged image that was not deleted pulls whole, from the
/// registry by tag and from the edge by digest; nothing the workers saw broke
/// a rule. Returns those images.
fn every_acknowledged_image_not_deleted_pulls_whole_from_both(
    world: &World,
    seed: u64,
) -> Vec<Pushed> {
    let ledger = std::mem::take(&mut *world.ledger.lock().unwrap_or_else(|p| p.into_inner()));
    let kept: Vec<Pushed> = ledger
        .acked
        .iter()
        .filter(|p| !ledger.deleting.contains(&(p.repo.clone(), p.tag.clone())))
        .cloned()
        .collect();
    let mut lost = Vec::new();
    for p in &kept {
        for base in [&world.registry_url, &world.edge_url] {
            let by_tag = format!("{base}/v2/{}/manifests/{}", p.repo, p.tag);
            let by_digest = format!("{base}/v2/{}/manifests/{}", p.repo, p.digest);
            let url = if base == &world.registry_url {
                by_tag
            } else {
                by_digest
            };
            let req = |u: &str, d: &str, m: bool| -> Result<bool, String> {
                if base == &world.registry_url {
                    let mut rb = world.admin(world.http.get(u));
                    if m {
                        rb = rb.header("Accept", "application/vnd.oci.image.manifest.v1+json");
                    }
                    let res = rb.send().map_err(|e| e.to_string())?;
                    if res.status().as_u16() != 200 {
                        return Ok(false);
                    }
                    let body = res.bytes().map_err(|e| e.to_string())?;
                    if digest_of(&body) != d {
                        return Err(format!("{u}: wrong bytes"));
                    }
                    Ok(true)
                } else {
                    fetch_verified(world, u, d, m)
                }
            };
            match req(&url, &p.digest, true) {
                Ok(true) => {}
                Ok(false) => lost.push(format!("{url} does not answer")),
                Err(e) => lost.push(e),
            }
            for (d, _) in &p.blobs {
                let u = format!("{base}/v2/{}/blobs/{d}", p.repo);
                match req(&u, d, false) {
                    Ok(true) => {}
                    Ok(false) => lost.push(format!("{u} does not answer")),
                    Err(e) => lost.push(e),
                }
            }
        }
    }
    assert!(
        ledger.violations.is_empty(),
        "seed {seed}: {:#?}",
        ledger.violations
    );
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged images lost: {lost:#?}"
    );
    kept
}

/// After the upload TTL and a GC: no upload left, and the store holds exactly
/// the blobs of the manifests still tagged.
fn after_the_upload_ttl_and_gc_the_store_holds_exactly_the_tagged_blobs(
    world: &World,
    seed: u64,
    data: &Path,
    kept: &[Pushed],
) {
    std::thread::sleep(UPLOAD_TTL + Duration::from_secs(1));
    let gc = |what: &str| {
        let res = world
            .admin(world.http.post(format!("{}/api/v1/gc", world.registry_url)))
            .send()
            .expect("GC");
        let v: Value = res.json().unwrap_or(Value::Null);
        println!("soak: {what} GC: {v}");
    };
    gc("first final");
    // A second run after the grace window sweeps what the first unlinked.
    std::thread::sleep(Duration::from_secs(3));
    gc("second final");
    let uploads = files_under(&data.join("uploads"));
    assert!(
        uploads.is_empty(),
        "uploads left after the TTL: {uploads:?}"
    );
    let on_disk: BTreeSet<String> = files_under(&data.join("blobs"))
        .iter()
        .filter_map(|p| {
            p.file_name()
                .map(|f| format!("sha256:{}", f.to_string_lossy()))
        })
        .collect();
    let mut expected = BTreeMap::new();
    for p in kept {
        for (d, _) in &p.blobs {
            expected.insert(d.clone(), p.tag.clone());
        }
    }
    let expected: BTreeSet<String> = expected.into_keys().collect();
    let missing: Vec<_> = expected.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "blobs of tagged images gone: {missing:?}"
    );
    // Tags deleted at the very end may still hold their blobs only through other
    // tags, so compare against everything any tag in the registry still reaches.
    let reachable = reachable_blobs(world);
    let unrecorded: Vec<_> = on_disk.difference(&reachable).collect();
    assert!(
        unrecorded.is_empty(),
        "seed {seed}: blobs no tagged manifest references are left: {unrecorded:?}"
    );
}

/// Every blob a tagged manifest of the registry references.
fn reachable_blobs(world: &World) -> BTreeSet<String> {
    let get = |path: &str| -> Value {
        world
            .admin(world.http.get(format!("{}{path}", world.registry_url)))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    };
    let mut out = BTreeSet::new();
    let catalog = get("/v2/_catalog?n=1000");
    for repo in catalog["repositories"].as_array().into_iter().flatten() {
        let repo = repo.as_str().unwrap_or_default();
        let tags = get(&format!("/v2/{repo}/tags/list?n=10000"));
        for tag in tags["tags"].as_array().into_iter().flatten() {
            let m = get(&format!(
                "/v2/{repo}/manifests/{}",
                tag.as_str().unwrap_or_default()
            ));
            for d in
                std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten())
            {
                if let Some(d) = d["digest"].as_str() {
                    out.insert(d.to_string());
                }
            }
        }
    }
    out
}
