//! EIPs as the manual describes them (issue 13, part 3), end to end: `berth
//! serve` with the directory deployer and two `berth edge` caches as nodes
//! of one cluster.
//!
//! What this proves: a cluster's `eip_pool` (CIDR or range) is set with
//! PATCH and refused when malformed or when it would strand an allocated
//! address; a pool EIP bound to an app by selector travels with the app and
//! holds one address per node, released when it leaves a node and given
//! out again; concurrent publishes never get the same address, and an
//! exhausted pool refuses; a static address is unique and on one node at a
//! time; a selector binding an app with more than one replica is refused at
//! creation and when the app is later scaled; every ElasticIP written passes
//! against the CRD berth ships.

mod controller_support;

use std::collections::BTreeSet;
use std::time::Duration;

use berth_testkit::fixtures::ImageBuilder;
use controller_support::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn path(p: &str) -> String {
    format!("/api/v1/projects/{PROJECT}/{p}")
}

fn refused((s, v): (u16, Value), status: u16, words: &str) {
    assert_eq!(s, status, "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(e.contains(words), "expected {words:?}: {v}");
}

fn addresses(site: &Site, eip: &str) -> Value {
    let (s, v) = site.api("GET", &path(&format!("eips/{eip}")), None);
    assert_eq!(s, 200, "{v}");
    v["addresses"].clone()
}

fn eip_file(site: &Site, eip: &str, node: &str) -> Value {
    site.read_manifest(node, &format!("acme-web-elasticip-{eip}-{node}.yaml"))
}

#[test]
fn eips_take_addresses_by_their_rules_per_node() {
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

    // The cluster's pool: malformed is a 400 naming the field.
    refused(
        site.api(
            "PATCH",
            "/api/v1/clusters/edge",
            Some(json!({"eip_pool": "10.0.0.0/33"})),
        ),
        400,
        "eip_pool",
    );
    let (s, v) = site.api(
        "PATCH",
        "/api/v1/clusters/edge",
        Some(json!({"eip_pool": "198.51.100.8/30"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["eip_pool"], "198.51.100.8/30", "{v}");

    site.create_app(
        json!({"name": "web", "spec": {"kind": "Deployment", "containers": [{
        "name": "web", "image": "acme/web:1"}]}}),
    );
    site.create_app(
        json!({"name": "api", "spec": {"kind": "Deployment", "replicas": 3,
        "containers": [{"name": "api", "image": "acme/web:1"}]}}),
    );

    // One EIP maps to one container instance.
    refused(
        site.api("POST", &path("eips"), Some(json!({"name": "api-ip", "pool": true, "selector": {"app": "api"}}))),
        409,
        "rule: one EIP maps to one container instance; EIP api-ip's selector binds app api, which runs 3 replicas",
    );
    let (s, v) = site.api(
        "POST",
        &path("eips"),
        Some(json!({"name": "web-ip", "description": "web's own address", "pool": true, "selector": {"app": "web"}})),
    );
    assert_eq!(s, 201, "{v}");
    refused(
        site.api("PUT", &site.app_path("web"), Some(json!({"spec": {"kind": "Deployment", "replicas": 2,
            "containers": [{"name": "web", "image": "acme/web:1"}]}}))),
        409,
        "rule: one EIP maps to one container instance; EIP web-ip's selector binds app web, which runs 2 replicas",
    );
    // Address rule and container side: one of each.
    refused(
        site.api(
            "POST",
            &path("eips"),
            Some(json!({"name": "bad", "selector": {"app": "web"}})),
        ),
        400,
        "address",
    );

    // Published with web, the pool EIP holds one address on each node.
    site.publish("web", json!({"nodes": ["r1", "r2"]}));
    for n in ["r1", "r2"] {
        site.wait_state("web", n, "running", LONG);
    }
    let held = addresses(&site, "web-ip");
    assert_eq!(
        held,
        json!({"r1": "198.51.100.8", "r2": "198.51.100.9"}),
        "lowest free first, one per node"
    );
    for n in ["r1", "r2"] {
        let eip = eip_file(&site, "web-ip", n);
        assert_valid_eip(&eip);
        assert_eq!(eip["spec"]["address"], held[n], "{eip:#}");
        assert_eq!(eip["spec"]["selector"], "app=web", "{eip:#}");
        assert_eq!(eip["metadata"]["labels"]["app"], "web", "{eip:#}");
    }

    // The pool cannot shrink past an address it gave out.
    refused(
        site.api(
            "PATCH",
            "/api/v1/clusters/edge",
            Some(json!({"eip_pool": "198.51.100.10-198.51.100.11"})),
        ),
        409,
        "198.51.100.8 (acme/web-ip on r1)",
    );

    // Two publishes at once of a pool EIP never get the same address; the
    // pool is then exhausted.
    let (s, v) = site.api(
        "POST",
        &path("eips"),
        Some(json!({"name": "side", "pool": true, "container_ip": "10.1.0.9"})),
    );
    assert_eq!(s, 201, "{v}");
    refused(
        site.api("POST", &path("eips/side/publish"), Some(json!({}))),
        409,
        "no default nodes",
    );
    let site_ref = &site;
    std::thread::scope(|scope| {
        let handles: Vec<_> = ["r1", "r2"]
            .into_iter()
            .map(|n| {
                scope.spawn(move || {
                    site_ref.api(
                        "POST",
                        &path("eips/side/publish"),
                        Some(json!({"nodes": [n]})),
                    )
                })
            })
            .collect();
        for h in handles {
            let (s, v) = h.join().expect("thread");
            assert_eq!(s, 202, "{v}");
        }
    });
    let side = addresses(&site, "side");
    let got: BTreeSet<&str> = ["r1", "r2"]
        .iter()
        .map(|n| side[n].as_str().expect("address"))
        .collect();
    assert_eq!(
        got,
        BTreeSet::from(["198.51.100.10", "198.51.100.11"]),
        "{side}"
    );
    let (s, v) = site.api(
        "POST",
        &path("eips"),
        Some(json!({"name": "more", "pool": true, "container_ip": "10.1.0.10"})),
    );
    assert_eq!(s, 201, "{v}");
    refused(
        site.api(
            "POST",
            &path("eips/more/publish"),
            Some(json!({"nodes": ["r1"]})),
        ),
        409,
        "every address of cluster edge's eip_pool is held",
    );

    // Taken off r1, web-ip's address goes back to the pool and is given out again.
    let (s, v) = site.api(
        "POST",
        &path("eips/web-ip/unpublish"),
        Some(json!({"nodes": ["r1"]})),
    );
    assert_eq!(s, 202, "{v}");
    berth_testkit::wait_until("web-ip off r1", LONG, || {
        addresses(&site, "web-ip").get("r1").is_none()
    });
    assert!(!site
        .manifests("r1")
        .contains(&"acme-web-elasticip-web-ip-r1.yaml".to_string()));
    let (s, v) = site.api(
        "POST",
        &path("eips/more/publish"),
        Some(json!({"nodes": ["r1"]})),
    );
    assert_eq!(s, 202, "{v}");
    assert_eq!(addresses(&site, "more")["r1"], "198.51.100.8");

    // A static address: unique, and on one node at a time.
    let (s, v) = site.api(
        "POST",
        &path("eips"),
        Some(json!({"name": "fixed", "address": "203.0.113.7", "container_ip": "10.1.0.5"})),
    );
    assert_eq!(s, 201, "{v}");
    refused(
        site.api(
            "POST",
            &path("eips"),
            Some(json!({"name": "fixed2", "address": "203.0.113.7", "container_ip": "10.1.0.6"})),
        ),
        409,
        "rule: an address is unique; 203.0.113.7 is the static address of EIP acme/fixed",
    );
    let (s, v) = site.api(
        "POST",
        &path("eips/fixed/publish"),
        Some(json!({"nodes": ["r2"]})),
    );
    assert_eq!(s, 202, "{v}");
    refused(
        site.api(
            "POST",
            &path("eips/fixed/publish"),
            Some(json!({"nodes": ["r1"]})),
        ),
        409,
        "rule: a static EIP address is on one node at a time; 203.0.113.7 (acme/fixed) is on r2",
    );
    berth_testkit::wait_until("fixed on r2", LONG, || {
        site.manifests("r2")
            .iter()
            .any(|f| f.contains("elasticip-fixed-r2"))
    });
    let f = site
        .manifests("r2")
        .into_iter()
        .find(|f| f.contains("elasticip-fixed-r2"))
        .expect("fixed file");
    let eip = site.read_manifest("r2", &f);
    assert_valid_eip(&eip);
    assert_eq!(eip["spec"]["address"], "203.0.113.7", "{eip:#}");
    assert_eq!(eip["spec"]["containerIP"], "10.1.0.5", "{eip:#}");
    let files: Vec<std::path::PathBuf> = ["r1", "r2"]
        .iter()
        .flat_map(|n| {
            site.manifests(n)
                .into_iter()
                .filter(|f| !f.contains("-elasticip-"))
                .map(|f| site.manifests_dir(n).join(f))
                .collect::<Vec<_>>()
        })
        .collect();
    kubernetes_validate(&files, &[eip_crd()]);
}

/// A static address is on one node at a time, also when it would travel with
/// an app: created while its app runs on two nodes, or published with an app
/// to two nodes, it is refused naming the EIP, its address and the nodes;
/// an app published to a second node cannot take it there while the first
/// holds it. Nothing is half done by a refusal.
#[test]
fn a_static_eip_never_follows_an_app_to_a_second_node() {
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
    for app in ["web", "solo", "duo"] {
        site.create_app(json!({"name": app, "spec": {"kind": "Deployment",
            "containers": [{"name": app, "image": "acme/web:1"}]}}));
    }

    // Created while web runs on r1 and r2: it would follow web to both.
    site.publish("web", json!({"nodes": ["r1", "r2"]}));
    for n in ["r1", "r2"] {
        site.wait_state("web", n, "running", LONG);
    }
    refused(
        site.api(
            "POST",
            &path("eips"),
            Some(json!({"name": "front", "address": "203.0.113.9", "selector": {"app": "web"}})),
        ),
        409,
        "rule: a static EIP address is on one node at a time; EIP acme/front (203.0.113.9) \
         would go on r1, r2 following app web",
    );
    let (s, v) = site.api("GET", &path("eips/front"), None);
    assert_eq!(s, 404, "a refused EIP is not created: {v}");

    // Created while solo runs on r1 only: it follows solo there; solo
    // published to r2 as well cannot take it along.
    site.publish("solo", json!({"nodes": ["r1"]}));
    site.wait_state("solo", "r1", "running", LONG);
    let (s, v) = site.api(
        "POST",
        &path("eips"),
        Some(json!({"name": "solo-ip", "address": "203.0.113.8", "selector": {"app": "solo"}})),
    );
    assert_eq!(s, 201, "{v}");
    berth_testkit::wait_until("solo-ip on r1", LONG, || {
        site.manifests("r1")
            .iter()
            .any(|f| f.contains("elasticip-solo-ip-r1"))
    });
    refused(
        site.api(
            "POST",
            &format!("{}/publish", site.app_path("solo")),
            Some(json!({"nodes": ["r2"]})),
        ),
        409,
        "rule: a static EIP address is on one node at a time; 203.0.113.8 (acme/solo-ip) is on r1",
    );
    assert!(
        site.publication("solo", "r2").is_none(),
        "a refused publish leaves no publication"
    );

    // Published with its app to two nodes at once: refused as a whole.
    let (s, v) = site.api(
        "POST",
        &path("eips"),
        Some(json!({"name": "duo-ip", "address": "203.0.113.10", "selector": {"app": "duo"}})),
    );
    assert_eq!(s, 201, "{v}");
    refused(
        site.api(
            "POST",
            &format!("{}/publish", site.app_path("duo")),
            Some(json!({"nodes": ["r1", "r2"]})),
        ),
        409,
        "rule: a static EIP address is on one node at a time; EIP acme/duo-ip (203.0.113.10) \
         would go on r1, r2 with app duo",
    );
    assert!(site.publications("duo").is_empty(), "nothing published");
    assert_eq!(addresses(&site, "duo-ip"), Value::Null, "no address held");
    // One node is fine.
    site.publish("duo", json!({"nodes": ["r2"]}));
    site.wait_state("duo", "r2", "running", LONG);
    assert_eq!(addresses(&site, "duo-ip"), json!({"r2": "203.0.113.10"}));
}
