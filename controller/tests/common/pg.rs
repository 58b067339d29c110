//! The controller's PostgreSQL store for tests: a fresh database of the kit's
//! shared server, migrated as the composition root migrates it.

/// A pool of connections to the PostgreSQL database at `url`.
pub fn pg_pool(url: &str) -> deadpool_postgres::Pool {
    let config: tokio_postgres::Config = url.parse().expect("PostgreSQL URL");
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .expect("pool")
}

/// A fresh database with the controller's schema, as the composition root
/// migrates it (through the registry's `meta::pg::migrate`, in short here).
pub async fn pg_database() -> String {
    let url =
        tokio::task::spawn_blocking(|| berth_testkit::postgres::Postgres::shared().database())
            .await
            .expect("createdb");
    let pool = pg_pool(&url);
    let conn = pool.get().await.expect("connection");
    conn.batch_execute(
        "CREATE TABLE berth_schema (component text PRIMARY KEY, version integer NOT NULL, \
         migrated_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .expect("berth_schema");
    let m = berth_controller::store::pg::MIGRATIONS;
    for step in m.steps {
        conn.batch_execute(step).await.expect("migration step");
    }
    let version = m.steps.len() as i32;
    conn.execute(
        "INSERT INTO berth_schema (component, version) VALUES ($1, $2)",
        &[&m.component, &version],
    )
    .await
    .expect("schema version");
    url
}
