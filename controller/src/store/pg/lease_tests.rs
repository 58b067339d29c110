//! Leader election through the lease, and the fence on a leader's writes.

use std::time::Duration;

use super::tests::{database, open, pool, published};
use super::PgLeadership;
use crate::model::PublicationState;
use crate::ports::Leadership;
use crate::store::{ControllerStore, StoreError};

/// Asks `l` to lead until it does, within a generous bound.
async fn takes_over(l: &PgLeadership) -> crate::ports::Term {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = l.lead().await.expect("lead") {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no takeover within 30 s of the lease expiring"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_replica_leads_until_its_lease_expires_then_another_does() {
    let url = database().await;
    let lease = Duration::from_secs(1);
    let (a, b) = (
        PgLeadership::new(pool(&url), lease),
        PgLeadership::new(pool(&url), lease),
    );
    let first = a.lead().await.expect("a").expect("a leads an empty lease");
    assert_eq!(b.lead().await.expect("b"), None, "b while a's lease holds");
    assert_eq!(a.lead().await.expect("a renews"), Some(first));
    assert_eq!(b.lead().await.expect("b"), None);
    // a stops renewing (a pause, a kill): b takes over once the lease expires.
    let second = takes_over(&b).await;
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
    assert_eq!(a.lead().await.expect("a"), None, "a after the takeover");
    // Resigning hands over at once.
    b.resign().await;
    let third = a
        .lead()
        .await
        .expect("a")
        .expect("a leads after b resigned");
    assert!(third.epoch > second.epoch);
}

#[tokio::test]
async fn a_stale_epoch_write_is_refused() {
    let url = database().await;
    let store = open(&url).await;
    let key = published(&store).await;
    let lease = Duration::from_secs(30);
    let (a, b) = (
        PgLeadership::new(pool(&url), lease),
        PgLeadership::new(pool(&url), lease),
    );
    let term_a = a.lead().await.expect("a").expect("a leads");
    let as_a = store.fenced(term_a.epoch);
    let mut p = as_a
        .get_publication(&key)
        .await
        .expect("read")
        .expect("there");
    p.state = PublicationState::Deploying;
    assert!(as_a
        .update_publication(&mut p)
        .await
        .expect("a writes in its term"));

    // a is paused; its lease ends (here: it resigns) and b takes over.
    a.resign().await;
    let term_b = b.lead().await.expect("b").expect("b leads");
    assert!(term_b.epoch > term_a.epoch);

    // a wakes and applies what it had: refused, compare-and-set or not.
    let before = store
        .get_publication(&key)
        .await
        .expect("read")
        .expect("there");
    let mut stale = before.clone();
    stale.state = PublicationState::Failed {
        reason: "stale".into(),
    };
    match as_a.update_publication(&mut stale).await {
        Err(StoreError::Fenced(m)) => assert!(m.contains("is over"), "{m}"),
        other => panic!("a stale term's write went through: {other:?}"),
    }
    match as_a.forget_forced(&key).await {
        Err(StoreError::Fenced(_)) => {}
        other => panic!("a stale term's write went through: {other:?}"),
    }
    // Nor does a's last check before an apply pass, though the revision
    // it holds is the stored one: the node is never touched.
    match as_a.confirm_publication(&key, before.revision).await {
        Err(StoreError::Fenced(_)) => {}
        other => panic!("a stale term may apply: {other:?}"),
    }
    let after = store
        .get_publication(&key)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(after, before, "nothing of a's stale write is stored");

    // b's writes, and the API's (not fenced), go through.
    let as_b = store.fenced(term_b.epoch);
    let mut p = as_b
        .get_publication(&key)
        .await
        .expect("read")
        .expect("there");
    assert!(as_b
        .confirm_publication(&key, p.revision)
        .await
        .expect("b's check"));
    assert!(!as_b
        .confirm_publication(&key, p.revision + 1)
        .await
        .expect("b's check"));
    p.state = PublicationState::Running;
    assert!(as_b.update_publication(&mut p).await.expect("b writes"));
    store
        .label_node("n1", &[("zone".to_string(), Some("a".to_string()))].into())
        .await
        .expect("the API's store is not fenced");
}

#[tokio::test]
async fn a_lapsed_lease_is_a_new_term_even_for_the_same_replica() {
    let url = database().await;
    let store = open(&url).await;
    let key = published(&store).await;
    let a = PgLeadership::new(pool(&url), Duration::from_secs(1));
    let first = a.lead().await.expect("a").expect("a leads");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let as_first = store.fenced(first.epoch);
    let mut p = as_first
        .get_publication(&key)
        .await
        .expect("read")
        .expect("there");
    p.state = PublicationState::Deploying;
    assert!(
        matches!(
            as_first.update_publication(&mut p).await,
            Err(StoreError::Fenced(_))
        ),
        "a write after the lease lapsed"
    );
    let second = a.lead().await.expect("a").expect("a leads again");
    assert!(second.epoch > first.epoch);
}
