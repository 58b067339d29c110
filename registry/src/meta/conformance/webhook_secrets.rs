//! The conformance suite's part for webhook secret rotation: a rotation
//! swaps the secrets only while the secret is the one the caller read (two
//! rotations racing cannot both win), leaves the endpoint's other fields,
//! and the previous secret is dropped only by the end of its own overlap;
//! and a push's event queued in its manifest's own transaction.

use super::*;

fn sealed(tag: &str) -> SealedSecret {
    SealedSecret {
        key_id: None,
        nonce: format!("n-{tag}"),
        ciphertext: format!("c-{tag}"),
    }
}

pub(super) async fn rotation(meta: &Store) {
    let mut w = webhook("rot", "hooks-rot");
    w.secret = sealed("s1");
    meta.webhook_put(&w).await.expect("put");
    let prev = PreviousSecret {
        secret: sealed("s1-again"),
        until: 500,
    };
    assert!(
        !meta
            .webhook_rotate("rot", &sealed("other"), &sealed("s2"), Some(&prev))
            .await
            .expect("rotate"),
        "a rotation from a secret that is not the current one is refused"
    );
    assert!(!meta
        .webhook_rotate("nobody", &sealed("s1"), &sealed("s2"), None)
        .await
        .expect("rotate"));
    assert!(meta
        .webhook_rotate("rot", &sealed("s1"), &sealed("s2"), Some(&prev))
        .await
        .expect("rotate"));
    let got = meta.webhook_get("rot").await.expect("get").expect("there");
    assert_eq!(got.secret, sealed("s2"));
    assert_eq!(got.previous, Some(prev.clone()));
    assert_eq!((&got.url, &got.events), (&w.url, &w.events));
    assert_eq!(
        meta.webhooks(Some("hooks-rot")).await.expect("list")[0].previous,
        Some(prev.clone()),
        "listed with it"
    );
    // The loser of a race read s1 too: refused, the winner's secrets stay.
    assert!(!meta
        .webhook_rotate("rot", &sealed("s1"), &sealed("s3"), None)
        .await
        .expect("rotate"));
    // Replacing the endpoint (a patch) keeps what it read.
    meta.webhook_put(&got).await.expect("put");
    // Only the overlap that ends at `until` is dropped.
    assert!(!meta.webhook_drop_previous("rot", 499).await.expect("drop"));
    assert!(meta.webhook_drop_previous("rot", 500).await.expect("drop"));
    assert!(!meta.webhook_drop_previous("rot", 500).await.expect("again"));
    let got = meta.webhook_get("rot").await.expect("get").expect("there");
    assert_eq!((got.secret, got.previous), (sealed("s2"), None));
    assert!(meta.webhook_delete("rot").await.expect("delete"));
}

fn push_event(project: &str, n: u32) -> OutboxEvent {
    OutboxEvent {
        project: project.into(),
        topic: "push".into(),
        event_id: format!("push-{n}"),
        event_type: "io.berth.artifact.pushed".into(),
        subject: format!("{project}/app@{n}"),
        body: format!("{{\"push\":{n}}}").into_bytes(),
        cap: 1,
        log_keep: 5,
    }
}

async fn put_queued(
    meta: &Store,
    r: &RepoName,
    m: &M,
    e: &OutboxEvent,
) -> Result<u64, BadReference> {
    meta.put_manifest_queued(
        r,
        &m.digest,
        m.bytes.clone(),
        &m.summary,
        &[],
        References::Required,
        Some(e),
    )
    .await
    .expect("put_manifest_queued")
}

/// A push's event is queued in the manifest's own transaction: for the
/// project's enabled endpoints subscribed to pushes only, not at all when
/// the push is refused, and over the cap like `outbox_push`.
pub(super) async fn push_events_go_with_their_manifest(meta: &Store) {
    let mut on = webhook("pe-on", "pushev");
    on.events = vec!["push".into(), "delete".into()];
    let mut off = webhook("pe-off", "pushev");
    off.enabled = false;
    let mut deletes = webhook("pe-del", "pushev");
    deletes.events = vec!["delete".into()];
    let other = webhook("pe-other", "pushev-other");
    for w in [&on, &off, &deletes, &other] {
        meta.webhook_put(w).await.expect("put");
    }
    let r = repo("pushev/app");
    let m = image(b"pe-cfg", b"pe-layer", None);
    // Refused (its blobs are not in the repository): neither stored nor queued.
    assert!(put_queued(meta, &r, &m, &push_event("pushev", 1))
        .await
        .is_err());
    assert!(meta
        .webhook_deliveries("pe-on", 10)
        .await
        .expect("log")
        .is_empty());
    for b in [&b"pe-cfg"[..], &b"pe-layer"[..]] {
        meta.record_and_link(&r, &digest(b), b.len() as u64)
            .await
            .expect("record");
    }
    assert_eq!(
        put_queued(meta, &r, &m, &push_event("pushev", 2)).await,
        Ok(0)
    );
    let head = head_of(meta, "pe-on")
        .await
        .expect("queued with the manifest");
    assert_eq!(head.body, b"{\"push\":2}".to_vec());
    let log = meta.webhook_deliveries("pe-on", 10).await.expect("log");
    assert_eq!(
        (log[0].event_id.as_str(), log[0].subject.as_str()),
        ("push-2", "pushev/app@2")
    );
    for id in ["pe-off", "pe-del", "pe-other"] {
        assert!(head_of(meta, id).await.is_none(), "{id} does not take it");
    }
    // A second push over a cap of one drops the first, and says so.
    let m2 = image(b"pe-cfg", b"pe-layer", Some(&m));
    assert_eq!(
        put_queued(meta, &r, &m2, &push_event("pushev", 3)).await,
        Ok(1)
    );
    assert_eq!(
        head_of(meta, "pe-on").await.expect("a head").body,
        b"{\"push\":3}".to_vec()
    );
    for w in ["pe-on", "pe-off", "pe-del", "pe-other"] {
        meta.webhook_delete(w).await.expect("delete");
    }
}
