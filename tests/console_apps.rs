//! The console's app screens in a real browser (headless Chromium over
//! WebDriver) against the built `berth serve` with its controller and two
//! `berth edge` processes as nodes: an app created from pasted Kubernetes
//! YAML, published by a label selector and by picking a node, both nodes
//! reaching running in the live view with no reload (the rows arrive over
//! server-sent events), a second version's publish followed live, the
//! version diff, unpublish, a refusal in the API's words, and the pages on a
//! phone's width. Every test saves screenshots and fails on any error the
//! browser's console logs.

mod browser;
mod controller_support;

use std::time::Duration;

use berth_testkit::berth::ADMIN_PASSWORD;
use berth_testkit::fixtures::ImageBuilder;
use browser::{Browser, Options};
use controller_support::{Site, PROJECT};
use serde_json::json;

/// A runtime whose async test may call the kit's blocking API helpers (see [`blocking`]).
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs one of the kit's blocking calls (reqwest's blocking client) from the async test.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// How long a publish may take to reach running on a node.
const PUBLISH: Duration = Duration::from_secs(120);

const YAML: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: acme/web:1.0
";

/// A site with `acme/web:1.0` pushed and nodes `east` and `west` (both `zone=test`).
fn site_with_two_nodes() -> Site {
    let mut site = Site::start();
    site.push(
        "web",
        "1.0",
        ImageBuilder::new().layer_file("srv/index.html", "hello from berth\n"),
    );
    let upstream = site.registry_url();
    site.add_edge("east", &upstream, json!({"zone": "test", "side": "east"}));
    site.add_edge("west", &upstream, json!({"zone": "test", "side": "west"}));
    site
}

/// Waits (in the page, without reloading it) until `css` matches `n` elements.
async fn wait_count(b: &Browser, css: &str, n: usize, limit: Duration, what: &str) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if b.count(css).await == n {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let table = b.text("#publications").await;
            panic!("{what}: {css} never matched {n} elements; the table shows:\n{table}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn an_app_from_yaml_is_published_to_two_nodes_and_followed_live() {
    if !browser::available() || !controller_support::tools_present() {
        return;
    }
    let site = site_with_two_nodes();
    let app_path = site.app_path("web");
    let api = |m: &str, p: &str, b| blocking(|| site.api(m, p, b));
    rt().block_on(async {
        let b = Browser::start("apps", &site.registry_url(), Options::default()).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.find("nav.nav").await;

        // Created from pasted YAML.
        b.goto(&format!("/ui/projects/{PROJECT}/apps")).await;
        let set = format!(
            "document.querySelector('textarea[name=yaml]').value = {};",
            serde_json::to_string(YAML).expect("js string")
        );
        b.js(&set).await;
        b.click("form[action$='/apps'] button[type=submit]").await;
        b.find("#publications").await;
        assert_eq!(b.path().await, format!("/ui/projects/{PROJECT}/apps/web"));
        assert!(b.body().await.contains("acme/web:1.0"));
        assert_eq!(b.count("#publications tr[data-node]").await, 0);

        // A selector no node matches: refused in the API's words.
        b.fill("#publish input[name=selector]", "zone=nowhere").await;
        b.click("#publish button[type=submit]").await;
        let alert = b.text(".alert.bad").await;
        assert!(alert.contains("no node has the labels zone=nowhere"), "{alert}");
        // The page comes with the API's status: the browser logs that 400, and only it.
        b.no_console_errors(&["/apps/web/publish - Failed to load resource: the server responded with a status of 400"]).await;

        // Published by a label selector to both nodes; the page is not reloaded after.
        b.fill("#publish input[name=selector]", "zone=test").await;
        b.click("#publish button[type=submit]").await;
        b.find("#publications tr[data-node=east]").await;
        b.js("window.stillThisPage = true").await;
        b.find("#publications[data-stream=open]").await;
        wait_count(&b, "#publications tr[data-state=running]", 2, PUBLISH, "both nodes running").await;
        b.screenshot("live-publish").await;
        b.no_console_errors(&[]).await;

        // Version 2, published to east by the API while the page watches: its row follows live.
        let (s, v) = api("GET", &app_path, None);
        assert_eq!(s, 200, "{v}");
        let mut spec = v["latest"]["spec"].clone();
        spec["containers"][0]["env"] = json!([{"name": "GREETING", "value": "hello"}]);
        let (s, v) = api("PUT", &app_path, Some(json!({ "spec": spec })));
        assert_eq!(s, 200, "{v}");
        blocking(|| site.publish("web", json!({"nodes": ["east"], "version": 2})));
        wait_count(&b, "tr[data-node=east][data-version='2'][data-state=running]", 1, PUBLISH, "east on version 2").await;
        assert_eq!(b.js("return window.stillThisPage === true").await, true, "rows changed in place, not by a reload");
        let events = b.js("return Number(document.querySelector('#publications').dataset.events || 0)").await;
        assert!(events.as_u64().unwrap_or(0) >= 2, "rows came as events: {events}");
        assert_eq!(b.text("tr[data-node=west] td[data-label=Version]").await, "1", "a version per node");

        // Unpublished from west through its row (without its resources).
        b.click("tr[data-node=west] form.unpublish button").await;
        b.client.accept_alert().await.expect("the confirmation");
        b.find("#publications").await;
        b.js("window.stillThisPage = true").await;
        wait_count(&b, "#publications tr[data-node=west]", 0, PUBLISH, "west unpublished").await;
        assert_eq!(b.js("return window.stillThisPage === true").await, true);
        b.no_console_errors(&[]).await;

        // Picked from the node list: west again, with version 1.
        b.js("document.querySelector('#publish select[name=version]').value = '1'").await;
        b.click("#publish input[name='node:west']").await;
        b.click("#publish button[type=submit]").await;
        b.find("#publications tr[data-node=west]").await;
        wait_count(&b, "tr[data-node=west][data-version='1'][data-state=running]", 1, PUBLISH, "west back on version 1").await;

        // The version history and the diff of v1 and v2.
        b.click("a[href$='/apps/web/versions']").await;
        b.find("#versions tr[data-version='2']").await;
        let added = b.text("#diff pre.diff").await;
        assert!(added.contains("+ ") && added.contains("GREETING"), "{added}");
        b.screenshot("versions").await;

        // The list: each node's state and version.
        b.goto(&format!("/ui/projects/{PROJECT}/apps")).await;
        let nodes = b.text("tr[data-app=web] td[data-label=Nodes]").await;
        assert!(nodes.contains("east: running v2") && nodes.contains("west: running v1"), "{nodes}");
        b.screenshot("apps-list").await;
        b.no_console_errors(&[]).await;
        b.close().await;

        // A phone's width: nothing scrolls sideways; the live view still streams.
        let phone = Options { window: Some((390, 844)), ..Options::default() };
        let b = Browser::start("apps-narrow", &site.registry_url(), phone).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.find("label.nav-button").await;
        let overflow = "return document.documentElement.scrollWidth - document.documentElement.clientWidth";
        for path in [format!("/ui/projects/{PROJECT}/apps"), format!("/ui/projects/{PROJECT}/apps/web/versions")] {
            b.goto(&path).await;
            assert_eq!(b.js(overflow).await, 0, "{path} scrolls sideways");
        }
        b.goto(&format!("/ui/projects/{PROJECT}/apps/web")).await;
        b.find("#publications[data-stream=open]").await;
        assert_eq!(b.js(overflow).await, 0, "the app page scrolls sideways");
        b.screenshot("narrow-app").await;
        b.no_console_errors(&[]).await;
        b.close().await;
    });
    // What the browser did is what the controller holds.
    let east = site.publication("web", "east").expect("east");
    let west = site.publication("web", "west").expect("west");
    assert_eq!(
        (east["version"].as_u64(), west["version"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        (&east["state"], &west["state"]),
        (&json!("running"), &json!("running"))
    );
}
