//! Two `berth serve` replicas as operators run them: metadata on one
//! PostgreSQL database (started by the kit), blobs and uploads in one bucket
//! of a three-node Garage cluster (replication factor 3), each replica
//! through its own Garage node, nothing shared on disk.
//!
//! - a chunked upload alternates between the replicas chunk by chunk, a
//!   cross-repository mount on one takes a blob the other received, and a
//!   manifest pushed through one is pulled through the other;
//! - GC runs on one replica in a loop while the other takes pushes: every
//!   manifest whose PUT got 201 pulls completely afterwards;
//! - one replica is killed with SIGKILL in the middle of pushes: clients
//!   retrying on the other lose nothing that was acknowledged;
//! - each replica's cache of manifests, tags and blob links never answers
//!   with what the other moved or removed (a tag moved or deleted, a
//!   manifest or a repository deleted), even after its listening connection
//!   to PostgreSQL was cut while the change was made.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_testkit::berth;
use berth_testkit::manifest::{config_for, image_manifest};
use berth_testkit::postgres::Postgres;
use berth_testkit::{berth_bin, digest_of, GarageCluster};
use common::*;
use reqwest::Method;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Replicas {
    a: Reg,
    b: Reg,
    /// Their database's URL.
    db: String,
    _garage: GarageCluster,
}

/// Replicas A and B on a fresh database and the cluster's bucket, with
/// `extra` environment for both.
fn replicas(extra: &[(&str, &str)]) -> Option<Replicas> {
    let garage = GarageCluster::start()?;
    let db = Postgres::shared().database();
    let key = "7a".repeat(32);
    let env = |node: usize| -> Vec<(String, String)> {
        let mut env = garage.berth_env(node);
        for (k, v) in [
            ("BERTH_META_BACKEND", "postgres"),
            ("BERTH_META_URL", db.as_str()),
            ("BERTH_CONTROLLER_SECRET_KEY", key.as_str()),
            ("BERTH_STORAGE_PART_SIZE", "5MiB"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            env.push((k.into(), v.into()));
        }
        env
    };
    let (ea, eb) = (env(0), env(1));
    let ea: Vec<(&str, &str)> = ea.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let eb: Vec<(&str, &str)> = eb.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = Reg::start_with(&ea);
    let b = Reg::wrap(berth::registry_with(berth_bin!(), &[], &eb));
    // A project created on A is B's too, once B has heard of it.
    berth_testkit::wait_until("project pub on B", Duration::from_secs(30), || {
        b.get("/api/v1/projects/pub").status() == 200
    });
    Some(Replicas {
        a,
        b,
        db,
        _garage: garage,
    })
}

fn bytes_of(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn uploads_mounts_and_pulls_cross_replicas() {
    let Some(r) = replicas(&[]) else { return };
    let (a, b) = (&r.a, &r.b);

    // A chunked upload begun on A, its PATCHes alternating, finished on B.
    let blob = bytes_of(7, (5 << 20) + 300_000);
    let location = a.start_upload("pub/one");
    let mut at = 0usize;
    for (i, n) in [1usize, 64 << 10, 5 << 20, 200_000, 100_000]
        .iter()
        .enumerate()
    {
        let end = (at + n).min(blob.len());
        if at == end {
            break;
        }
        let via = if i % 2 == 0 { b } else { a };
        let res = via.patch(&location, at as u64, &blob[at..end]);
        assert_eq!(res.status(), 202, "PATCH {at}..{end}: {}", describe(res));
        assert_eq!(header(&res, "range"), format!("0-{}", end - 1));
        at = end;
    }
    assert_eq!(at, blob.len());
    let digest = digest_of(&blob);
    let res = b.finish(&location, &digest, b"");
    assert_eq!(res.status(), 201, "finish on B: {}", describe(res));
    // A serves what B finished.
    let res = a.get(&format!("/v2/pub/one/blobs/{digest}"));
    assert_eq!(res.status(), 200);
    assert!(res.bytes().expect("body")[..] == blob[..]);

    // A mount on B of the blob A serves.
    let res = b
        .req(
            Method::POST,
            &format!("/v2/pub/two/blobs/uploads/?mount={digest}&from=pub/one"),
        )
        .send()
        .expect("mount");
    assert_eq!(
        res.status(),
        201,
        "mount across replicas: {}",
        describe(res)
    );

    // A manifest over it pushed through B, pulled through A by tag.
    let config = config_for("pub/two", "v1");
    let config_digest = b.push_blob("pub/two", &config);
    let manifest = image_manifest(&config, &[&blob]);
    let res = b.put_manifest("pub/two", "v1", MANIFEST, &manifest);
    assert_eq!(res.status(), 201, "{}", describe(res));
    let res = a.get("/v2/pub/two/manifests/v1");
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().expect("manifest").to_vec(), manifest);
    for d in [&digest, &config_digest] {
        assert_eq!(a.head(&format!("/v2/pub/two/blobs/{d}")).status(), 200);
    }
    a.assert_healthy_log();
    b.assert_healthy_log();
}

/// Pushes a small image `repo:tag` through `r` (blobs, then the manifest);
/// the manifest digest if the manifest PUT was acknowledged.
fn try_push(r: &Reg, repo: &str, tag: &str, seed: u8) -> Option<String> {
    let layer = bytes_of(seed, 40_000 + seed as usize);
    let config = config_for(repo, tag);
    for blob in [&layer, &config] {
        let res = r
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={}", digest_of(blob)),
            )
            .header("Content-Type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .ok()?;
        if res.status() != 201 {
            return None;
        }
    }
    let manifest = image_manifest(&config, &[&layer]);
    let res = r
        .req(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", MANIFEST)
        .body(manifest.clone())
        .send()
        .ok()?;
    (res.status() == 201).then(|| digest_of(&manifest))
}

/// Every acknowledged image pulls completely through `r` (replica `who`,
/// named in a failure, since a stale cache and lost data look alike).
fn all_pull(who: &str, r: &Reg, pushed: &[(String, String, String)]) {
    for (repo, tag, digest) in pushed {
        let res = r.get(&format!("/v2/{repo}/manifests/{tag}"));
        assert_eq!(
            res.status(),
            200,
            "replica {who}: {repo}:{tag} was acknowledged"
        );
        let body = res.bytes().expect("manifest");
        assert_eq!(&digest_of(&body), digest, "replica {who}: {repo}:{tag}");
        let m: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let blobs =
            std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten());
        for d in blobs {
            let d = d["digest"].as_str().expect("digest");
            let res = r.get(&format!("/v2/{repo}/blobs/{d}"));
            assert_eq!(
                res.status(),
                200,
                "replica {who}: {repo}:{tag} blob {d}: {}",
                describe(res)
            );
            assert_eq!(digest_of(&res.bytes().expect("blob")), d);
        }
    }
}

#[test]
fn gc_on_one_replica_while_the_other_pushes_loses_nothing_acknowledged() {
    let Some(r) = replicas(&[("BERTH_GC_GRACE", "1s")]) else {
        return;
    };
    let r = Arc::new(r);
    let stop = Arc::new(AtomicBool::new(false));
    let collections = Arc::new(Mutex::new(0u32));
    let gc = {
        let (r, stop, collections) = (r.clone(), stop.clone(), collections.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let res = r.a.req(Method::POST, "/api/v1/gc").send().expect("gc");
                // 409: a collection is running (on either replica).
                assert!(
                    res.status() == 200 || res.status() == 409,
                    "GC: {}",
                    describe(res)
                );
                if let Ok(mut n) = collections.lock() {
                    *n += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut pushed = Vec::new();
    let started = Instant::now();
    let mut i = 0u32;
    // Two minutes of pushing, and on until enough pushes and collections
    // overlapped however loaded the machine is (bounded, for a stuck one).
    let ran = |n: &Mutex<u32>| n.lock().map(|n| *n).unwrap_or(0);
    while started.elapsed() < Duration::from_secs(120)
        || ((pushed.len() <= 10 || ran(&collections) <= 3)
            && started.elapsed() < Duration::from_secs(240))
    {
        let repo = format!("pub/gc{}", i % 4);
        let tag = format!("t{i}");
        if let Some(d) = try_push(&r.b, &repo, &tag, (i % 200) as u8) {
            pushed.push((repo.clone(), tag, d));
        }
        // Garbage for the collector: a blob no manifest will reference.
        let _ = r.b.push_blob(&repo, &bytes_of(i as u8, 1000 + i as usize));
        // Untag some older images, so GC has manifests to sweep too.
        if i % 5 == 4 {
            let (repo, tag, digest) = pushed.remove(0);
            let res = r.b.delete(&format!("/v2/{repo}/manifests/{digest}"));
            assert_eq!(res.status(), 202, "delete {repo}:{tag}");
        }
        i += 1;
    }
    stop.store(true, Ordering::SeqCst);
    gc.join().expect("gc thread");
    assert!(pushed.len() > 10, "pushes went on: {}", pushed.len());
    assert!(ran(&collections) > 3, "GC ran meanwhile");
    // After a last collection past the grace window, everything
    // acknowledged and not deleted is still whole, through either replica.
    std::thread::sleep(Duration::from_secs(2));
    let res = r.a.req(Method::POST, "/api/v1/gc").send().expect("gc");
    assert_eq!(res.status(), 200, "{}", describe(res));
    all_pull("A", &r.a, &pushed);
    all_pull("B", &r.b, &pushed);
}

#[test]
fn a_replica_killed_mid_push_loses_nothing_acknowledged() {
    let Some(mut r) = replicas(&[]) else { return };
    let mut pushed = Vec::new();
    let mut i = 0u32;
    let mut killed = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        if !killed && started.elapsed() > Duration::from_secs(4) {
            r.a.reg.server.kill9();
            killed = true;
        }
        let repo = format!("pub/k{}", i % 3);
        let tag = format!("t{i}");
        // A client alternates replicas, and retries on the other one what
        // failed (as behind a load balancer that took A out).
        let first = if i.is_multiple_of(2) { &r.a } else { &r.b };
        let got =
            try_push(first, &repo, &tag, i as u8).or_else(|| try_push(&r.b, &repo, &tag, i as u8));
        let d = got.unwrap_or_else(|| panic!("{repo}:{tag} failed on B too"));
        pushed.push((repo, tag, d));
        i += 1;
    }
    assert!(killed);
    all_pull("B", &r.b, &pushed);
    // A comes back on the same database and bucket and serves all of it.
    r.a.reg.server.restart();
    all_pull("A", &r.a, &pushed);
}

/// The digest `r` answers for `repo:reference`, or the error code.
fn manifest_on(r: &Reg, repo: &str, reference: &str) -> Result<String, String> {
    let res = r
        .req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
        .header("Accept", MANIFEST)
        .send()
        .expect("GET manifest");
    if res.status() == 200 {
        return Ok(header(&res, "docker-content-digest"));
    }
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().unwrap_or_default();
    Err(format!("{status} {}", body["errors"][0]["code"]))
}

/// Pushes a one-layer image `repo:tag` through `r`; its manifest digest.
fn push_one(r: &Reg, repo: &str, tag: &str, seed: u8) -> String {
    try_push(r, repo, tag, seed).unwrap_or_else(|| panic!("push {repo}:{tag}"))
}

/// Waits until `r` answers `want` for `repo:reference`.
fn wait_for(r: &Reg, repo: &str, reference: &str, want: Result<String, String>) {
    berth_testkit::wait_until(
        &format!("{repo}:{reference} on the other replica to be {want:?}"),
        Duration::from_secs(30),
        || manifest_on(r, repo, reference) == want,
    );
}

fn unknown() -> Result<String, String> {
    Err("404 \"MANIFEST_UNKNOWN\"".into())
}

// The caches here live an hour: only the announcements through PostgreSQL
// can make these pass.
const HOUR: (&str, &str) = ("BERTH_META_CACHE_TTL", "1h");

#[test]
fn a_replica_never_serves_what_the_other_moved_or_removed() {
    let Some(r) = replicas(&[HOUR]) else { return };
    let (a, b) = (&r.a, &r.b);
    let repo = "pub/cached";

    // A tag moved on A: B, which has it cached, answers with the new one.
    let d1 = push_one(a, repo, "v1", 1);
    for _ in 0..2 {
        assert_eq!(manifest_on(b, repo, "v1"), Ok(d1.clone()));
        assert_eq!(manifest_on(b, repo, &d1), Ok(d1.clone()));
    }
    let d2 = push_one(a, repo, "v1", 2);
    wait_for(b, repo, "v1", Ok(d2.clone()));

    // A manifest deleted on A: unknown on B, by digest and by its tag.
    assert_eq!(manifest_on(b, repo, &d2), Ok(d2.clone()));
    let res = a.delete(&format!("/v2/{repo}/manifests/{d2}"));
    assert_eq!(res.status(), 202, "{}", describe(res));
    wait_for(b, repo, &d2, unknown());
    assert_eq!(manifest_on(b, repo, "v1"), unknown());
    expect_error(
        b.get(&format!("/v2/{repo}/manifests/{d2}")),
        404,
        "MANIFEST_UNKNOWN",
    );

    // A tag deleted on A.
    let d3 = push_one(a, repo, "v3", 3);
    assert_eq!(manifest_on(b, repo, "v3"), Ok(d3.clone()));
    let res = a.delete(&format!("/v2/{repo}/manifests/v3"));
    assert_eq!(res.status(), 202, "{}", describe(res));
    wait_for(b, repo, "v3", unknown());
    assert_eq!(
        manifest_on(b, repo, &d3),
        Ok(d3.clone()),
        "the manifest stays"
    );

    // The repository deleted on A: nothing of it on B.
    let d4 = push_one(a, repo, "v4", 4);
    assert_eq!(manifest_on(b, repo, "v4"), Ok(d4.clone()));
    let (status, body) =
        a.reg
            .admin()
            .call("DELETE", "/api/v1/projects/pub/repositories/cached", None);
    assert_eq!(status, 204, "{body:?}");
    wait_for(b, repo, "v4", unknown());
    assert!(manifest_on(b, repo, &d4).is_err());
    a.assert_healthy_log();
    b.assert_healthy_log();
}

#[test]
fn a_replica_whose_listener_was_cut_never_serves_what_changed_meanwhile() {
    let Some(r) = replicas(&[HOUR]) else { return };
    let (a, b) = (&r.a, &r.b);
    let pg = Postgres::shared();
    let repo = "pub/cut";
    let d1 = push_one(a, repo, "v1", 1);
    for _ in 0..2 {
        assert_eq!(manifest_on(b, repo, "v1"), Ok(d1.clone()));
    }
    let listeners = "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
         WHERE application_name = 'berth metadata listener' AND datname = current_database()";
    let before = pg.psql(&r.db, listeners);
    assert_eq!(
        before.split(',').count(),
        2,
        "one listener per replica: {before}"
    );
    // The server cuts both replicas' listening connections.
    pg.psql(
        &r.db,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({before})"),
    );
    berth_testkit::wait_until("the listeners gone", Duration::from_secs(30), || {
        pg.psql(
            &r.db,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid IN ({before})"),
        ) == "0"
    });
    // Changed while no replica listens.
    let d2 = push_one(a, repo, "v1", 2);
    // Once B listens again on a new connection, it answers with what is.
    berth_testkit::wait_until("the listeners back", Duration::from_secs(30), || {
        let now = pg.psql(&r.db, listeners);
        now.split(',')
            .filter(|p| !before.split(',').any(|b| b == *p))
            .count()
            == 2
    });
    wait_for(b, repo, "v1", Ok(d2.clone()));
    // And goes on doing so.
    for _ in 0..5 {
        assert_eq!(manifest_on(b, repo, "v1"), Ok(d2.clone()));
    }
}
