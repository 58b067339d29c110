//! `PgMeta` runs the suites the embedded store runs, each on a fresh
//! database of the test process's PostgreSQL server.

use std::sync::Arc;

use berth_testkit::postgres::Postgres;

use super::{connect, migrate, PgMeta, MIGRATIONS};
use crate::meta::MetaStore;

async fn fresh() -> PgMeta {
    let url = Postgres::shared().database();
    let pool = connect(&url, 8).expect("pool");
    migrate(&pool, &[MIGRATIONS]).await.expect("migrate");
    PgMeta::new(pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    crate::meta::conformance::suite(Arc::new(fresh().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_cache_book_suite() {
    crate::meta::cache::suite(&fresh().await).await;
}

/// A fresh store and a raw connection to its database.
async fn with_raw() -> (PgMeta, deadpool_postgres::Object) {
    let url = Postgres::shared().database();
    let pool = connect(&url, 4).expect("pool");
    migrate(&pool, &[MIGRATIONS]).await.expect("migrate");
    let raw = super::client(&pool).await.expect("client");
    (PgMeta::new(pool), raw)
}

#[tokio::test]
async fn errors_carry_what_the_server_said() {
    let (meta, raw) = with_raw().await;
    raw.batch_execute("DROP TABLE tags").await.expect("drop");
    let r: crate::oci::RepoName = "p/app".parse().expect("name");
    let err = meta
        .resolve_tag(&r, &"1".parse().expect("tag"))
        .await
        .expect_err("no table");
    let msg = err.to_string();
    assert!(
        msg.contains("resolving a tag") && msg.contains("relation \"tags\" does not exist"),
        "{msg}"
    );
}

#[tokio::test]
async fn values_no_store_writes_are_corrupt_errors_not_panics() {
    use crate::meta::MetaError;
    let (meta, raw) = with_raw().await;
    let d = crate::oci::Digest::sha256_of(b"x");
    raw.execute(
        "INSERT INTO blobs (digest, size, recorded_at) VALUES ($1, -1, 0), ('not a digest', 1, 0)",
        &[&d.to_string()],
    )
    .await
    .expect("insert");
    let err = meta.blob_size(&d).await.expect_err("negative size");
    assert!(matches!(err, MetaError::Corrupt(_)), "{err}");
    let err = meta.blob_records().await.expect_err("bad rows");
    assert!(matches!(err, MetaError::Corrupt(_)), "{err}");
}
