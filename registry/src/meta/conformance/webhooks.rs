//! The conformance suite's part for webhooks: endpoints, their outbox of
//! queued events, and the delivery log.

use super::*;

pub(super) async fn webhooks_and_their_outbox(meta: &Store) {
    let (w1, w2) = (webhook("w1", "hooks-a"), webhook("w2", "hooks-b"));
    meta.webhook_put(&w1).await.expect("put");
    meta.webhook_put(&w2).await.expect("put");
    assert_eq!(meta.webhook_get("w1").await.expect("get"), Some(w1.clone()));
    let listed = meta.webhooks(Some("hooks-a")).await.expect("list");
    assert_eq!(listed, vec![w1.clone()]);
    assert_eq!(meta.webhooks(None).await.expect("all").len(), 2);
    let mut changed = w1.clone();
    changed.enabled = false;
    meta.webhook_put(&changed).await.expect("replace");
    assert!(
        !meta
            .webhook_get("w1")
            .await
            .expect("get")
            .expect("there")
            .enabled
    );

    // Three events into a queue of two: the oldest is dropped; an event for
    // an endpoint that does not exist is ignored.
    let events = [
        event("w1", 0),
        event("w1", 1),
        event("nobody", 9),
        event("w1", 2),
    ];
    assert_eq!(meta.outbox_push(&events, 2, 10).await.expect("push"), 1);
    let head = head_of(meta, "w1").await.expect("a head");
    assert_eq!(
        (head.seq, head.attempts, head.body.as_slice()),
        (1, 0, &b"{\"n\":1}"[..])
    );
    let log = meta.webhook_deliveries("w1", 10).await.expect("log");
    let seen: Vec<_> = log.iter().map(|d| (d.seq, d.status)).collect();
    assert_eq!(
        seen,
        vec![
            (2, DeliveryStatus::Pending),
            (1, DeliveryStatus::Pending),
            (0, DeliveryStatus::Dropped)
        ]
    );
    assert_eq!(
        (log[1].event_id.as_str(), log[1].subject.as_str()),
        ("e1", "s1")
    );
    assert_eq!(
        meta.webhook_deliveries("w1", 1).await.expect("log").len(),
        1
    );

    // Only the head can be attempted; a retry keeps it at the head.
    let fail = attempt(Some(500), AttemptNext::RetryAt(100));
    assert!(!meta.outbox_attempt("w1", 2, &fail).await.expect("attempt"));
    assert!(meta.outbox_attempt("w1", 1, &fail).await.expect("attempt"));
    let head = head_of(meta, "w1").await.expect("a head");
    assert_eq!((head.seq, head.attempts, head.next_attempt_at), (1, 1, 100));
    let down = attempt(None, AttemptNext::RetryAt(200));
    assert!(meta.outbox_attempt("w1", 1, &down).await.expect("attempt"));
    let d = &meta.webhook_deliveries("w1", 10).await.expect("log")[1];
    assert_eq!(
        (d.status, d.attempts, d.response_code),
        (DeliveryStatus::Pending, 2, None)
    );
    assert_eq!(d.error.as_deref(), Some("connection refused"));
    assert_eq!(d.last_attempt_at, Some(7));

    // Delivered, then given up: each leaves the queue in order.
    let ok = attempt(Some(204), AttemptNext::Done);
    assert!(meta.outbox_attempt("w1", 1, &ok).await.expect("attempt"));
    assert_eq!(head_of(meta, "w1").await.expect("a head").seq, 2);
    let last = attempt(Some(400), AttemptNext::GiveUp);
    assert!(meta.outbox_attempt("w1", 2, &last).await.expect("attempt"));
    assert!(head_of(meta, "w1").await.is_none());
    let log = meta.webhook_deliveries("w1", 10).await.expect("log");
    let seen: Vec<_> = log
        .iter()
        .map(|d| (d.seq, d.status, d.attempts, d.response_code))
        .collect();
    assert_eq!(
        seen,
        vec![
            (2, DeliveryStatus::Failed, 1, Some(400)),
            (1, DeliveryStatus::Delivered, 3, Some(204)),
            (0, DeliveryStatus::Dropped, 0, None)
        ]
    );
    // Sequence numbers go on after an empty queue.
    meta.outbox_push(&[event("w1", 3)], 2, 10)
        .await
        .expect("push");
    assert_eq!(head_of(meta, "w1").await.expect("a head").seq, 3);

    // The log is bounded: the queue's cap plus what it keeps of the past.
    let many: Vec<_> = (0..6).map(|n| event("w2", n)).collect();
    assert_eq!(meta.outbox_push(&many, 1, 1).await.expect("push"), 5);
    let log = meta.webhook_deliveries("w2", 100).await.expect("log");
    assert_eq!(log.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![5, 4]);

    // Deleting an endpoint takes its queue and log with it.
    assert!(meta.webhook_delete("w1").await.expect("delete"));
    assert!(!meta.webhook_delete("w1").await.expect("delete again"));
    assert!(meta.webhook_get("w1").await.expect("get").is_none());
    assert!(head_of(meta, "w1").await.is_none());
    assert!(meta
        .webhook_deliveries("w1", 10)
        .await
        .expect("log")
        .is_empty());
    assert!(
        head_of(meta, "w2").await.is_some(),
        "the other endpoint's queue stays"
    );
}
