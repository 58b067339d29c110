//! README's shell examples run as written.
//!
//! Every ```` ```sh ```` block of README.md runs, in README order, in one bash
//! script with `set -euo pipefail`, in a fresh working directory that holds a
//! copy of `examples/` (as a checkout does), with the built `berth` first on
//! PATH and a fresh `berth serve` whose data directory is `./berth-data` there
//! (so `berth-data/admin-password` is where README says). A marker is echoed
//! before each block, so a failure names the block.
//!
//! The only rewriting: `127.0.0.1:5000` and `registry.example:5000` become the
//! test registry's address, `127.0.0.1:5001` the address the test gives the
//! edge the README starts; `BERTH_SERVER_LISTEN` and `BERTH_EDGE_LISTEN` are
//! those addresses, so commands that rely on the defaults reach them. podman gets its own storage, configuration and auth
//! file through its environment variables (the commands are unchanged).
//!
//! Blocks fenced ```` ```sh no-run ```` are skipped, and must be exactly those
//! in `SKIPPED` (with the reason): building and testing berth itself, the
//! benchmarks, and starting the registry (this test starts it, as `serve`).

use std::path::Path;
use std::process::Command;

use berth_testkit::berth_bin;
use berth_testkit::proc::{free_port, ServerProcess};
use berth_testkit::tools::Podman;

/// First lines of the blocks that do not run here, and why.
const SKIPPED: &[(&str, &str)] = &[
    ("cargo run --release -- serve", "builds berth in release mode; the test starts the built `berth serve` on the same data directory instead"),
    ("cargo test --workspace", "is the test suite itself"),
    ("BERTH_UPSTREAM_USER='robot$edge-eu' BERTH_UPSTREAM_PASSWORD=\"$(awk '/^secret:/ {print $2}' edge-eu-robot)\" \\", "names registry replicas that do not exist here; tests/edge_failover.rs runs an edge over two registries"),
    ("berth replication create to-dr --direction push --remote https://dr.example --remote-user robot \\", "needs a second registry; tests/replication_runs.rs replicates to distribution and to a second berth"),
    ("cargo bench --bench compare", "the benchmarks take minutes"),
];

/// `(info string, body)` of every fenced block whose info string starts with `sh`.
fn sh_blocks(readme: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in readme.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) if info.split_whitespace().next() == Some("sh") => {
                current = Some((info.trim().to_string(), String::new()));
            }
            (Some(_), Some("")) => blocks.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

fn script(blocks: &[(String, String)], registry: &str, edge: &str) -> (String, Vec<String>) {
    let mut out = String::from("set -euo pipefail\n");
    let mut skipped = Vec::new();
    for (i, (info, body)) in blocks.iter().enumerate() {
        let first = body.lines().next().unwrap_or("").trim().to_string();
        if info.split_whitespace().any(|w| w == "no-run") {
            skipped.push(first);
            continue;
        }
        let body = body
            .replace("127.0.0.1:5000", registry)
            .replace("registry.example:5000", registry)
            .replace("127.0.0.1:5001", edge);
        out.push_str(&format!(
            "echo '==== README block {} ({})'\n{body}\n",
            i + 1,
            first.replace('\'', "")
        ));
    }
    out.push_str("echo '==== README done'\n");
    (out, skipped)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn readme_sh_blocks_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let work = tempfile::tempdir().expect("tmp");
    copy_dir(&root.join("examples"), &work.path().join("examples"));

    let port = free_port();
    let _registry = ServerProcess::builder(berth_bin!(), port)
        .name("berth-registry")
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(work.path().join("berth-data"))
        .env("BERTH_AUTH_BCRYPT_COST", "4")
        .ready_path("/healthz")
        .spawn();
    let registry = format!("127.0.0.1:{port}");
    let edge = format!("127.0.0.1:{}", free_port());

    let (text, skipped) = script(&sh_blocks(&readme), &registry, &edge);
    let expected: Vec<&str> = SKIPPED.iter().map(|(first, _)| *first).collect();
    assert_eq!(
        skipped, expected,
        "README's no-run blocks changed; say why in SKIPPED"
    );
    for (first, why) in SKIPPED {
        eprintln!("skipped `{first}`: {why}");
    }
    std::fs::write(work.path().join("readme.sh"), &text).expect("script");

    let bin_dir = Path::new(berth_bin!())
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let podman = Podman::new();
    let mut cmd = Command::new("setsid");
    cmd.args(["bash", "readme.sh"])
        .current_dir(work.path())
        .env("PATH", path)
        // Commands without --url find the registry at server.listen, which
        // README leaves at its default, 127.0.0.1:5000: here, the test's.
        .env("BERTH_SERVER_LISTEN", &registry)
        // Likewise the edge README starts listens at its default, 127.0.0.1:5001.
        .env("BERTH_EDGE_LISTEN", &edge);
    for (k, v) in podman.command().get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    for v in [
        "BERTH_URL",
        "BERTH_USER",
        "BERTH_PASSWORD",
        "BERTH_CONFIG",
        "BERTH_ADMIN_PASSWORD",
    ] {
        cmd.env_remove(v);
    }
    // Output goes to files: the edge the README starts in the background keeps
    // its inherited descriptors open after the script ends.
    let log = |name: &str| std::fs::File::create(work.path().join(name)).expect("log file");
    cmd.stdout(log("stdout")).stderr(log("stderr"));
    let mut child = cmd.spawn().expect("bash runs");
    let status = child.wait().expect("script ends");
    // setsid made bash the leader of its own process group, which what it
    // started in the background shares: end that group, nothing else.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status();
    let read = |name: &str| std::fs::read_to_string(work.path().join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    let last = stdout
        .lines()
        // The edge's log lines share the file, so a marker may not start its line.
        .filter_map(|l| l.find("==== README").map(|i| &l[i..]))
        .next_back()
        .unwrap_or("before the first block");
    assert!(
        status.success() && stdout.contains("==== README done"),
        "README failed in {last}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- script\n{text}"
    );
}
