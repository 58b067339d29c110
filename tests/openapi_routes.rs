//! The OpenAPI documents of `berth serve` and `berth edge` describe exactly
//! the routes they serve. The paths come from the route lists kept beside the
//! routers (`berth_registry::openapi::route_paths`, the controller's
//! `route_paths`, `berth_edge::openapi::route_paths`); the methods each path
//! serves come from the running binary itself: a request with a method no
//! route has is answered 405 with `Allow` listing the methods routed there.

use std::collections::BTreeSet;

use berth_testkit::berth::{self, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use reqwest::blocking::Client;
use serde_json::Value;

type Pairs = BTreeSet<(String, String)>;

/// (method, path) of every routed path, asked of the server at `base`.
fn routed(base: &str, paths: &[String], described_elsewhere: &[&str]) -> Pairs {
    let http = Client::new();
    let probe = reqwest::Method::from_bytes(b"BERTHPROBE").expect("method");
    let mut out = Pairs::new();
    for path in paths {
        if described_elsewhere.contains(&path.as_str()) {
            continue;
        }
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with("{*") {
                    "probe/x"
                } else if seg.starts_with('{') {
                    "probe"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let res = http
            .request(probe.clone(), format!("{base}{concrete}"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .expect("probe");
        assert_eq!(
            res.status().as_u16(),
            405,
            "{path}: a method no route has should be answered 405 (is the path routed?)"
        );
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
        for m in &methods {
            // axum answers HEAD wherever GET is routed.
            if m.is_empty() || (*m == "head" && methods.contains(&"get")) {
                continue;
            }
            out.insert((m.to_string(), path.clone()));
        }
    }
    out
}

/// (method, path) of every operation in the document at `base`.
fn documented(base: &str) -> Pairs {
    let doc: Value = Client::new()
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .expect("openapi.json")
        .json()
        .expect("JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let mut out = Pairs::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
                for seg in path.split('/').filter(|s| s.starts_with('{')) {
                    let p = seg.trim_matches(['{', '}']);
                    let declared = op["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|x| x["name"] == p && x["in"] == "path"));
                    assert!(declared, "{method} {path}: path parameter {p} not declared");
                }
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

fn assert_same(what: &str, routed: &Pairs, documented: &Pairs) {
    let missing: Vec<_> = routed.difference(documented).collect();
    let unrouted: Vec<_> = documented.difference(routed).collect();
    assert!(
        missing.is_empty() && unrouted.is_empty(),
        "{what}: routed but not documented: {missing:#?}\ndocumented but not routed: {unrouted:#?}"
    );
}

#[test]
fn the_serve_document_describes_every_route_it_serves() {
    let reg = berth::registry(berth_bin!());
    let mut paths = berth_registry::openapi::route_paths();
    paths.extend(berth_controller::route_paths());
    let routed = routed(
        &reg.url(),
        &paths,
        berth_registry::openapi::DESCRIBED_ELSEWHERE,
    );
    // Sanity: the walk found the controller's and the token endpoint's routes.
    for pair in [
        ("get", "/api/v1/nodes/{name}/kubeconfig"),
        ("post", "/api/v1/projects/{project}/apps/{app}/publish"),
        ("put", "/api/v1/projects/{project}/secrets/{name}"),
        ("post", "/v2/token"),
        ("delete", "/api/v1/users/{name}"),
    ] {
        assert!(
            routed.contains(&(pair.0.to_string(), pair.1.to_string())),
            "{pair:?} not found by the walk"
        );
    }
    assert_same("berth serve", &routed, &documented(&reg.url()));
}

#[test]
fn the_edge_serves_its_own_document_of_every_route() {
    let reg = berth::registry(berth_bin!());
    let cache = tempfile::tempdir().expect("tmp");
    let edge = berth::edge(berth_bin!(), &reg.url(), cache.path(), None, &[]);
    let base = edge.base_url();
    let routed = routed(
        &base,
        &berth_edge::openapi::route_paths(),
        berth_edge::openapi::DESCRIBED_ELSEWHERE,
    );
    assert!(routed.contains(&("post".to_string(), "/api/v1/prefetch".to_string())));
    assert_same("berth edge", &routed, &documented(&base));
}
