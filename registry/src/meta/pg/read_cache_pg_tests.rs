//! Two `PgMeta`s with read caches over one database, as two replicas: what
//! one removes or moves, the other stops serving from its cache; a lost
//! listener connection empties the cache before it serves again. Every
//! cache here lives an hour, so only the announcements can make a test pass.

use std::sync::Arc;
use std::time::Duration;

use berth_testkit::postgres::Postgres;
use berth_testkit::wait::wait_until;
use bytes::Bytes;

use super::change_feed::LISTENER_NAME;
use super::{client, connect, migrate, CacheLimits, PgMeta, MIGRATIONS};
use crate::meta::{MetaStore, References};
use crate::oci::{manifest, media, Digest, RepoName, Tag};

const BOUND: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);

async fn cached(url: &str) -> PgMeta {
    let pool = connect(url, 4).expect("pool");
    migrate(&pool, &[MIGRATIONS]).await.expect("migrate");
    let limits = CacheLimits {
        budget: 1 << 20,
        ttl: HOUR,
    };
    let meta = PgMeta::with_cache(pool, url, limits).expect("cache");
    wait("the cache listening", || meta.cache_serving() == Some(true));
    meta
}

/// Waits (off the runtime's other tasks) until `check` holds.
fn wait(what: &str, check: impl FnMut() -> bool) {
    tokio::task::block_in_place(|| wait_until(what, BOUND, check));
}

/// Waits until `f` (a read on a replica) answers `want`.
async fn eventually<T: PartialEq + std::fmt::Debug, F, Fut>(what: &str, want: T, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let until = std::time::Instant::now() + BOUND;
    loop {
        let got = f().await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{what}: still {got:?} after {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn name(s: &str) -> RepoName {
    s.parse().expect("repository name")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

/// Records `layer` and a config in `r` and pushes an image manifest over
/// them tagged `t`; its digest.
async fn push(meta: &PgMeta, r: &RepoName, layer: &[u8], t: &str) -> Digest {
    let config = b"{}".as_slice();
    for blob in [config, layer] {
        meta.record_and_link(r, &Digest::sha256_of(blob), blob.len() as u64)
            .await
            .expect("record");
    }
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    });
    let bytes = Bytes::from(serde_json::to_vec(&v).expect("json"));
    let summary = manifest::decode(media::OCI_MANIFEST, &bytes).expect("manifest");
    let d = Digest::sha256_of(&bytes);
    meta.put_manifest(r, &d, bytes, &summary, &[tag(t)], References::Required)
        .await
        .expect("put")
        .expect("accepted");
    d
}

/// Reads `r:t`, its manifest and its layer's link through `meta` (filling
/// its cache).
async fn read_all(meta: &PgMeta, r: &RepoName, t: &str, d: &Digest, layer: &[u8]) {
    assert_eq!(
        meta.resolve_tag(r, &tag(t)).await.expect("resolve"),
        Some(d.clone())
    );
    assert!(meta.get_manifest(r, d).await.expect("get").is_some());
    assert!(meta
        .linked_blob(r, &Digest::sha256_of(layer))
        .await
        .expect("link")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_a_read_cache_passes_the_conformance_suite() {
    let url = Postgres::shared().database();
    crate::meta::conformance::suite(Arc::new(cached(&url).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_replica_moves_or_removes_the_other_stops_serving() {
    let url = Postgres::shared().database();
    let (a, b) = (cached(&url).await, cached(&url).await);
    let r = name("team/app");

    // A tag moved on A.
    let d1 = push(&a, &r, b"layer one", "v1").await;
    read_all(&b, &r, "v1", &d1, b"layer one").await;
    let d2 = push(&a, &r, b"layer two", "v1").await;
    eventually("the moved tag on B", Some(d2.clone()), || async {
        b.resolve_tag(&r, &tag("v1")).await.expect("tag")
    })
    .await;
    read_all(&b, &r, "v1", &d2, b"layer two").await;

    // A manifest deleted on A: gone on B, with its tag.
    assert!(a.delete_manifest(&r, &d2).await.expect("delete"));
    eventually("the deleted manifest on B", true, || async {
        b.get_manifest(&r, &d2).await.expect("get").is_none()
    })
    .await;
    assert_eq!(b.resolve_tag(&r, &tag("v1")).await.expect("tag"), None);

    // A tag deleted on A.
    let d3 = push(&a, &r, b"layer three", "v3").await;
    read_all(&b, &r, "v3", &d3, b"layer three").await;
    assert!(a.delete_tag(&r, &tag("v3")).await.expect("untag"));
    eventually("the deleted tag on B", None, || async {
        b.resolve_tag(&r, &tag("v3")).await.expect("tag")
    })
    .await;

    // A blob unlinked on A.
    let layer3 = Digest::sha256_of(b"layer three");
    assert!(a.unlink_blob(&r, &layer3).await.expect("unlink"));
    eventually("the unlinked blob on B", None, || async {
        b.linked_blob(&r, &layer3).await.expect("link")
    })
    .await;

    // The repository deleted on A: nothing of it on B.
    let d4 = push(&a, &r, b"layer four", "v4").await;
    read_all(&b, &r, "v4", &d4, b"layer four").await;
    assert!(a.delete_repo(&r).await.expect("delete repo"));
    eventually("the deleted repository on B", true, || async {
        b.resolve_tag(&r, &tag("v4")).await.expect("tag").is_none()
            && b.get_manifest(&r, &d4).await.expect("get").is_none()
            && b.linked_blob(&r, &Digest::sha256_of(b"layer four"))
                .await
                .expect("link")
                .is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_empties_the_cache_before_it_serves_again() {
    let url = Postgres::shared().database();
    let (a, b) = (cached(&url).await, cached(&url).await);
    let r = name("team/app");
    let d1 = push(&a, &r, b"layer one", "v1").await;
    read_all(&b, &r, "v1", &d1, b"layer one").await;

    // Both listeners' connections cut by the server.
    let pool = connect(&url, 1).expect("pool");
    let raw = client(&pool).await.expect("raw");
    let listeners = "SELECT pid FROM pg_stat_activity
                     WHERE application_name = $1 AND datname = current_database()";
    let pids: Vec<i32> = raw
        .query(listeners, &[&LISTENER_NAME])
        .await
        .expect("listeners")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(pids.len(), 2, "one listener per replica");
    raw.execute(
        "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid",
        &[&pids],
    )
    .await
    .expect("terminate");
    wait_async("the listeners gone", || async {
        let left: i64 = raw
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&pids],
            )
            .await
            .expect("count")
            .get(0);
        left == 0
    })
    .await;

    // Moved while nobody listens: no announcement reaches B.
    let d2 = push(&a, &r, b"layer two", "v1").await;
    assert!(a.delete_manifest(&r, &d1).await.expect("delete"));

    // Once B listens again (on a new connection), it never answers from before.
    wait_async("both listeners back", || async {
        let new: i64 = raw
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = $1 AND datname = current_database()
                 AND NOT pid = ANY($2)",
                &[&LISTENER_NAME, &pids],
            )
            .await
            .expect("count")
            .get(0);
        new == 2
    })
    .await;
    wait("B listening again", || b.cache_serving() == Some(true));
    assert_eq!(
        b.resolve_tag(&r, &tag("v1")).await.expect("tag"),
        Some(d2.clone())
    );
    assert!(b.get_manifest(&r, &d1).await.expect("get").is_none());
}

async fn wait_async<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, true, check).await;
}
