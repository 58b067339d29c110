use berth_testkit::postgres::Postgres;

use super::*;

const V1: &[&str] = &["CREATE TABLE t_one (id bigint PRIMARY KEY)"];
const V2: &[&str] = &[
    "CREATE TABLE t_one (id bigint PRIMARY KEY)",
    "ALTER TABLE t_one ADD COLUMN name text NOT NULL DEFAULT ''",
];

fn set(steps: &'static [&'static str]) -> Migrations {
    Migrations {
        component: "test",
        steps,
    }
}

#[tokio::test]
async fn migrations_apply_once_in_order_and_refuse_a_newer_schema() {
    let url = Postgres::shared().database();
    let pool = connect(&url, 4).expect("pool");
    migrate(&pool, &[set(V1)]).await.expect("v1");
    migrate(&pool, &[set(V1)])
        .await
        .expect("v1 again changes nothing");
    assert_eq!(
        versions(&pool).await.expect("versions"),
        [("test".into(), 1)]
    );
    migrate(&pool, &[set(V2)]).await.expect("v1 -> v2");
    assert_eq!(
        versions(&pool).await.expect("versions"),
        [("test".into(), 2)]
    );
    let conn = client(&pool).await.expect("client");
    conn.execute("INSERT INTO t_one (id, name) VALUES (1, 'a')", &[])
        .await
        .expect("v2 has the column");
    let err = migrate(&pool, &[set(V1)]).await.expect_err("older binary");
    assert!(
        err.to_string().contains("newer than this berth knows"),
        "{err}"
    );
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let url = Postgres::shared().database();
    let mut starts = Vec::new();
    for _ in 0..4 {
        let pool = connect(&url, 2).expect("pool");
        starts.push(tokio::spawn(
            async move { migrate(&pool, &[set(V2)]).await },
        ));
    }
    for s in starts {
        s.await.expect("join").expect("migrate");
    }
    let pool = connect(&url, 2).expect("pool");
    assert_eq!(
        versions(&pool).await.expect("versions"),
        [("test".into(), 2)]
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_says_what_the_server_said() {
    let pg = Postgres::shared();
    let pool = connect(&pg.url("no_such_database"), 2).expect("pool");
    let Err(err) = client(&pool).await else {
        panic!("a database that does not exist answered");
    };
    let text = err.to_string();
    assert!(
        text.contains("no_such_database") && text.contains("does not exist"),
        "{text}"
    );
}

#[test]
fn a_url_that_is_not_postgres_is_refused_without_echoing_it() {
    let err = connect("postgres://u:s3cret@[::1", 2).expect_err("bad url");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}
