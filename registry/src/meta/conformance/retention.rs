//! The conformance suite's part for retention: rules are stored per
//! project and go with it; a retention run removes a tag only while it
//! still points where the plan saw it, and an immutable tag only when told.

use super::*;
use crate::meta::retention::{RetentionPolicy, RetentionRule};

pub(super) async fn suite(meta: &Store) {
    rules_are_kept_per_project(meta).await;
    untag_rechecks_the_digest_and_immutability(meta).await;
}

fn policy(keep_last: u32) -> RetentionPolicy {
    RetentionPolicy {
        rules: vec![RetentionRule {
            repositories: "app*".into(),
            tags: "v*".into(),
            keep_last: Some(keep_last),
            pulled_within_days: None,
            untagged_hours: Some(6),
            include_immutable: true,
        }],
    }
}

async fn rules_are_kept_per_project(meta: &Store) {
    assert_eq!(meta.retention_policy("ra").await.expect("none"), None);
    meta.retention_policy_set("ra", Some(&policy(3)))
        .await
        .expect("set");
    meta.retention_policy_set("rb", Some(&policy(1)))
        .await
        .expect("set");
    meta.retention_policy_set("ra", Some(&policy(5)))
        .await
        .expect("replace");
    assert_eq!(
        meta.retention_policy("ra").await.expect("ra"),
        Some(policy(5))
    );
    let all = meta.retention_policies().await.expect("all");
    assert_eq!(
        all,
        vec![("ra".to_string(), policy(5)), ("rb".to_string(), policy(1))]
    );
    meta.retention_policy_set("rb", None).await.expect("remove");
    assert_eq!(meta.retention_policy("rb").await.expect("rb"), None);
    meta.forget_project("ra").await.expect("forget");
    assert_eq!(
        meta.retention_policy("ra").await.expect("ra"),
        None,
        "a deleted project's rules go with it"
    );
}

async fn untag_rechecks_the_digest_and_immutability(meta: &Store) {
    let r = repo("rt/app");
    let (a, b) = (
        image(b"rt-cfg-a", b"rt-a", None),
        image(b"rt-cfg-b", b"rt-b", None),
    );
    push(meta, &r, b"rt-cfg-a", b"rt-a", &a, &[tag("v1"), tag("old")]).await;
    push(meta, &r, b"rt-cfg-b", b"rt-b", &b, &[tag("v2")]).await;
    let (da, db) = (a.digest.to_string(), b.digest.to_string());
    // The plan saw `old` on b, but it points to a: left alone.
    assert!(!meta
        .retention_untag(&r, "old", &db, false)
        .await
        .expect("moved"));
    assert!(!meta
        .retention_untag(&r, "gone", &da, false)
        .await
        .expect("absent"));
    assert!(meta
        .retention_untag(&r, "old", &da, false)
        .await
        .expect("untag"));
    assert_eq!(meta.resolve_tag(&r, &tag("old")).await.expect("old"), None);
    meta.immutable_rule_add("rt", "v*").await.expect("rule");
    match meta.retention_untag(&r, "v1", &da, false).await {
        Err(MetaError::Immutable(i)) => assert_eq!(i.rule, "v*"),
        other => panic!("expected an immutable-tag refusal, got {other:?}"),
    }
    assert_eq!(
        meta.resolve_tag(&r, &tag("v1")).await.expect("v1"),
        Some(a.digest.clone())
    );
    assert!(meta
        .retention_untag(&r, "v1", &da, true)
        .await
        .expect("include_immutable"));
    assert_eq!(meta.resolve_tag(&r, &tag("v1")).await.expect("v1"), None);
    assert!(
        meta.get_manifest(&r, &a.digest)
            .await
            .expect("get")
            .is_some(),
        "the manifest stays for GC"
    );
}
