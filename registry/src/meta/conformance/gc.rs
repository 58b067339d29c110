//! The conformance suite's part for GC's reads and single-repository
//! sweeps: what GC saw is checked again before anything goes, blob records
//! and the store's bytes go only when nothing links them, links count from
//! every repository, records page in digest order, and the history keeps
//! the newest runs.

use super::*;

pub(super) async fn gc_rechecks_what_it_saw(meta: &Store) {
    let r = repo("gc/app");
    let (a, b) = (
        image(b"gc-cfg-a", b"gc-a", None),
        image(b"gc-cfg-b", b"gc-b", None),
    );
    push(meta, &r, b"gc-cfg-a", b"gc-a", &a, &[tag("a")]).await;
    push(meta, &r, b"gc-cfg-b", b"gc-b", &b, &[]).await;
    let view = meta.gc_view(&r).await.expect("view");
    assert_eq!(view.manifests.len(), 2);
    assert!(view.tagged.contains(&a.digest) && !view.tagged.contains(&b.digest));
    assert_eq!(view.links.len(), 4);
    // Stale: a push time other than the one GC saw.
    let mut stale = seen(&view, &b);
    stale.at += 1;
    let none = meta
        .gc_sweep_manifests(&r, &[stale], u64::MAX)
        .await
        .expect("sweep");
    assert!(none.is_empty(), "a re-pushed manifest stays");
    // Tagged since (here: tagged all along) stays.
    let none = meta
        .gc_sweep_manifests(&r, &[seen(&view, &a)], u64::MAX)
        .await
        .expect("sweep");
    assert!(none.is_empty(), "a tagged manifest stays");
    // A child of an index pushed since the snapshot stays.
    let idx = index(&[&b]);
    put(meta, &r, &idx, &[]).await.expect("index");
    let none = meta
        .gc_sweep_manifests(&r, &[seen(&view, &b)], 0)
        .await
        .expect("sweep");
    assert!(none.is_empty(), "the child of a newer index stays");
    // Unless that index is swept with it: the batch is taken parents first.
    let view = meta.gc_view(&r).await.expect("view");
    let gone = meta
        .gc_sweep_manifests(&r, &[seen(&view, &idx), seen(&view, &b)], 0)
        .await
        .expect("sweep");
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(meta
        .get_manifest(&r, &b.digest)
        .await
        .expect("get")
        .is_none());
    assert!(
        meta.manifest_summary(&b.digest)
            .await
            .expect("summary")
            .is_none(),
        "unheld content goes"
    );
    // Content another repository holds stays.
    let r2 = repo("gc/other");
    push(meta, &r2, b"gc-cfg-a", b"gc-a", &a, &[]).await;
    assert!(meta.delete_tag(&r, &tag("a")).await.expect("untag"));
    let view = meta.gc_view(&r).await.expect("view");
    let gone = meta
        .gc_sweep_manifests(&r, &[seen(&view, &a)], u64::MAX)
        .await
        .expect("sweep");
    assert_eq!(gone, vec![a.digest.clone()]);
    assert!(meta
        .get_manifest(&r2, &a.digest)
        .await
        .expect("get")
        .is_some());
    // A survivor keeps what it reaches in its batch: the referrer of a re-tagged subject.
    let sig = image(b"gc-sig-cfg", b"gc-sig", Some(&a));
    push(meta, &r2, b"gc-sig-cfg", b"gc-sig", &sig, &[]).await;
    let view2 = meta.gc_view(&r2).await.expect("view");
    put(meta, &r2, &a, &[tag("again")]).await.expect("re-tag");
    let gone = meta
        .gc_sweep_manifests(&r2, &[seen(&view2, &a), seen(&view2, &sig)], u64::MAX)
        .await
        .expect("sweep");
    assert!(gone.is_empty(), "{gone:?}");
    // Links: only those with the link time GC saw, not used by a newer manifest.
    let link = Seen {
        digest: digest(b"gc-b"),
        at: view.links[&digest(b"gc-b")],
    };
    let mut moved = link.clone();
    moved.at += 1;
    assert_eq!(
        meta.gc_sweep_links(&r, &[moved], u64::MAX)
            .await
            .expect("links"),
        0
    );
    assert_eq!(
        meta.gc_sweep_links(&r, &[link], u64::MAX)
            .await
            .expect("links"),
        1
    );
    let used = Seen {
        digest: digest(b"gc-sig"),
        at: view2.links[&digest(b"gc-sig")],
    };
    assert_eq!(
        meta.gc_sweep_links(&r2, &[used], 0).await.expect("links"),
        0
    );
}

pub(super) async fn gc_blob_records_and_the_store(meta: &Store) {
    let r = repo("gc/blobs");
    let (linked, loose) = (digest(b"gc linked"), digest(b"gc loose"));
    meta.record_and_link(&r, &linked, 9).await.expect("linked");
    meta.record_and_link(&r, &loose, 8).await.expect("loose");
    assert!(meta.unlink_blob(&r, &loose).await.expect("unlink"));
    let both = [linked.clone(), loose.clone()];
    assert!(
        meta.gc_drop_blobs(&both, 0).await.expect("drop").is_empty(),
        "too recent"
    );
    let dropped = meta.gc_drop_blobs(&both, u64::MAX).await.expect("drop");
    assert_eq!(
        dropped
            .iter()
            .map(|b| (&b.digest, b.size))
            .collect::<Vec<_>>(),
        vec![(&loose, 8)]
    );
    assert_eq!(meta.blob_size(&loose).await.expect("size"), None);
    assert_eq!(meta.blob_size(&linked).await.expect("size"), Some(9));
    // The orphan scan's lookup: those without a record, in their order.
    let never = digest(b"never recorded");
    assert_eq!(
        meta.unrecorded(&[never.clone(), linked.clone(), loose.clone()])
            .await
            .expect("unrecorded"),
        vec![never, loose.clone()]
    );
    // The store sweep runs its step only for what has no record.
    let deleted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let step: DeleteStep = {
        let deleted = deleted.clone();
        Arc::new(move |d: Digest| -> StoreStep {
            if let Ok(mut v) = deleted.lock() {
                v.push(d);
            }
            Box::pin(async { Ok(()) })
        })
    };
    assert_eq!(meta.delete_unrecorded(&both, step).await.expect("sweep"), 1);
    assert_eq!(*deleted.lock().expect("lock"), vec![loose]);
}

/// A blob's record goes only once no repository links it, however it lost
/// its links (unlinked, repository deleted, GC's link sweep), and
/// `forget_blob` takes every link with it.
pub(super) async fn gc_sees_links_from_every_repository(meta: &Store) {
    let (a, b, c) = (repo("gcl/a"), repo("gcl/b"), repo("gcl/c"));
    let d = digest(b"gcl shared");
    meta.record_and_link(&a, &d, 4).await.expect("a");
    assert_eq!(
        meta.link_blob(&b, &d).await.expect("b"),
        LinkOutcome::Linked
    );
    assert_eq!(
        meta.mount(&c, &d, &["gcl/a".to_string()]).await.expect("c"),
        Some(4)
    );
    let one = std::slice::from_ref(&d);
    let drop = || async { meta.gc_drop_blobs(one, u64::MAX).await.expect("drop") };
    assert!(meta.unlink_blob(&a, &d).await.expect("unlink a"));
    assert!(drop().await.is_empty(), "b and c link it");
    assert!(meta.delete_repo(&b).await.expect("delete b"));
    assert!(drop().await.is_empty(), "c links it");
    let view = meta.gc_view(&c).await.expect("view");
    let at = *view.links.get(&d).expect("c's link");
    let link = Seen {
        digest: d.clone(),
        at,
    };
    assert_eq!(
        meta.gc_sweep_links(&c, &[link], u64::MAX)
            .await
            .expect("sweep"),
        1
    );
    assert_eq!(drop().await.len(), 1, "no link left");
    // Relinked after a forget: a fresh record, linked once.
    meta.record_and_link(&a, &d, 4).await.expect("again");
    meta.link_blob(&b, &d).await.expect("b again");
    assert_eq!(
        meta.forget_blob(&d, ok_step()).await.expect("forget"),
        Some(4)
    );
    assert_eq!(meta.linked_blob(&b, &d).await.expect("b"), None);
    meta.record_and_link(&c, &d, 4).await.expect("c again");
    assert!(meta.unlink_blob(&c, &d).await.expect("unlink c"));
    assert_eq!(drop().await.len(), 1, "the forgotten links are gone too");
}

pub(super) async fn blob_records_page_in_digest_order(meta: &Store) {
    let r = repo("pages/app");
    for i in 0..5u8 {
        meta.record_and_link(&r, &digest(&[b'p', i]), u64::from(i))
            .await
            .expect("record");
    }
    let all: Vec<Digest> = meta
        .blob_records()
        .await
        .expect("all")
        .into_iter()
        .map(|b| b.digest)
        .collect();
    let mut paged = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = meta
            .blob_records_page(after.as_ref(), 2)
            .await
            .expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        paged.extend(page.into_iter().map(|b| b.digest));
    }
    let mut sorted = all.clone();
    sorted.sort_by_key(|d| d.to_string());
    assert_eq!(paged, sorted, "every record once, in digest order");
}

pub(super) async fn gc_history_keeps_the_newest_runs(meta: &Store) {
    assert!(meta.gc_runs(10).await.expect("none yet").is_empty());
    for i in 0..5u64 {
        let run = GcRun {
            id: 99,
            started_at: 1000 + i,
            finished_at: 1001 + i,
            trigger: "schedule".into(),
            outcome: "ok".into(),
            blobs_deleted: i,
            ..GcRun::default()
        };
        assert_eq!(meta.gc_run_record(&run, 3).await.expect("record"), i + 1);
    }
    let runs = meta.gc_runs(10).await.expect("runs");
    assert_eq!(
        runs.iter()
            .map(|r| (r.id, r.blobs_deleted))
            .collect::<Vec<_>>(),
        vec![(5, 4), (4, 3), (3, 2)],
        "the newest three, newest first"
    );
    assert_eq!(runs[0].trigger, "schedule");
    assert_eq!(meta.gc_runs(1).await.expect("one").len(), 1);
}
