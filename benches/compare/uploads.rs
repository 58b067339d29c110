//! Workloads 4 and 5, with our own client (no skopeo):
//!
//! 4. A 256 MiB blob uploaded in 8 MiB PATCH chunks (POST, PATCH x 32, PUT
//!    ?digest=), following each `Location`: seconds.
//! 5. 1,000 small blobs pushed by 16 concurrent clients: blobs/s. berth takes
//!    a monolithic `POST ?digest=` (one request per blob); distribution 2.8
//!    ignores a body on POST (it answers 202 and opens a session), so its
//!    fastest way is POST then `PUT ?digest=` with the body. berth is also
//!    measured the POST+PUT way, for an apples-to-apples row.
//!
//! berth is pushed to with a bearer token (pull,push) from `/v2/token`, as
//! clients do; distribution has no auth. Fresh content in every run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use sha2::Digest as _;

use crate::http::{Conn, Error, Req};
use crate::report::{Better, Row};
use crate::setup::{Kind, Target, PUBLIC};
use crate::{push_value, Bench, Rng, MIB};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn with_auth(req: Req, auth: &Option<String>) -> Req {
    match auth {
        Some(a) => req.header("authorization", a),
        None => req,
    }
}

fn join_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

fn expect(status: u16, reply: &crate::http::Reply, what: &str) -> Result<(), Error> {
    if reply.status.as_u16() == status {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {status}, got {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )
        .into())
    }
}

/// POST, PATCH chunk by chunk, PUT ?digest=; returns seconds.
async fn chunked_upload(
    t: &Target,
    repo: &str,
    data: Bytes,
    chunk: usize,
    digest: &str,
    auth: &Option<String>,
) -> Result<f64, Error> {
    let mut conn = Conn::new(t.addr);
    let start = Instant::now();
    let post = with_auth(
        Req::new(Method::POST, format!("/v2/{repo}/blobs/uploads/")),
        auth,
    );
    let reply = conn.call(&post).await?;
    expect(202, &reply, "POST upload")?;
    let mut location = reply.location().ok_or("no Location on POST")?;
    let mut offset = 0usize;
    while offset < data.len() {
        let end = (offset + chunk).min(data.len());
        let patch = with_auth(Req::new(Method::PATCH, location.clone()), auth)
            .header("content-type", "application/octet-stream")
            .header("content-range", &format!("{offset}-{}", end - 1))
            .body(data.slice(offset..end));
        let reply = conn.call(&patch).await?;
        expect(202, &reply, "PATCH")?;
        location = reply.location().ok_or("no Location on PATCH")?;
        offset = end;
    }
    let put = with_auth(Req::new(Method::PUT, join_digest(&location, digest)), auth);
    let reply = conn.call(&put).await?;
    expect(201, &reply, "PUT ?digest=")?;
    Ok(start.elapsed().as_secs_f64())
}

pub fn chunked(b: &mut Bench) {
    let total = b.cfg.chunked_total as usize;
    let chunk = b.cfg.chunk as usize;
    let mut row = Row::new(
        &format!(
            "4. chunked upload {} MiB ({} MiB PATCHes)",
            total as u64 / MIB,
            chunk as u64 / MIB
        ),
        "time",
        "s",
        Better::Lower,
    );
    let mut cpu_row = Row::new(&row.workload, "server CPU time", "s", Better::Lower);
    let repo = format!("{PUBLIC}/chunked");
    let mut rng = Rng::from_entropy();
    for run in 0..b.cfg.runs {
        b.progress(&format!("4. chunked upload, run {}", run + 1));
        let data = Bytes::from(rng.bytes(total));
        let digest = sha256(&data);
        for kind in b.order(run) {
            let t = b.regs.target(kind);
            let auth = t.auth_header(&repo, "pull,push");
            let cpu0 = crate::procstat::cpu_time(Some(t.pid));
            let secs =
                b.rt.block_on(chunked_upload(
                    &t,
                    &repo,
                    data.clone(),
                    chunk,
                    &digest,
                    &auth,
                ))
                .unwrap_or_else(|e| panic!("chunked upload to {}: {e}", kind.name()));
            let cpu = (crate::procstat::cpu_time(Some(t.pid)) - cpu0).as_secs_f64();
            b.progress(&format!(
                "   {}: {secs:.2} s (server CPU {cpu:.2} s)",
                kind.name()
            ));
            row.push(kind, secs);
            cpu_row.push(kind, cpu);
        }
    }
    b.rows.push(row);
    b.rows.push(cpu_row);
}

/// Pushes every blob, `clients` at a time; returns blobs/s.
async fn push_small(
    t: &Target,
    repo: &str,
    blobs: Arc<Vec<(Bytes, String)>>,
    clients: usize,
    monolithic_post: bool,
    auth: Option<String>,
) -> Result<f64, Error> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (blobs, next, auth) = (blobs.clone(), next.clone(), auth.clone());
        let addr = t.addr;
        let repo = repo.to_owned();
        tasks.spawn(async move {
            let mut conn = Conn::new(addr);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((data, digest)) = blobs.get(i) else {
                    return Ok::<(), Error>(());
                };
                if monolithic_post {
                    let post = with_auth(
                        Req::new(
                            Method::POST,
                            format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                        ),
                        &auth,
                    )
                    .header("content-type", "application/octet-stream")
                    .body(data.clone());
                    let reply = conn.call(&post).await?;
                    expect(201, &reply, "monolithic POST")?;
                } else {
                    let post = with_auth(
                        Req::new(Method::POST, format!("/v2/{repo}/blobs/uploads/")),
                        &auth,
                    );
                    let reply = conn.call(&post).await?;
                    expect(202, &reply, "POST")?;
                    let location = reply.location().ok_or("no Location on POST")?;
                    let put =
                        with_auth(Req::new(Method::PUT, join_digest(&location, digest)), &auth)
                            .header("content-type", "application/octet-stream")
                            .body(data.clone());
                    let reply = conn.call(&put).await?;
                    expect(201, &reply, "PUT ?digest=")?;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(blobs.len() as f64 / start.elapsed().as_secs_f64())
}

pub fn small_blobs(b: &mut Bench) {
    let n = b.cfg.small_blobs;
    let size = b.cfg.small_blob_size;
    let clients = b.cfg.small_clients;
    let what = format!(
        "5. {n} blobs of {} KiB, {clients} concurrent clients",
        size / 1024
    );
    let mut rows = vec![
        Row::new(&what, "blobs/s", "", Better::Higher)
            .note("berth: one POST ?digest= per blob; distribution 2.8: POST + PUT (it has no monolithic POST)"),
        Row::new(&what, "blobs/s, both POST + PUT", "", Better::Higher)
            .note("the same two-request protocol on both"),
    ];
    let repo = format!("{PUBLIC}/small");
    let mut rng = Rng::from_entropy();
    for run in 0..b.cfg.runs {
        b.progress(&format!("5. small blobs, run {}", run + 1));
        for kind in b.order(run) {
            let t = b.regs.target(kind);
            let auth = t.auth_header(&repo, "pull,push");
            let modes: &[bool] = match kind {
                Kind::Berth => &[true, false],
                Kind::Distribution => &[false],
            };
            for &monolithic in modes {
                // Fresh blobs for every measurement: nothing is already there.
                let blobs: Vec<(Bytes, String)> = (0..n)
                    .map(|_| {
                        let data = rng.bytes(size);
                        let digest = sha256(&data);
                        (Bytes::from(data), digest)
                    })
                    .collect();
                let rate =
                    b.rt.block_on(push_small(
                        &t,
                        &repo,
                        Arc::new(blobs),
                        clients,
                        monolithic,
                        auth.clone(),
                    ))
                    .unwrap_or_else(|e| panic!("small blobs to {}: {e}", kind.name()));
                b.progress(&format!(
                    "   {} ({}): {rate:.0} blobs/s",
                    kind.name(),
                    if monolithic {
                        "POST ?digest="
                    } else {
                        "POST + PUT"
                    }
                ));
                match (kind, monolithic) {
                    (Kind::Berth, true) => push_value(&mut rows, 0, kind, rate),
                    (Kind::Berth, false) => push_value(&mut rows, 1, kind, rate),
                    (Kind::Distribution, _) => {
                        push_value(&mut rows, 0, kind, rate);
                        push_value(&mut rows, 1, kind, rate);
                    }
                }
            }
        }
    }
    b.rows.extend(rows);
}
