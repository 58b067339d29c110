//! Two controllers over one PostgreSQL database (two `berth serve`
//! replicas): exactly one runs the reconcilers, and when it dies the other
//! takes over.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

/// The epoch of the reconcilers' lease, once someone holds it.
async fn lease_epoch(url: &str) -> Option<i64> {
    let pool = pg_pool(url);
    let conn = pool.get().await.expect("connection");
    let row = conn
        .query_opt("SELECT epoch FROM ctl_leases WHERE expires_at > now()", &[])
        .await
        .expect("lease");
    row.map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_controllers_reconciles_and_the_other_takes_over_when_it_dies() {
    let url = pg_database().await;
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("web1"));
    let lease = Duration::from_secs(2);
    // a starts first and leads; b starts once a holds the lease.
    let a = Harness::start_replica(world.clone(), &url, lease).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lease_epoch(&url).await.is_none() {
        assert!(std::time::Instant::now() < deadline, "a never led");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = lease_epoch(&url).await;
    let b = Harness::start_replica(world.clone(), &url, lease).await;

    let (edge, edge_url, _t) = start_edge().await;
    edge.lock().expect("lock").gate_open = true;
    b.add_cluster().await;
    b.add_node("n1", &edge_url, &edge, json!({})).await;
    b.add_node("n2", &edge_url, &edge, json!({})).await;
    let (s, v) = b
        .post(
            "/api/v1/projects/shop/apps",
            app_body("web", &["shop/web:1.0"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Requested through b, reconciled by a (the leader), seen through either.
    let (s, v) = b
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    a.wait_state("shop", "web", "n1", "running").await;
    assert_eq!(
        world.deployer.apply_count("n1"),
        1,
        "applied by one controller, once"
    );
    assert_eq!(
        world.resolver.calls(),
        vec!["shop/web:1.0"],
        "resolved by one controller"
    );
    assert_eq!(lease_epoch(&url).await, first, "a kept its term throughout");

    // a dies without handing over; b takes over once a's lease runs out.
    a.kill();
    let (s, v) = b
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n2"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    b.wait_for("shop", "web", "n2", "running after the takeover", |p| {
        p.is_some_and(|p| p.state.label() == "running")
    })
    .await;
    assert_eq!(world.deployer.apply_count("n2"), 1);
    assert_eq!(
        world.deployer.apply_count("n1"),
        1,
        "n1 was not applied again"
    );
    let second = lease_epoch(&url).await;
    assert!(
        second > first,
        "b leads in a later term: {second:?} after {first:?}"
    );
    b.stop().await;
}

/// A publish requested through the follower's API wakes the leader at
/// once (the relay through PostgreSQL), not at its next resync: the
/// replicas here resync once an hour, so only the relay can have woken it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_requested_on_the_follower_runs_without_waiting_for_a_resync() {
    let url = pg_database().await;
    let world = World::new();
    world.resolver.tag("shop/web:1.0", &digest("web1"));
    let lease = Duration::from_secs(2);
    let mut settings = fast_settings();
    settings.reconcile.resync_interval = Duration::from_secs(3600);
    let a = Harness::start_replica_with(world.clone(), &url, lease, settings.clone()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lease_epoch(&url).await.is_none() {
        assert!(std::time::Instant::now() < deadline, "a never led");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = Harness::start_replica_with(world.clone(), &url, lease, settings).await;

    let (edge, edge_url, _t) = start_edge().await;
    edge.lock().expect("lock").gate_open = true;
    b.add_cluster().await;
    b.add_node("n1", &edge_url, &edge, json!({})).await;
    let (s, v) = b
        .post(
            "/api/v1/projects/shop/apps",
            app_body("web", &["shop/web:1.0"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = b
        .post(
            "/api/v1/projects/shop/apps/web/publish",
            json!({"nodes": ["n1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // wait_for's bound (20 s) is far inside the resync (an hour).
    b.wait_state("shop", "web", "n1", "running").await;
    assert_eq!(world.deployer.apply_count("n1"), 1);
    assert_eq!(
        world.resolver.calls(),
        vec!["shop/web:1.0"],
        "reconciled by the leader alone"
    );
    a.stop().await;
    b.stop().await;
}
