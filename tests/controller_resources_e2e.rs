//! Resources that travel with apps (issue 6), end to end: `berth serve` with
//! the directory deployer, two `berth edge` caches as nodes, images pushed to
//! a private project with skopeo.
//!
//! What this proves: an app with a ClusterIP load balancer, a route, an EIP,
//! a config map and a local volume publishes to two nodes in one call; every
//! file written is an object `kubernetes-validate --strict` accepts (the EIP
//! against its CRD); config and storage are written before the workload and
//! the network objects after it; a cascading unpublish from one node takes
//! only that node's files and keeps a config map another app still uses (and
//! says so); and each lifecycle rule refuses with a 409 naming the rule, then
//! allows the same call once its condition holds.

mod controller_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_testkit::fixtures::ImageBuilder;
use controller_support::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn error(v: &Value) -> String {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
        .to_string()
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Where an object sits in the publish order: config and storage (0), the
/// workload (1), network (2).
fn phase(file: &str) -> u8 {
    let kinds0 = ["-configmap-", "-secret-", "-persistentvolumeclaim-"];
    let kinds2 = ["-service-", "-elasticip-", "-ingress-"];
    if kinds0.iter().any(|k| file.contains(k)) {
        0
    } else if kinds2.iter().any(|k| file.contains(k)) {
        2
    } else {
        1
    }
}

#[test]
fn resources_publish_in_order_validate_and_follow_the_lifecycle_rules() {
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
        ImageBuilder::new()
            .layer_file("srv/web", "web\n")
            .layer_random(1 << 20),
    );
    site.push(
        "api",
        "1",
        ImageBuilder::new().layer_file("srv/api", "api\n"),
    );
    site.admin.create_user("dev", "dev2024ok");
    site.admin.add_member(PROJECT, "dev", "developer");
    site.admin.create_user("keeper", "keep2024ok");
    site.admin.add_member(PROJECT, "keeper", "maintainer");
    let shop = Shop { site: &site };
    a_config_map_and_a_volume_shared_by_two_apps(&shop);
    a_route_needs_a_clusterip_load_balancer(&shop);
    one_call_publishes_web_to_both_nodes_in_order(&shop);
    api_shares_the_config_map_and_the_volume_is_bound_on_both_nodes(&shop);
    data_loss_needs_a_maintainer_and_the_name_repeated(&shop);
    while_web_is_published_each_rule_refuses_with_a_409_naming_it(&shop);
    a_cascade_from_r1_removes_webs_files_there_and_keeps_what_api_uses(&shop);
    published_again_the_volume_is_bound_and_the_cli_says_what_it_keeps(&shop);
    still_published_on_r2_the_rules_hold_there(&shop);
    unpublished_the_claim_stays_until_released_then_each_rule_allows(&shop);
    api_unpublished_with_cascade_leaves_nothing_in_use(&shop);
}

/// The project's resources API on a site with nodes r1 and r2 (site `shop`).
struct Shop<'a> {
    site: &'a Site,
}

impl Shop<'_> {
    fn path(&self, path: &str) -> String {
        format!("/api/v1/projects/{PROJECT}/{path}")
    }
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.site.api("POST", &self.path(path), Some(body))
    }
    fn delete(&self, path: &str) -> (u16, Value) {
        self.site.api("DELETE", &self.path(path), None)
    }
}

fn created((s, v): (u16, Value)) {
    assert_eq!(s, 201, "{v}");
}

/// A refusal: 409 with an error naming `rule`.
fn refused((s, v): (u16, Value), rule: &str) {
    assert_eq!(s, 409, "{v}");
    assert!(error(&v).contains(rule), "expected {rule:?}: {v}");
}

/// The files web's publish writes to node `n`.
fn web_files(n: &str) -> Vec<String> {
    [
        "acme-shared-configmap-settings-{n}.yaml",
        "acme-shared-persistentvolumeclaim-data-{n}.yaml",
        "acme-web-deployment-web-{n}.yaml",
        "acme-web-elasticip-public-{n}.yaml",
        "acme-web-ingress-www-{n}.yaml",
        "acme-web-service-web-lb-{n}.yaml",
    ]
    .iter()
    .map(|f| f.replace("{n}", n))
    .collect()
}

/// Config map, local volume, two apps sharing the config map.
fn a_config_map_and_a_volume_shared_by_two_apps(shop: &Shop) {
    created(shop.post(
        "configmaps",
        json!({"name": "settings", "data": {"app.conf": "greeting=hello\n"}}),
    ));
    let (s, v) = shop.post("volumes", json!({"name": "data", "capacity": "1Gi"}));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["spec"]["storage_class"], "local-storage", "{v}");
    shop.site.create_app(
        json!({"name": "web", "spec": {"kind": "Deployment", "containers": [{
        "name": "web", "image": "acme/web:1",
        "ports": [{"name": "http", "container_port": 8080}],
        "volume_mounts": [
            {"name": "conf", "mount_path": "/etc/web"},
            {"name": "data", "mount_path": "/var/lib/web"}
        ]}],
        "volumes": [
            {"name": "conf", "config_map": "settings"},
            {"name": "data", "persistent_volume_claim": "data"}
        ]}}),
    );
    shop.site.create_app(
        json!({"name": "api", "spec": {"kind": "Deployment", "containers": [{
        "name": "api", "image": "acme/api:1",
        "ports": [{"name": "https", "container_port": 8443}],
        "volume_mounts": [{"name": "conf", "mount_path": "/etc/api"}]}],
        "volumes": [{"name": "conf", "config_map": "settings"}]}}),
    );
    // Rule: a local volume belongs to one app.
    let (s, v) = shop.post(
        "apps",
        json!({"name": "db", "spec": {"kind": "StatefulSet", "containers": [{
        "name": "db", "image": "acme/api:1",
        "volume_mounts": [{"name": "pg", "mount_path": "/var/lib/pg"}]}],
        "volumes": [{"name": "pg", "persistent_volume_claim": "data"}]}}),
    );
    refused(
        (s, v),
        "rule: a local volume belongs to one app; volume data is in the template of app web",
    );
}

/// Network. Rule: a route needs a ClusterIP load balancer.
fn a_route_needs_a_clusterip_load_balancer(shop: &Shop) {
    created(shop.post(
        "loadbalancers",
        json!({"name": "web-lb", "app": "web", "ports": [{"name": "http", "port": 80, "target_port": 8080}]}),
    ));
    created(shop.post(
        "loadbalancers",
        json!({"name": "api-lb", "app": "api", "type": "LoadBalancer", "ports": [{"port": 443, "target_port": 8443}]}),
    ));
    let (s, v) = shop.post(
        "routes",
        json!({"name": "api", "host": "api.example.com", "load_balancer": "api-lb", "port": 443}),
    );
    assert_eq!(s, 409, "{v}");
    assert!(
        error(&v).contains("rule: a route needs a ClusterIP load balancer"),
        "{v}"
    );
    created(shop.post(
        "routes",
        json!({"name": "www", "host": "shop.example.com", "load_balancer": "web-lb", "port": 80}),
    ));
    // web runs on two nodes: its EIP takes one address per node from the
    // cluster's pool (a static address is on one node at a time).
    let (s, v) = shop.site.api(
        "PATCH",
        "/api/v1/clusters/edge",
        Some(json!({"eip_pool": "203.0.113.6-203.0.113.9"})),
    );
    assert_eq!(s, 200, "{v}");
    created(shop.post(
        "eips",
        json!({"name": "public", "pool": true, "load_balancer": "web-lb"}),
    ));
}

fn one_call_publishes_web_to_both_nodes_in_order(shop: &Shop) {
    let answer = shop
        .site
        .publish("web", json!({"selector": {"site": "shop"}}));
    assert_eq!(
        answer["publications"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    for n in ["r1", "r2"] {
        let p = shop.site.wait_state("web", n, "running", LONG);
        web_on_a_node_is_valid_written_in_phase_order_and_applied_once(shop.site, n, &p);
    }
}

/// Checks web's files on node `n`: valid, written config and storage first,
/// then the workload, then network, applied once; and what the objects say.
fn web_on_a_node_is_valid_written_in_phase_order_and_applied_once(site: &Site, n: &str, p: &Value) {
    assert_eq!(site.manifests(n), web_files(n), "{n}");
    let dir = site.manifests_dir(n);
    let (eips, built_in): (Vec<String>, Vec<String>) = site
        .manifests(n)
        .into_iter()
        .partition(|f| f.contains("-elasticip-"));
    let paths: Vec<PathBuf> = built_in.iter().map(|f| dir.join(f)).collect();
    kubernetes_validate(&paths, &[eip_crd()]);
    assert_eq!(eips.len(), 1);
    let eip = site.read_manifest(n, &eips[0]);
    assert_valid_eip(&eip);
    let (_, v) = site.api(
        "GET",
        &format!("/api/v1/projects/{PROJECT}/eips/public"),
        None,
    );
    assert_eq!(eip["spec"]["address"], v["addresses"][n], "{eip:#} {v}");
    assert!(
        ["203.0.113.6", "203.0.113.7"].contains(&eip["spec"]["address"].as_str().unwrap_or("")),
        "{eip:#}"
    );
    assert_eq!(eip["spec"]["serviceName"], format!("web-lb-{n}"), "{eip:#}");

    // Publish order, as the files' modification times show it: nothing
    // of a later phase was written before something of an earlier one.
    let mut by_phase: Vec<(u8, SystemTime, String)> = site
        .manifests(n)
        .into_iter()
        .map(|f| (phase(&f), mtime(&dir.join(&f)), f))
        .collect();
    by_phase.sort();
    for w in by_phase.windows(2) {
        if w[0].0 < w[1].0 {
            assert!(
                w[0].1 <= w[1].1,
                "{n}: {} (phase {}) written after {} (phase {})",
                w[0].2,
                w[0].0,
                w[1].2,
                w[1].0
            );
        }
    }
    let latest0 = by_phase.iter().filter(|x| x.0 == 0).map(|x| x.1).max();
    let workload = by_phase.iter().find(|x| x.0 == 1).map(|x| x.1);
    let earliest2 = by_phase.iter().filter(|x| x.0 == 2).map(|x| x.1).min();
    assert!(
        latest0 <= workload && workload <= earliest2,
        "{n}: {by_phase:?}"
    );
    println!("{n}: write order {by_phase:?}");
    let applied = p["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["detail"] == "applied version 1 (6 objects)")
        .count();
    assert_eq!(applied, 1, "{:#}", p["history"]);

    // What the objects say.
    let d = site.read_manifest(n, &format!("acme-web-deployment-web-{n}.yaml"));
    let pod = &d["spec"]["template"]["spec"];
    let vols = pod["volumes"].as_array().expect("volumes");
    assert!(
        vols.iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == format!("data-{n}")),
        "{d:#}"
    );
    assert!(
        vols.iter()
            .any(|v| v["configMap"]["name"] == format!("settings-{n}")),
        "{d:#}"
    );
    let pvc = site.read_manifest(
        n,
        &format!("acme-shared-persistentvolumeclaim-data-{n}.yaml"),
    );
    assert_eq!(pvc["spec"]["storageClassName"], "local-storage", "{pvc:#}");
    let svc = site.read_manifest(n, &format!("acme-web-service-web-lb-{n}.yaml"));
    assert_eq!(svc["spec"]["type"], "ClusterIP", "{svc:#}");
    let ing = site.read_manifest(n, &format!("acme-web-ingress-www-{n}.yaml"));
    assert_eq!(
        ing["spec"]["rules"][0]["host"], "shop.example.com",
        "{ing:#}"
    );
}

fn api_shares_the_config_map_and_the_volume_is_bound_on_both_nodes(shop: &Shop) {
    shop.site.publish("api", json!({"nodes": ["r1", "r2"]}));
    for n in ["r1", "r2"] {
        shop.site.wait_state("api", n, "running", LONG);
        let f = shop
            .site
            .manifests_dir(n)
            .join(format!("acme-api-deployment-api-{n}.yaml"));
        let svc = shop
            .site
            .manifests_dir(n)
            .join(format!("acme-api-service-api-lb-{n}.yaml"));
        kubernetes_validate(&[f, svc], &[]);
    }
    let (_, v) = shop.site.api("GET", &shop.path("volumes/data"), None);
    let states: Vec<(String, String)> = v["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .map(|b| {
            (
                b["node"].as_str().expect("node").to_string(),
                b["state"].as_str().expect("state").to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![("r1".into(), "bound".into()), ("r2".into(), "bound".into())],
        "{v}"
    );
}

/// What loses a volume's data: the maintainer role, and the volume's name
/// repeated in `confirm` (400 naming the field when missing or wrong).
fn data_loss_needs_a_maintainer_and_the_name_repeated(shop: &Shop) {
    let dev = shop.site.admin.as_user("dev", "dev2024ok");
    for (path, body) in [
        ("volumes/data/unpublish", json!({"confirm": "data"})),
        (
            "volumes/data/release",
            json!({"node": "r1", "confirm": "data"}),
        ),
    ] {
        let (s, v) = dev.call("POST", &shop.path(path), Some(body));
        assert_eq!(s, 403, "{path}: {v}");
        assert!(error(&v).contains("maintainer role"), "{v}");
    }
    let (s, v) = dev.call("DELETE", &shop.path("volumes/data?confirm=data"), None);
    assert_eq!(s, 403, "{v}");
    for (path, body) in [
        ("volumes/data/unpublish", json!({})),
        ("volumes/data/unpublish", json!({"confirm": "other"})),
        ("volumes/data/release", json!({"node": "r1"})),
        (
            "volumes/data/release",
            json!({"node": "r1", "confirm": "dat"}),
        ),
    ] {
        let (s, v) = shop.post(path, body.clone());
        assert_eq!(s, 400, "{path} {body}: {v}");
        assert!(error(&v).starts_with("confirm: "), "{v}");
        assert!(error(&v).contains("\"confirm\": \"data\""), "{v}");
    }
    let (s, v) = shop.delete("volumes/data");
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).starts_with("confirm: "), "{v}");
    // Nothing was taken off.
    for n in ["r1", "r2"] {
        assert!(shop
            .site
            .manifests(n)
            .contains(&format!("acme-shared-persistentvolumeclaim-data-{n}.yaml")));
    }
}

fn while_web_is_published_each_rule_refuses_with_a_409_naming_it(shop: &Shop) {
    refused(
        shop.post(
            "volumes/data/release",
            json!({"node": "r1", "confirm": "data"}),
        ),
        "rule: a volume cannot be released while an app using it is published",
    );
    refused(
        shop.post("volumes/data/unbind", json!({"node": "r1"})),
        "rule: a volume is unbound only after it is released",
    );
    refused(
        shop.delete("volumes/data?confirm=data"),
        "rule: a volume can only be deleted after it is released",
    );
    refused(
        shop.delete("loadbalancers/web-lb"),
        "rule: a load balancer in use cannot be deleted",
    );
    refused(
        shop.delete("loadbalancers/api-lb"),
        "rule: a resource is deleted only when it is published nowhere; load balancer api-lb is published on r1, r2",
    );
    refused(
        shop.delete("routes/www"),
        "rule: a resource is deleted only when it is published nowhere; route www is published on r1, r2",
    );
    refused(
        shop.delete("eips/public"),
        "rule: a resource is deleted only when it is published nowhere; EIP public is published on r1, r2",
    );
}

/// Cascade from r1: web's files go from r1 only; the config map api uses stays.
fn a_cascade_from_r1_removes_webs_files_there_and_keeps_what_api_uses(shop: &Shop) {
    let answer = shop
        .site
        .unpublish("web", json!({"nodes": ["r1"], "cascade": true}));
    assert_eq!(
        answer["kept"],
        json!([
            "config map settings kept on r1: still used by api",
            "volume data kept on r1 with its data: release it on its own (maintainer role, \"confirm\": \"data\")"
        ]),
        "{answer}"
    );
    shop.site
        .wait_publication("web", "r1", "removed", LONG, |p| p.is_none());
    assert_eq!(
        shop.site.manifests("r1"),
        vec![
            "acme-api-deployment-api-r1.yaml",
            "acme-api-service-api-lb-r1.yaml",
            "acme-shared-configmap-settings-r1.yaml",
            "acme-shared-persistentvolumeclaim-data-r1.yaml",
        ]
    );
    let mut r2 = web_files("r2");
    r2.extend([
        "acme-api-deployment-api-r2.yaml".to_string(),
        "acme-api-service-api-lb-r2.yaml".to_string(),
    ]);
    r2.sort();
    assert_eq!(shop.site.manifests("r2"), r2, "r2 keeps everything");
    assert_eq!(
        shop.site.publication("web", "r2").expect("web@r2")["state"],
        "running"
    );
    // A cascade never takes a volume's data.
    let (_, v) = shop.site.api("GET", &shop.path("volumes/data"), None);
    assert_eq!(v["bindings"][0]["node"], "r1", "{v}");
    assert_eq!(v["bindings"][0]["state"], "bound", "{v}");
}

/// Published again, the volume is bound again; `berth app unpublish
/// --cascade` says what it keeps, and why.
fn published_again_the_volume_is_bound_and_the_cli_says_what_it_keeps(shop: &Shop) {
    shop.site.publish("web", json!({"nodes": ["r1"]}));
    shop.site.wait_state("web", "r1", "running", LONG);
    assert_eq!(
        shop.site.manifests("r1").len(),
        8,
        "{:?}",
        shop.site.manifests("r1")
    );
    let (_, v) = shop.site.api("GET", &shop.path("volumes/data"), None);
    assert_eq!(v["bindings"][0]["state"], "bound", "{v}");
    let (ok, out, err) =
        shop.site
            .cli(&["app", "unpublish", "acme/web", "--nodes", "r1", "--cascade"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("config map settings kept on r1: still used by api"),
        "{out}"
    );
    assert!(out.contains("r1") && out.contains("removed"), "{out}");
    assert!(
        out.contains("volume data kept on r1 with its data"),
        "{out}"
    );
    assert!(shop.site.publication("web", "r1").is_none());
    assert_eq!(
        shop.site.manifests("r1").len(),
        4,
        "{:?}",
        shop.site.manifests("r1")
    );
    let (_, v) = shop.site.api("GET", &shop.path("volumes/data"), None);
    assert_eq!(v["bindings"][0]["state"], "bound", "{v}");
}

fn still_published_on_r2_the_rules_hold_there(shop: &Shop) {
    refused(
        shop.post(
            "volumes/data/release",
            json!({"node": "r2", "confirm": "data"}),
        ),
        "rule: a volume cannot be released while an app using it is published",
    );
    refused(
        shop.delete("routes/www"),
        "rule: a resource is deleted only when it is published nowhere; route www is published on r2",
    );
}

/// Unpublished without cascade, the claim stays until released; then each
/// rule allows what it refused.
fn unpublished_the_claim_stays_until_released_then_each_rule_allows(shop: &Shop) {
    shop.site.unpublish("web", json!({"nodes": ["r2"]}));
    shop.site
        .wait_publication("web", "r2", "removed", LONG, |p| p.is_none());
    assert!(shop
        .site
        .manifests("r2")
        .contains(&"acme-shared-persistentvolumeclaim-data-r2.yaml".to_string()));
    refused(
        shop.post("volumes/data/unbind", json!({"node": "r2"})),
        "rule: a volume is unbound only after it is released",
    );
    refused(
        shop.delete("volumes/data?confirm=data"),
        "rule: a volume can only be deleted after it is released",
    );
    // A maintainer releases it on r2; the CLI releases it on r1.
    let keeper = shop.site.admin.as_user("keeper", "keep2024ok");
    let (s, v) = keeper.call(
        "POST",
        &shop.path("volumes/data/release"),
        Some(json!({"node": "r2", "confirm": "data"})),
    );
    assert_eq!(s, 200, "release once nothing using it is published: {v}");
    assert!(!shop
        .site
        .manifests("r2")
        .contains(&"acme-shared-persistentvolumeclaim-data-r2.yaml".to_string()));
    let (ok, out, err) = shop
        .site
        .cli(&["volume", "release", "acme/data", "--node", "r1"]);
    assert!(!ok && err.contains("confirm: "), "{out}{err}");
    let (ok, out, err) = shop.site.cli(&[
        "volume",
        "release",
        "acme/data",
        "--node",
        "r1",
        "--confirm",
        "data",
    ]);
    assert!(ok, "{out}{err}");
    assert!(shop
        .site
        .manifests("r1")
        .iter()
        .all(|f| !f.contains("persistentvolumeclaim")));
    // Deleted after release while web's template still names it; a later
    // publish of that template is refused, naming the volume.
    let (s, v) = shop.delete("volumes/data?confirm=data");
    assert_eq!(s, 204, "delete once released everywhere: {v}");
    let (s, v) = shop.site.api(
        "POST",
        &shop.site.app_path("web/publish"),
        Some(json!({"nodes": ["r2"]})),
    );
    refused((s, v), "names volume data, which does not exist");
    // Unbind takes it out of web's template (a new version), so another app
    // may name a volume called data.
    let (ok, out, err) = shop.site.cli(&["volume", "unbind", "acme/data"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("new template version without it: web@2"),
        "{out}"
    );
    let (_, v) = shop
        .site
        .api("GET", &shop.site.app_path("web/versions"), None);
    let latest = v
        .as_array()
        .and_then(|a| a.last())
        .expect("versions")
        .clone();
    assert_eq!(latest["version"], 2, "{v}");
    assert_eq!(latest["summary"], "volume data unbound", "{v}");
    assert_eq!(latest["author"], "admin", "{v}");
    assert!(
        !latest["spec"]
            .to_string()
            .contains("persistent_volume_claim"),
        "{latest}"
    );
    created(shop.post("volumes", json!({"name": "data", "capacity": "1Gi"})));
    created(shop.post(
        "apps",
        json!({"name": "db", "spec": {"kind": "StatefulSet", "containers": [{
        "name": "db", "image": "acme/api:1",
        "volume_mounts": [{"name": "pg", "mount_path": "/var/lib/pg"}]}],
        "volumes": [{"name": "pg", "persistent_volume_claim": "data"}]}}),
    ));
    // Each data loss is in the audit log, with who asked.
    let (s, v) = shop.site.api("GET", "/api/v1/audit?project=acme", None);
    assert_eq!(s, 200, "{v}");
    let events = v.as_array().expect("audit events");
    let has = |actor: &str, action: &str, target: &str, outcome: &str| {
        events.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["target"] == target
                // "ok" / "refused: why": the outcome word, then its detail.
                && match e["detail"].as_str() {
                    Some(d) => format!("{}: {d}", e["outcome"].as_str().unwrap_or("")),
                    None => e["outcome"].as_str().unwrap_or("").to_string(),
                }
                .starts_with(outcome)
        })
    };
    assert!(has("keeper", "volumes.release", "data@r2", "ok"), "{v:#}");
    assert!(has("admin", "volumes.release", "data@r1", "ok"), "{v:#}");
    assert!(has("admin", "volumes.delete", "data", "ok"), "{v:#}");
    assert!(
        has("admin", "volumes.release", "data", "refused: confirm: "),
        "{v:#}"
    );
    assert!(
        has(
            "admin",
            "volumes.unbind",
            "data",
            "ok: new template versions without it: web@2"
        ),
        "{v:#}"
    );

    refused(
        shop.delete("loadbalancers/web-lb"),
        "rule: a load balancer in use cannot be deleted",
    );
    let (s, v) = shop.delete("routes/www");
    assert_eq!(s, 204, "route of an unpublished app: {v}");
    let (s, v) = shop.delete("eips/public");
    assert_eq!(s, 204, "EIP of an unpublished app: {v}");
    let (s, v) = shop.delete("loadbalancers/web-lb");
    assert_eq!(
        s, 204,
        "load balancer without route or EIP, app unpublished: {v}"
    );
}

fn api_unpublished_with_cascade_leaves_nothing_in_use(shop: &Shop) {
    shop.site
        .unpublish("api", json!({"nodes": ["r1", "r2"], "cascade": true}));
    for n in ["r1", "r2"] {
        shop.site
            .wait_publication("api", n, "removed", LONG, |p| p.is_none());
        assert!(
            shop.site.manifests(n).is_empty(),
            "{n}: {:?}",
            shop.site.manifests(n)
        );
    }
    let (s, v) = shop.delete("loadbalancers/api-lb");
    assert_eq!(s, 204, "load balancer of an unpublished app: {v}");
    let (s, v) = shop.delete("configmaps/settings");
    assert_eq!(s, 204, "config map nothing uses: {v}");
    let (s, v) = shop.delete("volumes/data?confirm=data");
    assert_eq!(s, 204, "a volume never published: {v}");
}
