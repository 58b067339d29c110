//! The web console's figures (issue: server render time of the repositories
//! page with 1,000 repositories and 10,000 tags, paginated, p99; bytes of a
//! first page load). berth only: distribution has no console to compare.
//!
//! `cargo bench --bench console_page` (`-- --quick`: 100 repositories, 1,000 tags).
//! Prints a markdown table and writes it to `$TMPDIR/berth-bench-console.md`.

use std::time::{Duration, Instant};

use berth_testkit::berth::{self, ADMIN_PASSWORD};
use berth_testkit::http::{basic, push_image_with, send};
use reqwest::blocking::Client;

const TAGS_PER_REPO: usize = 10;
const REQUESTS: usize = 500;

fn main() {
    let quick =
        std::env::args().any(|a| a == "--quick") || std::env::var_os("BERTH_BENCH_QUICK").is_some();
    let repos = if quick { 100 } else { 1000 };
    let reg = berth::registry(env!("CARGO_BIN_EXE_berth"));
    reg.admin().create_project("bench", false);
    eprintln!("pushing {repos} repositories x {TAGS_PER_REPO} tags ...");
    let started = Instant::now();
    let base = reg.url();
    std::thread::scope(|s| {
        for worker in 0..8 {
            let base = base.clone();
            s.spawn(move || fill(&base, worker, 8, repos));
        }
    });
    eprintln!("filled in {:.0} s", started.elapsed().as_secs_f64());

    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let cookie = sign_in(&http, &base);
    let get = |path: &str| {
        let res = http
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
            .expect("page");
        assert_eq!(res.status(), 200, "{path}");
        res.bytes().expect("body").len()
    };
    // First load: the page and what it references.
    let html = get("/ui/projects/bench");
    let page = http
        .get(format!("{base}/ui/projects/bench"))
        .header("cookie", &cookie)
        .send()
        .expect("page")
        .text()
        .expect("html");
    let mut first_load = html;
    for asset in page.split("\"/ui/static/").skip(1) {
        let path = asset.split('"').next().unwrap_or("").replace("&amp;", "&");
        first_load += get(&format!("/ui/static/{path}"));
    }
    let mut times = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let path = format!("/ui/projects/bench?page={}", 1 + i % (repos / 50).max(1));
        let t = Instant::now();
        get(&path);
        times.push(t.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let table = format!(
        "| console figure ({repos} repositories, {} tags) | value | target |\n|---|---|---|\n\
         | repositories page, p50 | {:.2} ms | |\n\
         | repositories page, p99 | {:.2} ms | < 5 ms |\n\
         | first page load (HTML, CSS, JS, icon) | {:.1} KB | < 150 KB |\n",
        repos * TAGS_PER_REPO,
        ms(pct(0.50)),
        ms(pct(0.99)),
        first_load as f64 / 1000.0
    );
    println!("{table}");
    let out = std::env::temp_dir().join("berth-bench-console.md");
    if std::fs::write(&out, &table).is_ok() {
        eprintln!("written to {}", out.display());
    }
}

/// Pushes repositories `worker`, `worker + stride`, ... with their tags.
fn fill(base: &str, worker: usize, stride: usize, repos: usize) {
    let http = Client::new();
    let auth = basic("admin", ADMIN_PASSWORD);
    for r in (worker..repos).step_by(stride) {
        let repo = format!("bench/app-{r:04}");
        let config = berth_testkit::manifest::config_for(&repo, "base");
        let layer = format!("layer of {repo}").into_bytes();
        let (manifest, _) = push_image_with(&http, base, &auth, (&repo, "t0"), &config, &[&layer]);
        for t in 1..TAGS_PER_REPO {
            let a = send(
                &http,
                "PUT",
                &format!("{base}/v2/{repo}/manifests/t{t}"),
                &auth,
                Some((
                    berth_testkit::fixtures::media_types::OCI_MANIFEST,
                    manifest.clone(),
                )),
            );
            assert_eq!(a.status, 201, "{repo}:t{t}");
        }
    }
}

/// Signs in as admin through the console's form; returns the session cookie.
fn sign_in(http: &Client, base: &str) -> String {
    let page = http
        .get(format!("{base}/ui/login"))
        .send()
        .expect("login page");
    let pre = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("berth_pre="))
        .and_then(|v| v.split(';').next())
        .expect("pre-session cookie")
        .to_string();
    let res = http
        .post(format!("{base}/ui/login"))
        .header("cookie", format!("berth_pre={pre}"))
        .form(&[
            ("csrf", pre.as_str()),
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("next", "/ui/projects"),
        ])
        .send()
        .expect("sign in");
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("berth_session="))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string()
}
