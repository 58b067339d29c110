//! The conformance suite's part for usage, storage limits and immutable
//! tags: usage counts each digest once per project and in every project
//! holding it, goes down with the project's last holder only, equals a
//! recount; a write over the limit writes nothing (and runs no store step),
//! concurrent writes cannot pass it together; immutable tags hold.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::meta::quota::QuotaSetting;

pub(super) async fn suite(meta: &Store) {
    usage_counts_each_digest_once_per_project(meta).await;
    limits_refuse_whole_writes(meta).await;
    the_default_and_a_projects_own_limit(meta).await;
    concurrent_writes_cannot_pass_the_limit_together(meta).await;
    immutable_tags_hold(meta).await;
}

async fn usage(meta: &Store, project: &str) -> u64 {
    meta.quota(project).await.expect("quota").usage
}

async fn assert_recount(meta: &Store, project: &str) {
    let r = meta.recount_usage(project).await.expect("recount");
    assert_eq!(
        r.counted, r.recounted,
        "{project}: the counter equals a recount"
    );
}

fn over(e: MetaError) -> crate::meta::quota::QuotaExceeded {
    match e {
        MetaError::Quota(q) => q,
        other => panic!("expected a quota refusal, got {other}"),
    }
}

async fn usage_counts_each_digest_once_per_project(meta: &Store) {
    let (one, two, other) = (repo("qa/one"), repo("qa/two"), repo("qb/app"));
    let m = image(b"qa-cfg", b"qa-layer-0123456789", None);
    push(
        meta,
        &one,
        b"qa-cfg",
        b"qa-layer-0123456789",
        &m,
        &[tag("v1")],
    )
    .await;
    let blobs = (b"qa-cfg".len() + b"qa-layer-0123456789".len()) as u64;
    let pushed = blobs + m.bytes.len() as u64;
    assert_eq!(usage(meta, "qa").await, pushed);
    // The same image in a second repository of the project adds nothing.
    let from = vec![one.to_string()];
    for b in [&b"qa-cfg"[..], b"qa-layer-0123456789"] {
        meta.mount(&two, &digest(b), &from).await.expect("mount");
    }
    put(meta, &two, &m, &[tag("v1")]).await.expect("pushed");
    assert_eq!(usage(meta, "qa").await, pushed);
    assert!(meta.project_holds("qa", &m.digest).await.expect("holds"));
    // In another project it counts there too.
    push(meta, &other, b"qa-cfg", b"qa-layer-0123456789", &m, &[]).await;
    assert_eq!(usage(meta, "qb").await, pushed);
    assert_eq!(usage(meta, "qa").await, pushed);
    // A tag deleted frees nothing; the project's last holder does.
    assert!(meta.delete_tag(&one, &tag("v1")).await.expect("untag"));
    assert_eq!(usage(meta, "qa").await, pushed);
    assert!(meta.delete_manifest(&one, &m.digest).await.expect("delete"));
    assert_eq!(usage(meta, "qa").await, pushed, "qa/two still holds it");
    assert!(meta.delete_manifest(&two, &m.digest).await.expect("delete"));
    assert_eq!(usage(meta, "qa").await, blobs);
    let layer = digest(b"qa-layer-0123456789");
    assert!(meta.unlink_blob(&one, &layer).await.expect("unlink"));
    assert_eq!(usage(meta, "qa").await, blobs);
    assert_recount(meta, "qa").await;
    // GC's link sweep removing the last link frees it.
    let view = meta.gc_view(&two).await.expect("view");
    let dead = vec![Seen {
        digest: layer.clone(),
        at: view.links[&layer],
    }];
    assert_eq!(meta.gc_sweep_links(&two, &dead, 0).await.expect("sweep"), 1);
    assert_eq!(usage(meta, "qa").await, b"qa-cfg".len() as u64);
    // Deleting the repositories frees the rest; the other project keeps its own.
    assert!(meta.delete_repo(&one).await.expect("repo"));
    assert!(meta.delete_repo(&two).await.expect("repo"));
    assert_eq!(usage(meta, "qa").await, 0);
    assert_eq!(usage(meta, "qb").await, pushed);
    assert_recount(meta, "qa").await;
    assert_recount(meta, "qb").await;
}

async fn limits_refuse_whole_writes(meta: &Store) {
    let (r, src) = (repo("ql/app"), repo("qm/app"));
    let (b0, b1, b2) = (vec![b'0'; 100], vec![b'1'; 50], vec![b'2'; 51]);
    meta.record_and_link(&r, &digest(&b0), 100)
        .await
        .expect("record");
    meta.set_quota(Some("ql"), Some(QuotaSetting::Bytes(150)))
        .await
        .expect("limit");
    let q = meta.quota("ql").await.expect("quota");
    assert_eq!((q.usage, q.limit()), (100, Some(150)));
    // Over: refused with the numbers, nothing recorded, the step not run.
    let ran = Arc::new(AtomicUsize::new(0));
    let flag = ran.clone();
    let step: StoreStep = Box::pin(async move {
        flag.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let big = digest(&b2);
    let e = over(
        meta.place_record_and_link(&r, &big, 51, step)
            .await
            .expect_err("over the limit"),
    );
    assert_eq!(
        (e.project.as_str(), e.limit, e.usage, e.adding),
        ("ql", 150, 100, 51)
    );
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a refused blob is never placed"
    );
    assert_eq!(meta.blob_size(&big).await.expect("size"), None);
    over(meta.record_and_link(&r, &big, 51).await.expect_err("over"));
    // Exactly at the limit is fine; a digest the project holds adds nothing.
    assert!(meta
        .record_and_link(&r, &digest(&b1), 50)
        .await
        .expect("fits"));
    meta.record_and_link(&repo("ql/other"), &digest(&b1), 50)
        .await
        .expect("held already");
    // Linking a recorded blob, mounting one and a manifest push are refused alike.
    meta.record_and_link(&src, &big, 51)
        .await
        .expect("elsewhere");
    over(meta.link_blob(&r, &big).await.expect_err("link over"));
    let from = vec![src.to_string()];
    over(meta.mount(&r, &big, &from).await.expect_err("mount over"));
    assert_eq!(meta.linked_blob(&r, &big).await.expect("linked"), None);
    let m = image(&b0, &b1, None);
    let e = meta
        .put_manifest(
            &r,
            &m.digest,
            m.bytes.clone(),
            &m.summary,
            &[tag("x")],
            References::Required,
        )
        .await
        .expect_err("manifest over");
    over(e);
    assert_eq!(meta.resolve_tag(&r, &tag("x")).await.expect("tag"), None);
    assert_eq!(usage(meta, "ql").await, 150);
    // Raised, the same writes pass.
    meta.set_quota(Some("ql"), Some(QuotaSetting::Bytes(10_000)))
        .await
        .expect("raise");
    assert_eq!(meta.mount(&r, &big, &from).await.expect("mount"), Some(51));
    put(meta, &r, &m, &[tag("x")]).await.expect("manifest");
    assert_recount(meta, "ql").await;
    meta.set_quota(Some("ql"), None).await.expect("removed");
    assert_eq!(meta.quota("ql").await.expect("quota").limit(), None);
}

async fn the_default_and_a_projects_own_limit(meta: &Store) {
    let r = repo("qd/app");
    meta.set_quota(None, Some(QuotaSetting::Bytes(10)))
        .await
        .expect("default");
    over(
        meta.record_and_link(&r, &digest(b"qd-0"), 20)
            .await
            .expect_err("over the default"),
    );
    meta.set_quota(Some("qd"), Some(QuotaSetting::Unlimited))
        .await
        .expect("exempt");
    let q = meta.quota("qd").await.expect("quota");
    assert_eq!(
        (q.own, q.default, q.limit()),
        (Some(QuotaSetting::Unlimited), Some(10), None)
    );
    meta.record_and_link(&r, &digest(b"qd-0"), 20)
        .await
        .expect("unlimited");
    // A deleted project's own setting goes with it.
    meta.forget_project("qd").await.expect("forget");
    assert_eq!(meta.quota("qd").await.expect("quota").own, None);
    meta.set_quota(None, None).await.expect("no default");
    assert_eq!(meta.quota("qd").await.expect("quota").default, None);
}

async fn concurrent_writes_cannot_pass_the_limit_together(meta: &Store) {
    meta.set_quota(Some("qc"), Some(QuotaSetting::Bytes(300)))
        .await
        .expect("limit");
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            let r = repo(&format!("qc/app{}", i % 2));
            meta.record_and_link(&r, &digest(&[b'q', b'c', i]), 100)
                .await
        }));
    }
    let mut fitted = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => fitted += 1,
            Err(e) => {
                over(e);
            }
        }
    }
    assert_eq!(fitted, 3, "exactly the writes that fit");
    assert_eq!(usage(meta, "qc").await, 300);
    assert_recount(meta, "qc").await;
}

fn immutable(e: MetaError) -> crate::meta::quota::ImmutableTag {
    match e {
        MetaError::Immutable(i) => i,
        other => panic!("expected an immutable-tag refusal, got {other}"),
    }
}

async fn immutable_tags_hold(meta: &Store) {
    let r = repo("qi/app");
    assert!(meta.immutable_rule_add("qi", "v*").await.expect("add"));
    assert!(!meta.immutable_rule_add("qi", "v*").await.expect("again"));
    assert!(meta
        .immutable_rule_add("qi", "release-*")
        .await
        .expect("add"));
    let rules: Vec<String> = meta
        .immutable_rules("qi")
        .await
        .expect("rules")
        .into_iter()
        .map(|r| r.pattern)
        .collect();
    assert_eq!(rules, vec!["release-*", "v*"]);
    let (a, b) = (
        image(b"qi-cfg-a", b"qi-a", None),
        image(b"qi-cfg-b", b"qi-b", None),
    );
    push(
        meta,
        &r,
        b"qi-cfg-a",
        b"qi-a",
        &a,
        &[tag("v1"), tag("latest")],
    )
    .await;
    // The same digest again is fine; another one is refused, naming the rule.
    put(meta, &r, &a, &[tag("v1")]).await.expect("same digest");
    for b_ in [&b"qi-cfg-b"[..], b"qi-b"] {
        meta.record_and_link(&r, &digest(b_), b_.len() as u64)
            .await
            .expect("record");
    }
    let e = immutable(
        meta.put_manifest(
            &r,
            &b.digest,
            b.bytes.clone(),
            &b.summary,
            &[tag("v1")],
            References::Required,
        )
        .await
        .expect_err("moving v1"),
    );
    assert_eq!((e.tag.as_str(), e.rule.as_str()), ("v1", "v*"));
    assert_eq!(
        meta.resolve_tag(&r, &tag("v1")).await.expect("v1"),
        Some(a.digest.clone())
    );
    assert!(
        meta.get_manifest(&r, &b.digest)
            .await
            .expect("get")
            .is_none(),
        "a refused push writes nothing"
    );
    // A new tag matching a rule may be created; a tag no rule matches moves.
    put(meta, &r, &b, &[tag("v2"), tag("latest")])
        .await
        .expect("new tags");
    immutable(
        meta.delete_tag(&r, &tag("v1"))
            .await
            .expect_err("deleting v1"),
    );
    immutable(
        meta.delete_manifest(&r, &a.digest)
            .await
            .expect_err("deleting its manifest"),
    );
    assert!(meta
        .delete_tag(&r, &tag("latest"))
        .await
        .expect("latest goes"));
    let e = immutable(
        meta.delete_repo(&r)
            .await
            .expect_err("deleting the repository"),
    );
    assert_eq!((e.tag.as_str(), e.rule.as_str()), ("v1", "v*"));
    assert!(
        meta.repo_exists(&r).await.expect("exists"),
        "nothing deleted"
    );
    // Without the rule, both go.
    assert!(meta
        .immutable_rule_remove("qi", "v*")
        .await
        .expect("remove"));
    assert!(!meta.immutable_rule_remove("qi", "v*").await.expect("twice"));
    assert!(meta.delete_tag(&r, &tag("v1")).await.expect("v1 goes"));
    assert!(meta.delete_manifest(&r, &b.digest).await.expect("b goes"));
    meta.forget_project("qi").await.expect("forget");
    assert!(meta.immutable_rules("qi").await.expect("rules").is_empty());
}
