//! Two `Accounts` over one database, as two replicas: what one changes,
//! the other follows (`Accounts::follow` on `account_feed`).

use std::sync::Arc;
use std::time::Duration;

use berth_testkit::postgres::Postgres;
use berth_testkit::wait::wait_until;
use tokio::sync::mpsc;

use super::*;
use crate::auth::accounts::{Accounts, Backstop, IfRole, LoginError, StoreSignal};
use crate::auth::policy::Role;

const BOUND: Duration = Duration::from_secs(30);

/// Reloads only when told: the announcements are what is tested.
const SIGNALS_ONLY: Backstop = Backstop {
    while_lost: Duration::from_secs(3600),
    while_listening: Duration::from_secs(3600),
};

async fn replica(url: &str) -> Arc<Accounts> {
    let pool = connect(url, 4).expect("pool");
    migrate(&pool, &[ACCOUNT_MIGRATIONS])
        .await
        .expect("migrate");
    let accounts = Accounts::open(Arc::new(PgAccounts::new(pool)), 4)
        .await
        .expect("open");
    Arc::new(accounts)
}

/// Waits (off the runtime's other tasks) until `check` holds.
fn wait(what: &str, check: impl FnMut() -> bool) {
    tokio::task::block_in_place(|| wait_until(what, BOUND, check));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_the_other_replicas_account_changes() {
    let url = Postgres::shared().database();
    let (a, b) = (replica(&url).await, replica(&url).await);
    let _following = b.follow(account_feed(&url).expect("feed"), SIGNALS_ONLY);
    let mut removed = b.access_removed();

    a.create_user("pat", "initial123", false)
        .await
        .expect("pat");
    a.create_project("team", false).await.expect("team");
    wait("the project on B", || b.project("team").is_some());
    a.set_member("team", "pat", Role::Developer, IfRole::Any)
        .await
        .expect("member");
    wait("the membership on B", || {
        b.role("team", "pat") == Some(Role::Developer)
    });
    a.remove_member("team", "pat", IfRole::Any)
        .await
        .expect("removed");
    wait("the membership gone on B", || {
        b.role("team", "pat").is_none()
    });
    assert_eq!(removed.recv().await.expect("announced"), "team");

    let (robot, secret) = a
        .create_robot("team", "ci", true, None)
        .await
        .expect("robot");
    wait("the robot on B", || b.verify(&robot.name, &secret).is_ok());
    let subject = b.verify(&robot.name, &secret).expect("robot login");
    let epoch = b.credentials_epoch();
    a.revoke_robot("team", "ci").await.expect("revoked");
    wait("the robot revoked on B", || b.current(&subject).is_none());
    assert_ne!(
        b.credentials_epoch(),
        epoch,
        "B's login caches verify again"
    );
    assert!(matches!(
        b.verify(&robot.name, &secret),
        Err(LoginError::Revoked(_))
    ));

    let epoch = b.credentials_epoch();
    a.admin_set_password("pat", "another123")
        .await
        .expect("reset");
    wait("the new password on B", || {
        b.verify("pat", "initial123").err() == Some(LoginError::BadCredentials)
    });
    assert!(matches!(
        b.verify("pat", "another123"),
        Err(LoginError::MustReset(_))
    ));
    assert_ne!(b.credentials_epoch(), epoch);

    a.delete_project("team").await.expect("deleted");
    wait("the project gone on B", || b.project("team").is_none());
    assert_eq!(removed.recv().await.expect("announced"), "team");
}

/// The listening connection killed: B listens again and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_listener_reconnects_and_catches_up() {
    let url = Postgres::shared().database();
    let (a, b) = (replica(&url).await, replica(&url).await);
    let _following = b.follow(account_feed(&url).expect("feed"), SIGNALS_ONLY);
    a.create_project("one", false).await.expect("one");
    wait("the first project on B", || b.project("one").is_some());
    let admin = connect(&url, 1).expect("pool");
    let conn = client(&admin).await.expect("client");
    let killed = conn
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'berth accounts listener' AND datname = current_database()",
            &[],
        )
        .await
        .expect("terminate");
    assert_eq!(killed.get::<_, i64>(0), 1);
    a.create_project("two", false).await.expect("two");
    wait("the second project on B", || b.project("two").is_some());
    // Announcements on the new connection, too.
    let listeners = || async {
        let row = conn
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = \
                 'berth accounts listener' AND datname = current_database() \
                 AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .expect("listeners");
        row.get::<_, i64>(0)
    };
    for _ in 0..1500 {
        if listeners().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listeners().await, 1, "B listens again");
    a.create_project("three", false).await.expect("three");
    wait("the third project on B", || b.project("three").is_some());
}

/// With no announcements (the listener down), B polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_announcements_a_replica_polls() {
    let url = Postgres::shared().database();
    let (a, b) = (replica(&url).await, replica(&url).await);
    let (signals, feed) = mpsc::channel(4);
    let backstop = Backstop {
        while_lost: Duration::from_millis(100),
        while_listening: Duration::from_secs(3600),
    };
    let _following = b.follow(feed, backstop);
    signals.send(StoreSignal::Lost).await.expect("lost");
    a.create_project("polled", false).await.expect("project");
    wait("the project on B", || b.project("polled").is_some());
}
