//! A headless Chromium driven over WebDriver (`chromedriver`), for the
//! console's tests: start it, sign in, save screenshots, and fail on any
//! message the browser's console logged at error level.
//!
//! Tests call [`available`] first: without `chromedriver` they skip, except
//! under CI, where a missing browser is a failure.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use berth_testkit::{free_port, ServerProcess};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A runtime whose async test may call the kit's blocking API helpers (see [`blocking`]).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs one of the kit's blocking calls (reqwest's blocking client) from the async test.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// How long [`wait_reloading`] waits: a page showing what the controller
/// reaches in the background (a publish on a node).
const RELOADING: Duration = Duration::from_secs(120);

/// Reloads `path` until `css` matches `n` elements (pages that are not live).
pub async fn wait_reloading(b: &Browser, path: &str, css: &str, n: usize, what: &str) {
    let deadline = std::time::Instant::now() + RELOADING;
    loop {
        b.goto(path).await;
        if b.count(css).await == n {
            return;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "{what}: {css} never matched {n} elements on {path}:\n{}",
                b.body().await
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether the browser tests can run (see the module doc).
pub fn available() -> bool {
    berth_testkit::require_tools(&["chromedriver", "chromium"])
}

/// A browser session and the driver process behind it.
pub struct Browser {
    pub client: Client,
    pub base: String,
    /// The WebDriver session, ended on drop if the test did not close it
    /// (a failed assertion): chromedriver then quits its Chromium.
    session: Option<(u16, String)>,
    _driver: ServerProcess,
    shots: PathBuf,
    test: String,
}

/// Options for one browser.
#[derive(Default)]
pub struct Options {
    /// `Accept-Language`, e.g. `zh-CN,zh`.
    pub languages: Option<&'static str>,
    /// A phone's viewport (CSS pixels); a 1280 x 900 desktop window when absent.
    pub window: Option<(u32, u32)>,
}

impl Browser {
    pub async fn start(test: &str, base: &str, opts: Options) -> Browser {
        let port = free_port();
        let driver = ServerProcess::builder("chromedriver", port)
            .name("chromedriver")
            .arg(format!("--port={port}"))
            .ready_tcp()
            .spawn();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--window-size=1280,900",
        ];
        let mut prefs = json!({});
        if let Some(l) = opts.languages {
            prefs["intl"] = json!({ "accept_languages": l });
        }
        let mut caps = serde_json::Map::new();
        let mut chrome = json!({ "args": args, "prefs": prefs, "binary": "/usr/bin/chromium" });
        if let Some((w, h)) = opts.window {
            // A phone's viewport (a headless window has a minimum width of its own).
            chrome["mobileEmulation"] = json!({ "deviceMetrics": { "width": w, "height": h, "pixelRatio": 2.0, "touch": true } });
        }
        caps.insert("goog:chromeOptions".into(), chrome);
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("chromedriver session");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .map(|id| (port, id));
        let shots = std::env::temp_dir().join("berth-console-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Browser {
            client,
            base: base.trim_end_matches('/').to_string(),
            session,
            _driver: driver,
            shots,
            test: test.to_string(),
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("goto");
    }

    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.expect("url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Waits up to 10 s for an element. A page still loading answers
    /// "aborted by navigation" (a form just submitted, a link followed):
    /// that is waited out too, not only a missing element.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => return e,
                Err(e) if std::time::Instant::now() >= deadline => {
                    panic!("{}: no element {css}: {e}", self.test)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .len()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// The page's visible text.
    pub async fn body(&self) -> String {
        self.text("body").await
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("script")
    }

    /// Runs `script`, whose last argument is the callback to call with the result.
    pub async fn js_async(&self, script: &str) -> Value {
        self.client
            .execute_async(script, vec![])
            .await
            .expect("async script")
    }

    /// Fills the sign-in form and submits it.
    pub async fn sign_in(&self, name: &str, password: &str) {
        self.goto("/ui/login").await;
        self.fill("input[name=name]", name).await;
        self.fill("input[name=password]", password).await;
        self.click("form button[type=submit]").await;
    }

    /// Saves a screenshot as `<test>-<name>.png` and prints where.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// Fails the test on any error the browser's console logged since the
    /// last call, except messages containing one of `expected`.
    pub async fn no_console_errors(&self, expected: &[&str]) {
        let logs = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("browser log");
        let errors: Vec<&Value> = logs
            .as_array()
            .map(|a| a.iter().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"].as_str() == Some("SEVERE"))
            .filter(|e| {
                let m = e["message"].as_str().unwrap_or("");
                !expected.iter().any(|x| m.contains(x))
            })
            .collect();
        assert!(
            errors.is_empty(),
            "{}: the browser console logged errors: {errors:#?}",
            self.test
        );
    }

    pub async fn close(mut self) {
        self.session = None;
        self.client.clone().close().await.expect("close browser");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Some((port, id)) = self.session.take() else {
            return;
        };
        // Plain std I/O: this may run while a panic unwinds out of the test's runtime.
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
            let req = format!(
                "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if c.write_all(req.as_bytes()).is_ok() {
                let _ = c.read_to_end(&mut Vec::new());
            }
        }
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or("")))
    }
    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}
