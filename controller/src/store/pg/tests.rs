//! The PostgreSQL store's tests: the conformance suite every backend
//! passes, on a fresh database per store, and compare-and-set between two
//! stores over two pools (two replicas) on one database.

use std::sync::Arc;

use berth_testkit::postgres::Postgres;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{PgControllerStore, MIGRATIONS};
use crate::model::{Cluster, PublicationKey, PublicationState};
use crate::sealed_records::RecordSealer;
use crate::store::fixtures::*;
use crate::store::{ControllerStore, StoreError};

pub(super) fn pool(url: &str) -> Pool {
    let config: tokio_postgres::Config = url.parse().expect("url");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(4)
        .runtime(Runtime::Tokio1)
        .build()
        .expect("pool")
}

/// What the registry's `meta::pg::migrate` does for this component, in
/// short (the controller does not link the registry).
async fn migrate(pool: &Pool) {
    let conn = pool.get().await.expect("connection");
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS berth_schema (component text PRIMARY KEY, \
         version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .expect("berth_schema");
    for step in MIGRATIONS.steps {
        conn.batch_execute(step).await.expect("step");
    }
    let version = MIGRATIONS.steps.len() as i32;
    conn.execute(
        "INSERT INTO berth_schema (component, version) VALUES ($1, $2)",
        &[&MIGRATIONS.component, &version],
    )
    .await
    .expect("version");
}

fn sealer() -> RecordSealer {
    RecordSealer::new(Some(crate::secrets::SecretBox::new(&[9u8; 32])))
}

/// A migrated fresh database's URL.
pub(super) async fn database() -> String {
    let url = tokio::task::spawn_blocking(|| Postgres::shared().database())
        .await
        .expect("createdb");
    migrate(&pool(&url)).await;
    url
}

pub(super) async fn open(url: &str) -> PgControllerStore {
    PgControllerStore::open(pool(url), sealer())
        .await
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_passes_the_conformance_suite() {
    let fresh = || -> Arc<dyn ControllerStore> {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(async { Arc::new(open(&database().await).await) })
        })
    };
    crate::store::conformance::suite(&fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_reseals_with_the_current_key() {
    let url = database().await;
    let open = |sealer| -> Arc<dyn ControllerStore> {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                Arc::new(
                    PgControllerStore::open(pool(&url), sealer)
                        .await
                        .expect("open"),
                )
            })
        })
    };
    crate::store::conformance_reseal::resealing(&open).await;
}

#[tokio::test]
async fn a_store_refuses_a_database_without_its_schema() {
    let url = tokio::task::spawn_blocking(|| Postgres::shared().database())
        .await
        .expect("createdb");
    match PgControllerStore::open(pool(&url), sealer()).await {
        Err(StoreError::Db(m)) => assert!(m.contains("berth_schema"), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a database without the controller's schema"),
    }
}

/// Cluster, node n1 and app web published on it, through `s`.
pub(super) async fn published(s: &PgControllerStore) -> PublicationKey {
    s.create_cluster(&Cluster {
        name: "edge".into(),
        kubeconfig: KC.into(),
        eip_pool: None,
        created_at: 1,
    })
    .await
    .expect("cluster");
    s.create_node(&mut node("n1")).await.expect("node");
    s.create_app("shop", "web", &spec("shop/web:1"), "a", None, 1)
        .await
        .expect("app");
    let p = s
        .publish("shop", "web", None, &["n1".into()], 2)
        .await
        .expect("publish");
    p[0].key()
}

/// Two replicas' reconcilers write the same publication at the same
/// revision: exactly one write lands, every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_one_compare_and_set_one_wins() {
    let url = database().await;
    let (a, b) = (open(&url).await, open(&url).await);
    let key = published(&a).await;
    for round in 0..20u64 {
        let p = a.get_publication(&key).await.expect("read").expect("there");
        let (mut pa, mut pb) = (p.clone(), p.clone());
        pa.state = PublicationState::Deploying;
        pb.state = PublicationState::Failed {
            reason: format!("round {round}"),
        };
        let (ra, rb) = tokio::join!(a.update_publication(&mut pa), b.update_publication(&mut pb));
        let wins = [ra.expect("a"), rb.expect("b")];
        assert_eq!(
            wins.iter().filter(|w| **w).count(),
            1,
            "round {round}: {wins:?}"
        );
        let stored = b.get_publication(&key).await.expect("read").expect("there");
        assert_eq!(stored.revision, p.revision + 1);
        let winner = if wins[0] { &pa } else { &pb };
        assert_eq!(stored.state, winner.state);
    }
}

/// The rules checked inside one call hold across replicas too: two
/// replicas creating the same app at once, one gets a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_creating_one_app_one_is_refused() {
    let url = database().await;
    let (a, b) = (open(&url).await, open(&url).await);
    for round in 0..10 {
        let name = format!("web{round}");
        let (one, two) = (spec("shop/web:1"), spec("shop/web:2"));
        let (ra, rb) = tokio::join!(
            a.create_app("shop", &name, &one, "a", None, 1),
            b.create_app("shop", &name, &two, "b", None, 1)
        );
        let created = [ra.is_ok(), rb.is_ok()];
        assert_eq!(
            created.iter().filter(|c| **c).count(),
            1,
            "{name}: {created:?}"
        );
        for r in [ra.err(), rb.err()].into_iter().flatten() {
            assert!(matches!(r, StoreError::Conflict(_)), "{r}");
        }
        assert_eq!(
            a.list_versions("shop", &name)
                .await
                .expect("versions")
                .len(),
            1
        );
    }
}

/// Credentials are sealed in the rows as the embedded store seals them.
#[tokio::test]
async fn credentials_are_sealed_in_the_rows() {
    let url = database().await;
    let s = open(&url).await;
    published(&s).await;
    let pool = pool(&url);
    let conn = pool.get().await.expect("connection");
    let row = conn
        .query_one("SELECT doc FROM ctl_clusters WHERE name = 'edge'", &[])
        .await
        .expect("row");
    let doc = String::from_utf8(row.get::<_, Vec<u8>>(0)).expect("utf-8");
    assert!(doc.contains("kubeconfig_sealed"), "{doc}");
    assert!(!doc.contains("current-context"), "{doc}");
    let cluster = s.get_cluster("edge").await.expect("get").expect("there");
    assert_eq!(cluster.kubeconfig, KC);
}
