//! Level-triggered for real (issue 13, part 5), end to end: `berth serve`
//! with the directory deployer and two `berth edge` caches as nodes.
//!
//! What this proves: once an app runs on two nodes, a change to a config
//! map's data or a secret's value reaches both without a second publish, and
//! the pod template's checksum annotation changes (so the pods roll); the
//! publication shows the resources generation it runs, each propagation is
//! in the audit log, and the template version stays; a load balancer created
//! while the app runs follows it to both nodes. Every file validates with
//! `kubernetes-validate --strict`.

mod controller_support;

use std::time::Duration;

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::wait_until;
use controller_support::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn path(p: &str) -> String {
    format!("/api/v1/projects/{PROJECT}/{p}")
}

fn checksum(site: &Site, node: &str) -> String {
    let d = site.read_manifest(node, &format!("acme-web-deployment-web-{node}.yaml"));
    d["spec"]["template"]["metadata"]["annotations"]["berth.dev/config-checksum"]
        .as_str()
        .unwrap_or_else(|| panic!("no checksum annotation: {d:#}"))
        .to_string()
}

fn validate_all(site: &Site) {
    for n in ["r1", "r2"] {
        let files: Vec<_> = site
            .manifests(n)
            .into_iter()
            .map(|f| site.manifests_dir(n).join(f))
            .collect();
        kubernetes_validate(&files, &[]);
    }
}

/// The audit log gets the entry within a while (entries are written after
/// the answer, not before it); panics naming it otherwise.
fn audit_has(site: &Site, action: &str, target_prefix: &str, outcome: &str) -> bool {
    wait_until(
        &format!("audit entry {action} {target_prefix}: {outcome}"),
        Duration::from_secs(20),
        || audit_has_now(site, action, target_prefix, outcome),
    );
    true
}

fn audit_has_now(site: &Site, action: &str, target_prefix: &str, outcome: &str) -> bool {
    let (_, v) = site.api("GET", "/api/v1/audit?project=acme", None);
    v.as_array().is_some_and(|events| {
        events.iter().any(|e| {
            e["action"] == action
                && e["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(target_prefix))
                && format!(
                    "{} {}",
                    e["outcome"].as_str().unwrap_or(""),
                    e["detail"].as_str().unwrap_or("")
                )
                .contains(outcome)
        })
    })
}

#[test]
fn changes_reach_every_node_where_the_app_runs_without_a_publish() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    for n in ["r1", "r2"] {
        let url = site.registry_url();
        site.add_edge(n, &url, json!({"site": "shop"}));
    }
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    let (s, v) = site.api(
        "POST",
        &path("configmaps"),
        Some(json!({"name": "settings", "data": {"app.conf": "greeting=hello\n"}})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = site.api(
        "POST",
        &path("secrets"),
        Some(json!({"name": "creds", "data": {"token": "first"}})),
    );
    assert_eq!(s, 201, "{v}");
    site.create_app(
        json!({"name": "web", "spec": {"kind": "Deployment", "containers": [{
        "name": "web", "image": "acme/web:1",
        "ports": [{"name": "http", "container_port": 8080}],
        "env_from": [{"secret": "creds"}],
        "volume_mounts": [{"name": "conf", "mount_path": "/etc/web"}]}],
        "volumes": [{"name": "conf", "config_map": "settings"}]}}),
    );
    site.publish("web", json!({"nodes": ["r1", "r2"]}));
    for n in ["r1", "r2"] {
        site.wait_state("web", n, "running", LONG);
    }
    validate_all(&site);
    let first: Vec<String> = ["r1", "r2"].iter().map(|n| checksum(&site, n)).collect();
    assert_eq!(first[0].len(), "sha256:".len() + 64, "{first:?}");

    // A config map's data changes: both nodes get it, the pods roll.
    let (s, v) = site.api(
        "PUT",
        &path("configmaps/settings"),
        Some(json!({"data": {"app.conf": "greeting=hi\n"}})),
    );
    assert_eq!(s, 200, "{v}");
    for (i, n) in ["r1", "r2"].iter().enumerate() {
        let p = site
            .wait_publication("web", n, "the change applied", LONG, |p| {
                p.is_some_and(|p| p["applied_resources_generation"] == 1 && p["state"] == "running")
            })
            .expect("web is published there");
        assert_eq!(p["resources_generation"], 1, "{p}");
        assert_eq!(p["version"], 1, "the template version stays: {p}");
        assert_ne!(
            checksum(&site, n),
            first[i],
            "{n}: the pod template changed"
        );
        let cm = site.read_manifest(n, &format!("acme-shared-configmap-settings-{n}.yaml"));
        assert_eq!(cm["data"]["app.conf"], "greeting=hi\n", "{cm:#}");
    }
    let second: Vec<String> = ["r1", "r2"].iter().map(|n| checksum(&site, n)).collect();
    assert!(audit_has(
        &site,
        "app.propagate",
        "web@r1 version 1 generation 1",
        "config map settings changed"
    ));
    assert!(audit_has(
        &site,
        "app.propagate",
        "web@r2 version 1 generation 1",
        "config map settings changed"
    ));

    // A secret's value changes: the same.
    let (s, v) = site.api(
        "PUT",
        &path("secrets/creds"),
        Some(json!({"data": {"token": "second"}})),
    );
    assert_eq!(s, 200, "{v}");
    for (i, n) in ["r1", "r2"].iter().enumerate() {
        site.wait_publication("web", n, "the secret applied", LONG, |p| {
            p.is_some_and(|p| p["applied_resources_generation"] == 2 && p["state"] == "running")
        });
        assert_ne!(
            checksum(&site, n),
            second[i],
            "{n}: the pods roll for a secret too"
        );
    }
    assert!(audit_has(
        &site,
        "app.propagate",
        "web@r2 version 1 generation 2",
        "secret creds changed"
    ));
    let (_, versions) = site.api("GET", &site.app_path("web/versions"), None);
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");

    // A load balancer created while web runs follows it to both nodes.
    let (s, v) = site.api(
        "POST",
        &path("loadbalancers"),
        Some(json!({"name": "web-lb", "app": "web", "ports": [{"port": 80, "target_port": 8080}]})),
    );
    assert_eq!(s, 201, "{v}");
    for n in ["r1", "r2"] {
        let file = format!("acme-web-service-web-lb-{n}.yaml");
        wait_until(&format!("web-lb on {n}"), LONG, || {
            site.manifests(n).contains(&file)
        });
    }
    let (_, lb) = site.api("GET", &path("loadbalancers/web-lb"), None);
    let states: Vec<&Value> = lb["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| &p["desired"])
        .collect();
    assert_eq!(states.len(), 2, "{lb}");
    validate_all(&site);
}

/// A rendered file edited or deleted by hand is put back at the next drift
/// check (`controller.drift_check_interval`), audited — also one of a config
/// map an unpublish without cascade left on the node, which no app's check
/// covers; a file berth did not write is left alone.
#[test]
fn drift_on_a_node_is_found_and_repaired() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start_with(&[("BERTH_CONTROLLER_DRIFT_CHECK_INTERVAL", "1s")]);
    let url = site.registry_url();
    site.add_edge("r1", &url, json!({"site": "shop"}));
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    let (s, v) = site.api(
        "POST",
        &path("configmaps"),
        Some(json!({"name": "settings", "data": {"app.conf": "greeting=hello\n"}})),
    );
    assert_eq!(s, 201, "{v}");
    site.create_app(
        json!({"name": "web", "spec": {"kind": "Deployment", "containers": [{
        "name": "web", "image": "acme/web:1",
        "volume_mounts": [{"name": "conf", "mount_path": "/etc/web"}]}],
        "volumes": [{"name": "conf", "config_map": "settings"}]}}),
    );
    site.publish("web", json!({"nodes": ["r1"]}));
    site.wait_state("web", "r1", "running", LONG);
    let dir = site.manifests_dir("r1");
    let deployment = dir.join("acme-web-deployment-web-r1.yaml");
    let config = dir.join("acme-shared-configmap-settings-r1.yaml");
    let foreign = dir.join("not-berths.yaml");
    let original = std::fs::read(&deployment).expect("deployment");
    let original_config = std::fs::read(&config).expect("config map");
    std::fs::write(&foreign, "kind: ConfigMap\nmetadata: {name: mine}\n").expect("foreign");
    let edited = String::from_utf8_lossy(&original).replace("replicas: 1", "replicas: 5");
    assert_ne!(
        edited.as_bytes(),
        &original[..],
        "the edit changes the file"
    );
    std::fs::write(&deployment, edited).expect("edit");
    std::fs::remove_file(&config).expect("delete");

    wait_until("the node repaired", LONG, || {
        std::fs::read(&deployment).is_ok_and(|b| b == original)
            && std::fs::read(&config).is_ok_and(|b| b == original_config)
    });
    assert!(audit_has(
        &site,
        "app.repair",
        "web@r1 version 1",
        "edited or deleted by hand"
    ));
    assert_eq!(
        std::fs::read_to_string(&foreign).expect("foreign"),
        "kind: ConfigMap\nmetadata: {name: mine}\n",
        "a file berth did not write is not touched"
    );
    site.wait_state("web", "r1", "running", LONG);
    let files: Vec<_> = site
        .manifests("r1")
        .into_iter()
        .filter(|f| f != "not-berths.yaml")
        .map(|f| dir.join(f))
        .collect();
    kubernetes_validate(&files, &[]);

    // web leaves r1 without cascade: settings stays there on its own, no
    // app's check covers it, and it is still repaired.
    site.unpublish("web", json!({"nodes": ["r1"]}));
    site.wait_publication("web", "r1", "removed", LONG, |p| p.is_none());
    assert_eq!(
        std::fs::read(&config).expect("settings stays"),
        original_config
    );
    let edited = String::from_utf8_lossy(&original_config).replace("hello", "by hand");
    assert_ne!(
        edited.as_bytes(),
        &original_config[..],
        "the edit changes it"
    );
    std::fs::write(&config, edited).expect("edit settings");
    wait_until("settings repaired", LONG, || {
        std::fs::read(&config).is_ok_and(|b| b == original_config)
    });
    assert!(audit_has(
        &site,
        "configmaps.repair",
        "settings@r1",
        "edited or deleted by hand"
    ));
    std::fs::remove_file(&config).expect("delete settings");
    wait_until("settings put back", LONG, || {
        std::fs::read(&config).is_ok_and(|b| b == original_config)
    });
    let (_, cm) = site.api("GET", &path("configmaps/settings"), None);
    assert_eq!(cm["publications"][0]["state"], "applied", "{cm}");
    kubernetes_validate(std::slice::from_ref(&config), &[]);
    assert_eq!(
        std::fs::read_to_string(&foreign).expect("foreign"),
        "kind: ConfigMap\nmetadata: {name: mine}\n",
        "still not touched"
    );
}

/// A node gone for good: `"force": true` drops the publication and its pins
/// at once (its edge is down); when the node comes back it is reconciled to
/// nothing — its objects removed and its pins released.
#[test]
fn a_force_unpublished_node_comes_back_to_nothing() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start_with(&[("BERTH_CONTROLLER_DRIFT_CHECK_INTERVAL", "1s")]);
    let url = site.registry_url();
    site.add_edge("r1", &url, json!({"site": "shop"}));
    let image = site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    let pinned = format!("{PROJECT}/web@{}", image.digest());
    site.create_app(
        json!({"name": "web", "spec": {"kind": "Deployment", "containers": [{
        "name": "web", "image": "acme/web:1"}]}}),
    );
    site.publish("web", json!({"nodes": ["r1"]}));
    site.wait_state("web", "r1", "running", LONG);
    assert!(site.edge("r1").pinned(&pinned));

    site.edge_mut("r1").process.kill9();
    // Without force the unpublish waits for the node; a developer may not force.
    let (s, v) = site.api(
        "POST",
        &site.app_path("web/unpublish"),
        Some(json!({"force": true})),
    );
    assert_eq!(s, 400, "force names the nodes: {v}");
    site.admin.create_user("dev", "dev2024ok");
    site.admin.add_member(PROJECT, "dev", "developer");
    let (s, v) = site.admin.as_user("dev", "dev2024ok").call(
        "POST",
        &site.app_path("web/unpublish"),
        Some(json!({"nodes": ["r1"], "force": true})),
    );
    assert_eq!(s, 403, "{v}");
    let (ok, out, err) = site.cli(&[
        "app",
        "unpublish",
        "acme/web",
        "--nodes",
        "r1",
        "--force",
        "--no-wait",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("r1: records dropped"), "{out}");
    assert!(site.publication("web", "r1").is_none(), "dropped at once");

    // The node comes back: nothing of web stays there.
    site.edge_mut("r1").process.start_again();
    wait_until("r1 reconciled to nothing", LONG, || {
        !site.edge("r1").pinned(&pinned) && site.manifests("r1").is_empty()
    });
    assert!(audit_has(
        &site,
        "app.force_unpublish",
        "web@r1",
        "reconciled to nothing"
    ));
}
