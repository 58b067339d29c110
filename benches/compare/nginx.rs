//! The practical ceiling of workload 2 (issue 22, item 6): nginx (Debian's
//! `nginx-light`) serving the same manifest bytes as a static file, with the
//! headers berth answers the same request with (`Content-Type`,
//! `Docker-Content-Digest`, `ETag`), access log off, 2 worker processes, on
//! 127.0.0.1, driven by the same load generator.
//!
//! Owns: writing nginx's configuration and the file into a directory of its
//! own, running nginx (a master and its workers, stopped with SIGTERM so no
//! worker outlives the bench) and naming the processes whose CPU counts.
//! When nginx is not installed [`Nginx::start`] says so and the rows are
//! left out: the rest of the bench still runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use berth_testkit::proc::{free_port, write_file, ServerProcess};
use berth_testkit::tools::find_tool;

/// What nginx serves: one body under several paths, with these headers.
pub struct StaticManifest {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub digest: String,
    pub etag: String,
    /// Request paths (`/v2/<repo>/manifests/<reference>`) that answer it.
    pub paths: Vec<String>,
}

/// `$BERTH_NGINX_BIN`, else `nginx` on `PATH`, else Debian's `/usr/sbin/nginx`
/// (`/usr/sbin` is not on every user's `PATH`).
pub fn binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("BERTH_NGINX_BIN") {
        return Some(PathBuf::from(bin));
    }
    find_tool("nginx").or_else(|| find_tool("/usr/sbin/nginx"))
}

/// A running nginx; stopped (master and workers) on drop.
pub struct Nginx {
    server: ServerProcess,
    // Declared last: removed after nginx has stopped.
    _dir: tempfile::TempDir,
}

/// A string as an nginx quoted argument (the values here are digests and
/// media types, but quote them properly anyway).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn config(dir: &std::path::Path, port: u16, m: &StaticManifest, file: &str) -> String {
    let locations: String = m
        .paths
        .iter()
        .map(|p| {
            format!(
                "    location = {p} {{ alias {dir}/{file}; }}\n",
                dir = dir.display()
            )
        })
        .collect();
    let d = dir.display();
    format!(
        "worker_processes 2;\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   sendfile on;\n\
         \x20   tcp_nopush on;\n\
         \x20   tcp_nodelay on;\n\
         \x20   keepalive_timeout 65;\n\
         \x20   # The load generator keeps each connection for the whole run, as it does with berth.\n\
         \x20   keepalive_requests 1000000000;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   types {{ }}\n\
         \x20   default_type {ct};\n\
         \x20   etag off;\n\
         \x20   server_tokens off;\n\
         \x20   add_header Docker-Content-Digest {digest};\n\
         \x20   add_header ETag {etag};\n\
         \x20   server {{\n\
         \x20   listen 127.0.0.1:{port};\n\
         {locations}\
         \x20   }}\n\
         }}\n",
        ct = quoted(&m.content_type),
        digest = quoted(&m.digest),
        etag = quoted(&m.etag),
    )
}

impl Nginx {
    /// Starts nginx serving `m`; `None` (with a message) if nginx is not installed.
    pub fn start(m: &StaticManifest) -> Option<Nginx> {
        let Some(bin) = binary() else {
            eprintln!(
                "nginx not found (apt-get install nginx-light, or set BERTH_NGINX_BIN): \
                 workload 2 runs without its nginx rows"
            );
            return None;
        };
        // Its own directory in the temp dir, readable by the workers, which
        // drop to `nobody` when nginx runs as root.
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-nginx-")
            .tempdir()
            .expect("creating nginx dir");
        set_mode(dir.path(), 0o755);
        let file = write_file(dir.path(), "manifest", &m.bytes);
        set_mode(&file, 0o644);
        let port = free_port();
        let conf = write_file(
            dir.path(),
            "nginx.conf",
            config(dir.path(), port, m, "manifest"),
        );
        let server = ServerProcess::builder(&bin, port)
            .name("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            // Start-up messages before error_log is read go here (nginx >= 1.19.5).
            .arg("-e")
            .arg("stderr")
            .ready_path("/")
            .env_clear()
            .spawn();
        Some(Nginx { server, _dir: dir })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server.port()))
    }

    /// The master and its workers: the processes whose CPU time is nginx's.
    pub fn pids(&self) -> Vec<u32> {
        let Some(master) = self.server.pid() else {
            return Vec::new();
        };
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        std::iter::once(master)
            .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (a SIGKILL would leave them
        // serving the port as orphans).
        if self.server.is_running() {
            self.server.terminate();
        }
    }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
