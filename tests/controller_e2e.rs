//! The workload controller end to end: `berth serve` (registry and controller,
//! directory deployer), real `berth edge` caches as nodes, each pulling from
//! the registry's private project with a robot account, and images pushed
//! with skopeo.
//!
//! What these prove, beyond the controller crate's own tests with a fake edge:
//! manifests reach a node only after its edge cache holds every blob of every
//! image; a tag pushed again during a publish changes nothing; a node whose
//! edge is down fails in words and catches up later while the others run; a
//! controller killed mid-publish finishes without a second prefetch job or a
//! second write; unpublish removes files and pins; refusals say why;
//! `berth app publish` follows progress until the nodes run (and fails when
//! one fails); registry roles decide who may publish and which projects'
//! images an app may use, and the audit log says who did what.
//!
//! Two ignored tests reproduce bugs outside the controller for their owners
//! (the edge cache giving up a prefetch during a short registry outage; GC
//! collecting a manifest a publication still deploys): run with `--ignored`.
//!
//! Run with `--nocapture` to see the three-node publish timeline.

mod controller_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use berth_testkit::fixtures::{Image, ImageBuilder};
use berth_testkit::proxy::FaultProxy;
use berth_testkit::tools::docker_ref;
use berth_testkit::wait_until;
use controller_support::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn deployment_file(app: &str, node: &str) -> String {
    format!("{PROJECT}-{app}-deployment-{app}-{node}.yaml")
}

/// `acme/<repo>@<digest>`, as the controller pins and the pod spec names it.
fn by_digest(repo: &str, digest: &str) -> String {
    format!("{PROJECT}/{repo}@{digest}")
}

/// Every container image of a rendered Deployment.
fn container_images(obj: &Value) -> Vec<String> {
    obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["image"].as_str().expect("image").to_string())
        .collect()
}

/// Whether `edge` has a running prefetch job for `image` that has moved bytes
/// (`Err`: every job it has, for the timeout message).
fn transferring(edge: &EdgeNode, image: &str) -> Result<(), String> {
    let moving = edge
        .jobs_for(image)
        .iter()
        .any(|j| j["state"] == "running" && j["bytes_done"].as_u64() > Some(0));
    if moving {
        Ok(())
    } else {
        Err(format!("{:#?}", edge.jobs()))
    }
}

/// Checks a node's publication history: resolving, prefetching, deploying,
/// running appear in that order with non-decreasing times.
fn assert_history_in_order(p: &Value) {
    let states = history_states(p);
    let pos = |s: &str| {
        states
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("no {s} in history {states:?}"))
    };
    let (r, f, d, run) = (
        pos("resolving"),
        pos("prefetching"),
        pos("deploying"),
        pos("running"),
    );
    assert!(
        r < f && f < d && d < run,
        "history out of order: {states:?}"
    );
    let last_prefetching = states
        .iter()
        .rposition(|x| x == "prefetching")
        .expect("prefetching");
    assert!(
        last_prefetching < d,
        "deploying before prefetching ended: {states:?}"
    );
    let times: Vec<u64> = p["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["at"].as_u64().expect("at"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "history times go back: {:#}",
        p["history"]
    );
    let at = |s| first_at(p, s).expect("state in history");
    assert!(at("resolving") <= at("prefetching"));
    assert!(at("prefetching") <= at("deploying"));
    assert!(at("deploying") <= at("running"));
}

#[test]
fn publish_to_three_edges_prefetches_first_and_keeps_resolved_digests() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    for n in NODES {
        let url = site.registry_url();
        site.add_edge(n, &url, json!({"tier": "edge", "zone": n}));
    }
    let images = push_web_and_sidecar(&site);
    site.create_app(
        json!({"name": "web", "spec": {"kind": "Deployment", "replicas": 1,
        "containers": [
            {"name": "web", "image": "acme/web:1"},
            {"name": "sidecar", "image": "acme/sidecar:1"}
        ]}, "message": "first"}),
    );

    let file_seen = manifests_appear_only_once_the_edges_hold_every_blob_pinned(&site, &images);
    the_tag_moved_but_every_node_runs_the_digests_resolved_at_publish(&site, &images, &file_seen);
    let web2_ref = version_2_on_one_node_unpins_only_what_it_no_longer_uses(&site, &images);
    unpublishing_everywhere_removes_files_and_pins(&site, &images, &web2_ref);
}

/// The nodes of the three-edge publish.
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// The images of the three-edge publish: `web` and `sidecar` pushed as
/// `acme/web:1` and `acme/sidecar:1`, and `moved`, built but pushed to
/// `web:1` only while the publish is under way.
struct WebImages {
    web: Image,
    sidecar: Image,
    moved: Image,
    web_ref: String,
    sidecar_ref: String,
}

fn push_web_and_sidecar(site: &Site) -> WebImages {
    let web = site.push(
        "web",
        "1",
        ImageBuilder::new()
            .layer_file("etc/web.conf", "listen 8080\n")
            .layer_random(3 << 20)
            .layer_random(1 << 20),
    );
    let sidecar = site.push(
        "sidecar",
        "1",
        ImageBuilder::new()
            .layer_file("etc/sidecar", "v1\n")
            .layer_random(2 << 20),
    );
    assert!(web.layers.len() >= 3 && sidecar.layers.len() >= 2);
    // Pushed to web:1 right after the publish: must not be what runs.
    let moved = ImageBuilder::new()
        .layer_file("etc/web.conf", "listen 9090\n")
        .layer_random(1 << 20)
        .tag("web-moved")
        .build(&site.layout);

    WebImages {
        web_ref: by_digest("web", web.digest()),
        sidecar_ref: by_digest("sidecar", sidecar.digest()),
        web,
        sidecar,
        moved,
    }
}

/// Publishes to the three nodes while the tag moves, and watches: the moment
/// a node's file exists, its edge must already hold every blob of both
/// images, pinned, and report the prefetch job done. Returns when each
/// node's file was first seen (after the publish request).
fn manifests_appear_only_once_the_edges_hold_every_blob_pinned(
    site: &Site,
    images: &WebImages,
) -> BTreeMap<&'static str, Duration> {
    let WebImages {
        web,
        sidecar,
        moved,
        web_ref,
        sidecar_ref,
    } = images;
    let mut wanted_blobs = blob_digests(web);
    wanted_blobs.extend(blob_digests(sidecar));
    let nodes = NODES;
    let started = Instant::now();
    let answer = site.publish("web", json!({"selector": {"tier": "edge"}}));
    let published: Vec<&str> = answer["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["node"].as_str().expect("node"))
        .collect();
    assert_eq!(published, nodes, "{answer}");

    // The tag moves while the publish is under way.
    let mut file_seen: BTreeMap<&str, Duration> = BTreeMap::new();
    std::thread::scope(|s| {
        let pusher = s.spawn(|| site.push_built(moved, "web", "1"));
        // The moment a node's file exists, its edge must already hold every
        // blob of both images, pinned, and report the prefetch job done.
        let deadline = Instant::now() + LONG;
        while file_seen.len() < nodes.len() {
            for n in nodes {
                if file_seen.contains_key(n) {
                    continue;
                }
                if !site
                    .manifests_dir(n)
                    .join(deployment_file("web", n))
                    .exists()
                {
                    continue;
                }
                file_seen.insert(n, started.elapsed());
                let edge = site.edge(n);
                let missing = edge.missing_blobs(&wanted_blobs);
                assert!(
                    missing.is_empty(),
                    "{n}: manifest written while its edge cache lacked {missing:?}"
                );
                for image in [web_ref, sidecar_ref] {
                    assert!(
                        edge.pinned(image),
                        "{n}: manifest written before {image} was pinned: {:#?}",
                        edge.images()
                    );
                    let jobs = edge.jobs_for(image);
                    assert!(
                        !jobs.is_empty() && jobs.iter().all(|j| j["state"] == "done"),
                        "{n}: manifest written before the prefetch of {image} was done: {jobs:#?}"
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "manifests did not appear on every node; seen: {file_seen:?}; publications: {:#?}",
                site.publications("web")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        pusher.join().expect("push of the moved tag");
    });
    file_seen
}

/// Resolved once, at publish time: every node runs the original digests, not
/// the tag's new one; prints the publish timeline.
fn the_tag_moved_but_every_node_runs_the_digests_resolved_at_publish(
    site: &Site,
    images: &WebImages,
    file_seen: &BTreeMap<&'static str, Duration>,
) {
    let WebImages {
        web,
        sidecar,
        moved,
        web_ref,
        sidecar_ref,
    } = images;
    let nodes = NODES;
    let moved_digest = site.skopeo.manifest_digest(
        &docker_ref(&site.registry.host(), "acme/web", "1"),
        Some(&site.admin_creds()),
    );
    assert_eq!(moved_digest, moved.digest(), "the tag did move");

    let mut timeline = Vec::new();
    for n in nodes {
        let p = site.wait_state("web", n, "running", LONG);
        assert_history_in_order(&p);
        // Resolved once, at publish time: the original digests.
        let resolved: Vec<&str> = p["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|i| i["digest"].as_str().expect("digest"))
            .collect();
        assert_eq!(resolved, vec![web.digest(), sidecar.digest()], "{p:#}");
        let applied = p["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|h| {
                h["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("applied"))
            })
            .count();
        assert_eq!(applied, 1, "{:#}", p["history"]);

        let d = site.read_manifest(n, &deployment_file("web", n));
        assert_eq!(d["kind"], "Deployment");
        assert_eq!(d["metadata"]["labels"]["app"], "web");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app"], "web");
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
        assert_eq!(
            d["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"], n,
            "{d:#}"
        );
        let images = container_images(&d);
        assert_eq!(images.len(), 2);
        for (img, want) in images.iter().zip([web_ref, sidecar_ref]) {
            assert!(img.contains("@sha256:"), "not a digest reference: {img}");
            assert!(img.ends_with(want.as_str()), "{img} is not {want}");
            assert!(!img.contains(moved.digest()), "{img} runs the moved tag");
        }
        timeline.push((n, p, file_seen[n]));
    }

    // The timeline, from the publications' histories (unix seconds) and what
    // this test saw (the first moment the manifest file existed).
    let t0 = timeline
        .iter()
        .filter_map(|(_, p, _)| first_at(p, "resolving"))
        .min()
        .expect("start");
    println!("\nthree-node publish timeline (history seconds after the publish request):");
    println!("node  resolving  prefetching  deploying  running  | manifest file seen");
    for (n, p, seen) in &timeline {
        let rel = |s| {
            first_at(p, s)
                .map(|t| format!("+{}s", t - t0))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{n:<5} {:<10} {:<12} {:<10} {:<8} | +{} ms",
            rel("resolving"),
            rel("prefetching"),
            rel("deploying"),
            rel("running"),
            seen.as_millis()
        );
        for h in p["history"].as_array().expect("history") {
            println!(
                "      +{}s {:<12} {}",
                h["at"].as_u64().expect("at") - t0,
                h["state"].as_str().expect("state"),
                h["detail"].as_str().expect("detail")
            );
        }
    }
}

/// Version 2 on n1 only: once it runs, n1 unpins the web image it no longer
/// uses and keeps the sidecar both versions use; n2 keeps version 1. Returns
/// version 2's reference.
fn version_2_on_one_node_unpins_only_what_it_no_longer_uses(
    site: &Site,
    images: &WebImages,
) -> String {
    let (web_ref, sidecar_ref) = (&images.web_ref, &images.sidecar_ref);
    let web2 = site.push(
        "web",
        "2",
        ImageBuilder::new().layer_file("etc/web.conf", "listen 8081\n"),
    );
    let (s, v) = site.api(
        "PUT",
        &site.app_path("web"),
        Some(
            json!({"spec": {"kind": "Deployment", "replicas": 1, "containers": [
            {"name": "web", "image": "acme/web:2"},
            {"name": "sidecar", "image": "acme/sidecar:1"}
        ]}, "message": "web 2"}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"]["version"], 2, "{v}");
    site.publish("web", json!({"nodes": ["n1"]}));
    site.wait_publication("web", "n1", "running version 2", LONG, |p| {
        p.is_some_and(|p| p["state"] == "running" && p["version"] == 2)
    });
    let web2_ref = by_digest("web", web2.digest());
    let d = site.read_manifest("n1", &deployment_file("web", "n1"));
    assert!(container_images(&d)[0].ends_with(&web2_ref), "{d:#}");
    let n1 = site.edge("n1");
    wait_until("n1 to unpin web version 1", LONG, || {
        if n1.pinned(web_ref) {
            Err(format!("{:#?}", n1.images()))
        } else {
            Ok(())
        }
    });
    assert!(n1.pinned(&web2_ref) && n1.pinned(sidecar_ref));
    let n2 = site.edge("n2");
    assert!(n2.pinned(web_ref) && n2.pinned(sidecar_ref));
    assert!(!n2.pinned(&web2_ref));

    web2_ref
}

fn unpublishing_everywhere_removes_files_and_pins(site: &Site, images: &WebImages, web2_ref: &str) {
    let (web_ref, sidecar_ref) = (images.web_ref.as_str(), images.sidecar_ref.as_str());
    let nodes = NODES;
    // Unpublish everywhere: files and pins go.
    site.unpublish("web", json!({"selector": {"tier": "edge"}}));
    for n in nodes {
        site.wait_publication("web", n, "removed", LONG, |p| p.is_none());
        assert!(
            site.manifests(n).is_empty(),
            "{n} keeps {:?}",
            site.manifests(n)
        );
        let edge = site.edge(n);
        for image in [web_ref, sidecar_ref, web2_ref] {
            let listed: Vec<Value> = edge
                .images()
                .into_iter()
                .filter(|i| i["image"] == image)
                .collect();
            assert!(
                listed.iter().all(|i| i["pinned"] == false),
                "{n}: {image} still pinned: {listed:#?}"
            );
        }
    }
}

#[test]
fn node_with_its_edge_down_fails_in_words_then_catches_up() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    for n in ["up1", "up2", "down"] {
        let url = site.registry_url();
        site.add_edge(n, &url, json!({}));
    }
    site.edge_mut("down").process.kill9();
    let api = site.push(
        "api",
        "2.0",
        ImageBuilder::new()
            .layer_file("srv/api", "api\n")
            .layer_random(1 << 20),
    );
    site.create_app(json!({"name": "api", "spec": {"kind": "Deployment",
        "containers": [{"name": "api", "image": "acme/api:2.0"}]}}));
    site.publish("api", json!({"nodes": ["up1", "up2", "down"]}));

    for n in ["up1", "up2"] {
        site.wait_state("api", n, "running", LONG);
    }
    let p = site.wait_publication("api", "down", "failed with a reason", LONG, |p| {
        p.is_some_and(|p| p["state"] == "failed")
    });
    let p = p.expect("publication");
    let reason = p["reason"].as_str().expect("reason");
    assert!(
        reason.contains("down") && reason.contains(&site.edge("down").url()),
        "the reason names the node and its edge: {reason}"
    );
    assert!(
        reason.contains("unreachable") && reason.contains("connect"),
        "the reason says what is wrong: {reason}"
    );
    assert!(p["last_error"].is_string(), "{p:#}");
    assert!(site.manifests("down").is_empty());
    // Still failing, not given up: the others kept running meanwhile.
    for n in ["up1", "up2"] {
        assert_eq!(
            site.publication("api", n).expect("publication")["state"],
            "running"
        );
    }

    // The edge comes back on the same port: the node catches up.
    site.edge_mut("down").process.start_again();
    let p = site.wait_state("api", "down", "running", LONG);
    assert!(p["last_error"].is_null(), "{p:#}");
    let states = history_states(&p);
    let failed = states.iter().position(|s| s == "failed").expect("failed");
    let running = states
        .iter()
        .rposition(|s| s == "running")
        .expect("running");
    assert!(failed < running, "{states:?}");
    assert!(site
        .manifests_dir("down")
        .join(deployment_file("api", "down"))
        .exists());
    let edge = site.edge("down");
    assert!(edge.pinned(&by_digest("api", api.digest())));
    assert!(edge.missing_blobs(&blob_digests(&api)).is_empty());

    // Unpublished while its edge is down again: the files go at once, the
    // publication waits (in words) to unpin, and finishes when the edge is back.
    site.edge_mut("down").process.kill9();
    site.unpublish("api", json!({"nodes": ["down"]}));
    let p = site
        .wait_publication("api", "down", "waiting to unpin", LONG, |p| {
            p.is_some_and(|p| p["last_error"].is_string())
        })
        .expect("publication");
    assert_eq!(p["state"], "removing", "{p:#}");
    assert!(
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{p:#}"
    );
    assert!(site.manifests("down").is_empty());
    site.edge_mut("down").process.start_again();
    site.wait_publication("api", "down", "removed", LONG, |p| p.is_none());
    let listed: Vec<Value> = site
        .edge("down")
        .images()
        .into_iter()
        .filter(|i| i["image"] == by_digest("api", api.digest()))
        .collect();
    assert!(listed.iter().all(|i| i["pinned"] == false), "{listed:#?}");
}

#[test]
fn controller_killed_mid_prefetch_finishes_without_duplicate_work() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    // The edges pull through a slow link, so the prefetch is still under way
    // when the registry (and the controller in it) is killed.
    let proxy = FaultProxy::start(&site.registry.host());
    proxy.set_rate(Some(2 << 20));
    // Reconnects while the registry restarts wait for it, as behind a load balancer.
    proxy.set_hold_while_down(true);
    for n in ["k1", "k2"] {
        site.add_edge(n, &proxy.url(), json!({}));
    }
    let big = site.push(
        "big",
        "1",
        ImageBuilder::new()
            .layer_random(8 << 20)
            .layer_random(8 << 20)
            .layer_random(8 << 20),
    );
    let image = by_digest("big", big.digest());
    site.create_app(json!({"name": "big", "spec": {"kind": "Deployment",
        "containers": [{"name": "big", "image": "acme/big:1"}]}}));
    site.publish("big", json!({"nodes": ["k1", "k2"]}));

    // Both edges are transferring, and the controller has recorded their jobs.
    for n in ["k1", "k2"] {
        site.wait_publication("big", n, "prefetching with a job", LONG, |p| {
            p.is_some_and(|p| p["state"] == "prefetching" && p["prefetch_job"].is_string())
        });
        let edge = site.edge(n);
        wait_until(&format!("{n} transferring"), LONG, || {
            transferring(edge, &image)
        });
    }
    for n in ["k1", "k2"] {
        assert!(site.manifests(n).is_empty(), "{n} deployed before prefetch");
    }
    site.registry.server.kill9();
    site.registry.server.start_again();
    proxy.set_rate(None);

    let mut files = BTreeMap::new();
    for n in ["k1", "k2"] {
        let p = site.wait_state("big", n, "running", LONG);
        let applied = p["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|h| {
                h["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("applied"))
            })
            .count();
        assert_eq!(applied, 1, "{n}: {:#}", p["history"]);
        let edge = site.edge(n);
        let jobs = edge.jobs_for(&image);
        assert_eq!(
            jobs.len(),
            1,
            "{n}: one prefetch job for {image}, not {}: {jobs:#?}\nhistory: {:#}",
            jobs.len(),
            p["history"]
        );
        assert_eq!(jobs[0]["state"], "done");
        assert_eq!(p["prefetch_job"], jobs[0]["id"], "{p:#}");
        let path = site.manifests_dir(n).join(deployment_file("big", n));
        let meta = std::fs::metadata(&path).expect("manifest");
        files.insert(n, (path, meta.ino(), meta.mtime_nsec(), meta.mtime()));
    }
    // Another restart: the reconciler looks at every publication when it
    // starts; a finished one is neither fetched nor written again.
    site.registry.server.kill9();
    site.registry.server.start_again();
    std::thread::sleep(Duration::from_secs(2));
    for (n, (path, ino, nsec, sec)) in &files {
        let meta = std::fs::metadata(path).expect("manifest");
        assert_eq!(
            (meta.ino(), meta.mtime_nsec(), meta.mtime()),
            (*ino, *nsec, *sec),
            "{n}: manifest written again"
        );
        assert_eq!(site.edge(n).jobs_for(&image).len(), 1);
    }
}

/// The registry down for a few seconds in the middle of a prefetch, with the
/// edge's reconnects refused meanwhile (as on a real restart): the edge's fill
/// keeps trying past its circuit breaker's window, so the one job completes.
#[test]
fn prefetch_survives_the_registry_down_for_seconds() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let proxy = FaultProxy::start(&site.registry.host());
    proxy.set_rate(Some(2 << 20));
    proxy.set_hold_while_down(false);
    site.add_edge("o1", &proxy.url(), json!({}));
    let big = site.push(
        "outage",
        "1",
        ImageBuilder::new()
            .layer_random(8 << 20)
            .layer_random(8 << 20),
    );
    let image = by_digest("outage", big.digest());
    site.create_app(json!({"name": "outage", "spec": {"kind": "Deployment",
        "containers": [{"name": "o", "image": "acme/outage:1"}]}}));
    site.publish("outage", json!({"nodes": ["o1"]}));
    let edge = site.edge("o1");
    wait_until("o1 transferring", LONG, || transferring(edge, &image));
    site.registry.server.kill9();
    std::thread::sleep(Duration::from_secs(4));
    site.registry.server.start_again();
    proxy.set_rate(None);
    let p = site.wait_state("outage", "o1", "running", LONG);
    let jobs = site.edge("o1").jobs_for(&image);
    assert_eq!(
        jobs.len(),
        1,
        "one prefetch job, not {}: {:#?}\nhistory: {:#}",
        jobs.len(),
        jobs.iter()
            .map(|j| (&j["state"], &j["error"]))
            .collect::<Vec<_>>(),
        p["history"]
    );
}

#[test]
fn controller_killed_between_submitting_and_recording_a_prefetch_adopts_the_job() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let url = site.registry_url();
    site.start_edge("w1", &url);
    // The controller reaches the edge over a link that holds each answer
    // back: the edge has the job, the controller has not heard of it yet.
    let link = FaultProxy::start(&site.edge("w1").process.host());
    link.set_delay(Duration::from_secs(5));
    site.register_node("w1", &link.url(), json!({}));
    let img = site.push(
        "slowlink",
        "1",
        ImageBuilder::new()
            .layer_file("etc/a", "a\n")
            .layer_random(1 << 20),
    );
    let image = by_digest("slowlink", img.digest());
    site.create_app(json!({"name": "slowlink", "spec": {"kind": "Deployment",
        "containers": [{"name": "s", "image": "acme/slowlink:1"}]}}));
    site.publish("slowlink", json!({"nodes": ["w1"]}));
    let edge = site.edge("w1");
    // The edge finished the job (so the kill below does not break its
    // transfer from the registry); the controller is still waiting to hear.
    wait_until("the edge to finish the job", LONG, || {
        let jobs = edge.jobs_for(&image);
        if jobs.len() == 1 && jobs[0]["state"] == "done" {
            Ok(())
        } else {
            Err(format!("{:#?}", edge.jobs()))
        }
    });
    let p = site.publication("slowlink", "w1").expect("publication");
    assert!(p["prefetch_job"].is_null(), "answer arrived already: {p:#}");
    site.registry.server.kill9();
    link.set_delay(Duration::ZERO);
    site.registry.server.start_again();

    let p = site.wait_state("slowlink", "w1", "running", LONG);
    let jobs = site.edge("w1").jobs_for(&image);
    assert_eq!(
        jobs.len(),
        1,
        "one prefetch job, not {}: {jobs:#?}\nhistory: {:#}",
        jobs.len(),
        p["history"]
    );
    assert_eq!(p["prefetch_job"], jobs[0]["id"], "{p:#}");
    assert!(site.edge("w1").pinned(&image));
}

#[test]
fn refusals_are_clear_and_the_cli_follows_a_publish() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let url = site.registry_url();
    site.add_edge("c1", &url, json!({"role": "cli"}));
    let apps = format!("/api/v1/projects/{PROJECT}/apps");
    let error = |v: &Value| v["error"].as_str().unwrap_or_default().to_string();

    // A kind the controller does not know.
    let (s, v) = site.api(
        "POST",
        &apps,
        Some(json!({"name": "pod", "spec": {"kind": "Pod",
            "containers": [{"name": "a", "image": "acme/a:1"}]}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        error(&v).contains("Pod") && error(&v).contains("Deployment"),
        "names the bad kind and the known ones: {v}"
    );
    // A CronJob whose schedule is not cron.
    let (s, v) = site.api(
        "POST",
        &apps,
        Some(
            json!({"name": "nightly", "spec": {"kind": "CronJob", "schedule": "every night",
            "containers": [{"name": "a", "image": "acme/a:1"}]}}),
        ),
    );
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).contains("schedule"), "{v}");

    // An image whose tag the registry does not have: the publish is accepted,
    // and the publication fails naming the image.
    site.create_app(json!({"name": "ghost", "spec": {"kind": "Deployment",
        "containers": [{"name": "g", "image": "acme/ghost:404"}]}}));
    site.publish("ghost", json!({"nodes": ["c1"]}));
    let p = site
        .wait_publication("ghost", "c1", "failed", LONG, |p| {
            p.is_some_and(|p| p["state"] == "failed")
        })
        .expect("publication");
    let reason = p["reason"].as_str().expect("reason");
    assert!(reason.contains("acme/ghost:404"), "{reason}");
    assert!(site.manifests("c1").is_empty());

    // A node that does not exist.
    let (s, v) = site.api(
        "POST",
        &format!("{}/publish", site.app_path("ghost")),
        Some(json!({"nodes": ["c1", "nowhere"]})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).contains("no node named nowhere"), "{v}");
    let (s, v) = site.api(
        "POST",
        &format!("{}/publish", site.app_path("ghost")),
        Some(json!({"selector": {"role": "none"}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).contains("role=none"), "{v}");

    // The CLI: create from a file, publish, follow progress until running.
    let img = site.push(
        "tool",
        "1",
        ImageBuilder::new().layer_file("bin/tool", "#!/bin/sh\n"),
    );
    let spec = site.tmp.path().join("tool.yaml");
    std::fs::write(
        &spec,
        "kind: Deployment\ncontainers:\n- name: tool\n  image: acme/tool:1\n",
    )
    .expect("spec file");
    let berth = |args: &[&str]| site.cli(args);
    let spec_path = spec.to_string_lossy().into_owned();
    let (ok, out, err) = berth(&["app", "create", "acme/tool", "-f", &spec_path]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created acme/tool version 1"), "{out}");
    let (ok, out, err) = berth(&["app", "publish", "acme/tool", "--nodes", "c1"]);
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("c1")).collect();
    assert!(lines.len() >= 2, "progress, not just the end: {out}");
    assert!(lines.last().is_some_and(|l| l.contains("running")), "{out}");
    // It returned because the node runs.
    let p = site.publication("tool", "c1").expect("publication");
    assert_eq!(p["state"], "running", "{p:#}");
    assert!(site.edge("c1").pinned(&by_digest("tool", img.digest())));
    assert!(site
        .manifests_dir("c1")
        .join(deployment_file("tool", "c1"))
        .exists());

    // The CLI says so when a node fails, and exits non-zero.
    let (ok, out, err) = berth(&["app", "publish", "acme/ghost", "--nodes", "c1"]);
    assert!(!ok, "a failed publish must not exit 0: {out}{err}");
    assert!(err.contains("not running on c1"), "{err}");
    assert!(
        out.contains("failed") && out.contains("acme/ghost:404"),
        "{out}{err}"
    );
}

#[test]
fn roles_decide_who_may_publish_and_which_images() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let url = site.registry_url();
    site.add_edge("a1", &url, json!({}));
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    // Another private project, with an image the developer cannot see.
    site.admin.create_project("vault", false);
    ImageBuilder::new()
        .layer_file("srv/secret", "secret\n")
        .tag("vault-secret")
        .build(&site.layout);
    site.skopeo.copy(
        &site.layout.reference("vault-secret"),
        &docker_ref(&site.registry.host(), "vault/secret", "1"),
        &berth_testkit::tools::CopyOptions::default().with_dest_creds(&site.admin_creds()),
    );
    site.admin.create_user("dev", "dev-password-1");
    site.admin.add_member(PROJECT, "dev", "developer");
    site.admin.create_user("visitor", "visitor-password-1");
    site.admin.add_member(PROJECT, "visitor", "guest");
    let dev = site.admin.as_user("dev", "dev-password-1");
    let visitor = site.admin.as_user("visitor", "visitor-password-1");
    let apps = format!("/api/v1/projects/{PROJECT}/apps");
    let app = |name: &str, image: &str| {
        json!({"name": name, "spec": {"kind": "Deployment",
            "containers": [{"name": "c", "image": image}]}})
    };

    // A guest reads but does not change.
    let (s, v) = visitor.call("POST", &apps, Some(app("web", "acme/web:1")));
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("visitor")),
        "{v}"
    );

    // A developer creates and publishes with the project's images.
    let (s, v) = dev.call("POST", &apps, Some(app("web", "acme/web:1")));
    assert_eq!(s, 201, "{v}");
    let (s, v) = dev.call(
        "POST",
        &format!("{apps}/web/publish"),
        Some(json!({"nodes": ["a1"]})),
    );
    assert_eq!(s, 202, "{v}");
    site.wait_state("web", "a1", "running", LONG);
    // The registry's audit log has who asked and what the controller did.
    let (s, v) = site.api("GET", "/api/v1/audit?project=acme", None);
    assert_eq!(s, 200, "{v}");
    let events = v.as_array().expect("audit events");
    let has = |actor: &str, action: &str, outcome: &str| {
        events.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(outcome))
        })
    };
    assert!(has("dev", "app.create", "ok"), "{v:#}");
    assert!(has("dev", "app.publish", "ok"), "{v:#}");
    assert!(has("controller", "deploy", "ok"), "{v:#}");
    let (s, v) = visitor.call("GET", &format!("{apps}/web/publications"), None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = visitor.call(
        "POST",
        &format!("{apps}/web/unpublish"),
        Some(json!({"nodes": ["a1"]})),
    );
    assert_eq!(s, 403, "{v}");

    // But not with images of a project the developer may not pull: that
    // would deploy them, and tell their digests.
    let (s, v) = dev.call("POST", &apps, Some(app("leak", "vault/secret:1")));
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("vault")),
        "{v}"
    );
    let (s, v) = dev.call(
        "PUT",
        &format!("{apps}/web"),
        Some(json!({"spec": {"kind": "Deployment",
            "containers": [{"name": "c", "image": "vault/secret:1"}]}})),
    );
    assert_eq!(s, 403, "{v}");
    // The admin may; and a developer cannot publish what the admin wrote.
    let (s, v) = site.api("POST", &apps, Some(app("mixed", "vault/secret:1")));
    assert_eq!(s, 201, "{v}");
    let (s, v) = dev.call(
        "POST",
        &format!("{apps}/mixed/publish"),
        Some(json!({"nodes": ["a1"]})),
    );
    assert_eq!(s, 403, "{v}");
    assert!(site.publication("mixed", "a1").is_none());
}

#[test]
fn an_image_deleted_before_its_node_fetched_it_fails_in_words() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let url = site.registry_url();
    site.add_edge("late", &url, json!({}));
    site.edge_mut("late").process.kill9();
    let img = site.push(
        "gone",
        "1",
        ImageBuilder::new().layer_file("srv/gone", "gone\n"),
    );
    site.create_app(json!({"name": "gone", "spec": {"kind": "Deployment",
        "containers": [{"name": "g", "image": "acme/gone:1"}]}}));
    site.publish("gone", json!({"nodes": ["late"]}));
    site.wait_publication("gone", "late", "resolved, edge down", LONG, |p| {
        p.is_some_and(|p| p["images"].is_array() && p["state"] == "failed")
    });
    // Deleted from the registry after it was resolved, before the node got it.
    site.skopeo
        .try_delete(
            &docker_ref(&site.registry.host(), "acme/gone", img.digest()),
            Some(&site.admin_creds()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    site.edge_mut("late").process.start_again();
    let image = by_digest("gone", img.digest());
    let p = site
        .wait_publication("gone", "late", "failed by the edge", LONG, |p| {
            p.and_then(|p| p["reason"].as_str())
                .is_some_and(|r| r.contains("could not prefetch"))
        })
        .expect("publication");
    let reason = p["reason"].as_str().expect("reason");
    assert_eq!(p["state"], "failed", "{p:#}");
    assert!(
        reason.contains("is not in repository acme/gone"),
        "{reason}"
    );
    assert_eq!(
        reason.matches(&format!("cannot resolve {image}")).count(),
        1,
        "the image and its error once: {reason}"
    );
    assert!(site.manifests("late").is_empty());
}

/// A tag that moves during a publish leaves the resolved manifest untagged,
/// and registry GC collects untagged manifests: the digests publications
/// deploy are GC roots, so a node that had not fetched the old manifest yet
/// (its edge was down) still gets it.
#[test]
fn gc_keeps_what_a_publication_still_deploys() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start_with(&[("BERTH_GC_GRACE", "0s")]);
    let url = site.registry_url();
    site.add_edge("late", &url, json!({}));
    site.edge_mut("late").process.kill9();
    let first = site.push(
        "gc",
        "1",
        ImageBuilder::new().layer_file("srv/gc", "first\n"),
    );
    site.create_app(json!({"name": "gc", "spec": {"kind": "Deployment",
        "containers": [{"name": "g", "image": "acme/gc:1"}]}}));
    site.publish("gc", json!({"nodes": ["late"]}));
    site.wait_publication("gc", "late", "resolved, edge down", LONG, |p| {
        p.is_some_and(|p| p["images"].is_array() && p["state"] == "failed")
    });
    site.push(
        "gc",
        "1",
        ImageBuilder::new().layer_file("srv/gc", "second\n"),
    );
    let (s, v) = site.api("POST", "/api/v1/gc", None);
    assert_eq!(s, 200, "{v}");
    site.edge_mut("late").process.start_again();
    let p = site.wait_state("gc", "late", "running", Duration::from_secs(30));
    assert_eq!(p["images"][0]["digest"], first.digest(), "{p:#}");
}
