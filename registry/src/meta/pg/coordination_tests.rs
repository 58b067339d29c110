//! Replicas sharing the login throttle and the token keys through one
//! database: two stores over two pools, as two `berth serve` would.

use std::net::IpAddr;
use std::time::Duration;

use berth_testkit::postgres::Postgres;

use super::*;
use crate::auth::throttle::{LoginThrottle, ThrottleConfig, Wait};
use crate::auth::token::{Claims, TokenError};
use crate::auth::token_keys::{TokenKeyStore, TokenKeys};

async fn database() -> String {
    let url = Postgres::shared().database();
    let pool = connect(&url, 2).expect("pool");
    migrate(&pool, &[ACCOUNT_MIGRATIONS])
        .await
        .expect("migrate");
    url
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([192, 0, 2, last]))
}

fn throttles(url: &str, cfg: ThrottleConfig) -> (PgThrottle, PgThrottle) {
    let a = PgThrottle::new(connect(url, 2).expect("pool"), cfg);
    let b = PgThrottle::new(connect(url, 2).expect("pool"), cfg);
    (a, b)
}

/// A wrong password on one replica delays the next try from that address
/// on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairs_delay_holds_on_every_replica() {
    let url = database().await;
    let cfg = ThrottleConfig {
        backoff: Duration::from_secs(600),
        ..ThrottleConfig::default()
    };
    let (a, b) = throttles(&url, cfg);
    a.fail("pat", ip(1)).await;
    assert!(matches!(b.check("pat", ip(1)).await, Err(Wait::Pair(_))));
    assert_eq!(b.check("pat", ip(2)).await, Ok(()), "another address");
    b.succeed("pat", ip(1)).await;
    assert_eq!(a.check("pat", ip(1)).await, Ok(()), "a success forgets");
}

/// Guesses spread over addresses and replicas count as one attack on the
/// account; the owner, from an address that never failed, is let in on
/// every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attack_spread_over_replicas_is_one_attack() {
    let url = database().await;
    let cfg = ThrottleConfig {
        backoff: Duration::ZERO,
        account_threshold: 4,
        attacked_interval: Duration::from_secs(600),
        ..ThrottleConfig::default()
    };
    let (a, b) = throttles(&url, cfg);
    for i in 1..=4u8 {
        let replica = if i % 2 == 0 { &a } else { &b };
        replica.fail("pat", ip(i)).await;
    }
    // One attempt per interval between the failed addresses, wherever
    // they try.
    assert_eq!(a.check("pat", ip(1)).await, Ok(()));
    assert!(matches!(b.check("pat", ip(2)).await, Err(Wait::Account(_))));
    assert!(matches!(a.check("pat", ip(3)).await, Err(Wait::Account(_))));
    assert_eq!(a.check("pat", ip(200)).await, Ok(()), "the owner");
    assert_eq!(b.check("pat", ip(200)).await, Ok(()), "the owner");
}

fn claims() -> Claims {
    Claims {
        sub: "pat".into(),
        aid: "1".into(),
        aud: "berth".into(),
        iat: 1,
        exp: u64::MAX,
        admin: false,
        robot: false,
        access: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_token_keys_pass_the_conformance_suite() {
    let url = database().await;
    let store = |_| -> std::sync::Arc<dyn TokenKeyStore> {
        std::sync::Arc::new(PgTokenKeys::new(connect(&url, 1).expect("pool")))
    };
    crate::auth::token_keys_conformance::suite(store(0), (1..4).map(store).collect()).await;
}

/// `follow` brings a rotation to a replica's key in place; tokens signed
/// before still verify there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_replica_picks_up_a_rotation() {
    let url = database().await;
    let ttl = Duration::from_secs(300);
    let open = || async {
        let store = std::sync::Arc::new(PgTokenKeys::new(connect(&url, 1).expect("pool")));
        std::sync::Arc::new(
            TokenKeys::open(store, ttl, Duration::ZERO)
                .await
                .expect("open"),
        )
    };
    let (a, b) = (open().await, open().await);
    let kb = b.key();
    let before = kb.sign(&claims());
    assert_eq!(a.key().sign(&claims()), before, "one key");
    let _follow = b.follow(Duration::from_millis(50));
    a.rotate().await.expect("rotate");
    let fresh = a.key().sign(&claims());
    assert_ne!(before, fresh, "A signs with the new key at once");
    tokio::task::block_in_place(|| {
        berth_testkit::wait::wait_until("B signs with the new key", Duration::from_secs(30), || {
            kb.sign(&claims()) == fresh
        })
    });
    assert_eq!(kb.verify(&before, "berth", 10), Ok(claims()), "overlap");
    assert_eq!(
        crate::auth::token::TokenKey::new(vec![9; 32]).verify(&fresh, "berth", 10),
        Err(TokenError::BadSignature),
        "a key nobody has"
    );
}

/// Failures counted at once on two replicas are all counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_racing_on_two_replicas_are_all_counted() {
    let url = database().await;
    let (a, b) = throttles(&url, ThrottleConfig::default());
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let t = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { t.fail("pat", ip(1)).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    let pool = connect(&url, 1).expect("pool");
    let row = client(&pool)
        .await
        .expect("client")
        .query_one(
            "SELECT failures FROM auth_throttle_pairs WHERE account = 'pat'",
            &[],
        )
        .await
        .expect("pair");
    assert_eq!(row.get::<_, i32>(0), 12);
}
