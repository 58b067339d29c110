//! The console's app and node screens in a real browser (headless Chromium
//! over WebDriver) against the built `berth serve` with its controller and
//! `berth edge` processes as nodes: an app created from pasted Kubernetes
//! YAML, published by a label selector and by picking a node, both nodes
//! reaching running in the live view with no reload (the rows arrive over
//! server-sent events), a second version's publish followed live, the
//! version diff, unpublish, a refusal in the API's words, and the pages on a
//! phone's width; a node registered and labelled from its form, its
//! kubeconfig exported, and an app's log (CRI files the test writes on the
//! node) followed as lines arrive; a node's page with its edge cache (bytes
//! used with a bar, the hit rate after a pull, the pinned image, the
//! prefetch job done, the upstream reachable, then unreachable once the
//! edge's link to it is gone). The app form and the resource screens are
//! `console_resources.rs`. Every test saves screenshots and fails on any
//! error the browser's console logs.

mod browser;
mod controller_support;

use std::time::Duration;

use berth_testkit::berth::ADMIN_PASSWORD;
use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::logs::{append, cri};
use berth_testkit::proxy::FaultProxy;
use browser::{blocking, rt, wait_reloading, Browser, Options};
use controller_support::{site_with_two_nodes, Site, PROJECT};
use serde_json::json;

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

        // An image that is not there: the node's row says failed, and why, live.
        blocking(|| {
            site.create_app(json!({"name": "ghost", "spec": {"kind": "Deployment",
                "containers": [{"name": "ghost", "image": "acme/ghost:404"}]}}))
        });
        b.goto(&format!("/ui/projects/{PROJECT}/apps/ghost")).await;
        b.find("#publications[data-stream=open]").await;
        blocking(|| site.publish("ghost", json!({"nodes": ["east"]})));
        let failed = "tr[data-node=east][data-state=failed]";
        wait_count(&b, failed, 1, PUBLISH, "ghost failed on east").await;
        let reason = b.text(&format!("{failed} td[data-label=Progress]")).await;
        assert!(reason.contains("acme/ghost:404"), "the reason: {reason}");
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
        b.screenshot("app").await;
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

#[test]
fn a_node_is_registered_and_labelled_its_kubeconfig_exported_and_an_apps_log_followed() {
    if !browser::available() {
        return;
    }
    const TOKEN: &str = "ctl-token-console-7f";
    let mut site = Site::start();
    let pods = site.tmp.path().join("pods");
    let dir = pods.join(format!("{PROJECT}_web-east-7d9f-abc12_uid-1/web"));
    std::fs::create_dir_all(&dir).expect("pod log dir");
    let log = dir.join("0.log");
    let line = |s: u32, text: &str| cri(&format!("{s:02}.0"), "stdout", "F", text);
    append(&log, &(line(1, "started") + &line(2, "listening on :8080")));
    let upstream = site.registry_url();
    let pods_dir = pods.to_str().expect("path").to_string();
    site.start_edge_with(
        "east",
        &upstream,
        &[
            ("BERTH_EDGE_POD_LOGS_DIR", &pods_dir),
            ("BERTH_EDGE_CONTROLLER_TOKEN", TOKEN),
        ],
    );
    let edge_url = site.edge("east").url();
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": "acme/web:1.0"}]}}));
    rt().block_on(async {
        let b = Browser::start("nodes", &site.registry_url(), Options::default()).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.click("nav.nav a[href='/ui/nodes']").await;
        // Registered from the form, with the edge's logs token.
        b.fill("#new-node input[name=name]", "east").await;
        b.fill("#new-node input[name=edge_url]", &edge_url).await;
        b.fill("#new-node input[name=labels]", "zone=test").await;
        b.fill("#new-node input[name=edge_controller_token]", TOKEN).await;
        b.click("#new-node button[type=submit]").await;
        b.find("#nodes tr[data-node=east]").await;
        assert!(b.text("#nodes tr[data-node=east]").await.contains("logs"), "logs through the edge");
        assert!(!b.body().await.contains(TOKEN), "the token is never shown");
        // Labels changed in place: one added, the other kept.
        b.fill("tr[data-node=east] form.labels input[name=labels]", "zone=test,tier=edge").await;
        b.click("tr[data-node=east] form.labels button").await;
        b.find("#nodes").await;
        let labels = b.find("tr[data-node=east] form.labels input[name=labels]").await;
        assert_eq!(labels.prop("value").await.expect("value").as_deref(), Some("tier=edge,zone=test"));
        b.screenshot("nodes").await;

        // The node's kubeconfig for project acme, as a file.
        let got = b
            .js_async(&format!(
                "const done = arguments[arguments.length - 1];
                 fetch('/ui/nodes/east/kubeconfig?project={PROJECT}')
                 .then(r => r.text().then(t => done([r.status, r.headers.get('content-disposition'), t])));"
            ))
            .await;
        assert_eq!(got[0], 200, "{got}");
        assert_eq!(got[1], format!("attachment; filename=\"kubeconfig-east-{PROJECT}.yaml\""));
        let yaml = got[2].as_str().unwrap_or("");
        assert!(yaml.contains("k8s.invalid:6443") && yaml.contains(&format!("namespace: {PROJECT}")), "{yaml}");
        b.no_console_errors(&[]).await;

        // The app's log on east, then followed as the test writes a line.
        b.goto(&format!("/ui/projects/{PROJECT}/apps/web/logs?node=east&tail=10")).await;
        b.find("pre#log[data-lines='2']").await;
        assert_eq!(b.text("pre#log").await, "started\nlistening on :8080");
        blocking(|| append(&log, &line(3, "GET / 200")));
        b.find("pre#log[data-lines='3']").await;
        assert_eq!(b.text("pre#log").await, "started\nlistening on :8080\nGET / 200");
        b.screenshot("logs").await;
        b.no_console_errors(&[]).await;
        b.close().await;

        // A guest, in Chinese: the app and its live view, no form the API would refuse.
        blocking(|| {
            site.admin.create_user("gus", "gusword2026");
            site.admin.add_member(PROJECT, "gus", "guest");
        });
        let zh = Options { languages: Some("zh-CN,zh"), ..Options::default() };
        let b = Browser::start("nodes-guest", &site.registry_url(), zh).await;
        b.sign_in("gus", "gusword2026").await;
        b.find("nav.nav").await;
        b.goto(&format!("/ui/projects/{PROJECT}/apps/web")).await;
        b.find("#publications[data-stream=open]").await;
        assert!(b.text("nav.tabs").await.contains("应用"), "{}", b.text("nav.tabs").await);
        assert!(b.body().await.contains("发布状态"));
        assert_eq!(b.count("#publish").await + b.count("form.unpublish").await, 0, "no publish for a guest");
        b.goto(&format!("/ui/projects/{PROJECT}/resources/volumes")).await;
        assert_eq!(b.count("#create").await, 0, "no create for a guest");
        b.goto(&format!("/ui/projects/{PROJECT}/apps")).await;
        assert_eq!(b.count("form[action$='/apps']").await, 0);
        b.screenshot("zh-apps").await;
        // The request a developer's form sends, with a valid token: the API's refusal.
        let forged = b
            .js_async(&format!(
                "const done = arguments[arguments.length - 1];
                 const t = document.querySelector('meta[name=csrf-token]').content;
                 fetch('/ui/projects/{PROJECT}/apps/web/publish', {{method: 'POST',
                   headers: {{'Content-Type': 'application/x-www-form-urlencoded'}},
                   body: 'csrf=' + encodeURIComponent(t) + '&node%3Aeast=true'}})
                 .then(r => r.text().then(x => done([r.status, x])));"
            ))
            .await;
        assert_eq!(forged[0], 403, "{forged}");
        assert!(forged[1].as_str().unwrap_or("").contains("change apps in project acme"), "{forged}");
        b.no_console_errors(&["/apps/web/publish"]).await;
        b.close().await;
    });
    let (s, v) = site.api("GET", "/api/v1/nodes/east", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["labels"], json!({"zone": "test", "tier": "edge"}));
}

#[test]
fn a_nodes_page_shows_its_edge_cache_and_an_upstream_gone() {
    if !browser::available() {
        return;
    }
    let mut site = Site::start();
    let image = site.push(
        "web",
        "1.0",
        ImageBuilder::new().layer_file("srv/index.html", "hello from berth\n"),
    );
    // The edge reaches the registry through a link the test can take away.
    let link = FaultProxy::start(&site.registry.host());
    site.add_edge("east", &link.url(), json!({"zone": "test"}));
    let edge = site.edge("east").url();
    let img = format!("{PROJECT}/web:1.0");
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{edge}/api/v1/prefetch"))
        .json(&json!({"images": [img], "pin": true}))
        .send()
        .expect("prefetch");
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().expect("job")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let layer = &image.layers[0].descriptor.digest;
    rt().block_on(async {
        let b = Browser::start("node-cache", &site.registry_url(), Options::default()).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.click("nav.nav a[href='/ui/nodes']").await;
        b.click("#nodes tr[data-node=east] a[href='/ui/nodes/east']")
            .await;
        b.find("#cache[data-reachable=true]").await;
        wait_reloading(
            &b,
            "/ui/nodes/east",
            &format!("#jobs tr[data-job='{id}'][data-state=done]"),
            1,
            "the prefetch job done",
        )
        .await;
        // A pull through the edge: a hit.
        let pulled = blocking(|| {
            http.get(format!("{edge}/v2/{PROJECT}/web/blobs/{layer}"))
                .send()
                .expect("pull")
        });
        assert!(pulled.status().is_success(), "{}", pulled.status());
        b.goto("/ui/nodes/east").await;
        let rate = b.text("#hit-rate b").await;
        assert!(rate.ends_with('%') && rate != "0.0%", "{rate}");
        let used = b.find("#used meter").await;
        let value: f64 = used
            .attr("value")
            .await
            .expect("attr")
            .unwrap_or_default()
            .parse()
            .unwrap_or(0.0);
        assert!(value > 0.0, "bytes used: {value}");
        assert!(!b.text("#capacity").await.is_empty());
        assert_eq!(
            b.count(&format!("#pinned tr[data-image='{img}']")).await,
            1,
            "the pinned image"
        );
        assert_eq!(b.count("#upstream[data-reachable=true]").await, 1);
        let job = b.text(&format!("#jobs tr[data-job='{id}']")).await;
        assert!(job.contains(&img), "{job}");
        b.screenshot("node-cache").await;
        b.no_console_errors(&[]).await;

        // The edge's upstream gone: the page says so, with the reason.
        drop(link);
        b.goto("/ui/nodes/east").await;
        b.find("#upstream[data-reachable=false] .reason").await;
        assert!(!b.text("#upstream .reason").await.is_empty());
        assert_eq!(
            b.count("#cache[data-reachable=true]").await,
            1,
            "the edge itself answers"
        );
        b.no_console_errors(&[]).await;
        b.close().await;

        // In Chinese, with the edge stopped: the node's page, not an error page.
        blocking(|| site.edge_mut("east").process.terminate());
        let zh = Options {
            languages: Some("zh-CN,zh"),
            ..Options::default()
        };
        let b = Browser::start("node-cache-zh", &site.registry_url(), zh).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.find("nav.nav").await;
        b.goto("/ui/nodes/east").await;
        b.find("#cache[data-reachable=false]").await;
        let why = b.text("#cache").await;
        assert!(
            why.contains("边缘缓存没有响应") && why.contains("unreachable"),
            "{why}"
        );
        b.screenshot("node-cache-unreachable-zh").await;
        b.no_console_errors(&[]).await;
        b.close().await;
    });
}
