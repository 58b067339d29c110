//! A node's edge cache through the controller, against the built `berth
//! serve` and a real `berth edge` whose upstream link runs through a proxy
//! the test can take away: `GET /api/v1/nodes/{name}/cache` shows capacity,
//! bytes used and the hit rate after an image is prefetched (pinned) and
//! pulled, the pinned image, the prefetch job with its progress, and the
//! upstream reachable; with the link gone, the upstream unreachable with the
//! reason; with the edge stopped or hanging, the edge unreachable with the
//! reason, in a 200 answer. `berth node cache` says the same as text.

mod controller_support;

use std::time::Duration;

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::proxy::FaultProxy;
use berth_testkit::wait_until;
use controller_support::{tools_present, Site, PROJECT};
use serde_json::{json, Value};

fn cache(site: &Site) -> Value {
    let (s, v) = site.api("GET", "/api/v1/nodes/east/cache", None);
    assert_eq!(s, 200, "{v}");
    v
}

#[test]
fn a_nodes_cache_shows_use_hits_pins_jobs_and_what_is_unreachable() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let image = site.push(
        "web",
        "1.0",
        ImageBuilder::new().layer_file("srv/index.html", "hello from the edge\n"),
    );
    let link = FaultProxy::start(&site.registry.host());
    site.add_edge("east", &link.url(), json!({"zone": "test"}));
    let edge = site.edge("east").url();
    let http = reqwest::blocking::Client::new();

    // Before anything: nothing used, no hit rate yet, upstream answering.
    let v = cache(&site);
    assert_eq!(v["reachable"], true, "{v}");
    assert_eq!(v["node"], "east");
    assert!(
        v["cache"]["capacity_bytes"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert_eq!(v["cache"]["used_bytes"], 0, "{v}");
    assert!(v["cache"].get("hit_rate").is_none(), "{v}");
    assert_eq!(v["cache"]["upstream"]["reachable"], true, "{v}");

    // Prefetched and pinned, then pulled through the edge: a hit.
    let img = format!("{PROJECT}/web:1.0");
    let r = http
        .post(format!("{edge}/api/v1/prefetch"))
        .json(&json!({"images": [img], "pin": true}))
        .send()
        .expect("prefetch");
    assert_eq!(r.status(), 202);
    let job: Value = r.json().expect("job");
    let id = job["id"].as_str().expect("job id").to_string();
    wait_until("the prefetch job done", Duration::from_secs(60), || {
        cache(&site)["cache"]["prefetch_jobs"]
            .as_array()
            .is_some_and(|j| {
                j.iter()
                    .any(|j| j["id"] == id.as_str() && j["state"] == "done")
            })
    });
    let layer = &image.layers[0].descriptor.digest;
    let r = http
        .get(format!("{edge}/v2/{PROJECT}/web/blobs/{layer}"))
        .send()
        .expect("pull a layer");
    assert!(r.status().is_success(), "{}", r.status());
    let v = cache(&site);
    let c = &v["cache"];
    assert!(c["used_bytes"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(c["hits"].as_u64().unwrap_or(0) > 0, "{v}");
    let rate = c["hit_rate"].as_f64().expect("a hit rate");
    assert!(rate > 0.0 && rate <= 1.0, "{v}");
    let pinned: Vec<&str> = c["pinned_images"]
        .as_array()
        .map(|p| p.iter().filter_map(|i| i["image"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(pinned, [img.as_str()], "{v}");
    let j = &c["prefetch_jobs"][0];
    assert_eq!(j["id"], id.as_str(), "{v}");
    assert!(j["bytes_total"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(j["bytes_done"], j["bytes_total"], "{v}");
    assert_eq!(j["images"][0]["image"], img.as_str(), "{v}");

    let (ok, out, err) = site.cli(&["node", "cache", "east"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("hit rate:") && out.contains(&img), "{out}");
    assert!(
        out.contains("reachable") && !out.contains("UNREACHABLE"),
        "{out}"
    );
    assert!(out.contains(&format!("{id} done")), "{out}");

    // An edge that accepts the connection and never answers: the controller
    // stops waiting and says so.
    let hung = FaultProxy::start(edge.trim_start_matches("http://"));
    hung.set_hang(true);
    site.register_node("slow", &hung.url(), json!({}));
    let (s, v) = site.api("GET", "/api/v1/nodes/slow/cache", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["reachable"], false, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("no answer within"),
        "{v}"
    );
    hung.set_hang(false);

    // The edge's upstream link gone: the edge answers, its upstream does not.
    drop(link);
    let v = cache(&site);
    assert_eq!(v["reachable"], true, "{v}");
    let up = &v["cache"]["upstream"];
    assert_eq!(up["reachable"], false, "{v}");
    assert!(!up["error"].as_str().unwrap_or("").is_empty(), "{v}");
    let (ok, out, err) = site.cli(&["node", "cache", "east"]);
    assert!(ok && out.contains("UNREACHABLE"), "{out}{err}");

    // The edge stopped: the node's answer says so, with the reason.
    site.edge_mut("east").process.terminate();
    let v = cache(&site);
    assert_eq!(v["reachable"], false, "{v}");
    assert!(v.get("cache").is_none(), "{v}");
    let why = v["error"].as_str().unwrap_or("");
    assert!(why.contains("unreachable") && why.contains("east"), "{v}");
    let (ok, out, err) = site.cli(&["node", "cache", "east"]);
    assert!(ok && out.contains("unreachable"), "{out}{err}");

    // A node that does not exist is the API's 404.
    let (s, v) = site.api("GET", "/api/v1/nodes/ghost/cache", None);
    assert_eq!(s, 404, "{v}");
}
