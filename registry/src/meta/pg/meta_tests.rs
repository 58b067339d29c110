//! `PgMeta` runs the suites the embedded store runs, each on a fresh
//! database of the test process's PostgreSQL server.

use std::sync::Arc;

use berth_testkit::postgres::Postgres;

use super::{connect, migrate, PgMeta, MIGRATIONS};

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
