//! GC at scale: mark and sweep of a store with 1,000,000 blob records and
//! 100,000 manifests while pushes run, reporting the collection's wall time,
//! the peak resident memory of the process that ran it, and the longest a
//! push waited. Targets: under 60 s, under 200 MB, no push over 100 ms.
//!
//! ```sh
//! cargo bench -p berth-registry --bench gc_scale                                    # the full size
//! cargo bench -p berth-registry --bench gc_scale -- --blobs 200000 --manifests 20000 # a fifth
//! ```
//!
//! The metadata is written straight into the redb file in large
//! transactions (the tables below mirror `registry/src/meta/redb/mod.rs`;
//! redb refuses to open a table whose types differ, so a drift fails loudly),
//! then `berth_registry::gc::run` collects it in a fresh process (so that
//! the peak memory is the collection's alone) while a task pushes images
//! through the `MetaStore` (two blobs and a tagged manifest each, one every
//! 5 ms) and times each (a push is three write transactions, each with
//! its fsync: the second of pushes before the collection shows that cost). Every blob has an empty file in the content store,
//! dated two days back like its records. A fifth of the manifests are
//! untagged and past the grace window: those, their blobs and files go.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_registry::content::ContentStore;
use berth_registry::gc::{self, GcOptions};
use berth_registry::meta::{self, MetaStore, RedbMeta, References};
use berth_registry::oci::{manifest, media, Digest, RepoName, Tag};
use berth_registry::service::{metrics::Metrics, LocalRegistry};
use redb::{Database, TableDefinition};

const BLOBS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("blobs");
const REPO_BLOBS: TableDefinition<(&str, &str), u64> = TableDefinition::new("repo_blobs");
const BLOB_LINKS: TableDefinition<(&str, &str), ()> = TableDefinition::new("blob_links");
const MANIFESTS: TableDefinition<(&str, &str), (&str, u64)> = TableDefinition::new("manifests");
const MANIFEST_HOLDERS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("manifest_holders");
const MANIFEST_BYTES: TableDefinition<&str, &[u8]> = TableDefinition::new("manifest_bytes");
const MANIFEST_REFS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifest_refs");
const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");

struct Size {
    blobs: usize,
    manifests: usize,
    repos: usize,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(dir) = arg(&args, "--collect") {
        rt.block_on(collect(Path::new(&dir)));
        return;
    }
    let num = |n: &str, d: usize| arg(&args, n).and_then(|v| v.parse().ok()).unwrap_or(d);
    let size = Size {
        blobs: num("--blobs", 1_000_000),
        manifests: num("--manifests", 100_000),
        repos: num("--repos", 1000),
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    let t = Instant::now();
    rt.block_on(generate(&dir, &size));
    eprintln!(
        "generated {} blob records and files, {} manifests in {} repositories in {:.1} s",
        size.blobs,
        size.manifests,
        size.repos,
        t.elapsed().as_secs_f64()
    );
    // The collection runs in a fresh process: its peak memory is its own.
    let out = std::process::Command::new(&args[0])
        .args(["--collect", dir.to_str().expect("utf-8 path")])
        .output()
        .expect("running the collection");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "the collection failed");
}

fn two_days_ago() -> u64 {
    meta::now() - 2 * 86_400
}

/// Writes the metadata straight into the tables, and an empty file per blob.
async fn generate(dir: &Path, size: &Size) {
    let path = dir.join("berth.redb");
    drop(RedbMeta::open(&path).expect("create the tables"));
    let db = Database::create(&path).expect("open");
    let per_repo = size.manifests / size.repos;
    let per_manifest = size.blobs / size.manifests;
    let at = two_days_ago();
    let mtime = UNIX_EPOCH + Duration::from_secs(at);
    for r in 0..size.repos {
        let repo = format!("bench/r{r:05}");
        let tx = db.begin_write().expect("tx");
        {
            let mut blobs = tx.open_table(BLOBS).expect("t");
            let mut links = tx.open_table(REPO_BLOBS).expect("t");
            let mut index = tx.open_table(BLOB_LINKS).expect("t");
            let mut manifests = tx.open_table(MANIFESTS).expect("t");
            let mut holders = tx.open_table(MANIFEST_HOLDERS).expect("t");
            let mut bytes_t = tx.open_table(MANIFEST_BYTES).expect("t");
            let mut refs = tx.open_table(MANIFEST_REFS).expect("t");
            let mut tags = tx.open_table(TAGS).expect("t");
            tx.open_table(REPOS)
                .expect("t")
                .insert(repo.as_str(), at)
                .expect("repo");
            for m in 0..per_repo {
                let digests: Vec<Digest> = (0..per_manifest)
                    .map(|b| Digest::sha256_of(format!("{repo}/{m}/{b}").as_bytes()))
                    .collect();
                for d in &digests {
                    let key = d.to_string();
                    blobs.insert(key.as_str(), (1, at)).expect("blob");
                    links
                        .insert((repo.as_str(), key.as_str()), at)
                        .expect("link");
                    index
                        .insert((key.as_str(), repo.as_str()), ())
                        .expect("index");
                    empty_file(dir, d, mtime);
                }
                let body = image_manifest(&digests);
                let summary = manifest::decode(media::OCI_MANIFEST, &body).expect("manifest");
                let key = Digest::sha256_of(&body).to_string();
                bytes_t
                    .insert(key.as_str(), body.as_slice())
                    .expect("bytes");
                let json = serde_json::to_vec(&summary).expect("json");
                refs.insert(key.as_str(), json.as_slice()).expect("refs");
                manifests
                    .insert((repo.as_str(), key.as_str()), (media::OCI_MANIFEST, at))
                    .expect("manifest");
                holders
                    .insert((key.as_str(), repo.as_str()), ())
                    .expect("holder");
                // Four in five tagged; the rest are GC's.
                if m % 5 != 4 {
                    let tag = format!("t{m}");
                    tags.insert((repo.as_str(), tag.as_str()), key.as_str())
                        .expect("tag");
                }
            }
        }
        tx.commit().expect("commit");
    }
}

fn empty_file(dir: &Path, d: &Digest, mtime: SystemTime) {
    let hex = d.hex();
    let p: PathBuf = dir.join("blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&p).expect("dir");
    let f = std::fs::File::create(p.join(hex)).expect("file");
    f.set_modified(mtime).expect("mtime");
}

/// An OCI image manifest: the first digest its config, the rest its layers.
fn image_manifest(digests: &[Digest]) -> Vec<u8> {
    let desc = |mt: &str, d: &Digest| serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": 1});
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &digests[0]),
        "layers": digests[1..].iter().map(|d| desc("application/vnd.oci.image.layer.v1.tar+gzip", d)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&v).expect("json")
}

/// Collects `dir` while pushing; prints the figures.
async fn collect(dir: &Path) {
    let meta = RedbMeta::open(&dir.join("berth.redb")).expect("meta");
    let content = ContentStore::local(dir, &dir.join("uploads")).expect("content");
    let registry = Arc::new(LocalRegistry::embedded(
        meta,
        content,
        Arc::new(Metrics::new()),
    ));
    let store = registry.meta();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = tokio::spawn(push_until(store.clone(), done.clone()));
    // A second of pushes alone: what a push costs without GC (fsyncs).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = status_kib("VmRSS");
    let t = Instant::now();
    let sampler = tokio::spawn(sample_rss(done.clone()));
    let report = gc::run(
        &registry,
        GcOptions {
            grace: Duration::from_secs(3600),
            upload_ttl: Duration::from_secs(86_400),
            delete_untagged: true,
            dry_run: false,
        },
    )
    .await
    .expect("gc");
    let took = t.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let all = pusher.await.expect("pusher");
    let samples = sampler.await.expect("sampler");
    let mut alone: Vec<Duration> = all.iter().filter(|x| x.0 < t).map(|x| x.1).collect();
    let mut waits: Vec<Duration> = all.iter().filter(|x| x.0 >= t).map(|x| x.1).collect();
    let longest_write = all
        .iter()
        .filter(|x| x.0 >= t)
        .map(|x| x.2)
        .max()
        .unwrap_or_default();
    alone.sort();
    waits.sort();
    let pct = |p: f64| waits[((waits.len() - 1) as f64 * p) as usize];
    println!("| figure | value | target |\n|---|---|---|");
    println!("| GC wall time | {:.1} s | < 60 s |", took.as_secs_f64());
    println!(
        "| peak RSS of the collecting process | {} MB | < 200 MB |",
        status_kib("VmHWM") / 1024
    );
    println!("| RSS before the collection | {} MB | |", rss_before / 1024);
    println!(
        "| pushes during GC | {} (p50 {:?}, p99 {:?}) | |",
        waits.len(),
        pct(0.5),
        pct(0.99)
    );
    println!(
        "| pushes without GC (the second before) | {} (p50 {:?}, longest {:?}) | |",
        alone.len(),
        alone.get(alone.len() / 2).copied().unwrap_or_default(),
        alone.last().copied().unwrap_or_default()
    );
    println!(
        "| longest push during GC | {:?} | < 100 ms |",
        waits.last().copied().unwrap_or_default()
    );
    println!("| longest single metadata write of a push during GC | {longest_write:?} | |");
    let mut from = Duration::ZERO;
    for (name, took) in &report.phases {
        let to = from + *took;
        let peak = samples
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, kib)| *kib)
            .max()
            .unwrap_or(0);
        // The pushes that started in this phase: how long the longest took,
        // and its longest single write.
        let during: Vec<&(Instant, Duration, Duration)> = all
            .iter()
            .filter(|x| x.0 >= t + from && x.0 < t + to)
            .collect();
        let longest = during.iter().map(|x| x.1).max().unwrap_or_default();
        let write = during.iter().map(|x| x.2).max().unwrap_or_default();
        println!(
            "| phase: {name} | {:.1} s, RSS up to {} MB; {} pushes, longest {longest:?} (one write {write:?}) | |",
            took.as_secs_f64(),
            peak / 1024,
            during.len(),
        );
        from = to;
    }
    println!(
        "| collected | {} manifests, {} links, {} blob records and files | |",
        report.manifests_deleted, report.links_removed, report.blobs_deleted
    );
}

/// Pushes an image every 5 ms until `done`; when each push started, how
/// long it took, and the longest of its three metadata writes.
async fn push_until(
    store: Arc<dyn MetaStore>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(Instant, Duration, Duration)> {
    let repo: RepoName = "bench/pushes".parse().expect("name");
    let mut waits = Vec::new();
    let mut n = 0u64;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let t = Instant::now();
        let digests: Vec<Digest> = (0..2)
            .map(|b| Digest::sha256_of(format!("push {n} {b}").as_bytes()))
            .collect();
        let mut longest = Duration::ZERO;
        for d in &digests {
            let w = Instant::now();
            store.record_and_link(&repo, d, 1).await.expect("blob");
            longest = longest.max(w.elapsed());
        }
        let body = bytes::Bytes::from(image_manifest(&digests));
        let summary = manifest::decode(media::OCI_MANIFEST, &body).expect("manifest");
        let tag: Tag = format!("p{n}").parse().expect("tag");
        let w = Instant::now();
        store
            .put_manifest(
                &repo,
                &Digest::sha256_of(&body),
                body,
                &summary,
                &[tag],
                References::Required,
            )
            .await
            .expect("meta")
            .expect("accepted");
        longest = longest.max(w.elapsed());
        waits.push((t, t.elapsed(), longest));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    waits
}

/// The resident memory every 100 ms until `done`: (since the start, KiB).
async fn sample_rss(done: Arc<std::sync::atomic::AtomicBool>) -> Vec<(Duration, u64)> {
    let start = Instant::now();
    let mut out = Vec::new();
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        out.push((start.elapsed(), status_kib("VmRSS")));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// A `/proc/self/status` figure in KiB.
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
