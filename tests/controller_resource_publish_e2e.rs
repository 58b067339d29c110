//! Resources published per node (issue 13, parts 1 and 2), end to end:
//! `berth serve` with the directory deployer, two `berth edge` caches as the
//! nodes r1 and r2, an image pushed with skopeo.
//!
//! What this proves: a load balancer bound by a label selector, one bound by
//! the `app` shorthand, a route and a config map travel with their app to both
//! nodes and validate with `kubernetes-validate --strict`; each is taken off
//! one node and put back (through the API and `berth route|lb|configmap`) by
//! the reconciler, its per-node state in its GET; every rule refuses with a
//! 409 naming it (publishing where no app it serves runs, a route where its
//! load balancer is not, unpublishing a load balancer a route uses there,
//! deleting what is published somewhere); what an app unpublish without
//! cascade leaves on a node can be taken down later.

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

/// A refusal: 409 with an error naming `rule`.
fn refused((s, v): (u16, Value), rule: &str) {
    assert_eq!(s, 409, "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(e.contains(rule), "expected {rule:?}: {v}");
}

/// The nodes a resource is applied on, once its records say so.
fn wait_applied_on(site: &Site, what: &str, nodes: &[&str]) -> Value {
    wait_until(&format!("{what} applied on {nodes:?}"), LONG, || {
        let (_, v) = site.api("GET", &path(what), None);
        let seen: Vec<(String, String)> = v["publications"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["node"].as_str().unwrap_or_default().to_string(),
                    p["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = nodes
            .iter()
            .map(|n| (n.to_string(), "applied".to_string()))
            .collect();
        if seen == want {
            Ok(v)
        } else {
            Err(format!("{seen:?}"))
        }
    })
}

fn has(site: &Site, node: &str, file: &str) -> bool {
    site.manifests(node).iter().any(|f| f == file)
}

fn wait_file(site: &Site, node: &str, file: &str, present: bool) {
    wait_until(
        &format!("{file} on {node}: {present}"),
        LONG,
        || -> Result<(), String> {
            if has(site, node, file) == present {
                Ok(())
            } else {
                Err(format!("{:?}", site.manifests(node)))
            }
        },
    );
}

#[test]
fn resources_are_published_and_taken_down_per_node() {
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
    templates_with_descriptions_and_a_selector(&site);
    nothing_is_published_before_an_app_it_serves(&site);
    web_takes_its_resources_to_both_nodes(&site);
    a_route_and_its_load_balancer_come_off_r2_and_back(&site);
    what_an_app_unpublish_leaves_is_taken_down_later(&site);
}

fn templates_with_descriptions_and_a_selector(site: &Site) {
    let post = |p: &str, body: Value| {
        let (s, v) = site.api("POST", &path(p), Some(body));
        assert_eq!(s, 201, "{v}");
        v
    };
    let v = post(
        "configmaps",
        json!({"name": "settings", "description": "web's settings", "data": {"a": "1"}}),
    );
    assert_eq!(v["description"], "web's settings", "{v}");
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "labels": {"tier": "front"},
        "containers": [{"name": "web", "image": "acme/web:1",
            "ports": [{"name": "http", "container_port": 8080}],
            "volume_mounts": [{"name": "conf", "mount_path": "/etc/web"}]}],
        "volumes": [{"name": "conf", "config_map": "settings"}]}}));
    let v = post(
        "loadbalancers",
        json!({"name": "front", "description": "every front app", "selector": {"tier": "front"},
               "ports": [{"port": 80, "target_port": 8080}]}),
    );
    assert_eq!(v["spec"]["selector"], json!({"tier": "front"}), "{v}");
    // The `app` field, as before the selector: shorthand for {"app": "web"}.
    let v = post(
        "loadbalancers",
        json!({"name": "web-lb", "app": "web", "ports": [{"port": 8080}]}),
    );
    assert_eq!(v["spec"]["selector"], json!({"app": "web"}), "{v}");
    post(
        "routes",
        json!({"name": "www", "description": "the shop", "host": "shop.example.com",
               "load_balancer": "web-lb", "port": 8080}),
    );
}

fn nothing_is_published_before_an_app_it_serves(site: &Site) {
    let rule = "is published only where an app it serves is published";
    for p in ["loadbalancers/front", "configmaps/settings", "routes/www"] {
        refused(
            site.api("POST", &path(&format!("{p}/publish")), Some(json!({}))),
            rule,
        );
    }
    refused(
        site.api(
            "POST",
            &path("loadbalancers/web-lb/publish"),
            Some(json!({"nodes": ["r1"]})),
        ),
        rule,
    );
}

fn web_takes_its_resources_to_both_nodes(site: &Site) {
    site.publish("web", json!({"selector": {"site": "shop"}}));
    for n in ["r1", "r2"] {
        site.wait_state("web", n, "running", LONG);
    }
    for what in [
        "configmaps/settings",
        "loadbalancers/front",
        "loadbalancers/web-lb",
        "routes/www",
    ] {
        wait_applied_on(site, what, &["r1", "r2"]);
    }
    for n in ["r1", "r2"] {
        let files = site.manifests(n);
        assert_eq!(
            files,
            vec![
                format!("acme-shared-configmap-settings-{n}.yaml"),
                format!("acme-shared-service-front-{n}.yaml"),
                format!("acme-web-deployment-web-{n}.yaml"),
                format!("acme-web-ingress-www-{n}.yaml"),
                format!("acme-web-service-web-lb-{n}.yaml"),
            ],
            "{n}"
        );
        let dir = site.manifests_dir(n);
        let paths: Vec<_> = files.iter().map(|f| dir.join(f)).collect();
        kubernetes_validate(&paths, &[]);
        let svc = site.read_manifest(n, &format!("acme-shared-service-front-{n}.yaml"));
        assert_eq!(
            svc["spec"]["selector"],
            json!({"tier": "front", "berth.dev/node": n}),
            "{svc:#}"
        );
    }
    let (_, v) = site.api(
        "GET",
        &format!("{}/publications", site.app_path("web")),
        None,
    );
    let resources: Vec<String> = v["resources"]
        .as_array()
        .expect("resources in the app's publications")
        .iter()
        .map(|r| format!("{}/{}@{}", r["kind"], r["name"], r["node"]).replace('"', ""))
        .collect();
    assert_eq!(resources.len(), 8, "{v:#}");
    assert!(
        resources.contains(&"loadbalancers/front@r2".to_string()),
        "{resources:?}"
    );
}

fn a_route_and_its_load_balancer_come_off_r2_and_back(site: &Site) {
    let r2 = json!({"nodes": ["r2"]});
    refused(
        site.api("POST", &path("loadbalancers/web-lb/unpublish"), Some(r2.clone())),
        "rule: a load balancer a published route or EIP uses cannot be unpublished from that node; unpublish route www from r2 first",
    );
    refused(
        site.api("DELETE", &path("routes/www"), None),
        "rule: a resource is deleted only when it is published nowhere",
    );
    let (ok, out, err) = site.cli(&["route", "unpublish", "acme/www", "--nodes", "r2"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("route acme/www: taking off r2"), "{out}");
    wait_applied_on(site, "routes/www", &["r1"]);
    wait_file(site, "r2", "acme-web-ingress-www-r2.yaml", false);
    let (ok, out, err) = site.cli(&["lb", "unpublish", "acme/web-lb", "--nodes", "r2"]);
    assert!(ok, "{out}{err}");
    wait_applied_on(site, "loadbalancers/web-lb", &["r1"]);
    wait_file(site, "r2", "acme-web-service-web-lb-r2.yaml", false);
    assert!(has(site, "r2", "acme-web-deployment-web-r2.yaml"));
    assert_eq!(
        site.publication("web", "r2").expect("web@r2")["state"],
        "running"
    );

    refused(
        site.api("POST", &path("routes/www/publish"), Some(r2.clone())),
        "rule: a route is published only where its load balancer is published; publish load balancer web-lb on r2 first",
    );
    let (ok, out, err) = site.cli(&["lb", "publish", "acme/web-lb", "--nodes", "r2"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("load balancer acme/web-lb: publishing on r2"),
        "{out}"
    );
    wait_applied_on(site, "loadbalancers/web-lb", &["r1", "r2"]);
    // The default: every node where an app it serves is published.
    let (s, v) = site.api("POST", &path("routes/www/publish"), Some(json!({})));
    assert_eq!(s, 202, "{v}");
    wait_applied_on(site, "routes/www", &["r1", "r2"]);
    let dir = site.manifests_dir("r2");
    kubernetes_validate(
        &[
            dir.join("acme-web-ingress-www-r2.yaml"),
            dir.join("acme-web-service-web-lb-r2.yaml"),
        ],
        &[],
    );
}

fn what_an_app_unpublish_leaves_is_taken_down_later(site: &Site) {
    site.unpublish("web", json!({"nodes": ["r2"]}));
    site.wait_publication("web", "r2", "removed", LONG, |p| p.is_none());
    // Network goes with the last app it serves there; the config map stays.
    assert_eq!(
        site.manifests("r2"),
        vec!["acme-shared-configmap-settings-r2.yaml"]
    );
    wait_applied_on(site, "loadbalancers/front", &["r1"]);
    wait_applied_on(site, "configmaps/settings", &["r1", "r2"]);
    refused(
        site.api("DELETE", &path("configmaps/settings"), None),
        "rule: a resource in use cannot be deleted; config map acme/settings is used by published web@r1",
    );
    refused(
        site.api(
            "POST",
            &path("configmaps/settings/unpublish"),
            Some(json!({"nodes": ["r1"]})),
        ),
        "rule: a config map a published app uses cannot be unpublished from its node; unpublish web from r1 first",
    );
    let (ok, out, err) = site.cli(&["configmap", "unpublish", "acme/settings", "--nodes", "r2"]);
    assert!(ok, "{out}{err}");
    wait_applied_on(site, "configmaps/settings", &["r1"]);
    wait_file(site, "r2", "acme-shared-configmap-settings-r2.yaml", false);
    assert!(
        site.manifests("r2").is_empty(),
        "{:?}",
        site.manifests("r2")
    );

    // Off r1 too, then deleted.
    site.unpublish("web", json!({"nodes": ["r1"], "cascade": true}));
    site.wait_publication("web", "r1", "removed", LONG, |p| p.is_none());
    assert!(
        site.manifests("r1").is_empty(),
        "{:?}",
        site.manifests("r1")
    );
    for p in [
        "routes/www",
        "loadbalancers/web-lb",
        "loadbalancers/front",
        "configmaps/settings",
    ] {
        let (s, v) = site.api("DELETE", &path(p), None);
        assert_eq!(s, 204, "{p} published nowhere: {v}");
    }
}

/// A new app version that no longer uses a config map or secret takes it off
/// the node when the node runs that version, unless it was published there on
/// its own or another app published there uses it; the version still using
/// it keeps it on the node that runs it.
#[test]
fn what_a_new_version_drops_comes_off_the_nodes_that_run_it() {
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
    for (kind, name) in [
        ("configmaps", "settings"),
        ("configmaps", "extra"),
        ("configmaps", "pinned"),
        ("configmaps", "common"),
        ("secrets", "creds"),
    ] {
        let (s, v) = site.api(
            "POST",
            &path(kind),
            Some(json!({"name": name, "data": {"k": "v"}})),
        );
        assert_eq!(s, 201, "{v}");
    }
    let web = |cms: &[&str], secret: bool| {
        let volumes: Vec<Value> = cms
            .iter()
            .map(|c| json!({"name": c, "config_map": c}))
            .collect();
        let mounts: Vec<Value> = cms
            .iter()
            .map(|c| json!({"name": c, "mount_path": format!("/etc/{c}")}))
            .collect();
        let env_from: Vec<Value> = if secret {
            vec![json!({"secret": "creds"})]
        } else {
            vec![]
        };
        json!({"kind": "Deployment", "containers": [{"name": "web", "image": "acme/web:1",
            "env_from": env_from, "volume_mounts": mounts}], "volumes": volumes})
    };
    site.create_app(
        json!({"name": "web", "spec": web(&["settings", "extra", "pinned", "common"], true)}),
    );
    site.create_app(json!({"name": "other", "spec": web(&["common"], false)}));
    site.publish("web", json!({"nodes": ["r1", "r2"]}));
    site.publish("other", json!({"nodes": ["r1"]}));
    for n in ["r1", "r2"] {
        site.wait_state("web", n, "running", LONG);
    }
    site.wait_state("other", "r1", "running", LONG);
    // pinned is also published on its own on r1.
    let (s, v) = site.api(
        "POST",
        &path("configmaps/pinned/publish"),
        Some(json!({"nodes": ["r1"]})),
    );
    assert_eq!(s, 202, "{v}");
    wait_applied_on(&site, "configmaps/pinned", &["r1", "r2"]);

    // Version 2 uses settings only; r1 runs it, r2 stays on version 1.
    let (s, v) = site.api(
        "PUT",
        &site.app_path("web"),
        Some(json!({"spec": web(&["settings"], false)})),
    );
    assert_eq!(s, 200, "{v}");
    site.publish("web", json!({"nodes": ["r1"], "version": 2}));
    site.wait_publication("web", "r1", "running version 2", LONG, |p| {
        p.is_some_and(|p| p["version"] == 2 && p["state"] == "running")
    });
    wait_file(&site, "r1", "acme-shared-configmap-extra-r1.yaml", false);
    wait_file(&site, "r1", "acme-shared-secret-creds-r1.yaml", false);
    wait_applied_on(&site, "configmaps/extra", &["r2"]);
    wait_applied_on(&site, "secrets/creds", &["r2"]);
    // Published on its own, used by another app, still used: they stay.
    for f in [
        "acme-shared-configmap-settings-r1.yaml",
        "acme-shared-configmap-pinned-r1.yaml",
        "acme-shared-configmap-common-r1.yaml",
    ] {
        assert!(has(&site, "r1", f), "{f}: {:?}", site.manifests("r1"));
    }
    wait_applied_on(&site, "configmaps/pinned", &["r1", "r2"]);
    wait_applied_on(&site, "configmaps/common", &["r1", "r2"]);
    for f in [
        "acme-shared-configmap-extra-r2.yaml",
        "acme-shared-secret-creds-r2.yaml",
    ] {
        assert!(has(&site, "r2", f), "{f}: {:?}", site.manifests("r2"));
    }
    // The removal is in the audit log (written after the request).
    wait_until("the removal audited", LONG, || {
        let (_, v) = site.api("GET", "/api/v1/audit?project=acme", None);
        let found = v.as_array().into_iter().flatten().any(|e| {
            e["action"] == "configmaps.unpublish"
                && e["target"] == "extra@r1"
                && e["outcome"] == "ok"
                && e["detail"] == "no longer used by web version 2"
        });
        if found {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
}

/// Load balancers, EIPs and routes follow the version a node runs: version
/// 2 carries another label, so the load balancer (and route) selecting
/// version 1's label come off the node that runs version 2 — audited, with
/// the reason — and those selecting version 2's label go on, without a
/// publish of their own; the node still on version 1 keeps its own.
#[test]
fn network_resources_follow_the_version_a_node_runs() {
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
    let web = |tier: &str| {
        json!({"kind": "Deployment", "labels": {"tier": tier},
            "containers": [{"name": "web", "image": "acme/web:1",
                "ports": [{"name": "http", "container_port": 8080}]}]})
    };
    site.create_app(json!({"name": "web", "spec": web("a")}));
    for tier in ["a", "b"] {
        let (s, v) = site.api(
            "POST",
            &path("loadbalancers"),
            Some(
                json!({"name": format!("lb-{tier}"), "selector": {"tier": tier},
                "ports": [{"port": 80, "target_port": 8080}]}),
            ),
        );
        assert_eq!(s, 201, "{v}");
        let (s, v) = site.api(
            "POST",
            &path("routes"),
            Some(
                json!({"name": format!("www-{tier}"), "host": format!("{tier}.example.com"),
                "load_balancer": format!("lb-{tier}"), "port": 80}),
            ),
        );
        assert_eq!(s, 201, "{v}");
    }
    site.publish("web", json!({"nodes": ["r1", "r2"]}));
    for n in ["r1", "r2"] {
        site.wait_state("web", n, "running", LONG);
    }
    wait_applied_on(&site, "loadbalancers/lb-a", &["r1", "r2"]);
    wait_applied_on(&site, "routes/www-a", &["r1", "r2"]);
    let files = |tier: &str, n: &str| {
        [
            format!("acme-shared-service-lb-{tier}-{n}.yaml"),
            format!("acme-shared-ingress-www-{tier}-{n}.yaml"),
        ]
    };
    for n in ["r1", "r2"] {
        for f in files("a", n) {
            assert!(has(&site, n, &f), "{f}: {:?}", site.manifests(n));
        }
    }
    let (_, lb_b) = site.api("GET", &path("loadbalancers/lb-b"), None);
    assert_eq!(lb_b["publications"], json!([]), "{lb_b}");

    // Version 2 is labelled tier: b; r1 runs it, r2 stays on version 1.
    let (s, v) = site.api(
        "PUT",
        &site.app_path("web"),
        Some(json!({"spec": web("b")})),
    );
    assert_eq!(s, 200, "{v}");
    site.publish("web", json!({"nodes": ["r1"], "version": 2}));
    site.wait_publication("web", "r1", "running version 2", LONG, |p| {
        p.is_some_and(|p| p["version"] == 2 && p["state"] == "running")
    });
    for f in files("a", "r1") {
        wait_file(&site, "r1", &f, false);
    }
    wait_applied_on(&site, "loadbalancers/lb-b", &["r1"]);
    wait_applied_on(&site, "routes/www-b", &["r1"]);
    wait_applied_on(&site, "loadbalancers/lb-a", &["r2"]);
    wait_applied_on(&site, "routes/www-a", &["r2"]);
    let mut want: Vec<String> = files("b", "r1").to_vec();
    want.push("acme-web-deployment-web-r1.yaml".into());
    want.sort();
    assert_eq!(site.manifests("r1"), want);
    let mut want: Vec<String> = files("a", "r2").to_vec();
    want.push("acme-web-deployment-web-r2.yaml".into());
    want.sort();
    assert_eq!(site.manifests("r2"), want, "r2 runs version 1 still");
    for n in ["r1", "r2"] {
        let dir = site.manifests_dir(n);
        let paths: Vec<_> = site.manifests(n).iter().map(|f| dir.join(f)).collect();
        kubernetes_validate(&paths, &[]);
    }
    for (action, target) in [
        ("loadbalancers.unpublish", "lb-a@r1"),
        ("routes.unpublish", "www-a@r1"),
    ] {
        wait_until(&format!("{action} {target} audited"), LONG, || {
            let (_, v) = site.api("GET", "/api/v1/audit?project=acme", None);
            let found = v.as_array().into_iter().flatten().any(|e| {
                e["action"] == action
                    && e["target"] == target
                    && e["outcome"] == "ok"
                    && e["detail"] == "no longer used by web version 2"
            });
            if found {
                Ok(())
            } else {
                Err(v.to_string())
            }
        });
    }

    // r2 moves too: tier a is published nowhere, so it may go.
    site.publish("web", json!({"nodes": ["r2"], "version": 2}));
    wait_applied_on(&site, "loadbalancers/lb-b", &["r1", "r2"]);
    wait_applied_on(&site, "routes/www-b", &["r1", "r2"]);
    for f in files("a", "r2") {
        wait_file(&site, "r2", &f, false);
    }
    // Off the node, then forgotten.
    wait_applied_on(&site, "routes/www-a", &[]);
    wait_applied_on(&site, "loadbalancers/lb-a", &[]);
    for p in ["routes/www-a", "loadbalancers/lb-a"] {
        let (s, v) = site.api("DELETE", &path(p), None);
        assert_eq!(s, 204, "{p} published nowhere: {v}");
    }
}

/// A route changed to point at another app's load balancer follows it: off
/// the node where it serves no app any more (audited, with the reason), on
/// the node where the new load balancer's app runs, without a publish.
#[test]
fn a_route_moved_to_another_load_balancer_follows_it() {
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
    for app in ["web", "api"] {
        site.create_app(json!({"name": app, "spec": {"kind": "Deployment",
            "containers": [{"name": "main", "image": "acme/web:1",
                "ports": [{"name": "http", "container_port": 8080}]}]}}));
        let (s, v) = site.api(
            "POST",
            &path("loadbalancers"),
            Some(json!({"name": format!("{app}-lb"), "app": app,
                "ports": [{"port": 80, "target_port": 8080}]})),
        );
        assert_eq!(s, 201, "{v}");
    }
    let route = |lb: &str| json!({"host": "shop.example.com", "load_balancer": lb, "port": 80});
    let mut body = route("web-lb");
    body["name"] = json!("www");
    let (s, v) = site.api("POST", &path("routes"), Some(body));
    assert_eq!(s, 201, "{v}");
    site.publish("web", json!({"nodes": ["r1"]}));
    site.publish("api", json!({"nodes": ["r2"]}));
    site.wait_state("web", "r1", "running", LONG);
    site.wait_state("api", "r2", "running", LONG);
    wait_applied_on(&site, "routes/www", &["r1"]);
    assert!(has(&site, "r1", "acme-web-ingress-www-r1.yaml"));

    let (s, v) = site.api("PUT", &path("routes/www"), Some(route("api-lb")));
    assert_eq!(s, 200, "{v}");
    wait_applied_on(&site, "routes/www", &["r2"]);
    wait_file(&site, "r1", "acme-web-ingress-www-r1.yaml", false);
    let ingress = site.read_manifest("r2", "acme-api-ingress-www-r2.yaml");
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"], "api-lb-r2",
        "{ingress:#}"
    );
    let dir = site.manifests_dir("r2");
    let paths: Vec<_> = site.manifests("r2").iter().map(|f| dir.join(f)).collect();
    kubernetes_validate(&paths, &[]);
    assert_eq!(
        site.manifests("r1"),
        vec![
            "acme-web-deployment-web-r1.yaml".to_string(),
            "acme-web-service-web-lb-r1.yaml".to_string()
        ]
    );
    wait_until("the route's move audited", LONG, || {
        let (_, v) = site.api("GET", "/api/v1/audit?project=acme", None);
        let found = v.as_array().into_iter().flatten().any(|e| {
            e["action"] == "routes.unpublish"
                && e["target"] == "www@r1"
                && e["outcome"] == "ok"
                && e["detail"] == "no app published on r1 is served by it any more"
        });
        if found {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
}

/// A published load balancer whose selector moves to another app follows it,
/// with the route in front of it: both come off the node where they serve no
/// app any more (audited, with the reason) and go on the node where the new
/// app runs, without a publish.
#[test]
fn a_load_balancer_whose_selector_moves_follows_the_apps_it_selects() {
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
    for app in ["web", "api"] {
        site.create_app(json!({"name": app, "spec": {"kind": "Deployment",
            "labels": {"tier": app},
            "containers": [{"name": "main", "image": "acme/web:1",
                "ports": [{"name": "http", "container_port": 8080}]}]}}));
    }
    let lb = |tier: &str| json!({"selector": {"tier": tier}, "ports": [{"port": 80, "target_port": 8080}]});
    let mut body = lb("web");
    body["name"] = json!("front");
    let (s, v) = site.api("POST", &path("loadbalancers"), Some(body));
    assert_eq!(s, 201, "{v}");
    let (s, v) = site.api(
        "POST",
        &path("routes"),
        Some(json!({"name": "www", "host": "shop.example.com",
            "load_balancer": "front", "port": 80})),
    );
    assert_eq!(s, 201, "{v}");
    site.publish("web", json!({"nodes": ["r1"]}));
    site.publish("api", json!({"nodes": ["r2"]}));
    site.wait_state("web", "r1", "running", LONG);
    site.wait_state("api", "r2", "running", LONG);
    wait_applied_on(&site, "loadbalancers/front", &["r1"]);
    wait_applied_on(&site, "routes/www", &["r1"]);

    let (s, v) = site.api("PUT", &path("loadbalancers/front"), Some(lb("api")));
    assert_eq!(s, 200, "{v}");
    wait_applied_on(&site, "loadbalancers/front", &["r2"]);
    wait_applied_on(&site, "routes/www", &["r2"]);
    wait_until("r1 keeps only web's deployment", LONG, || {
        let left = site.manifests("r1");
        if left == vec!["acme-web-deployment-web-r1.yaml".to_string()] {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    let r2 = site.manifests("r2");
    let service = r2
        .iter()
        .find(|f| f.contains("service-front"))
        .unwrap_or_else(|| panic!("front's Service on r2: {r2:?}"));
    let service = site.read_manifest("r2", service);
    assert_eq!(service["spec"]["selector"]["tier"], "api", "{service:#}");
    let dir = site.manifests_dir("r2");
    let paths: Vec<_> = r2.iter().map(|f| dir.join(f)).collect();
    kubernetes_validate(&paths, &[]);
    wait_until("the move audited", LONG, || {
        let (_, v) = site.api("GET", "/api/v1/audit?project=acme", None);
        let off = |action: &str, target: &str| {
            v.as_array().into_iter().flatten().any(|e| {
                e["action"] == action
                    && e["target"] == target
                    && e["outcome"] == "ok"
                    && e["detail"] == "no app published on r1 is served by it any more"
            })
        };
        if off("loadbalancers.unpublish", "front@r1") && off("routes.unpublish", "www@r1") {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
}
