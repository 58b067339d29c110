//! `berth edge --upstream A,B`: the edge pulls through the first registry,
//! fails over to the next when the first stops, and returns to the first once
//! it is back. The two registries hold different tag sets of one repository,
//! so the tag list the edge answers (always asked of upstream) says which
//! registry served it.

use std::time::Duration;

use berth_testkit::berth::{self, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::http::{basic, push_image};
use berth_testkit::wait_until;

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The tags the edge lists for `shared/app`, or why not.
fn tags(edge: &str) -> Result<Vec<String>, String> {
    let res = http()
        .get(format!("{edge}/v2/shared/app/tags/list"))
        .send()
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let v: serde_json::Value = res.json().map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {v}"));
    }
    Ok(v["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

fn manifest_status(edge: &str, tag: &str) -> u16 {
    http()
        .get(format!("{edge}/v2/shared/app/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .expect("GET manifest")
        .status()
        .as_u16()
}

#[test]
fn the_edge_fails_over_to_its_next_upstream_and_returns_to_the_first() {
    let mut first = berth::registry(berth_bin!());
    let second = berth::registry(berth_bin!());
    let root = basic("admin", ADMIN_PASSWORD);
    for (registry, own) in [(&first, "a"), (&second, "b")] {
        registry.admin().create_project("shared", true);
        push_image(&http(), &registry.url(), &root, "shared/app", "1");
        push_image(&http(), &registry.url(), &root, "shared/app", own);
    }
    let cache = tempfile::tempdir().expect("tempdir");
    let upstreams = format!("{},{}", first.url(), second.url());
    let edge = berth::edge(berth_bin!(), &upstreams, cache.path(), None, &[]);
    let url = edge.base_url();

    // The first serves while it is up.
    assert_eq!(tags(&url).expect("tags"), ["1", "a"]);
    assert_eq!(manifest_status(&url, "1"), 200);

    // Stopped: the second serves, what the first never had too.
    first.server.terminate();
    assert_eq!(tags(&url).expect("tags through the second"), ["1", "b"]);
    assert_eq!(manifest_status(&url, "b"), 200);

    // Back: requests return to the first.
    first.server.restart();
    wait_until(
        "the edge to pull through the first again",
        Duration::from_secs(30),
        || match tags(&url) {
            Ok(t) if t == ["1", "a"] => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(manifest_status(&url, "a"), 200);
}
