//! Process harness for servers under test.
//!
//! Owns spawning a server binary on 127.0.0.1, waiting until it answers HTTP,
//! stopping it (SIGKILL, SIGTERM, restart) and keeping its output in a log file
//! whose tail is printed when a test panics. It knows nothing about what the
//! server is: berth, distribution and anything else that serves `/v2/`.
//!
//! Readiness is checked with a hand-written `GET` over `std::net::TcpStream`:
//! any HTTP status line counts (401 from an auth-enabled registry is "up").

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A port on 127.0.0.1 that was free a moment ago.
///
/// The listener is dropped before returning, so another process could take the
/// port in between; good enough for tests that start their server right away.
/// Within one test binary a port is never handed out twice, so parallel tests
/// do not race for the same one.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0 for a free port")
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// The status code of `GET path` on 127.0.0.1:`port`, or `None` if nothing
/// answered with an HTTP status line within `timeout`.
pub fn http_status(port: u16, path: &str, timeout: Duration) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    // "HTTP/1.1 200" is 12 bytes; read until we have them or the peer closes.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while head.len() < 12 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(proto), Some(code)) if proto.starts_with("HTTP/") => code.parse().ok(),
        _ => None,
    }
}

/// Everything needed to (re)start a server; see [`ServerProcess::builder`].
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    env_clear: bool,
    current_dir: Option<PathBuf>,
    port: u16,
    ready: Ready,
    ready_timeout: Duration,
    open_files: Option<u32>,
}

/// What "started" means for a server.
#[derive(Clone, Debug)]
enum Ready {
    /// `GET path` on the port answers with any HTTP status.
    Http(String),
    /// A unix socket accepts connections (containerd).
    UnixSocket(PathBuf),
    /// The TCP port accepts connections (TLS listeners).
    Tcp,
}

impl Ready {
    fn describe(&self, port: u16) -> String {
        match self {
            Ready::Http(path) => format!("http://127.0.0.1:{port}{path}"),
            Ready::UnixSocket(path) => format!("unix socket {}", path.display()),
            Ready::Tcp => format!("tcp 127.0.0.1:{port}"),
        }
    }

    fn check(&self, port: u16) -> bool {
        match self {
            Ready::Http(path) => http_status(port, path, Duration::from_millis(500)).is_some(),
            Ready::UnixSocket(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
            Ready::Tcp => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        }
    }
}

impl ServerBuilder {
    /// Name used in log and panic messages (default: the program's file name).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }
    /// Start from an empty environment (plus `PATH`) instead of the test's.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }
    /// Path polled for readiness (default `/v2/`).
    pub fn ready_path(mut self, path: &str) -> Self {
        self.ready = Ready::Http(path.to_owned());
        self
    }
    /// Ready when this unix socket accepts a connection, instead of HTTP.
    pub fn ready_unix_socket(mut self, path: impl AsRef<Path>) -> Self {
        self.ready = Ready::UnixSocket(path.as_ref().to_owned());
        self
    }
    /// How long to wait for readiness (default 30 s).
    /// Ready when the port accepts TCP connections (for TLS listeners).
    pub fn ready_tcp(mut self) -> Self {
        self.ready = Ready::Tcp;
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the program with this open-file limit (`ulimit -n`, soft and hard).
    pub fn open_file_limit(mut self, n: u32) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Spawns the process and waits until it answers HTTP on its port.
    pub fn spawn(self) -> ServerProcess {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-log-", self.name))
            .tempdir()
            .expect("creating log dir");
        let log_path = dir.path().join(format!("{}.log", self.name));
        let mut process = ServerProcess {
            spec: self,
            log_dir: dir,
            log_path,
            child: None,
            starts: 0,
        };
        process.start();
        process
    }
}

/// A server process listening on 127.0.0.1:`port`, killed on drop.
///
/// stdout and stderr go to one log file (appended to across restarts). If the
/// thread is panicking when this is dropped, the log's tail is printed to
/// stderr, which the test harness shows for the failed test.
#[derive(Debug)]
pub struct ServerProcess {
    spec: ServerBuilder,
    log_dir: TempDir,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

/// The berth binary under test is driven by the same harness as any server.
pub type BerthProcess = ServerProcess;

impl ServerProcess {
    /// A server that will listen on 127.0.0.1:`port` (pick one with [`free_port`]
    /// and pass it to the program in its args, env or config file).
    pub fn builder(program: impl AsRef<Path>, port: u16) -> ServerBuilder {
        let program = program.as_ref().to_owned();
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "server".to_owned());
        ServerBuilder {
            name,
            program,
            args: Vec::new(),
            envs: Vec::new(),
            env_clear: false,
            current_dir: None,
            port,
            ready: Ready::Http("/v2/".to_owned()),
            ready_timeout: Duration::from_secs(30),
            open_files: None,
        }
    }

    fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "{} is already running",
            self.spec.name
        );
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log_path.display()));
        self.starts += 1;
        writeln!(
            log,
            "==== start #{} of {} {:?} ====",
            self.starts,
            self.spec.program.display(),
            self.spec.args
        )
        .expect("writing log header");
        let stderr = log.try_clone().expect("cloning log file handle");

        let mut cmd = match self.spec.open_files {
            None => Command::new(&self.spec.program),
            Some(n) => {
                // exec keeps the pid, so kill and wait still reach the server.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&self.spec.program);
                sh
            }
        };
        cmd.args(&self.spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        if self.spec.env_clear {
            cmd.env_clear();
            if let Some(path) = std::env::var_os("PATH") {
                cmd.env("PATH", path);
            }
        }
        cmd.envs(self.spec.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.spec.current_dir {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "spawning {} ({}): {e}",
                self.spec.name,
                self.spec.program.display()
            )
        });
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls until the server is ready (any HTTP status on the ready path, or
    /// the unix socket accepting). Panics with the log tail if the process
    /// exits or the timeout passes.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + self.spec.ready_timeout;
        loop {
            if let Some(status) = self.try_wait() {
                panic!(
                    "{} exited with {status} before answering {}\n{}",
                    self.spec.name,
                    self.spec.ready.describe(self.spec.port),
                    self.log_tail(60)
                );
            }
            if self.spec.ready.check(self.spec.port) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not answer {} within {:?}\n{}",
                    self.spec.name,
                    self.spec.ready.describe(self.spec.port),
                    self.spec.ready_timeout,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.spec.port
    }
    /// `127.0.0.1:PORT`, the registry host part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.spec.port)
    }
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.port)
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    /// A directory that lives as long as this value (next to the log).
    pub fn scratch_dir(&self) -> &Path {
        self.log_dir.path()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log, framed for a panic message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "---- last {} lines of {} ----\n{}\n---- end of {} ----",
            tail.len(),
            self.log_path.display(),
            tail.join("\n"),
            self.spec.name
        )
    }

    /// The exit status if the process has exited (and forgets the child then).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) => None,
            Err(e) => panic!("waiting for {}: {e}", self.spec.name),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// SIGKILL and reap: a crash, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An already exited child makes kill() fail; wait() still reaps it.
            let _ = child.kill();
            child
                .wait()
                .unwrap_or_else(|e| panic!("reaping {}: {e}", self.spec.name));
        }
    }

    /// SIGTERM and wait up to 20 s for a graceful exit; panics (after SIGKILL)
    /// if the process does not stop in time. Returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(Duration::from_secs(20))
    }

    pub fn terminate_within(&mut self, grace: Duration) -> ExitStatus {
        let pid = match &self.child {
            Some(child) => child.id(),
            None => panic!("{} is not running", self.spec.name),
        };
        // std has no SIGTERM and the workspace forbids unsafe (libc::kill), so
        // ask kill(1).
        let sent = Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .expect("running kill(1)");
        assert!(sent.success(), "kill -TERM {pid} failed: {sent}");
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "{} did not exit within {grace:?} after SIGTERM\n{}",
                    self.spec.name,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Terminates (SIGTERM) if running, then starts again with the same
    /// program, args and env, and waits until ready.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.terminate();
        }
        self.start();
    }

    /// Starts again after [`kill9`](Self::kill9) or [`terminate`](Self::terminate).
    pub fn start_again(&mut self) {
        if self.is_running() {
            panic!("{} is still running", self.spec.name);
        }
        self.start();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(80));
        }
        self.kill9();
    }
}

/// Waits up to `bound` for `child` (a process expected to exit by itself) to
/// exit and returns its status; on a timeout it kills the child, so it does
/// not outlive the test, and panics naming `what`.
pub fn exit_within(child: &mut Child, bound: Duration, what: &str) -> ExitStatus {
    struct KillOnPanic<'a>(&'a mut Child);
    impl Drop for KillOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let guard = KillOnPanic(child);
    crate::wait_until(what, bound, || {
        guard
            .0
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
    })
}

/// Every file below `dir` (recursively, directories left out), sorted; empty
/// if `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    let mut f = File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    f.write_all(contents.as_ref())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        TcpListener::bind(("127.0.0.1", port)).expect("port is free");
    }

    #[test]
    fn http_status_reads_status_line() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).expect("read request");
            s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                .expect("write");
        });
        assert_eq!(http_status(port, "/v2/", Duration::from_secs(2)), Some(401));
        server.join().expect("server thread");
        assert_eq!(
            http_status(free_port(), "/v2/", Duration::from_millis(200)),
            None
        );
    }

    #[test]
    fn python_http_server_lifecycle() {
        if !crate::tools::tool_available("python3") {
            eprintln!("SKIP: python3 not found");
            return;
        }
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("v2")).expect("mkdir v2");
        let mut server = ServerProcess::builder("python3", port)
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir.path())
            .spawn();
        assert!(server.is_running());
        assert_eq!(http_status(port, "/v2/", Duration::from_secs(2)), Some(200));
        server.restart();
        assert_eq!(http_status(port, "/v2/", Duration::from_secs(2)), Some(200));
        server.kill9();
        assert!(!server.is_running());
        server.start_again();
        server.terminate();
        assert!(!server.is_running());
        assert!(server.log().contains("==== start #3"), "{}", server.log());
    }
}
