//! Logging in on one `berth serve` with its embedded defaults: the cases in
//! `auth_cases/login.rs` (shared with `auth_replicated.rs`, which runs them on
//! two replicas), plus what only one server on its own data directory has:
//! the first start without a chosen admin password, and (ignored, for
//! measuring) what authentication costs. The failed-login throttle has its
//! own file, auth_throttle.rs.

use std::time::{Duration, Instant};

use berth_testkit::berth::{self, Registry};
use berth_testkit::berth_bin;
use berth_testkit::http::{basic, push_image, send, token, Auth};
use berth_testkit::{free_port, wait_until};
use reqwest::blocking::Client;

#[path = "auth_cases/servers.rs"]
mod servers;

/// One `berth serve` on its embedded defaults.
mod setup {
    pub fn start(env: &[(&str, &str)]) -> Option<crate::servers::Servers> {
        Some(crate::servers::Servers::embedded(env))
    }
}

#[path = "auth_cases/login.rs"]
mod cases;

// ------------------------------------------------------------------ first start

#[test]
fn first_start_without_an_admin_password() {
    // The kit sets BERTH_ADMIN_PASSWORD; empty means "not set".
    let mut reg: Registry =
        berth::registry_with(berth_bin!(), &[], &[("BERTH_ADMIN_PASSWORD", "")]);
    let file = reg.data_dir.join("admin-password");
    let meta = std::fs::metadata(&file).expect("admin-password written");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "admin-password must be private"
    );
    let pw = std::fs::read_to_string(&file)
        .expect("read")
        .trim()
        .to_string();
    assert!(pw.len() >= 12, "a generated password: {pw:?}");
    let log = reg.server.log();
    assert_eq!(
        log.matches(pw.as_str()).count(),
        1,
        "the log shows the password once:\n{log}"
    );
    assert!(log.contains("berth passwd admin"), "{log}");

    // It must be reset before use: on /v2 and on the admin API.
    let (http, base) = (Client::new(), reg.url());
    let a = send(
        &http,
        "GET",
        &format!("{base}/v2/"),
        &basic("admin", &pw),
        None,
    );
    assert_eq!(a.status, 401);
    assert!(a.message.contains("must be reset"), "{a:?}");
    let admin = reg.admin().as_user("admin", &pw);
    let (s, v) = admin.call("GET", "/api/v1/users", None);
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("berth passwd admin"),
        "{v}"
    );

    let out = std::process::Command::new(berth_bin!())
        .args(["passwd", "admin", "--url", &base])
        .env("BERTH_OLD_PASSWORD", &pw)
        .env("BERTH_NEW_PASSWORD", "chosen12345")
        .env_remove("BERTH_PASSWORD")
        .output()
        .expect("berth passwd");
    assert!(
        out.status.success(),
        "berth passwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = reg.admin().as_user("admin", "chosen12345");
    let (s, v) = admin.call("GET", "/api/v1/users", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["must_reset"], false);
    let a = send(
        &http,
        "GET",
        &format!("{base}/v2/"),
        &basic("admin", &pw),
        None,
    );
    assert_eq!(a.status, 401, "the generated password is no longer valid");

    // A restart neither creates another admin nor shows a password again.
    reg.server.restart();
    let log = reg.server.log();
    assert_eq!(log.matches(pw.as_str()).count(), 1, "{log}");
    let (s, _) = admin.call("GET", "/api/v1/users", None);
    assert_eq!(s, 200);
}

// ------------------------------------------------------------------ cost (measured, not asserted)

/// What authentication adds to a manifest GET, in-process over HTTP on loopback.
/// Run: `cargo test --release --test auth_login -- --ignored --nocapture auth_cost`.
#[test]
#[ignore]
fn auth_cost_of_a_manifest_get() {
    use berth_registry::app::RegistryApp;
    const N: usize = 2000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tmp");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cfg = berth_config::Config::default();
    cfg.server.data_dir = tmp.path().join("data");
    cfg.server.listen = addr;
    // The default bcrypt cost (10): the first Basic request pays it, later ones hit the cache.
    let cost = cfg.auth.bcrypt_cost;
    let app = rt.block_on(RegistryApp::open(cfg)).expect("open registry");
    let accounts = app.access.accounts.clone();
    rt.block_on(async {
        accounts
            .create_user("bench", "initial123", true)
            .await
            .expect("user");
        accounts
            .change_password("bench", "initial123", "benchpass1")
            .await
            .expect("reset");
        accounts.create_project("pub", true).await.expect("project");
    });
    // As `berth serve` answers: `/v2` by the API, the rest by the router.
    let front = app.common_layer(false).front(app.router(), app.v2());
    let policy = berth_registry::server::ConnectionPolicy::from_config(&app.config.server);
    let conns = berth_registry::server::Connections::new(policy, &app.metrics);
    rt.spawn(async move {
        let l = berth_registry::server::bind(addr).await.expect("bind");
        berth_registry::server::serve(
            l,
            front,
            None,
            std::future::pending(),
            Duration::from_secs(1),
            conns,
        )
        .await;
    });
    let base = format!("http://{addr}");
    let http = Client::new();
    wait_until(
        "the in-process registry to start",
        Duration::from_secs(10),
        || http.get(format!("{base}/healthz")).send().is_ok(),
    );
    let bench = basic("bench", "benchpass1");
    push_image(&http, &base, &bench, "pub/app", "v1");
    let t = Auth::Bearer(token(&http, &base, &bench, &["repository:pub/app:pull"]).expect("token"));
    let url = format!("{base}/v2/pub/app/manifests/v1");
    let run = |auth: &Auth, n: usize| -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            let a = send(&http, "GET", &url, auth, None);
            assert_eq!(a.status, 200, "{a:?}");
        }
        start.elapsed() / n as u32
    };
    // A credential the server has never seen: one bcrypt at the configured cost.
    rt.block_on(async {
        accounts
            .create_user("fresh", "initial123", false)
            .await
            .expect("user");
        accounts
            .change_password("fresh", "initial123", "freshpass1")
            .await
            .expect("reset");
    });
    let start = Instant::now();
    let a = send(&http, "GET", &url, &basic("fresh", "freshpass1"), None);
    assert_eq!(a.status, 200, "{a:?}");
    let first = start.elapsed();
    for auth in [&Auth::None, &bench, &t] {
        run(auth, 200); // warm-up
    }
    // The modes take turns in batches of 100, so load from elsewhere on the machine
    // falls on all three alike; N requests per mode in all.
    let modes = [
        ("anonymous", &Auth::None),
        ("Basic (cached)", &bench),
        ("Bearer", &t),
    ];
    let mut total = [Duration::ZERO; 3];
    let mut best = [Duration::MAX; 3];
    for _ in 0..N / 100 {
        for (i, (_, auth)) in modes.iter().enumerate() {
            let per = run(auth, 100);
            total[i] += per * 100;
            best[i] = best[i].min(per);
        }
    }
    eprintln!("manifest GET, {N} sequential requests per mode, one keep-alive connection, in-process server:");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (i, (name, _)) in modes.iter().enumerate() {
        let mean = total[i] / N as u32;
        eprintln!(
            "  {name:<15} mean {:6.1} µs/req ({:+5.1} vs anonymous) | best batch {:6.1} µs/req ({:+5.1})",
            us(mean),
            us(mean) - us(total[0] / N as u32),
            us(best[i]),
            us(best[i]) - us(best[0]),
        );
    }
    eprintln!("  first Basic request of a new credential (bcrypt cost {cost}): {first:?}");
    drop(rt);
}
