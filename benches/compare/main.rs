//! berth vs CNCF distribution 2.8, side by side: the same machine, the same
//! run, the same workloads; prints a markdown table of both figures and
//! their ratio (berth / distribution).
//!
//! ```text
//! cargo bench --bench compare                  # full run (about 10 minutes on 2 cores)
//! cargo bench --bench compare -- --quick       # small sizes, one run: checks the harness
//! cargo bench --bench compare -- --only 2,3 --runs 5
//! ```
//!
//! Workloads (see benches/README.md for what each one measures and why):
//! 1 push/pull with skopeo, 2 manifest GETs, 3 blob GETs, 4 chunked upload,
//! 5 small-blob pushes, 6 edge fan-out (berth edge vs distribution proxy
//! mode), 7 resident memory during 2, 3 and 6, 8 replication, 9 proxy-project
//! fan-out, 10 publish to a simulated fleet of 100, 1,000, 10,000 nodes (berth
//! only; `--only 10 --fleet 1000` for one size), 11 the replicated setup (two
//! replicas on PostgreSQL and Garage S3 behind a balancer, against two
//! distribution instances on S3).
//!
//! Needs `skopeo` and `docker-registry` on PATH (`.ci/run` installs them);
//! workload 2's nginx rows need `nginx` (Debian's `nginx-light`) and are left
//! out without it;
//! `.ci/run` itself never runs this (`cargo test` does not build benches).

#![forbid(unsafe_code)]

mod blobs;
mod edge;
mod fleet;
mod http;
mod idle;
mod load;
mod manifests;
mod nginx;
mod procstat;
mod proxy;
mod proxy_project;
mod publish_fleet;
mod push_pull;
mod replicate;
mod replicated;
mod report;
mod setup;
mod site_tier;
mod uploads;

use std::path::PathBuf;
use std::time::Duration;

use berth_testkit::tools::{require_tools, Skopeo};

use report::{Better, Row, Target};
use setup::{Kind, Registries};

/// splitmix64: fast, seedable, good enough for offsets and payloads.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn from_entropy() -> Rng {
        Rng(rand::random())
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

pub const MIB: u64 = 1024 * 1024;

/// Sizes and durations; `--quick` shrinks everything to check the harness.
#[derive(Clone, Debug)]
pub struct Settings {
    pub quick: bool,
    pub runs: usize,
    pub only: Option<Vec<u32>>,
    pub warmup: Duration,
    pub duration: Duration,
    pub client_threads: usize,
    pub push_layers: Vec<u64>,
    pub blob_size: u64,
    pub range_size: u64,
    pub chunked_total: u64,
    pub chunk: u64,
    pub small_blobs: usize,
    pub small_blob_size: usize,
    pub small_clients: usize,
    pub manifest_conns: usize,
    pub blob_conns: usize,
    pub edge_layers: Vec<u64>,
    pub edge_fanout: Vec<usize>,
    /// Node caches of the site tier (workload 6), behind one regional cache.
    pub site_nodes: usize,
    /// Fleet sizes of workload 10 (`--fleet 100,1000`).
    pub fleet: Vec<usize>,
    /// Extra environment for `berth serve` and `berth edge` (`--berth-env K=V`),
    /// e.g. to try `MALLOC_ARENA_MAX=2` against the same baseline.
    pub berth_env: Vec<(String, String)>,
}

impl Settings {
    fn full() -> Settings {
        Settings {
            quick: false,
            runs: 3,
            only: None,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            client_threads: 2,
            push_layers: vec![64 * MIB; 4],
            blob_size: 64 * MIB,
            range_size: MIB,
            chunked_total: 256 * MIB,
            chunk: 8 * MIB,
            small_blobs: 1000,
            small_blob_size: 4096,
            small_clients: 16,
            manifest_conns: 64,
            blob_conns: 16,
            edge_layers: vec![16 * MIB; 3],
            edge_fanout: vec![1, 8, 32],
            site_nodes: 32,
            fleet: vec![100, 1000, 10000],
            berth_env: Vec::new(),
        }
    }

    fn quick() -> Settings {
        Settings {
            quick: true,
            runs: 1,
            warmup: Duration::from_millis(300),
            duration: Duration::from_secs(1),
            push_layers: vec![4 * MIB; 4],
            blob_size: 8 * MIB,
            chunked_total: 32 * MIB,
            small_blobs: 200,
            edge_layers: vec![2 * MIB; 3],
            edge_fanout: vec![1, 8],
            site_nodes: 8,
            fleet: vec![100],
            ..Settings::full()
        }
    }

    fn from_args() -> Settings {
        let args: Vec<String> = std::env::args().skip(1).collect();
        check_args(&args);
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let quick = args.iter().any(|a| a == "--quick") || env("BERTH_BENCH_QUICK").is_some();
        let mut s = if quick {
            Settings::quick()
        } else {
            Settings::full()
        };
        let value = |flag: &str, var: &str| -> Option<String> {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1).cloned())
                .or_else(|| env(var))
        };
        if let Some(r) = value("--runs", "BERTH_BENCH_RUNS") {
            s.runs = r.parse().expect("--runs takes a number");
        }
        if let Some(o) = value("--only", "BERTH_BENCH_ONLY") {
            s.only = Some(
                o.split(',')
                    .map(|w| {
                        w.trim()
                            .parse()
                            .expect("--only takes workload numbers, e.g. 2,3")
                    })
                    .collect(),
            );
        }
        if let Some(d) = value("--duration", "BERTH_BENCH_DURATION") {
            s.duration = Duration::from_secs_f64(d.parse().expect("--duration takes seconds"));
        }
        if let Some(f) = value("--fleet", "BERTH_BENCH_FLEET") {
            s.fleet = f
                .split(',')
                .map(|w| {
                    w.trim()
                        .parse()
                        .expect("--fleet takes node counts, e.g. 100,1000")
                })
                .collect();
        }
        if let Some(t) = value("--client-threads", "BERTH_BENCH_CLIENT_THREADS") {
            s.client_threads = t.parse().expect("--client-threads takes a number");
        }
        let mut env_pairs: Vec<String> = args
            .windows(2)
            .filter(|w| w[0] == "--berth-env")
            .map(|w| w[1].clone())
            .collect();
        if let Some(e) = env("BERTH_BENCH_BERTH_ENV") {
            env_pairs.extend(e.split(',').map(str::to_owned));
        }
        for pair in env_pairs {
            let (k, v) = pair.split_once('=').expect("--berth-env takes KEY=VALUE");
            s.berth_env.push((k.to_owned(), v.to_owned()));
        }
        s
    }

    pub fn wants(&self, workload: u32) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&workload))
    }
}

/// What `--help` prints.
const USAGE: &str = "\
berth vs distribution 2.8, side by side (benches/README.md says what each workload measures)

usage: cargo bench --bench compare [-- OPTIONS]

options (each also an environment variable):
  --quick                 small sizes, one run: checks the harness       BERTH_BENCH_QUICK=1
  --runs N                runs of each workload (default 3)              BERTH_BENCH_RUNS
  --only 2,3              these workloads only (1-11)                    BERTH_BENCH_ONLY
  --duration SECONDS      length of each load run (default 5)            BERTH_BENCH_DURATION
  --fleet 100,1000        fleet sizes of workload 10                     BERTH_BENCH_FLEET
  --client-threads N      load-generator threads (default 2)             BERTH_BENCH_CLIENT_THREADS
  --berth-env KEY=VALUE   extra environment for berth (repeatable)       BERTH_BENCH_BERTH_ENV=K=V,K=V
  -h, --help              this text

BERTH_BENCH_BERTH names the berth executable to measure (default: the one cargo built).
";

/// `--help` prints the usage; an option the harness does not know is
/// refused with it, so a typo does not start a full run of every workload.
fn check_args(args: &[String]) {
    const VALUED: [&str; 6] = [
        "--runs",
        "--only",
        "--duration",
        "--fleet",
        "--client-threads",
        "--berth-env",
    ];
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            // cargo passes `--bench` to a bench target without libtest's harness.
            "--quick" | "--bench" => i += 1,
            a if VALUED.contains(&a) && i + 1 < args.len() => i += 2,
            a => {
                eprint!("compare: unknown option or missing value: {a}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
}

/// Load-generator and server CPU for one load workload, per server.
pub struct LoadStat {
    pub workload: String,
    /// `berth`, `distribution`, or another server compared against (`nginx`).
    pub server: &'static str,
    pub results: Vec<load::LoadResult>,
}

/// Everything a workload needs, and where it puts its figures.
pub struct Bench {
    pub cfg: Settings,
    pub rt: tokio::runtime::Runtime,
    pub regs: Registries,
    pub skopeo: Skopeo,
    pub scratch: tempfile::TempDir,
    pub rows: Vec<Row>,
    pub load_stats: Vec<LoadStat>,
    pub notes: Vec<String>,
}

impl Bench {
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.scratch.path().join(name);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating scratch dir");
        p
    }

    /// Server order for run `i`: alternate, so neither always goes first
    /// (page cache, CPU frequency, whatever else drifts in a run).
    pub fn order(&self, run: usize) -> [Kind; 2] {
        if run % 2 == 1 {
            [Kind::Distribution, Kind::Berth]
        } else {
            [Kind::Berth, Kind::Distribution]
        }
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn record_load(&mut self, workload: &str, kind: Kind, r: load::LoadResult) {
        self.record_load_of(workload, kind.name(), r);
    }

    /// [`record_load`](Self::record_load) for a server named `server`.
    pub fn record_load_of(&mut self, workload: &str, server: &'static str, r: load::LoadResult) {
        if r.errors > 0 {
            self.notes.push(format!(
                "{workload} on {server}: {} errors (first: {})",
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            ));
        }
        match self
            .load_stats
            .iter_mut()
            .find(|s| s.workload == workload && s.server == server)
        {
            Some(s) => s.results.push(r),
            None => self.load_stats.push(LoadStat {
                workload: workload.to_owned(),
                server,
                results: vec![r],
            }),
        }
    }

    pub fn progress(&self, msg: &str) {
        eprintln!("[{}] {msg}", procstat::loadavg());
    }
}

/// Adds to `rows` one value per run for each server.
pub fn push_value(rows: &mut [Row], i: usize, kind: Kind, v: f64) {
    rows[i].push(kind, v);
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "?".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    format!("nproc {nproc}, CPU {model}, RAM {mem}, kernel {kernel}")
}

fn version(cmd: &str, arg: &str) -> String {
    std::process::Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

fn load_table(stats: &[LoadStat]) -> String {
    use report::{fmt_num, median};
    let mut s = String::from(
        "| workload | server | client CPU (cores, median / max) | client saturated a core? | server CPU (cores) | server CPU per request |\n|---|---|---:|---|---:|---:|\n",
    );
    for st in stats {
        let client: Vec<f64> = st.results.iter().map(|r| r.client_cores()).collect();
        let server: Vec<f64> = st.results.iter().map(|r| r.server_cores()).collect();
        let per_req: Vec<f64> = st.results.iter().map(|r| r.server_us_per_req()).collect();
        let max = client.iter().copied().fold(0.0, f64::max);
        s.push_str(&format!(
            "| {} | {} | {} / {} | {} | {} | {} µs |\n",
            st.workload,
            st.server,
            median(&client).map(fmt_num).unwrap_or_default(),
            fmt_num(max),
            if max >= 0.9 { "**yes**" } else { "no" },
            median(&server).map(fmt_num).unwrap_or_default(),
            median(&per_req).map(fmt_num).unwrap_or_default(),
        ));
    }
    s
}

fn main() {
    // Workload 10 runs this executable again as the shards of its fleet.
    if fleet::shard_main() {
        return;
    }
    let cfg = Settings::from_args();
    // berth runs at its default log level: no RUST_LOG from our environment.
    std::env::remove_var("RUST_LOG");
    if !require_tools(&["skopeo", "docker-registry"]) {
        return;
    }
    let load_at_start = procstat::loadavg();
    eprintln!(
        "berth vs distribution: {} run(s){}; load average at start {load_at_start}",
        cfg.runs,
        if cfg.quick { " (quick sizes)" } else { "" }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.client_threads)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let regs = Registries::start(&cfg.berth_env);
    let mut bench = Bench {
        cfg: cfg.clone(),
        rt,
        regs,
        skopeo: Skopeo::new(),
        scratch: tempfile::Builder::new()
            .prefix("berth-bench-")
            .tempdir()
            .expect("scratch dir"),
        rows: Vec::new(),
        load_stats: Vec::new(),
        notes: Vec::new(),
    };

    // 7, first part: resident memory at idle, a second after start.
    std::thread::sleep(Duration::from_secs(1));
    let mut idle = Row::new(
        "7. memory",
        "idle RSS after start (registry)",
        "MB",
        Better::Lower,
    )
    .target(Target::BerthBelow(12.0, "12 MB"));
    for t in bench.regs.both() {
        let mb = procstat::rss(t.pid).unwrap_or(0) as f64 / 1e6;
        idle.push(t.kind, mb);
    }
    bench.row(idle);
    let mut anon = Row::new(
        "7. memory",
        "idle anonymous RSS after start (registry; RssAnon, without the mapped executable)",
        "MB",
        Better::Lower,
    )
    .target(Target::BerthBelow(4.0, "4 MB"));
    for t in bench.regs.both() {
        let mb = procstat::rss_anon(t.pid).unwrap_or(0) as f64 / 1e6;
        anon.push(t.kind, mb);
    }
    bench.row(anon);
    if cfg.wants(7) {
        idle::run(&mut bench);
    }

    // The read workloads first, so their peak RSS starts near idle and not
    // from what the pushes left behind (the peak can only be reset to the
    // current RSS). What the pushes leave behind gets its own row below.
    if cfg.wants(2) {
        manifests::run(&mut bench);
    }
    if cfg.wants(3) {
        blobs::run(&mut bench);
    }
    if cfg.wants(1) {
        push_pull::run(&mut bench);
    }
    if cfg.wants(4) {
        uploads::chunked(&mut bench);
    }
    if cfg.wants(5) {
        uploads::small_blobs(&mut bench);
    }
    if cfg.wants(1) || cfg.wants(4) || cfg.wants(5) {
        let mut after = Row::new(
            "7. memory",
            "RSS after the pushes (1, 4, 5), idle again",
            "MB",
            Better::Lower,
        );
        std::thread::sleep(Duration::from_secs(2));
        for t in bench.regs.both() {
            let mb = procstat::rss(t.pid).unwrap_or(0) as f64 / 1e6;
            after.push(t.kind, mb);
        }
        bench.row(after);
    }
    if cfg.wants(6) {
        edge::run(&mut bench);
    }
    if cfg.wants(8) {
        replicate::run(&mut bench);
    }
    if cfg.wants(9) {
        proxy_project::run(&mut bench);
    }
    if cfg.wants(10) {
        publish_fleet::run(&mut bench);
    }
    if cfg.wants(11) {
        replicated::run(&mut bench);
    }
    let load_at_end = procstat::loadavg();

    // Memory rows last in the table, in workload order.
    let (mut mem, mut rows): (Vec<Row>, Vec<Row>) = bench
        .rows
        .drain(..)
        .partition(|r| r.workload.starts_with("7."));
    rows.append(&mut mem);

    let mut out = String::new();
    out.push_str(&format!(
        "### berth vs distribution 2.8 ({} run{}{}, medians)\n\n",
        cfg.runs,
        if cfg.runs == 1 { "" } else { "s" },
        if cfg.quick { ", QUICK sizes" } else { "" }
    ));
    out.push_str(&format!("Machine: {}\n\n", machine()));
    out.push_str(&format!(
        "Software: berth {} (release), {}, {}\n\n",
        env!("CARGO_PKG_VERSION"),
        version("docker-registry", "--version"),
        version("skopeo", "--version"),
    ));
    out.push_str(&format!(
        "Load average (1/5/15 min): {load_at_start} at start, {load_at_end} at end\n\n"
    ));
    if !cfg.berth_env.is_empty() {
        out.push_str(&format!(
            "berth ran with extra environment: {:?}\n\n",
            cfg.berth_env
        ));
    }
    out.push_str(&report::table(&rows));
    out.push_str(
        "\n↑ higher is better, ↓ lower is better; berth/dist is the ratio of the medians.\n\n",
    );
    out.push_str("#### Load generator and server CPU (workloads 2, 3 and 10)\n\n");
    out.push_str(&load_table(&bench.load_stats));
    out.push_str(
        "\nClient CPU is this process's user+system time over the measured window (1.0 = one core busy; the machine has nproc cores, shared with the server).\n\n",
    );
    out.push_str("#### Every run\n\n");
    out.push_str(&report::runs_table(&rows));
    if !bench.notes.is_empty() {
        out.push_str("\n#### Notes\n\n");
        for n in &bench.notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    println!("{out}");
    let saved = std::env::temp_dir().join("berth-bench-compare.md");
    if std::fs::write(&saved, &out).is_ok() {
        eprintln!("table saved to {}", saved.display());
    }
}
