//! Resource publications' state changes reach webhooks as app publications'
//! do (`io.berth.publication.changed`, topic `publication`): a config map
//! and a load balancer that travel with their app to a node, then the load
//! balancer unpublished and published again on its own, with a real
//! `berth edge` as the node; each change once, in order, chained.

mod controller_support;

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::hooks::{assert_chained, assert_signed, create_hook, WAIT};
use berth_testkit::receiver::HookReceiver;
use berth_testkit::wait::wait_until;
use controller_support::{tools_present, Site, PROJECT};
use serde_json::{json, Value};

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BERTH_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true"),
        ("BERTH_WEBHOOKS_RETRY_INITIAL", "1s"),
        ("BERTH_WEBHOOKS_RETRY_MAX", "1s"),
    ]
}

fn path(p: &str) -> String {
    format!("/api/v1/projects/{PROJECT}/{p}")
}

/// The data of every publication event about `subject` so far, once the
/// last of them is in state `last` (signatures checked; each id once).
fn events_of(rx: &HookReceiver, secret: &str, subject: &str, last: &str) -> Vec<Value> {
    wait_until(&format!("{subject} {last}"), WAIT, || {
        let mut ids = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for r in rx.received() {
            assert_signed(&r, secret);
            let ce = r.json();
            assert_eq!(ce["type"], "io.berth.publication.changed", "{ce}");
            let id = ce["id"].as_str().expect("id").to_string();
            if ce["subject"] == subject && ids.insert(id) {
                out.push(ce["data"].clone());
            }
        }
        if out.last().is_some_and(|d| d["state"] == last) {
            Ok(out)
        } else {
            Err(format!("{out:#?}"))
        }
    })
}

#[test]
fn resource_publications_send_their_state_changes() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start_with(&env());
    let rx = HookReceiver::start();
    let (_, secret) = create_hook(&site.registry, PROJECT, &rx.url(), &["publication"]);
    let url = site.registry_url();
    site.add_edge("n1", &url, json!({}));
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    let (s, v) = site.api(
        "POST",
        &path("configmaps"),
        Some(json!({"name": "settings", "data": {"a": "1"}})),
    );
    assert_eq!(s, 201, "{v}");
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": "acme/web:1",
            "ports": [{"name": "http", "container_port": 8080}],
            "volume_mounts": [{"name": "conf", "mount_path": "/etc/web"}]}],
        "volumes": [{"name": "conf", "config_map": "settings"}]}}));
    let (s, v) = site.api(
        "POST",
        &path("loadbalancers"),
        Some(json!({"name": "front", "app": "web", "ports": [{"port": 8080}]})),
    );
    assert_eq!(s, 201, "{v}");

    // Published with the app: from nothing to applied, each step once.
    site.publish("web", json!({"nodes": ["n1"]}));
    site.wait_state("web", "n1", "running", WAIT);
    for subject in ["configmaps/settings@n1", "loadbalancers/front@n1"] {
        let events = events_of(&rx, &secret, subject, "applied");
        assert_eq!(events[0]["state"], "pending", "{events:#?}");
        assert_chained(&events, Value::Null);
        let (kind, name) = subject
            .trim_end_matches("@n1")
            .split_once('/')
            .expect("kind/name");
        for e in &events {
            assert_eq!(
                (&e["project"], &e["kind"], &e["name"], &e["node"]),
                (&json!(PROJECT), &json!(kind), &json!(name), &json!("n1")),
                "{e}"
            );
            assert_eq!(e.get("version"), None, "an app's only: {e}");
        }
    }
    // The app's own events say what they are about too.
    let app = events_of(&rx, &secret, "web@n1", "running");
    assert!(
        app.iter()
            .all(|e| e["kind"] == "app" && e["name"] == "web" && e["app"] == "web"),
        "{app:#?}"
    );

    // Unpublished on its own: removing, then removed once off the node.
    let lb = "loadbalancers/front@n1";
    let before = events_of(&rx, &secret, lb, "applied").len();
    let (s, v) = site.api(
        "POST",
        &path("loadbalancers/front/unpublish"),
        Some(json!({"nodes": ["n1"]})),
    );
    assert_eq!(s, 202, "{v}");
    let all = events_of(&rx, &secret, lb, "removed");
    let after: Vec<&Value> = all[before..].iter().map(|e| &e["state"]).collect();
    assert_eq!(after, ["removing", "removed"], "{all:#?}");
    assert_chained(&all[before..], json!("applied"));

    // And back: a new record, from nothing again.
    let (s, v) = site.api(
        "POST",
        &path("loadbalancers/front/publish"),
        Some(json!({"nodes": ["n1"]})),
    );
    assert_eq!(s, 202, "{v}");
    let again = events_of(&rx, &secret, lb, "applied");
    assert_chained(&again[all.len()..], Value::Null);
    assert_eq!(again[all.len()]["state"], "pending", "{again:#?}");
}
