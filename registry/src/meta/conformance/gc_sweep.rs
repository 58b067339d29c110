//! The conformance suite's part for GC's sweep of several repositories in
//! one transaction (`MetaStore::gc_sweep_repos`): each repository's
//! manifests and links go as the single-repository sweeps would take them,
//! and a manifest the sweep keeps keeps its blobs' links. And the clock GC
//! reads before its snapshots, a fence for the writes in flight.

use super::*;

pub(super) async fn suite(meta: &Store) {
    several_repositories_in_one_sweep(meta).await;
    the_clock_waits_for_writes_in_flight(meta).await;
}

/// `clock` is a fence (see `MetaStore::clock`): it answers only once a
/// write already under way has committed, so a snapshot GC takes after it
/// sees that write. Without it, a push stamped just before GC's reading
/// that commits just after GC's snapshot is neither in the snapshot nor
/// "pushed since", and the sweep takes the blobs it references. The write
/// here is a blob whose placing step waits until it is let go.
async fn the_clock_waits_for_writes_in_flight(meta: &Store) {
    let r = repo("gcs/fence");
    let d = digest(b"gcs-fence");
    let (began, writing) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let step: StoreStep = Box::pin(async move {
        let _ = began.send(());
        let _ = released.await;
        Ok(())
    });
    let writer = {
        let (meta, r, d) = (meta.clone(), r.clone(), d.clone());
        tokio::spawn(async move { meta.place_record_and_link(&r, &d, 9, step).await })
    };
    writing.await.expect("the write began");
    let clock = {
        let meta = meta.clone();
        tokio::spawn(async move { meta.clock().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !clock.is_finished(),
        "the clock answered while a write was in flight"
    );
    release.send(()).expect("the write waits");
    assert!(writer.await.expect("join").expect("placed"));
    let t = clock.await.expect("join").expect("clock");
    let view = meta.gc_view(&r).await.expect("view");
    let linked_at = *view
        .links
        .get(&d)
        .expect("a snapshot after the clock sees the write");
    assert!(linked_at <= t, "linked at {linked_at}, clock {t}");
}

async fn several_repositories_in_one_sweep(meta: &Store) {
    let (a, b) = (repo("gcs/a"), repo("gcs/b"));
    let a1 = image(b"gcs-cfg-a1", b"gcs-a1", None);
    let a2 = image(b"gcs-cfg-a2", b"gcs-a2", None);
    let sig = image(b"gcs-sig-cfg", b"gcs-sig", Some(&a2));
    let b1 = image(b"gcs-cfg-b1", b"gcs-b1", None);
    push(meta, &a, b"gcs-cfg-a1", b"gcs-a1", &a1, &[]).await;
    push(meta, &a, b"gcs-cfg-a2", b"gcs-a2", &a2, &[]).await;
    push(meta, &a, b"gcs-sig-cfg", b"gcs-sig", &sig, &[]).await;
    push(meta, &b, b"gcs-cfg-b1", b"gcs-b1", &b1, &[]).await;
    let (va, vb) = (
        meta.gc_view(&a).await.expect("view a"),
        meta.gc_view(&b).await.expect("view b"),
    );
    // Everything looked dead in the snapshot; then a2 is tagged.
    put(meta, &a, &a2, &[tag("since")]).await.expect("re-tag");
    let links = |v: &RepoGcView| -> Vec<Seen> {
        v.links
            .iter()
            .map(|(d, at)| Seen {
                digest: d.clone(),
                at: *at,
            })
            .collect()
    };
    let mut b_links = links(&vb);
    let moved = digest(b"gcs-b1");
    for l in &mut b_links {
        if l.digest == moved {
            l.at += 1; // linked again since the snapshot
        }
    }
    let sweeps = [
        RepoSweep {
            repo: a.clone(),
            // Parents and subjects first.
            manifests: vec![seen(&va, &a1), seen(&va, &a2), seen(&va, &sig)],
            links: links(&va),
        },
        RepoSweep {
            repo: b.clone(),
            manifests: vec![seen(&vb, &b1)],
            links: b_links,
        },
    ];
    let swept = meta.gc_sweep_repos(&sweeps, u64::MAX).await.expect("sweep");
    assert_eq!(
        swept,
        vec![
            RepoSwept {
                manifests: vec![a1.digest.clone()],
                links: 2,
            },
            RepoSwept {
                manifests: vec![b1.digest.clone()],
                links: 1,
            },
        ]
    );
    let manifest = |r: &RepoName, m: &M| {
        let (r, d) = (r.clone(), m.digest.clone());
        async move { meta.get_manifest(&r, &d).await.expect("get").is_some() }
    };
    assert!(!manifest(&a, &a1).await && !manifest(&b, &b1).await);
    assert!(manifest(&a, &a2).await, "tagged since the snapshot");
    assert!(manifest(&a, &sig).await, "the referrer of a kept subject");
    let linked = |r: &RepoName, b: &[u8]| {
        let (r, d) = (r.clone(), digest(b));
        async move { meta.linked_blob(&r, &d).await.expect("linked").is_some() }
    };
    for gone in [b"gcs-a1".as_slice(), b"gcs-cfg-a1"] {
        assert!(!linked(&a, gone).await);
    }
    for kept in [
        b"gcs-a2".as_slice(),
        b"gcs-cfg-a2",
        b"gcs-sig",
        b"gcs-sig-cfg",
    ] {
        assert!(
            linked(&a, kept).await,
            "{} is used by a kept manifest",
            String::from_utf8_lossy(kept)
        );
    }
    assert!(linked(&b, b"gcs-b1").await, "linked again since");
    assert!(!linked(&b, b"gcs-cfg-b1").await);
    // Nothing left to sweep is no error, and sweeps nothing.
    let again = meta.gc_sweep_repos(&sweeps, u64::MAX).await.expect("again");
    assert!(again.iter().all(|s| s.manifests.is_empty() && s.links == 0));
}
