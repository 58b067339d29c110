//! The three-edge publish in its steps: prefetch first, digests resolved at publish, a
//! second version on one node, unpublish everywhere.

use super::*;

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
