//! Rotating the sealing key (`controller.secret_key`) with overlap: values
//! sealed with K1 (an app's secret, a proxy project's upstream password, a
//! webhook's secret, the cluster's kubeconfig)
//! still open once K2 seals and K1 is only in
//! `controller.previous_secret_keys`; `berth reseal` moves them all to K2,
//! after which K1 can go and everything still opens. A key dropped before
//! its values were resealed is named in the errors (the reseal's, a pull's,
//! a webhook delivery's); nothing panics and no value reaches the log.

mod controller_support;

use std::path::Path;
use std::time::Duration;

use berth_testkit::berth::{registry_with, Registry, ADMIN_PASSWORD};
use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::http::{basic, push_image, send, Auth};
use berth_testkit::receiver::{HookReceiver, Received};
use berth_testkit::wait_until;
use controller_support::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);
const APP_SECRET: &str = "Zq9rotatedSECRETvalue";
const PULLER: &str = "puller";
const PULLER_PASSWORD: &str = "puller2024rotate";
const SECRET_FILE: &str = "acme-shared-secret-creds-r1.yaml";

fn b64(v: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
}

/// The configuration file `berth serve` reads: the sealing keys.
fn keys(file: &Path, current: &str, previous: &[&str]) {
    let previous: Vec<String> = previous.iter().map(|k| format!("\"{k}\"")).collect();
    let text = format!(
        "[controller]\nsecret_key = \"{current}\"\nprevious_secret_keys = [{}]\n",
        previous.join(", ")
    );
    std::fs::write(file, text).expect("config");
}

/// The upstream of the proxy project: a berth with a private project
/// only `puller` reads, tags v1..v3 of vendor/app.
fn upstream() -> Registry {
    let up = registry_with(berth_testkit::berth_bin!(), &[], &[]);
    let admin = up.admin();
    admin.create_project("vendor", false);
    admin.create_user(PULLER, PULLER_PASSWORD);
    admin.add_member("vendor", PULLER, "guest");
    let http = reqwest::blocking::Client::new();
    for tag in ["v1", "v2", "v3"] {
        push_image(
            &http,
            &up.url(),
            &basic("admin", ADMIN_PASSWORD),
            "vendor/app",
            tag,
        );
    }
    up
}

/// A pull through the proxy project (never pulled before: it needs the
/// upstream password): the status and the answer.
fn pull_through(site: &Site, tag: &str) -> (u16, String) {
    let a = send(
        &reqwest::blocking::Client::new(),
        "GET",
        &format!(
            "{}/v2/mirror/vendor/app/manifests/{tag}",
            site.registry_url()
        ),
        &Auth::Basic("admin".into(), ADMIN_PASSWORD.into()),
        None,
    );
    (a.status, format!("{}: {}", a.describe(), a.message))
}

fn signed_with(r: &Received, secret: &str) -> bool {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&r.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    r.header("x-berth-signature") == Some(want.as_str())
}

/// Pushes a tag to `acme/hooked`; waits for its event, signed with `secret`.
fn hook_signs(site: &Site, rx: &HookReceiver, tag: &str, secret: &str) {
    let http = reqwest::blocking::Client::new();
    let auth = basic("admin", ADMIN_PASSWORD);
    push_image(&http, &site.registry_url(), &auth, "acme/hooked", tag);
    let got = wait_until(&format!("the event of {tag}"), LONG, || {
        rx.received()
            .into_iter()
            .find(|r| r.json().to_string().contains(tag))
            .ok_or_else(|| "not yet".to_string())
    });
    assert!(
        signed_with(&got, secret),
        "signed with the endpoint's secret"
    );
}

/// Takes the app off r1 and publishes it again: the Secret is rendered anew
/// from the stored, sealed value.
fn republish(site: &Site) -> Value {
    site.unpublish("web", json!({"nodes": ["r1"], "cascade": true}));
    wait_until("the secret off r1", LONG, || {
        let files = site.manifests("r1");
        if files.iter().any(|f| f.contains("secret-creds")) {
            Err(format!("{files:?}"))
        } else {
            Ok(())
        }
    });
    site.publish("web", json!({"nodes": ["r1"]}));
    site.wait_state("web", "r1", "running", LONG);
    site.read_manifest("r1", SECRET_FILE)
}

fn reseal(site: &Site) -> (bool, Value, String) {
    let (ok, stdout, stderr) = site.cli(&["reseal", "--json"]);
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (ok, v, stderr)
}

#[test]
fn values_sealed_with_an_old_key_open_until_resealed_then_the_key_can_go() {
    if !tools_present() {
        return;
    }
    let (k1, k2, k3) = ("a1".repeat(32), "b2".repeat(32), "c3".repeat(32));
    let up = upstream();
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("berth.toml");
    keys(&config, &k1, &[]);
    let mut site = Site::start_with(&[
        ("BERTH_CONFIG", config.to_str().expect("utf-8")),
        ("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true"),
        ("BERTH_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true"),
        ("BERTH_WEBHOOKS_RETRY_INITIAL", "1s"),
        ("BERTH_WEBHOOKS_RETRY_MAX", "1s"),
    ]);
    let url = site.registry_url();
    site.add_edge("r1", &url, json!({}));
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );

    // Sealed with K1: the app's secret, the proxy password, the webhook's.
    let (s, v) = site.api(
        "POST",
        "/api/v1/projects/acme/secrets",
        Some(json!({"name": "creds", "data": {"password": APP_SECRET}})),
    );
    assert_eq!(s, 201, "{v}");
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": "acme/web:1", "env_from": [{"secret": "creds"}]}]}}));
    let (s, v) = site.api(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "mirror", "proxy": {"url": up.url(), "username": PULLER, "password": PULLER_PASSWORD}})),
    );
    assert_eq!(s, 201, "{v}");
    let rx = HookReceiver::start();
    let (s, v) = site.api(
        "POST",
        "/api/v1/projects/acme/webhooks",
        Some(json!({"url": rx.url(), "events": ["push"]})),
    );
    assert_eq!(s, 201, "{v}");
    let hook_secret = v["secret"].as_str().expect("secret").to_string();

    // K2 seals, K1 only opens: everything still works.
    keys(&config, &k2, &[&k1]);
    site.registry.server.restart();
    site.publish("web", json!({"nodes": ["r1"]}));
    site.wait_state("web", "r1", "running", LONG);
    let text = site.read_manifest("r1", SECRET_FILE).to_string();
    assert!(text.contains(&b64(APP_SECRET)), "the node's Secret: {text}");
    let (status, answer) = pull_through(&site, "v1");
    assert_eq!(status, 200, "{answer}");
    hook_signs(&site, &rx, "k2-with-k1", &hook_secret);

    // Resealed with K2, counted by kind.
    let (ok, report, stderr) = reseal(&site);
    assert!(ok, "{stderr}");
    assert_eq!(report["failed"], 0, "{report}");
    for kind in [
        "secret_values",
        "proxy_passwords",
        "webhook_secrets",
        "cluster_kubeconfigs",
    ] {
        assert!(
            report["kinds"][kind]["resealed"].as_u64() >= Some(1),
            "{kind}: {report}"
        );
    }
    let (ok, again, _) = reseal(&site);
    assert!(ok && again["resealed"] == 0, "nothing left: {again}");
    site.admin
        .audit_until("action=secrets.reseal", "the reseal", |e| e.len() >= 2);

    // K1 gone: everything still opens.
    keys(&config, &k2, &[]);
    site.registry.server.restart();
    let text = republish(&site).to_string();
    assert!(text.contains(&b64(APP_SECRET)), "the node's Secret: {text}");
    let (status, answer) = pull_through(&site, "v2");
    assert_eq!(status, 200, "{answer}");
    hook_signs(&site, &rx, "k2-alone", &hook_secret);

    // K2 dropped before its values were resealed: the errors name the key.
    keys(&config, &k3, &[]);
    site.registry.server.restart();
    let (ok, report, stderr) = reseal(&site);
    assert!(!ok, "a reseal that cannot open everything fails: {report}");
    assert!(report["failed"].as_u64() >= Some(4), "{report}");
    assert!(stderr.contains("previous_secret_keys"), "{stderr}");
    assert!(stderr.contains("was sealed with key"), "{stderr}");
    // A fast 404 (as for anything the proxy cannot get), saying why.
    let (status, answer) = pull_through(&site, "v3");
    assert_eq!(status, 404, "{answer}");
    assert!(answer.contains("previous_secret_keys"), "{answer}");
    let http = reqwest::blocking::Client::new();
    push_image(
        &http,
        &url,
        &basic("admin", ADMIN_PASSWORD),
        "acme/hooked",
        "k3",
    );
    let hooks = site.api("GET", "/api/v1/projects/acme/webhooks", None).1;
    let id = hooks[0]["id"].as_str().expect("webhook id").to_string();
    wait_until("a delivery that says why it failed", LONG, || {
        let (_, log) = site.api(
            "GET",
            &format!("/api/v1/projects/acme/webhooks/{id}/deliveries"),
            None,
        );
        let text = log.to_string();
        if text.contains("previous_secret_keys") {
            Ok(())
        } else {
            Err(text)
        }
    });
    assert!(site.registry.server.is_running(), "no panic");
    let log = site.registry.server.log();
    for value in [
        APP_SECRET,
        PULLER_PASSWORD,
        hook_secret.as_str(),
        &k1,
        &k2,
        &k3,
    ] {
        assert!(!log.contains(value), "the log shows a secret or a key");
    }
    assert!(!log.contains(&b64(APP_SECRET)));
}
