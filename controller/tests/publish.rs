//! End to end within the controller: the API over a socket, the reconciler,
//! fake edge caches over sockets, the directory deployer.

mod common;

use std::time::Duration;

use berth_controller::api::PublishInput;
use berth_controller::cli::{CliClient, WatchOptions, WatchUntil};
use berth_controller::model::PublicationState;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_prefetches_before_it_applies() {
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("web1"));
    world.resolver.tag("shop/tools:2", &digest("tools2"));
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    edge.lock().expect("lock").require = Some(("edge".into(), "pw".into()));
    h.add_cluster().await;
    a_node_is_registered_with_edge_credentials_never_shown(&h, &world, &edge, &edge_url).await;
    publishing_a_new_app_starts_resolving_version_1(&h).await;
    while_the_edge_prefetches_progress_is_stored_and_nothing_applied(&h, &world, &edge).await;
    let cli = the_clis_live_view_follows_the_publish_to_the_end(&h, &edge).await;
    the_manifest_names_the_digests_and_the_node_and_is_applied_once(&world);
    the_history_shows_each_state_once_in_order(&h, &world, &cli).await;
    h.stop().await;
}

async fn a_node_is_registered_with_edge_credentials_never_shown(
    h: &Harness,
    world: &World,
    edge: &Edge,
    edge_url: &str,
) {
    let (s, v) = h
        .post(
            "/api/v1/nodes",
            json!({"name": "n1", "cluster": "edge", "edge_url": edge_url,
                   "k8s_node_name": "edge-host-1",
                   "edge_credentials": {"user": "edge", "password": "pw"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["edge_user"], "edge");
    assert!(
        !v.to_string().contains("\"pw\""),
        "password must not be shown: {v}"
    );
    world
        .deployer
        .edges
        .lock()
        .expect("lock")
        .insert("n1".into(), edge.clone());
}

async fn publishing_a_new_app_starts_resolving_version_1(h: &Harness) {
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps",
            app_body("web", &["shop/web:1.0", "shop/tools:2"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["latest"]["version"], 1);

    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["publications"][0]["state"], "resolving");
    assert_eq!(v["publications"][0]["version"], 1);
}

/// The edge holds the job half done: progress is stored, nothing is applied;
/// the edge was asked to pin both images by digest, with the node's credentials.
async fn while_the_edge_prefetches_progress_is_stored_and_nothing_applied(
    h: &Harness,
    world: &World,
    edge: &Edge,
) {
    let p = h
        .wait_for("shop", "web", "n1", "prefetching with progress", |p| {
            matches!(
                p.map(|p| &p.state),
                Some(PublicationState::Prefetching {
                    bytes_done: 1000,
                    bytes_total: 2000
                })
            )
        })
        .await
        .expect("publication");
    assert!(p.prefetch_job.is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        world.manifests("n1").is_empty(),
        "applied before prefetch finished"
    );
    {
        let e = edge.lock().expect("lock");
        assert_eq!(e.prefetches.len(), 1);
        let (images, pin) = &e.prefetches[0];
        assert!(*pin);
        assert_eq!(
            images,
            &vec![
                format!("shop/web@{}", digest("web1")),
                format!("shop/tools@{}", digest("tools2"))
            ]
        );
        assert!(e
            .auth
            .iter()
            .all(|a| a.as_deref().is_some_and(|a| a.starts_with("Basic "))));
    }
}

/// Opens the gate on the edge; returns the CLI client that watched.
async fn the_clis_live_view_follows_the_publish_to_the_end(h: &Harness, edge: &Edge) -> CliClient {
    edge.lock().expect("lock").gate_open = true;
    let cli = CliClient::new(&h.url, Some("admin"), Some("secret")).expect("cli");
    let mut out = Vec::new();
    let pubs = cli
        .watch(
            "shop",
            "web",
            &["n1".to_string()],
            WatchOptions {
                until: WatchUntil::Settled,
                interval: Duration::from_millis(20),
                timeout: Duration::from_secs(20),
            },
            &mut out,
        )
        .await
        .expect("watch");
    let text = String::from_utf8(out).expect("utf8");
    assert!(text.contains("running"), "{text}");
    assert_eq!(pubs[0].state, PublicationState::Running);
    cli
}

fn the_manifest_names_the_digests_and_the_node_and_is_applied_once(world: &World) {
    let files = world.manifests("n1");
    assert_eq!(files, vec!["shop-web-deployment-web-n1.yaml"]);
    let yaml = world.read_manifest("n1", &files[0]);
    assert!(
        yaml.contains(&format!("shop/web@{}", digest("web1"))),
        "{yaml}"
    );
    assert!(
        yaml.contains("kubernetes.io/hostname: edge-host-1"),
        "{yaml}"
    );
    assert!(yaml.contains("berth.dev/version: '1'"), "{yaml}");
    assert!(world.deployer.violations.lock().expect("lock").is_empty());
    assert_eq!(world.deployer.apply_count("n1"), 1);
}

/// Each state once, in order; the apply once, between prefetching and
/// running; audited; and `berth app status` shows the resolved digest.
async fn the_history_shows_each_state_once_in_order(h: &Harness, world: &World, cli: &CliClient) {
    let p = h.publication("shop", "web", "n1").await.expect("pub");
    let mut states: Vec<&str> = p.history.iter().map(|t| t.state.as_str()).collect();
    states.dedup();
    assert_eq!(
        states,
        vec!["resolving", "prefetching", "deploying", "running"],
        "{:#?}",
        p.history
    );
    assert!(p
        .history
        .iter()
        .any(|t| t.detail.contains("edge prefetch job job-1 submitted")));
    // The apply is in the history, once, between prefetching and running.
    let applied: Vec<usize> = (0..p.history.len())
        .filter(|i| p.history[*i].detail.starts_with("applied version 1"))
        .collect();
    assert_eq!(applied.len(), 1, "{:#?}", p.history);
    assert_eq!(p.history[applied[0]].state, "deploying");
    assert!(p.history[applied[0] + 1..]
        .iter()
        .all(|t| t.state == "running"));
    assert!(world.audit.has("app.publish", "ok"));
    assert!(world.audit.has("deploy", "ok"));
    let status =
        berth_controller::cli::format_status(&cli.status("shop", "web").await.expect("status"));
    assert!(status.contains(&digest("web1")), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moving_during_publish_changes_nothing() {
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("old"));
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;
    h.post(
        "/api/v1/projects/shop/apps",
        app_body("web", &["shop/web:1.0"]),
    )
    .await;
    h.post(
        "/api/v1/projects/shop/apps/web/publish",
        json!({"nodes": ["n1"]}),
    )
    .await;
    h.wait_state("shop", "web", "n1", "prefetching").await;
    // Someone pushes a new image under the same tag mid-publish.
    world.resolver.tag("shop/web:1.0", &digest("new"));
    edge.lock().expect("lock").gate_open = true;
    let p = h.wait_state("shop", "web", "n1", "running").await;
    let images = p.images.expect("resolved");
    assert_eq!(images[0].digest, digest("old"));
    let yaml = world.read_manifest("n1", "shop-web-deployment-web-n1.yaml");
    assert!(
        yaml.contains(&digest("old")) && !yaml.contains(&digest("new")),
        "{yaml}"
    );
    assert_eq!(
        world.resolver.calls(),
        vec!["shop/web:1.0"],
        "resolved once per publish"
    );
    // A new publish picks the moved tag up.
    h.post(
        "/api/v1/projects/shop/apps/web/publish",
        json!({"nodes": ["n1"]}),
    )
    .await;
    let p = h
        .wait_for("shop", "web", "n1", "running the new digest", |p| {
            p.is_some_and(|p| {
                p.state == PublicationState::Running
                    && p.images
                        .as_ref()
                        .is_some_and(|i| i[0].digest == digest("new"))
            })
        })
        .await
        .expect("pub");
    assert_eq!(p.generation, 2);
    let yaml = world.read_manifest("n1", "shop-web-deployment-web-n1.yaml");
    assert!(yaml.contains(&digest("new")), "{yaml}");
    // The old digest is unpinned once the new one runs (right after it is
    // marked running: wait for it).
    let old = format!("shop/web@{}", digest("old"));
    wait_until(
        "the old digest to be unpinned",
        Duration::from_secs(10),
        || {
            let e = edge.lock().expect("lock");
            e.unpins.iter().any(|u| u.contains(&old))
        },
    )
    .await;
    {
        let e = edge.lock().expect("lock");
        assert!(
            e.unpins
                .iter()
                .any(|u| u.contains(&format!("shop/web@{}", digest("old")))),
            "{:?}",
            e.unpins
        );
        assert!(e.pinned.contains(&format!("shop/web@{}", digest("new"))));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_named_by_a_sha512_digest_is_pinned_and_deployed_as_named() {
    let world = World::new();
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    edge.lock().expect("lock").gate_open = true;
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;
    let d = format!("sha512:{}", "5e".repeat(64));
    let image = format!("shop/web@{d}");
    let (s, v) = h
        .post("/api/v1/projects/shop/apps", app_body("web", &[&image]))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let p = h.wait_state("shop", "web", "n1", "running").await;
    assert_eq!(p.images.expect("resolved")[0].digest, d);
    assert_eq!(
        edge.lock().expect("lock").prefetches[0].0,
        vec![image.clone()]
    );
    let yaml = world.read_manifest("n1", "shop-web-deployment-web-n1.yaml");
    assert!(yaml.contains(&image), "{yaml}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_does_not_hold_back_the_others_and_catches_up() {
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("web"));
    let h = Harness::start(world.clone()).await;
    let (edge1, url1, _t1) = start_edge().await;
    edge1.lock().expect("lock").gate_open = true;
    let edge2: Edge = Default::default();
    edge2.lock().expect("lock").gate_open = true;
    let port2 = free_port();
    let url2 = format!("http://127.0.0.1:{port2}");
    h.add_cluster().await;
    h.add_node("n1", &url1, &edge1, json!({"site": "north"}))
        .await;
    h.add_node("n2", &url2, &edge2, json!({"site": "north"}))
        .await;
    h.add_node("n3", &url1, &edge1, json!({"site": "south"}))
        .await;
    h.post(
        "/api/v1/projects/shop/apps",
        app_body("web", &["shop/web:1.0"]),
    )
    .await;
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"selector": {"site": "north"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v["publications"].as_array().map(|a| a.len()),
        Some(2),
        "{v}"
    );

    h.wait_state("shop", "web", "n1", "running").await;
    let p2 = h
        .wait_for("shop", "web", "n2", "failed twice", |p| {
            p.is_some_and(|p| p.state.label() == "failed" && p.attempts >= 2)
        })
        .await
        .expect("n2");
    let PublicationState::Failed { reason } = &p2.state else {
        unreachable!()
    };
    assert!(
        reason.contains("n2") && reason.contains("unreachable"),
        "{reason}"
    );
    assert!(p2.next_retry_at_ms.is_some());
    assert!(world.manifests("n2").is_empty());
    assert!(h.publication("shop", "web", "n3").await.is_none());

    // The edge comes up; n2 catches up on its own.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port2))
        .await
        .expect("rebind");
    let _t2 = serve_edge(edge2.clone(), listener);
    let p2 = h.wait_state("shop", "web", "n2", "running").await;
    assert_eq!(p2.attempts, 0);
    assert!(p2.last_error.is_none());
    assert_eq!(
        world.manifests("n2"),
        vec!["shop-web-deployment-web-n2.yaml"]
    );
    assert!(world.deployer.violations.lock().expect("lock").is_empty());
    assert!(world.audit.has("publish", "failed: edge cache of node n2"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_publish_resumes_without_redoing_steps() {
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("web"));
    let (edge, edge_url, _t) = start_edge().await;
    let h = Harness::start(world.clone()).await;
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;
    h.post(
        "/api/v1/projects/shop/apps",
        app_body("web", &["shop/web:1.0"]),
    )
    .await;
    h.post(
        "/api/v1/projects/shop/apps/web/publish",
        json!({"nodes": ["n1"]}),
    )
    .await;
    let before = h
        .wait_for("shop", "web", "n1", "prefetching with a job", |p| {
            p.is_some_and(|p| p.prefetch_job.is_some())
        })
        .await
        .expect("pub");
    let world = h.stop().await;

    // Restart: the stored job is followed, not submitted again.
    edge.lock().expect("lock").gate_open = true;
    let h = Harness::start(world.clone()).await;
    let after = h.wait_state("shop", "web", "n1", "running").await;
    assert_eq!(after.prefetch_job, before.prefetch_job);
    assert_eq!(edge.lock().expect("lock").prefetches.len(), 1);
    assert_eq!(
        world.resolver.calls().len(),
        1,
        "digests are not resolved again"
    );
    assert_eq!(world.deployer.apply_count("n1"), 1);
    let world = h.stop().await;

    // Another restart once running applies nothing again.
    let h = Harness::start(world.clone()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(world.deployer.apply_count("n1"), 1, "no duplicate apply");
    assert_eq!(
        h.publication("shop", "web", "n1").await.expect("pub").state,
        PublicationState::Running
    );

    // An edge that forgot its jobs (it restarted) gets the prefetch again.
    edge.lock().expect("lock").gate_open = false;
    h.post(
        "/api/v1/projects/shop/apps/web/publish",
        json!({"nodes": ["n1"]}),
    )
    .await;
    h.wait_for("shop", "web", "n1", "prefetching job 2", |p| {
        p.is_some_and(|p| p.prefetch_job.as_deref() == Some("job-2"))
    })
    .await;
    {
        let mut e = edge.lock().expect("lock");
        e.jobs.clear();
        e.gate_open = true;
    }
    let p = h
        .wait_for("shop", "web", "n1", "running again", |p| {
            p.is_some_and(|p| p.state == PublicationState::Running && p.generation == 2)
        })
        .await
        .expect("pub");
    assert_eq!(p.prefetch_job.as_deref(), Some("job-3"));
    assert!(p
        .history
        .iter()
        .any(|t| t.detail.contains("does not know job job-2")));
    assert_eq!(world.deployer.apply_count("n1"), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_removes_files_and_unpins_what_nothing_else_uses() {
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("web"));
    world.resolver.tag("shop/base:1", &digest("base"));
    world.resolver.tag("shop/api:1", &digest("api"));
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    edge.lock().expect("lock").gate_open = true;
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;
    h.post(
        "/api/v1/projects/shop/apps",
        app_body("web", &["shop/web:1.0", "shop/base:1"]),
    )
    .await;
    h.post(
        "/api/v1/projects/shop/apps",
        app_body("api", &["shop/api:1", "shop/base:1"]),
    )
    .await;
    for app in ["web", "api"] {
        h.post(
            &format!("/api/v1/projects/shop/apps/{app}/publish"),
            json!({"nodes": ["n1"]}),
        )
        .await;
        h.wait_state("shop", app, "n1", "running").await;
    }
    assert_eq!(world.manifests("n1").len(), 2);

    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/unpublish",
            json!({"nodes": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["publications"][0]["state"], "removing");
    h.wait_for("shop", "web", "n1", "gone", |p| p.is_none())
        .await;
    assert_eq!(
        world.manifests("n1"),
        vec!["shop-api-deployment-api-n1.yaml"]
    );
    {
        let e = edge.lock().expect("lock");
        assert_eq!(e.unpins, vec![vec![format!("shop/web@{}", digest("web"))]]);
        assert!(
            e.pinned.contains(&format!("shop/base@{}", digest("base"))),
            "still used by api"
        );
    }
    assert!(world.audit.has("unpublish", "ok"));

    // The app can go now; the node cannot while api runs there.
    let (s, _) = h
        .call(
            reqwest::Method::DELETE,
            "/api/v1/projects/shop/apps/web",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = h
        .call(reqwest::Method::DELETE, "/api/v1/nodes/n1", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("shop/api")),
        "{v}"
    );

    // The CLI unpublishes the last one and waits for it to be gone.
    let cli = CliClient::new(&h.url, Some("admin"), Some("secret")).expect("cli");
    cli.unpublish(
        "shop",
        "api",
        &berth_controller::api::UnpublishInput {
            nodes: Some(vec!["n1".into()]),
            ..Default::default()
        },
    )
    .await
    .expect("unpublish");
    let mut out = Vec::new();
    cli.watch(
        "shop",
        "api",
        &["n1".into()],
        WatchOptions {
            until: WatchUntil::Removed,
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(20),
        },
        &mut out,
    )
    .await
    .expect("watch");
    assert!(world.manifests("n1").is_empty());
    {
        let e = edge.lock().expect("lock");
        assert!(e.pinned.is_empty(), "{:?}", e.pinned);
    }
    let (s, _) = h
        .call(reqwest::Method::DELETE, "/api/v1/nodes/n1", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prefetch_and_a_missing_image_are_reported_and_retried() {
    let world = World::new();
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    {
        let mut e = edge.lock().expect("lock");
        e.gate_open = true;
        e.fail_next = Some("no space left on device".into());
    }
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;
    h.post(
        "/api/v1/projects/shop/apps",
        app_body("web", &["shop/web:1.0"]),
    )
    .await;
    h.post(
        "/api/v1/projects/shop/apps/web/publish",
        json!({"nodes": ["n1"]}),
    )
    .await;
    // Not pushed yet.
    let p = h.wait_state("shop", "web", "n1", "failed").await;
    assert!(
        p.last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot resolve image shop/web:1.0")
                && e.contains("not in the registry")),
        "{p:#?}"
    );
    // Pushed: the retry resolves it; the edge fails the first job, then succeeds.
    world.resolver.tag("shop/web:1.0", &digest("web"));
    h.wait_for("shop", "web", "n1", "failed by the edge", |p| {
        p.and_then(|p| p.last_error.as_deref())
            .is_some_and(|e| e.contains("no space left on device"))
    })
    .await;
    let p = h.wait_state("shop", "web", "n1", "running").await;
    assert!(p.history.iter().any(|t| t.detail.contains("no space left")));
    assert_eq!(edge.lock().expect("lock").prefetches.len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_history_and_publishing_an_older_version() {
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("v1"));
    world.resolver.tag("shop/web:2.0", &digest("v2"));
    let h = Harness::start(world.clone()).await;
    let (edge, edge_url, _t) = start_edge().await;
    edge.lock().expect("lock").gate_open = true;
    h.add_cluster().await;
    h.add_node("n1", &edge_url, &edge, json!({})).await;
    let cli = CliClient::new(&h.url, Some("admin"), Some("secret")).expect("cli");
    let spec = berth_controller::cli::parse_spec(
        "kind: Deployment\ncontainers:\n- name: web\n  image: shop/web:1.0\n",
    )
    .expect("spec");
    cli.create_app("shop", "web", spec.clone(), None)
        .await
        .expect("create");
    let mut spec2 = spec.clone();
    spec2.containers[0].image = "shop/web:2.0".into();
    spec2.replicas = Some(3);
    let v2 = cli
        .update_app("shop", "web", spec2.clone(), Some("bump to 2.0".into()))
        .await
        .expect("update");
    assert!(v2.created);
    assert_eq!(v2.version.version, 2);
    assert_eq!(v2.version.summary, "bump to 2.0");
    let same = cli
        .update_app("shop", "web", spec2, None)
        .await
        .expect("same");
    assert!(!same.created, "an identical template makes no new version");
    let history = cli.history("shop", "web").await.expect("history");
    assert_eq!(history.len(), 2);
    let text = berth_controller::cli::format_history(&history);
    assert!(text.starts_with("v2"), "{text}");
    assert!(text.contains("first version"), "{text}");
    let (s, v) = h.get("/api/v1/projects/shop/apps/web/versions/1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["spec"]["containers"][0]["image"], "shop/web:1.0");
    assert_eq!(v["author"], "admin");

    let pubs = cli
        .publish(
            "shop",
            "web",
            &PublishInput {
                nodes: Some(vec!["n1".into()]),
                version: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("publish v1");
    assert_eq!(pubs[0].version, 1);
    h.wait_state("shop", "web", "n1", "running").await;
    let yaml = world.read_manifest("n1", "shop-web-deployment-web-n1.yaml");
    assert!(yaml.contains(&digest("v1")), "{yaml}");
    assert!(yaml.contains("replicas: 1"), "{yaml}");
    h.stop().await;
}

/// Every write of a publication costs a commit, and a fleet publish makes
/// them per node: with an edge done at the first look and a deployer that
/// cannot watch a rollout, a publish is three writes after the request
/// (resolved with the prefetch about to be asked for, submitted, and
/// prefetched + applied + running in one), where it was six. The history
/// and the outbox of changes still show every state, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_three_writes_and_still_tells_every_state() {
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("web"));
    let h = Harness::start(world.clone()).await;
    let (edge, url, _t) = start_edge().await;
    edge.lock().expect("lock").gate_open = true;
    h.add_cluster().await;
    h.add_node("n1", &url, &edge, json!({})).await;
    h.post(
        "/api/v1/projects/shop/apps",
        app_body("web", &["shop/web:1.0"]),
    )
    .await;
    let (s, v) = h
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let requested = v["publications"][0]["revision"].as_u64().expect("revision");
    let p = h
        .wait_for("shop", "web", "n1", "running", |p| {
            p.is_some_and(|p| p.state == PublicationState::Running)
        })
        .await
        .expect("publication");
    assert_eq!(p.revision, requested + 3, "{:#?}", p.history);

    let mut states: Vec<&str> = p.history.iter().map(|t| t.state.as_str()).collect();
    states.dedup();
    assert_eq!(states, ["resolving", "prefetching", "deploying", "running"]);
    let store = h.state.as_ref().expect("running").store();
    let changes = store.publication_events(100).await.expect("outbox");
    let told: Vec<(Option<&str>, &str)> = changes
        .iter()
        .map(|c| (c.change.previous_state.as_deref(), c.change.state.as_str()))
        .collect();
    assert_eq!(
        told,
        [
            (None, "resolving"),
            (Some("resolving"), "prefetching"),
            (Some("prefetching"), "deploying"),
            (Some("deploying"), "running"),
        ]
    );
    assert_eq!(world.deployer.apply_count("n1"), 1);
    h.stop().await;
}
