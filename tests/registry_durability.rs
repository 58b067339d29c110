//! What survives a crash, a shutdown and a garbage collection, against the
//! built `berth` binary: kill -9 after acknowledged chunks (the upload resumes
//! from its last acknowledged offset), acknowledged blobs and manifests after
//! kill -9, SIGTERM with uploads in flight, and GC (online, offline, dry run,
//! grace window, and concurrent with pushes).
//!
//! No assertion here depends on timing: waits poll for a state with a
//! generous deadline and fail with a message if it never comes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::berth_bin;
use berth_testkit::fixtures::digest_of;
use berth_testkit::fixtures::media_types::*;
use berth_testkit::manifest::*;
use berth_testkit::proc::files_under;
use berth_testkit::wait_until;
use common::*;
use reqwest::Method;

/// How long a state the test waits for may take to arrive.
const LIMIT: Duration = Duration::from_secs(60);

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Starts a PATCH of `total` bytes on a raw connection, sends `sent` of them
/// and keeps the connection open; returns the stream (dropping it aborts).
fn partial_request(port: u16, head: &str, sent: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(sent).expect("write partial body");
    s.flush().expect("flush");
    s
}

fn upload_id(location: &str) -> String {
    location.rsplit('/').next().expect("upload id").to_string()
}

/// The spool file of the upload at `location`.
fn spool_file(r: &Reg, location: &str) -> std::path::PathBuf {
    r.reg
        .data_dir
        .join("uploads")
        .join(upload_id(location))
        .join("data")
}

/// The head of a raw `PATCH` of bytes `from..=to` to `location`, as admin;
/// `extra` is more header lines, each ending in CRLF.
fn patch_head(location: &str, from: usize, to: usize, extra: &str) -> String {
    format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\
         Content-Range: {from}-{to}\r\nContent-Length: {}\r\n{extra}\r\n",
        basic_admin(),
        to - from + 1
    )
}

#[test]
fn upload_resumes_after_kill9_from_last_acknowledged_offset() {
    let mut r = Reg::start();
    let repo = "pub/resume";
    let content = bytes(1, 7 << 20);
    let digest = digest_of(&content);
    let location = r.start_upload(repo);
    let data_file = spool_file(&r, &location);

    // Two acknowledged chunks.
    assert_eq!(r.patch(&location, 0, &content[..1 << 20]).status(), 202);
    let res = r.patch(&location, 1 << 20, &content[1 << 20..2 << 20]);
    assert_eq!(res.status(), 202);
    assert_eq!(header(&res, "range"), format!("0-{}", (2 << 20) - 1));

    // A third chunk in flight, never acknowledged: wait until its bytes hit the
    // spool file, then crash.
    let head = patch_head(
        &location,
        2 << 20,
        (5 << 20) - 1,
        "Content-Type: application/octet-stream\r\n",
    );
    let conn = partial_request(r.port(), &head, &content[2 << 20..(4 << 20) + 100]);
    wait_until("the unacknowledged chunk reaching the spool", LIMIT, || {
        file_len(&data_file) > 2 << 20
    });
    r.reg.server.kill9();
    drop(conn);
    r.reg.server.start_again();

    // The session is back, at the last acknowledged offset.
    let res = r.get(&location);
    assert_eq!(res.status(), 204, "{}", describe(res));
    assert_eq!(header(&res, "range"), format!("0-{}", (2 << 20) - 1));
    // A chunk from the wrong offset is still refused with the right Range.
    let res = r.patch(&location, 4 << 20, &content[4 << 20..5 << 20]);
    assert_eq!(header(&res, "range"), format!("0-{}", (2 << 20) - 1));
    expect_error(res, 416, "BLOB_UPLOAD_INVALID");

    // Resume from there and complete: the digest covers exactly the right bytes.
    let res = r.patch(&location, 2 << 20, &content[2 << 20..6 << 20]);
    assert_eq!(res.status(), 202);
    let res = r
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .header("Content-Range", format!("{}-{}", 6 << 20, (7 << 20) - 1))
        .body(content[6 << 20..].to_vec())
        .send()
        .expect("PUT");
    assert_eq!(res.status(), 201, "{}", describe(res));
    let got = r.get(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(digest_of(&got.bytes().expect("blob")), digest);
    assert!(r.upload_entries().is_empty(), "{:?}", r.upload_entries());
}

#[test]
fn a_chunk_cut_off_by_the_client_leaves_the_upload_at_its_acknowledged_offset() {
    let r = Reg::start();
    let repo = "pub/cutoff";
    let content = bytes(5, 6 << 20);
    let digest = digest_of(&content);
    let location = r.start_upload(repo);
    let data_file = spool_file(&r, &location);
    assert_eq!(r.patch(&location, 0, &content[..1 << 20]).status(), 202);

    for round in 0..2 {
        // A 4 MiB chunk of which the client sends a bit over 2 MiB, then
        // vanishes after the server has written part of it.
        let head = patch_head(&location, 1 << 20, (5 << 20) - 1, "");
        let conn = partial_request(r.port(), &head, &content[1 << 20..(3 << 20) + 11]);
        wait_until("part of the chunk reaching the spool", LIMIT, || {
            file_len(&data_file) >= 2 << 20
        });
        drop(conn);

        let res = r.get(&location);
        assert_eq!(res.status(), 204, "round {round}: {}", describe(res));
        assert_eq!(
            header(&res, "range"),
            format!("0-{}", (1 << 20) - 1),
            "round {round}: the cut chunk is not part of the upload"
        );
    }
    let res = r.patch(&location, 1 << 20, &content[1 << 20..]);
    assert_eq!(res.status(), 202, "{}", describe(res));
    let res = r.finish(&location, &digest, b"");
    assert_eq!(res.status(), 201, "{}", describe(res));
    let got = r.get(&format!("/v2/{repo}/blobs/{digest}"));
    let got = got.bytes().expect("blob");
    assert_eq!(got.len(), content.len());
    assert_eq!(digest_of(&got), digest);
}

#[test]
fn acknowledged_blobs_and_manifests_survive_kill9() {
    let mut r = Reg::start();
    let repo = "pub/durable";
    let layers: Vec<Vec<u8>> = (0..3).map(|i| bytes(10 + i, 300_000)).collect();
    let layer_refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let (manifest, digest) = r.push_image(repo, "v1", &layer_refs);
    // One more blob through a chunked upload, acknowledged by its PUT.
    let extra = bytes(20, 50_000);
    let location = r.start_upload(repo);
    assert_eq!(r.patch(&location, 0, &extra).status(), 202);
    assert_eq!(r.finish(&location, &digest_of(&extra), b"").status(), 201);
    // An index and a referrer.
    let index = index_of(&[&manifest]);
    assert_eq!(
        r.put_manifest(repo, "list", OCI_INDEX, &index).status(),
        201
    );
    r.push_blob(repo, b"{}");
    r.push_blob(repo, b"note");
    let note = artifact_manifest(
        "application/vnd.example.note",
        &manifest,
        OCI_MANIFEST,
        b"note",
        "n",
    );
    assert_eq!(
        r.put_manifest(repo, "note", OCI_MANIFEST, &note).status(),
        201
    );

    r.reg.server.kill9();
    r.reg.server.start_again();

    let res = r.get(&format!("/v2/{repo}/manifests/v1"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "docker-content-digest"), digest);
    assert_eq!(res.bytes().expect("manifest").as_ref(), manifest.as_slice());
    for l in layers.iter().chain(std::iter::once(&extra)) {
        let res = r.get(&format!("/v2/{repo}/blobs/{}", digest_of(l)));
        assert_eq!(res.status(), 200);
        assert_eq!(res.bytes().expect("blob").as_ref(), l.as_slice());
    }
    let res = r.get(&format!("/v2/{repo}/manifests/list"));
    assert_eq!(res.bytes().expect("index").as_ref(), index.as_slice());
    let v: serde_json::Value = r
        .get(&format!("/v2/{repo}/tags/list"))
        .json()
        .expect("tags");
    assert_eq!(v["tags"], serde_json::json!(["list", "note", "v1"]));
    let v: serde_json::Value = r
        .get(&format!("/v2/{repo}/referrers/{digest}"))
        .json()
        .expect("referrers");
    assert_eq!(v["manifests"][0]["digest"], digest_of(&note));
    // Accounts and projects survived too: the admin could log in, and pushes work.
    r.push_image(repo, "v2", &[&bytes(30, 100)]);
}

/// A kill -9 once lost an acknowledged session during the final PUT of a
/// chunked upload while its blob lay in the store unrecorded (1 run in 40).
/// Here the kill lands at a different moment of that PUT each round; after
/// each restart the blob must be recorded or the session still there to
/// finish. (The exact window is reproduced deterministically by the service
/// test `a_crash_between_placing_and_recording_leaves_the_blob_recorded`.)
#[test]
fn kill9_during_the_final_put_leaves_the_blob_recorded_or_the_session_resumable() {
    let mut r = Reg::start();
    let repo = "pub/finalput";
    // How long a final PUT takes here, to spread the kills over it.
    let content = bytes(699, 3 << 20);
    let location = r.start_upload(repo);
    assert_eq!(r.patch(&location, 0, &content[..2 << 20]).status(), 202);
    let started = Instant::now();
    let res = r
        .req(
            Method::PUT,
            &format!("{location}?digest={}", digest_of(&content)),
        )
        .header(
            "Content-Range",
            format!("{}-{}", 2 << 20, content.len() - 1),
        )
        .body(content[2 << 20..].to_vec())
        .send()
        .expect("PUT");
    assert_eq!(res.status(), 201, "{}", describe(res));
    // The window that matters is where a PUT ends, so the kills close in on
    // the moment that separates "resumed" from "completed" (bisection,
    // widened again once it is narrower than a millisecond).
    let (mut early, mut late) = (Duration::ZERO, started.elapsed() * 2);
    let (mut recorded, mut resumed) = (0, 0);
    for round in 0..16u32 {
        if late - early < Duration::from_millis(1) {
            early = early.saturating_sub(Duration::from_millis(5));
            late += Duration::from_millis(5);
        }
        let delay = (early + late) / 2;
        let content = bytes(700 + u64::from(round), 3 << 20);
        let digest = digest_of(&content);
        let ack = 2usize << 20;
        let location = r.start_upload(repo);
        assert_eq!(r.patch(&location, 0, &content[..ack]).status(), 202);
        let head = format!(
            "PUT {location}?digest={digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\
             Content-Range: {ack}-{}\r\nContent-Length: {}\r\n\r\n",
            basic_admin(),
            content.len() - 1,
            content.len() - ack
        );
        let conn = partial_request(r.port(), &head, &content[ack..]);
        std::thread::sleep(delay);
        r.reg.server.kill9();
        drop(conn);
        r.reg.server.start_again();

        let blob = format!("/v2/{repo}/blobs/{digest}");
        let session = r.get(&location);
        match (r.head(&blob).status().as_u16(), session.status().as_u16()) {
            (200, _) => {
                recorded += 1;
                late = delay;
            }
            (_, 204) => {
                // Finish it from where it stands, as a client would.
                let from: usize = header(&session, "range")
                    .strip_prefix("0-")
                    .and_then(|e| e.parse::<usize>().ok())
                    .map_or(0, |e| e + 1);
                assert_eq!(
                    from, ack,
                    "round {round}: resumes at the acknowledged offset"
                );
                let res = r
                    .req(Method::PUT, &format!("{location}?digest={digest}"))
                    .header("Content-Range", format!("{from}-{}", content.len() - 1))
                    .body(content[from..].to_vec())
                    .send()
                    .expect("PUT");
                assert_eq!(res.status(), 201, "round {round}: {}", describe(res));
                resumed += 1;
                early = delay;
            }
            (b, s) => panic!(
                "round {round}: the upload is lost: blob {b}, session {s}\n{}",
                r.reg.server.log_tail(40)
            ),
        }
        let got = r.get(&blob).bytes().expect("blob");
        assert_eq!(digest_of(&got), digest, "round {round}");
        assert!(
            r.upload_entries().is_empty(),
            "round {round}: {:?}",
            r.upload_entries()
        );
    }
    eprintln!(
        "{recorded} PUTs completed before the kill, {resumed} resumed after it; \
         the last kills came {early:?}..{late:?} after the PUT was sent"
    );
}

#[test]
fn sigterm_with_uploads_in_flight_exits_cleanly_and_keeps_only_acknowledged_data() {
    let mut r = Reg::start_with(&[("BERTH_SERVER_SHUTDOWN_GRACE", "1s")]);
    let repo = "pub/term";
    let content = bytes(40, 5 << 20);
    let location = r.start_upload(repo);
    assert_eq!(r.patch(&location, 0, &content[..1 << 20]).status(), 202);
    let data_file = spool_file(&r, &location);
    let blobs_before = r.blob_files();

    // A chunk and a monolithic upload, both cut short by the shutdown.
    let chunk_head = patch_head(&location, 1 << 20, (5 << 20) - 1, "");
    let chunk_conn = partial_request(r.port(), &chunk_head, &content[1 << 20..(3 << 20) + 7]);
    let mono = bytes(41, 4 << 20);
    let mono_digest = digest_of(&mono);
    let mono_head = format!(
        "POST /v2/{repo}/blobs/uploads/?digest={mono_digest} HTTP/1.1\r\nHost: x\r\n\
         Authorization: Basic {}\r\nContent-Length: {}\r\n\r\n",
        basic_admin(),
        mono.len()
    );
    let mono_conn = partial_request(r.port(), &mono_head, &mono[..(2 << 20) + 3]);
    let session_dir = data_file.parent().expect("session dir").to_path_buf();
    wait_until("both uploads writing to the spool", LIMIT, || {
        file_len(&data_file) > 1 << 20
            && r.upload_entries()
                .iter()
                .any(|e| *e != session_dir && file_len(&e.join("data")) > 0)
    });

    let status = r.reg.server.terminate();
    assert!(status.success(), "berth exited with {status} after SIGTERM");
    drop((chunk_conn, mono_conn));

    // Nothing half-written entered the store, and the cut monolithic upload
    // left nothing behind; the resumable session is still there.
    assert_eq!(r.blob_files(), blobs_before);
    assert_eq!(r.upload_entries(), vec![session_dir]);

    r.reg.server.start_again();
    let res = r.get(&location);
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "range"), format!("0-{}", (1 << 20) - 1));
    expect_error(
        r.get(&format!("/v2/{repo}/blobs/{mono_digest}")),
        404,
        "BLOB_UNKNOWN",
    );
    assert_eq!(
        r.patch(&location, 1 << 20, &content[1 << 20..]).status(),
        202
    );
    assert_eq!(r.finish(&location, &digest_of(&content), b"").status(), 201);
    assert!(r.upload_entries().is_empty());
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_acknowledges_it() {
    use std::io::{Read, Write};
    let mut r = Reg::start();
    let repo = "pub/drain";
    let content = bytes(42, 3 << 20);
    let location = r.start_upload(repo);
    let head = patch_head(&location, 0, content.len() - 1, "Connection: close\r\n");
    let mut conn = partial_request(r.port(), &head, &content[..1 << 20]);
    // The request is in flight once its first MiB is in the spool.
    let spool = spool_file(&r, &location);
    wait_until("the first part of the chunk in the spool", LIMIT, || {
        file_len(&spool) >= 1 << 20
    });

    // SIGTERM, then wait until the listener is gone: shutdown has begun.
    let pid = r.reg.server.pid().expect("running");
    let sent = std::process::Command::new("kill")
        .args(["-s", "TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    wait_until("the listener to close", LIMIT, || {
        std::net::TcpStream::connect(("127.0.0.1", r.port())).is_err()
    });

    // The request already in flight is still served to the end.
    conn.write_all(&content[1 << 20..])
        .expect("rest of the chunk");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("range: 0-{}", content.len() - 1)),
        "{answer}"
    );
    let status = wait_until("berth to exit", LIMIT, || r.reg.server.try_wait());
    assert!(status.success(), "berth exited with {status}");

    // What was acknowledged is there after a restart.
    r.reg.server.start_again();
    let res = r.get(&location);
    assert_eq!(header(&res, "range"), format!("0-{}", content.len() - 1));
    assert_eq!(r.finish(&location, &digest_of(&content), b"").status(), 201);
}

// ---------------------------------------------------------------- GC

fn gc(r: &Reg, dry_run: bool) -> serde_json::Value {
    let path = if dry_run {
        "/api/v1/gc?dry_run=true"
    } else {
        "/api/v1/gc"
    };
    let res = r.req(Method::POST, path).send().expect("POST gc");
    assert_eq!(res.status(), 200, "gc: {}", describe(res));
    res.json().expect("gc report")
}

/// Two images sharing a layer; returns (a, b) as (manifest, digest, unique blobs).
struct Pushed {
    manifest: Vec<u8>,
    digest: String,
    unique: Vec<String>,
}

fn two_images(r: &Reg, repo: &str, shared: &[u8]) -> (Pushed, Pushed) {
    let mut out = Vec::new();
    for (i, tag) in ["a", "b"].iter().enumerate() {
        let own = bytes(50 + i as u64, 100_000);
        let (manifest, digest) = r.push_image(repo, tag, &[shared, &own]);
        out.push(Pushed {
            manifest,
            digest,
            unique: vec![digest_of(&own), digest_of(&config_for(repo, tag))],
        });
    }
    let b = out.pop().expect("b");
    let a = out.pop().expect("a");
    (a, b)
}

#[test]
fn gc_collects_what_a_deleted_tag_leaves_behind() {
    let r = Reg::start_with(&[("BERTH_GC_GRACE", "0s")]);
    let repo = "pub/gc";
    let shared = bytes(60, 200_000);
    let (a, b) = two_images(&r, repo, &shared);
    // An untagged referrer of b goes with b; a tagged one stays.
    r.push_blob(repo, b"{}");
    r.push_blob(repo, b"sig-b");
    let sig = artifact_manifest(
        "application/vnd.example.sig",
        &b.manifest,
        OCI_MANIFEST,
        b"sig-b",
        "s",
    );
    assert_eq!(
        r.put_manifest(repo, &digest_of(&sig), OCI_MANIFEST, &sig)
            .status(),
        201
    );
    let files_before = r.blob_files();

    assert_eq!(r.delete(&format!("/v2/{repo}/manifests/b")).status(), 202);

    // Dry run: reports, deletes nothing.
    let report = gc(&r, true);
    // b's layer and config, the signature's blob and its empty config `{}`.
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["manifests_deleted"], 2, "{report}");
    assert_eq!(report["blobs_deleted"], 4, "{report}");
    assert_eq!(r.blob_files(), files_before);
    assert_eq!(
        r.get(&format!("/v2/{repo}/manifests/{}", b.digest))
            .status(),
        200
    );

    let report = gc(&r, false);
    assert_eq!(report["manifests_deleted"], 2, "{report}");
    assert_eq!(report["blobs_deleted"], 4, "{report}");
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/{}", b.digest)),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/{}", digest_of(&sig))),
        404,
        "MANIFEST_UNKNOWN",
    );
    for d in b
        .unique
        .iter()
        .chain([&digest_of(b"sig-b"), &digest_of(b"{}")])
    {
        expect_error(r.get(&format!("/v2/{repo}/blobs/{d}")), 404, "BLOB_UNKNOWN");
        assert!(!r.has_blob_file(d), "{d} still on disk");
    }
    // a is whole: manifest, shared layer, own blobs.
    assert_eq!(r.get(&format!("/v2/{repo}/manifests/a")).status(), 200);
    assert!(r.has_blob_file(&digest_of(&shared)));
    for d in a.unique.iter().chain(std::iter::once(&digest_of(&shared))) {
        assert_eq!(
            r.head(&format!("/v2/{repo}/blobs/{d}")).status(),
            200,
            "{d}"
        );
    }
    assert_eq!(
        r.get(&format!("/v2/{repo}/manifests/{}", a.digest))
            .status(),
        200
    );
    // A second run finds nothing more.
    let report = gc(&r, false);
    assert_eq!(report["manifests_deleted"], 0, "{report}");
    assert_eq!(report["blobs_deleted"], 0, "{report}");
    // And b can be pushed again from scratch.
    let (_, again) = r.push_image(repo, "b", &[&shared, &bytes(51, 100_000)]);
    assert_eq!(again, b.digest);
}

#[test]
fn offline_gc_cli_dry_run_then_collect() {
    let mut r = Reg::start_with(&[("BERTH_GC_GRACE", "0s")]);
    let repo = "pub/offline";
    let shared = bytes(70, 50_000);
    let (a, b) = two_images(&r, repo, &shared);
    assert_eq!(r.delete(&format!("/v2/{repo}/manifests/b")).status(), 202);
    // Offline GC refuses to run on the data of a running registry.
    let busy = std::process::Command::new(berth_bin!())
        .args(["gc", "--offline", "--data-dir"])
        .arg(&r.reg.data_dir)
        .env("BERTH_GC_GRACE", "0s")
        .output()
        .expect("running berth gc");
    assert!(
        !busy.status.success(),
        "offline GC ran beside a live registry"
    );
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );

    let status = r.reg.server.terminate();
    assert!(status.success());
    let files_before = files_under(&r.reg.data_dir.join("blobs"));

    let run = |extra: &[&str]| {
        let out = std::process::Command::new(berth_bin!())
            .arg("gc")
            .arg("--offline")
            .args(extra)
            .arg("--data-dir")
            .arg(&r.reg.data_dir)
            .env("BERTH_GC_GRACE", "0s")
            .output()
            .expect("running berth gc");
        assert!(
            out.status.success(),
            "berth gc failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("gc report is not JSON ({e}): {text}"))
    };
    let report = run(&["--dry-run"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["manifests_deleted"], 1, "{report}");
    assert_eq!(report["blobs_deleted"], 2, "{report}");
    assert_eq!(files_under(&r.reg.data_dir.join("blobs")), files_before);

    let report = run(&[]);
    assert_eq!(report["manifests_deleted"], 1, "{report}");
    assert_eq!(report["blobs_deleted"], 2, "{report}");
    for d in &b.unique {
        assert!(!r.has_blob_file(d), "{d} still on disk");
    }

    r.reg.server.start_again();
    expect_error(
        r.get(&format!("/v2/{repo}/manifests/{}", b.digest)),
        404,
        "MANIFEST_UNKNOWN",
    );
    let res = r.get(&format!("/v2/{repo}/manifests/a"));
    assert_eq!(header(&res, "docker-content-digest"), a.digest);
    for d in a.unique.iter().chain(std::iter::once(&digest_of(&shared))) {
        assert_eq!(
            r.head(&format!("/v2/{repo}/blobs/{d}")).status(),
            200,
            "{d}"
        );
    }
}

#[test]
fn gc_grace_window_protects_uploaded_but_unreferenced_blobs() {
    // The default grace window (1h).
    let r = Reg::start();
    let repo = "pub/grace";
    let layer = bytes(80, 120_000);
    let config = config_for(repo, "late");
    let ldigest = r.push_blob(repo, &layer);
    r.push_blob(repo, &config);
    // Something collectable but young: an untagged manifest.
    let (_, old) = r.push_image(repo, "gone", &[&bytes(81, 1000)]);
    assert_eq!(
        r.delete(&format!("/v2/{repo}/manifests/gone")).status(),
        202
    );

    // Only admins may collect.
    r.reg.admin().create_user("dev", "dev-password-1");
    let res = r
        .http
        .post(r.url("/api/v1/gc"))
        .basic_auth("dev", Some("dev-password-1"))
        .send()
        .expect("POST gc");
    assert_eq!(res.status(), 403, "{}", describe(res));
    let report = gc(&r, false);
    assert_eq!(report["blobs_deleted"], 0, "{report}");
    assert_eq!(report["manifests_deleted"], 0, "{report}");
    assert!(r.has_blob_file(&ldigest));
    assert_eq!(r.head(&format!("/v2/{repo}/blobs/{ldigest}")).status(), 200);
    assert_eq!(r.get(&format!("/v2/{repo}/manifests/{old}")).status(), 200);

    // The manifest that references the blob comes after the GC, and succeeds.
    let manifest = image_manifest(&config, &[&layer]);
    let res = r.put_manifest(repo, "late", OCI_MANIFEST, &manifest);
    assert_eq!(res.status(), 201, "{}", describe(res));
    let res = r.get(&format!("/v2/{repo}/blobs/{ldigest}"));
    assert_eq!(res.bytes().expect("blob").as_ref(), layer.as_slice());
}

#[test]
fn gc_running_during_pushes_never_fails_a_push() {
    let r = std::sync::Arc::new(Reg::start());
    // Two pushers, each its own repositories, sharing one layer across all.
    let pushers: Vec<_> = (0..2u64)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || push_images(&r, t, 12))
        })
        .collect();
    let mut runs = 0;
    while pushers.iter().any(|p| !p.is_finished()) {
        // One collection at a time: a second request meanwhile gets 409.
        let res = r.req(Method::POST, "/api/v1/gc").send().expect("POST gc");
        assert!(
            res.status() == 200 || res.status() == 409,
            "gc: {}",
            describe(res)
        );
        runs += 1;
    }
    let pushed: Vec<_> = pushers
        .into_iter()
        .flat_map(|p| p.join().expect("pushes all succeeded"))
        .collect();
    gc(&r, false);
    assert!(runs > 0);
    for (repo, tag, manifest, blobs) in pushed {
        let res = r.get(&format!("/v2/{repo}/manifests/{tag}"));
        assert_eq!(res.status(), 200, "{repo}:{tag}");
        assert_eq!(res.bytes().expect("manifest").as_ref(), manifest.as_slice());
        for b in blobs {
            let res = r.get(&format!("/v2/{repo}/blobs/{}", digest_of(&b)));
            assert_eq!(res.status(), 200, "{repo}:{tag} blob");
            assert_eq!(res.bytes().expect("blob").as_ref(), b.as_slice());
        }
    }
}

/// Pushes `images` images (config, a shared layer, an own layer) mixing
/// monolithic, chunked and mounted uploads; every third is untagged again.
/// Returns the tagged ones: (repo, tag, manifest, blobs).
#[allow(clippy::type_complexity)]
fn push_images(r: &Reg, thread: u64, images: u64) -> Vec<(String, String, Vec<u8>, Vec<Vec<u8>>)> {
    let shared = bytes(90, 64_000);
    let mut pushed = Vec::new();
    for i in 0..images {
        let repo = format!("pub/race{thread}-{}", i % 3);
        let own = bytes(1000 + 100 * thread + i, 80_000);
        let tag = format!("t{i}");
        let config = config_for(&repo, &tag);
        r.push_blob(&repo, &config);
        let location = r.start_upload(&repo);
        assert_eq!(r.patch(&location, 0, &own[..40_000]).status(), 202);
        assert_eq!(r.patch(&location, 40_000, &own[40_000..]).status(), 202);
        let res = r.finish(&location, &digest_of(&own), b"");
        assert_eq!(res.status(), 201, "{repo}:{tag}: {}", describe(res));
        let res = r
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?mount={}", digest_of(&shared)),
            )
            .send()
            .expect("mount");
        if res.status() != 201 {
            r.push_blob(&repo, &shared);
        }
        let manifest = image_manifest(&config, &[&shared, &own]);
        let res = r.put_manifest(&repo, &tag, OCI_MANIFEST, &manifest);
        assert_eq!(res.status(), 201, "{repo}:{tag}: {}", describe(res));
        if i % 3 == 2 {
            assert_eq!(
                r.delete(&format!("/v2/{repo}/manifests/{tag}")).status(),
                202
            );
        } else {
            pushed.push((repo, tag, manifest, vec![config, shared.clone(), own]));
        }
    }
    pushed
}

#[test]
fn gc_with_zero_grace_does_not_touch_uploads_in_progress() {
    let r = Reg::start_with(&[("BERTH_GC_GRACE", "0s")]);
    let repo = "pub/inflight";
    let content = bytes(95, 300_000);
    let location = r.start_upload(repo);
    assert_eq!(r.patch(&location, 0, &content[..100_000]).status(), 202);
    gc(&r, false);
    let res = r.get(&location);
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "range"), "0-99999");
    assert_eq!(
        r.patch(&location, 100_000, &content[100_000..]).status(),
        202
    );
    assert_eq!(r.finish(&location, &digest_of(&content), b"").status(), 201);
    assert!(r.upload_entries().is_empty());
}

#[test]
fn gc_with_zero_grace_never_leaves_a_record_without_its_bytes() {
    // With no grace window an acknowledged but unreferenced blob may be
    // collected at any moment; what must never happen is that the registry
    // keeps saying it has a blob whose bytes GC already deleted.
    let r = std::sync::Arc::new(Reg::start_with(&[("BERTH_GC_GRACE", "0s")]));
    let pushers: Vec<_> = (0..2u64)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                (0..150u64)
                    .map(|i| {
                        let content = bytes(5000 + 1000 * t + i, 2000);
                        r.push_blob(&format!("pub/zero{t}"), &content);
                        (t, content)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    while pushers.iter().any(|p| !p.is_finished()) {
        gc(&r, false);
    }
    let pushed: Vec<(u64, Vec<u8>)> = pushers
        .into_iter()
        .flat_map(|p| p.join().expect("pushes"))
        .collect();
    let mut collected = 0;
    for (t, content) in pushed {
        let path = format!("/v2/pub/zero{t}/blobs/{}", digest_of(&content));
        let head = r.head(&path).status().as_u16();
        let res = r.get(&path);
        let status = res.status().as_u16();
        assert_eq!(head, status, "HEAD and GET disagree on {path}");
        match status {
            200 => {
                let body = res.bytes();
                assert!(
                    body.as_ref()
                        .is_ok_and(|b| b.as_ref() == content.as_slice()),
                    "{path}: listed but its bytes are gone"
                );
            }
            404 => collected += 1,
            other => panic!("{path}: {other} {}", describe(res)),
        }
    }
    eprintln!("{collected} of 300 blobs collected while pushing");
}
