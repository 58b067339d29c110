use std::sync::Arc;

use berth_testkit::postgres::Postgres;

use super::*;
use crate::auth::store::{AccountStore, User};

/// A `PgAccounts` over a fresh, migrated database.
pub(crate) async fn fresh() -> (Pool, PgAccounts) {
    let url = Postgres::shared().database();
    let pool = connect(&url, 8).expect("pool");
    migrate(&pool, &[ACCOUNT_MIGRATIONS])
        .await
        .expect("migrate");
    (pool.clone(), PgAccounts::new(pool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_account_conformance_suite() {
    let (_, accounts) = fresh().await;
    crate::auth::store::conformance::suite(Arc::new(accounts)).await;
}

/// Replicas starting together on an empty database: one first account,
/// every time (rounds of eight replicas released at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_first_account_among_replicas_starting_together() {
    let url = Postgres::shared().database();
    let pool = connect(&url, 2).expect("pool");
    migrate(&pool, &[ACCOUNT_MIGRATIONS])
        .await
        .expect("migrate");
    let mut replicas = Vec::new();
    for _ in 0..8 {
        let p = connect(&url, 1).expect("pool");
        drop(client(&p).await.expect("warm"));
        replicas.push(PgAccounts::new(p));
    }
    for round in 0..10 {
        let go = Arc::new(tokio::sync::Barrier::new(replicas.len()));
        let starts: Vec<_> = replicas
            .iter()
            .enumerate()
            .map(|(i, replica)| {
                let (replica, go) = (replica.clone(), go.clone());
                tokio::spawn(async move {
                    let u = User {
                        name: format!("admin{i}"),
                        id: crate::auth::store::new_instance_id(),
                        hash: "h".into(),
                        admin: true,
                        must_reset: false,
                        created: 1,
                    };
                    go.wait().await;
                    replica.create_first_user(&u).await
                })
            })
            .collect();
        let mut created = 0;
        for s in starts {
            created += usize::from(s.await.expect("join").expect("create"));
        }
        let users = replicas[0].load().await.expect("load").users;
        assert_eq!((created, users.len()), (1, 1), "round {round}");
        let conn = client(&pool).await.expect("client");
        conn.execute("DELETE FROM acct_users", &[])
            .await
            .expect("empty");
    }
}
