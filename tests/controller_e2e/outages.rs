//! Outages and crashes: an edge down, the controller killed mid-prefetch or between submitting
//! and recording, the registry down, an image deleted before its node fetched it, GC.

use super::*;

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
