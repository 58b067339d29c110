//! The token key store's conformance suite: every `TokenKeyStore` backend
//! must pass it (`suite`, given a fresh, empty store, and `replicas` more
//! stores over the same keys, as other `berth serve` would open them).

use std::sync::Arc;
use std::time::Duration;

use super::token_keys::{key_set, TokenKeyStore};

type Store = Arc<dyn TokenKeyStore>;

pub(crate) async fn suite(store: Store, replicas: Vec<Store>) {
    one_first_key_however_many_ask(&store, &replicas).await;
    a_rotation_publishes_for_later_and_drops_what_no_token_needs(&store, &replicas).await;
}

/// Stores opened together on no keys agree on one, which signs at once.
async fn one_first_key_however_many_ask(store: &Store, replicas: &[Store]) {
    let asks: Vec<_> = std::iter::once(store)
        .chain(replicas)
        .flat_map(|s| [s.clone(), s.clone()])
        .map(|s| tokio::spawn(async move { s.keys().await }))
        .collect();
    let mut seen = Vec::new();
    for a in asks {
        let (keys, now) = a.await.expect("join").expect("keys");
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(keys[0].signs_from <= now, "the first key signs at once");
        assert_eq!(keys[0].secret.len(), 32);
        seen.push(keys[0].clone());
    }
    assert!(
        seen.iter().all(|k| *k == seen[0]),
        "one first key: {seen:?}"
    );
}

async fn a_rotation_publishes_for_later_and_drops_what_no_token_needs(
    store: &Store,
    replicas: &[Store],
) {
    let ttl = Duration::from_secs(300);
    let (before, _) = store.keys().await.expect("keys");
    let first = before[0].clone();

    // Published an hour ahead: verifies already, does not sign yet.
    let later = store
        .rotate(Duration::from_secs(3600), ttl)
        .await
        .expect("rotate");
    assert!(later.id > first.id);
    assert_ne!(later.secret, first.secret);
    let other = replicas.first().unwrap_or(store);
    let (keys, now) = other.keys().await.expect("keys");
    assert_eq!(
        keys,
        vec![first.clone(), later.clone()],
        "every store reads it"
    );
    assert!(later.signs_from >= now + 3500.0, "{later:?} at {now}");
    assert!(later.created.is_some_and(|c| (c - now).abs() < 600.0));
    assert_eq!(
        key_set(&keys, now, ttl),
        Some((first.secret.clone(), vec![later.secret.clone()]))
    );

    // Signing at once, tokens living no time: the first key, replaced by
    // a key that signs, goes; the one published for later stays.
    let now_key = other
        .rotate(Duration::ZERO, Duration::ZERO)
        .await
        .expect("rotate");
    assert!(now_key.id > later.id, "ids only grow");
    let (keys, now) = store.keys().await.expect("keys");
    assert_eq!(keys, vec![now_key.clone(), later.clone()], "by signs_from");
    assert_eq!(
        key_set(&keys, now, ttl).map(|(signing, _)| signing),
        Some(now_key.secret.clone())
    );
}
