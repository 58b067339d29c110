//! A PostgreSQL server of the test's own, in a temporary directory on
//! 127.0.0.1: `initdb` + `postgres`, trust authentication, no fsync (the
//! tests kill berth, never this server, unless they stop it themselves).
//!
//! PostgreSQL refuses to run as root; where the tests run as root (CI does)
//! the server runs as the `postgres` account Debian's package creates,
//! through `setpriv`. `setpriv --pdeathsig` also ties the server's life to
//! the thread that started it, so a test process that dies leaves no
//! server behind.
//!
//! [`Postgres::shared`] is one server per test process, with a fresh
//! database per caller ([`Postgres::database`]); [`Postgres::start`] is a
//! server of the caller's own, stopped on drop, for tests that stop or
//! restart it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser the test server is initialised with.
pub const USER: &str = "berth";

pub struct Postgres {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    databases: AtomicU32,
    /// Whether drop removes the directory (not for the shared server,
    /// whose thread outlives every test).
    owned: bool,
}

/// Where `initdb` and `postgres` are: `BERTH_PG_BINDIR`, `PATH`, or the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's layout, not on PATH).
pub fn bindir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("BERTH_PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                // A link on PATH: the other programs are beside its target.
                let real = std::fs::canonicalize(dir.join("initdb")).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether a PostgreSQL server can be started here; tests that need one
/// and find none say so and fail, as CI always has one.
pub fn available() -> bool {
    bindir().is_some()
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false) || uid_of_self() == Some(0)
}

fn uid_of_self() -> Option<u32> {
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn ids_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// Removes the directories of earlier test servers whose process is gone.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("berth-pg-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Postgres {
    /// One server for the whole test process, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| {
            // The server's life is tied (pdeathsig) to the thread that
            // spawns it: a thread that lives as long as the process.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let pg = Postgres::init(false);
                pg.spawn();
                tx.send(pg).expect("handing over the shared server");
                loop {
                    std::thread::park();
                }
            });
            let pg = rx.recv().expect("the shared PostgreSQL server started");
            pg.wait_ready();
            pg
        })
    }

    /// A server of the caller's own, stopped and removed on drop. Its
    /// lifetime is tied to the calling thread: keep it on the test's thread.
    pub fn start() -> Postgres {
        let pg = Postgres::init(true);
        pg.spawn();
        pg.wait_ready();
        pg
    }

    fn init(owned: bool) -> Postgres {
        let bindir = bindir().expect(
            "PostgreSQL's initdb and postgres (Debian: apt-get install postgresql; \
             or set BERTH_PG_BINDIR)",
        );
        let parent = std::env::temp_dir();
        sweep_stale(&parent);
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = parent.join(format!(
            "berth-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("PostgreSQL test directory");
        let run_as = if is_root() {
            let ids = ids_of("postgres").expect(
                "tests run as root, and PostgreSQL will not: a `postgres` account is needed \
                 (Debian's postgresql package creates it)",
            );
            std::os::unix::fs::chown(&dir, Some(ids.0), Some(ids.1)).expect("chown test dir");
            Some(ids)
        } else {
            None
        };
        let pg = Postgres {
            dir,
            bindir,
            port: crate::proc::free_port(),
            run_as,
            child: Mutex::new(None),
            databases: AtomicU32::new(0),
            owned,
        };
        let out = pg
            .command("initdb")
            .args([
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "-U",
                USER,
                "-D",
            ])
            .arg(pg.data())
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `program` from the server's bindir, as the server's account, dying
    /// with the thread that runs it.
    fn command(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        let mut cmd = Command::new("setpriv");
        if let Some((uid, gid)) = self.run_as {
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
            ]);
        }
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(exe);
        // The test's own directory may be one the server's account cannot
        // enter; start where it can.
        cmd.current_dir(&self.dir);
        cmd
    }

    fn spawn(&self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("server log");
        if let Some((uid, gid)) = self.run_as {
            let _ = std::os::unix::fs::chown(self.dir.join("server.log"), Some(uid), Some(gid));
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=32MB",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        *self.child.lock().expect("child") = Some(child);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(self.bindir.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if matches!(out, Ok(s) if s.success()) {
                return;
            }
            if let Some(child) = self.child.lock().expect("child").as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "postgres exited ({status}) before accepting connections: {}",
                        self.log()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id (its backends are its children), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().ok()?.as_ref().map(Child::id)
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bindir.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(&name)
            .output()
            .expect("running createdb");
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// Runs SQL through `psql` against `url` (for tests that look inside).
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bindir.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("child").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data after `kill`.
    pub fn restart(&self) {
        self.kill();
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
        self.spawn();
        self.wait_ready();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
