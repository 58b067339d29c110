//! The metadata store's conformance suite: every `MetaStore` backend must
//! pass it (`suite`, given a fresh, empty store). It exercises each
//! operation's contract, including what must be atomic (a refused push
//! writes nothing, a failed store step records nothing), idempotent (a
//! second record of a blob) and safe under concurrency (commits of one blob
//! racing each other), and GC's re-checks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::oci::{manifest, media};

mod gc;
mod gc_sweep;
mod quota;
mod retention;
mod webhook_secrets;
mod webhooks;

type Store = Arc<dyn MetaStore>;

pub(crate) async fn suite(meta: Store) {
    blobs_and_links(&meta).await;
    placing_and_forgetting(&meta).await;
    concurrent_commits_of_one_blob(&meta).await;
    manifests_and_references(&meta).await;
    listings_and_deletion(&meta).await;
    gc::gc_rechecks_what_it_saw(&meta).await;
    gc::gc_blob_records_and_the_store(&meta).await;
    gc::gc_sees_links_from_every_repository(&meta).await;
    gc_sweep::suite(&meta).await;
    gc::blob_records_page_in_digest_order(&meta).await;
    gc::gc_history_keeps_the_newest_runs(&meta).await;
    pulls_add_up_and_tags_list_their_push_times(&meta).await;
    webhooks::webhooks_and_their_outbox(&meta).await;
    webhook_secrets::rotation(&meta).await;
    webhook_secrets::push_events_go_with_their_manifest(&meta).await;
    quota::suite(&meta).await;
    retention::suite(&meta).await;
    super::conformance_replication::replication_policies(&meta).await;
    super::conformance_replication::replication_executions(&meta).await;
    super::conformance_replication::sealed_values_are_resealed(&meta).await;
}

fn repo(s: &str) -> RepoName {
    s.parse().expect("repository name")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

fn digest(b: &[u8]) -> Digest {
    Digest::sha256_of(b)
}

fn ok_step() -> StoreStep {
    Box::pin(async { Ok(()) })
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest(bytes).to_string(), "size": bytes.len()})
}

/// A manifest: its digest, content and summary.
struct M {
    digest: Digest,
    bytes: Bytes,
    summary: ManifestSummary,
}

fn encode(media_type: &str, v: serde_json::Value) -> M {
    let bytes = Bytes::from(serde_json::to_vec(&v).expect("json"));
    let summary = manifest::decode(media_type, &bytes).expect("a valid manifest");
    M {
        digest: digest(&bytes),
        bytes,
        summary,
    }
}

fn image(config: &[u8], layer: &[u8], subject: Option<&M>) -> M {
    let mut v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    });
    if let Some(s) = subject {
        v["subject"] = descriptor(media::OCI_MANIFEST, &s.bytes);
        v["artifactType"] = "application/vnd.example.sig".into();
    }
    encode(media::OCI_MANIFEST, v)
}

fn index(children: &[&M]) -> M {
    let manifests: Vec<_> = children
        .iter()
        .map(|c| descriptor(media::OCI_MANIFEST, &c.bytes))
        .collect();
    encode(
        media::OCI_INDEX,
        serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests}),
    )
}

async fn put(meta: &Store, r: &RepoName, m: &M, tags: &[Tag]) -> Result<(), BadReference> {
    meta.put_manifest(
        r,
        &m.digest,
        m.bytes.clone(),
        &m.summary,
        tags,
        References::Required,
    )
    .await
    .expect("put_manifest")
}

/// Records and links an image's config and layer into `r`, then pushes it.
async fn push(meta: &Store, r: &RepoName, config: &[u8], layer: &[u8], m: &M, tags: &[Tag]) {
    for b in [config, layer] {
        meta.record_and_link(r, &digest(b), b.len() as u64)
            .await
            .expect("record");
    }
    put(meta, r, m, tags).await.expect("accepted");
}

async fn blobs_and_links(meta: &Store) {
    let (a, b) = (repo("conf/blobs-a"), repo("conf/blobs-b"));
    let d = digest(b"blob one");
    assert_eq!(
        meta.link_blob(&a, &d).await.expect("link"),
        LinkOutcome::NotInStore
    );
    assert!(
        meta.record_and_link(&a, &d, 8).await.expect("record"),
        "a new record"
    );
    // Idempotent: the first record's size stays.
    assert!(!meta.record_and_link(&a, &d, 99).await.expect("again"));
    assert_eq!(meta.blob_size(&d).await.expect("size"), Some(8));
    assert_eq!(meta.linked_blob(&a, &d).await.expect("linked"), Some(8));
    assert_eq!(meta.linked_blob(&b, &d).await.expect("not linked"), None);
    assert!(
        meta.repo_exists(&a).await.expect("exists"),
        "linking creates the repository"
    );
    // Mount: only from a source that links it; never from nowhere.
    assert_eq!(meta.mount(&b, &d, &[]).await.expect("no source"), None);
    let other = vec!["conf/elsewhere".to_string()];
    assert_eq!(
        meta.mount(&b, &d, &other).await.expect("wrong source"),
        None
    );
    let unknown = digest(b"never recorded");
    let from_a = vec![a.to_string()];
    assert_eq!(
        meta.mount(&b, &unknown, &from_a).await.expect("unknown"),
        None
    );
    assert_eq!(meta.mount(&b, &d, &from_a).await.expect("mount"), Some(8));
    assert_eq!(meta.linked_blob(&b, &d).await.expect("mounted"), Some(8));
    assert!(meta.unlink_blob(&b, &d).await.expect("unlink"));
    assert!(!meta.unlink_blob(&b, &d).await.expect("twice"));
    assert_eq!(meta.linked_blob(&b, &d).await.expect("gone"), None);
    assert_eq!(
        meta.link_blob(&b, &d).await.expect("relink"),
        LinkOutcome::Linked
    );
    assert_eq!(meta.linked_blob(&b, &d).await.expect("back"), Some(8));
}

async fn placing_and_forgetting(meta: &Store) {
    let r = repo("conf/place");
    let d = digest(b"placed blob");
    let failing: StoreStep = Box::pin(async { Err("the disk is full".to_string()) });
    let err = meta
        .place_record_and_link(&r, &d, 11, failing)
        .await
        .expect_err("a failed step records nothing");
    assert!(err.to_string().contains("the disk is full"), "{err}");
    assert_eq!(meta.blob_size(&d).await.expect("size"), None);
    assert_eq!(meta.linked_blob(&r, &d).await.expect("link"), None);
    let ran = Arc::new(AtomicUsize::new(0));
    let step = {
        let ran = ran.clone();
        Box::pin(async move {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    };
    assert!(meta
        .place_record_and_link(&r, &d, 11, step)
        .await
        .expect("placed"));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(meta.linked_blob(&r, &d).await.expect("linked"), Some(11));

    // Forgetting removes the record and every link, with the bytes' step.
    let other = repo("conf/place-other");
    meta.link_blob(&other, &d).await.expect("second link");
    let failing: StoreStep = Box::pin(async { Err("cannot delete".to_string()) });
    meta.forget_blob(&d, failing)
        .await
        .expect_err("a failed delete forgets nothing");
    assert_eq!(meta.linked_blob(&other, &d).await.expect("kept"), Some(11));
    assert_eq!(
        meta.forget_blob(&d, ok_step()).await.expect("forget"),
        Some(11)
    );
    assert_eq!(meta.blob_size(&d).await.expect("size"), None);
    for x in [&r, &other] {
        assert_eq!(meta.linked_blob(x, &d).await.expect("unlinked"), None);
    }
    let never: StoreStep = Box::pin(async { Err("must not run".to_string()) });
    assert_eq!(meta.forget_blob(&d, never).await.expect("unknown"), None);
    let records = meta.blob_records().await.expect("records");
    assert!(records.iter().all(|b| b.digest != d), "{records:?}");
}

async fn concurrent_commits_of_one_blob(meta: &Store) {
    let d = digest(b"raced blob");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (meta, d) = (meta.clone(), d.clone());
            let r = repo(&format!("conf/race-{}", i % 3));
            tokio::spawn(async move { meta.place_record_and_link(&r, &d, 10, ok_step()).await })
        })
        .collect();
    let mut new = 0;
    for t in tasks {
        if t.await.expect("task").expect("commit") {
            new += 1;
        }
    }
    assert_eq!(new, 1, "exactly one commit records the blob");
    for i in 0..3 {
        let r = repo(&format!("conf/race-{i}"));
        assert_eq!(meta.linked_blob(&r, &d).await.expect("linked"), Some(10));
    }
    let n = meta.blob_records().await.expect("records");
    assert_eq!(n.iter().filter(|b| b.digest == d).count(), 1);
}

async fn manifests_and_references(meta: &Store) {
    let r = repo("conf/manifests");
    let img = image(b"cfg-1", b"layer-1", None);
    // Nothing is written by a refused push.
    assert_eq!(
        put(meta, &r, &img, &[tag("v1")]).await,
        Err(BadReference::Blob(digest(b"cfg-1")))
    );
    assert!(meta
        .get_manifest(&r, &img.digest)
        .await
        .expect("get")
        .is_none());
    assert_eq!(meta.resolve_tag(&r, &tag("v1")).await.expect("tag"), None);
    meta.record_and_link(&r, &digest(b"cfg-1"), 5)
        .await
        .expect("config");
    let bad = image(b"cfg-1", b"layer-x", None);
    meta.record_and_link(&r, &digest(b"layer-x"), 99)
        .await
        .expect("layer, another size");
    assert_eq!(
        put(meta, &r, &bad, &[]).await,
        Err(BadReference::Size {
            digest: digest(b"layer-x"),
            declared: 7,
            actual: 99
        })
    );
    let r2 = repo("conf/manifests-2");
    push(
        meta,
        &r2,
        b"cfg-1",
        b"layer-1",
        &img,
        &[tag("v1"), tag("latest")],
    )
    .await;
    let got = meta
        .get_manifest(&r2, &img.digest)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        (got.bytes, got.media_type.as_str()),
        (img.bytes.clone(), media::OCI_MANIFEST)
    );
    assert_eq!(
        meta.resolve_tag(&r2, &tag("latest")).await.expect("tag"),
        Some(img.digest.clone())
    );
    let by_tag = meta
        .manifest_by_tag(&r2, &tag("latest"))
        .await
        .expect("by tag")
        .expect("tagged");
    assert_eq!(
        (&by_tag.digest, &by_tag.bytes, by_tag.media_type.as_str()),
        (&img.digest, &img.bytes, media::OCI_MANIFEST)
    );
    assert!(meta
        .manifest_by_tag(&r2, &tag("never"))
        .await
        .expect("by tag")
        .is_none());
    let summary = meta
        .manifest_summary(&img.digest)
        .await
        .expect("summary")
        .expect("some");
    assert_eq!(summary.blobs.len(), 2);
    // An index needs its children in the repository, with their sizes.
    let other = image(b"cfg-2", b"layer-2", None);
    let idx = index(&[&img, &other]);
    assert_eq!(
        put(meta, &r2, &idx, &[]).await,
        Err(BadReference::Manifest(other.digest.clone()))
    );
    // A cache records it with its children absent.
    meta.put_manifest(
        &r2,
        &idx.digest,
        idx.bytes.clone(),
        &idx.summary,
        &[tag("multi")],
        References::OnDemand,
    )
    .await
    .expect("put")
    .expect("on demand, nothing is checked");
    // Which indexes list a manifest, and a held manifest's media type.
    assert_eq!(
        meta.indexes_containing(&r2, &img.digest)
            .await
            .expect("parents"),
        vec![idx.digest.clone()]
    );
    assert!(meta
        .indexes_containing(&r2, &idx.digest)
        .await
        .expect("parents")
        .is_empty());
    assert_eq!(
        meta.linked_manifest_type(&r2, &idx.digest)
            .await
            .expect("type")
            .as_deref(),
        Some(idx.summary.media_type.as_str())
    );
    assert_eq!(
        meta.linked_manifest_type(&r2, &other.digest)
            .await
            .expect("type"),
        None,
        "an absent child is not held"
    );
    // Referrers: recorded with the referrer, gone with it.
    let sig = image(b"sig-cfg", b"sig", Some(&img));
    push(meta, &r2, b"sig-cfg", b"sig", &sig, &[]).await;
    let refs = meta.referrers(&r2, &img.digest).await.expect("referrers");
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(
        (&refs[0].digest, refs[0].size),
        (&sig.digest, sig.bytes.len() as u64)
    );
    assert_eq!(
        refs[0].artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );
    assert!(meta
        .delete_manifest(&r2, &sig.digest)
        .await
        .expect("delete"));
    assert!(!meta.delete_manifest(&r2, &sig.digest).await.expect("twice"));
    assert!(meta
        .referrers(&r2, &img.digest)
        .await
        .expect("referrers")
        .is_empty());
    // Deleting a manifest takes its tags; deleting a tag leaves the manifest.
    assert!(meta.delete_tag(&r2, &tag("latest")).await.expect("untag"));
    assert!(!meta.delete_tag(&r2, &tag("latest")).await.expect("twice"));
    assert!(meta
        .get_manifest(&r2, &img.digest)
        .await
        .expect("get")
        .is_some());
    assert!(meta
        .delete_manifest(&r2, &img.digest)
        .await
        .expect("delete"));
    assert_eq!(meta.resolve_tag(&r2, &tag("v1")).await.expect("tag"), None);
    assert!(meta
        .manifest_by_tag(&r2, &tag("v1"))
        .await
        .expect("by tag")
        .is_none());
}

async fn listings_and_deletion(meta: &Store) {
    let r = repo("list/app");
    let img = image(b"list-cfg", b"list-layer", None);
    let tags: Vec<Tag> = ["a", "b", "c"].iter().map(|t| tag(t)).collect();
    push(meta, &r, b"list-cfg", b"list-layer", &img, &tags).await;
    meta.record_and_link(&repo("list/app/sub"), &digest(b"x"), 1)
        .await
        .expect("sub");
    meta.record_and_link(&repo("listing"), &digest(b"x"), 1)
        .await
        .expect("sibling");
    assert_eq!(
        meta.tags(&r, None, 2).await.expect("page"),
        (vec!["a".into(), "b".into()], true)
    );
    assert_eq!(
        meta.tags(&r, Some("b"), 2).await.expect("next"),
        (vec!["c".into()], false)
    );
    let with = meta.tags_with_digests(&r).await.expect("tags");
    assert_eq!(with.len(), 3);
    assert!(with.iter().all(|(_, d)| *d == img.digest.to_string()));
    let all = meta.all_tags().await.expect("all");
    assert!(all.contains(&TagEntry {
        repo: r.to_string(),
        tag: "a".into(),
        digest: img.digest.to_string()
    }));
    assert_eq!(
        meta.repos_with_prefix("list/").await.expect("prefix"),
        vec!["list/app".to_string(), "list/app/sub".to_string()]
    );
    let (names, more) = meta
        .catalog(Some("list"), 1, &|n| n != "list/app")
        .await
        .expect("catalog");
    assert_eq!((names, more), (vec!["list/app/sub".to_string()], true));
    assert!(meta.delete_repo(&r).await.expect("delete"));
    assert!(!meta.delete_repo(&r).await.expect("twice"));
    assert!(!meta.repo_exists(&r).await.expect("gone"));
    assert!(meta
        .get_manifest(&r, &img.digest)
        .await
        .expect("get")
        .is_none());
    assert_eq!(
        meta.linked_blob(&r, &digest(b"list-cfg"))
            .await
            .expect("link"),
        None
    );
    assert!(meta.tags_with_digests(&r).await.expect("tags").is_empty());
    assert!(meta.repo_exists(&repo("list/app/sub")).await.expect("kept"));
}

fn seen(view: &RepoGcView, m: &M) -> Seen {
    Seen {
        digest: m.digest.clone(),
        at: view.manifests[&m.digest].0,
    }
}

async fn pulls_add_up_and_tags_list_their_push_times(meta: &Store) {
    let r = repo("pulls/app");
    let m = image(b"pulls-cfg", b"pulls-layer", None);
    push(
        meta,
        &r,
        b"pulls-cfg",
        b"pulls-layer",
        &m,
        &[tag("v1"), tag("latest")],
    )
    .await;
    let d = m.digest.to_string();
    assert!(meta.pulls(&r).await.expect("none").is_empty());
    let count = |n, at| PullCount {
        repository: "pulls/app".into(),
        digest: d.clone(),
        count: n,
        last_pulled_at: at,
    };
    meta.pulls_record(&[count(2, 100)]).await.expect("record");
    meta.pulls_record(&[count(3, 50)])
        .await
        .expect("an edge's older batch");
    assert_eq!(meta.pulls(&r).await.expect("pulls"), vec![count(5, 100)]);
    assert!(meta
        .pulls(&repo("pulls/other"))
        .await
        .expect("other")
        .is_empty());
    let tags = meta.tag_records(&r).await.expect("tags");
    assert_eq!(
        tags.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
        vec!["latest", "v1"]
    );
    assert!(tags.iter().all(|t| t.digest == d && t.pushed_at > 0));
    assert_eq!(tags[0].media_type, m.summary.media_type);
    assert!(meta.delete_repo(&r).await.expect("delete"));
    assert!(
        meta.pulls(&r).await.expect("gone").is_empty(),
        "with the repository"
    );
}

fn webhook(id: &str, project: &str) -> Webhook {
    Webhook {
        id: id.into(),
        project: project.into(),
        url: format!("https://hooks.example/{id}"),
        events: vec!["push".into()],
        enabled: true,
        secret: SealedSecret {
            key_id: None,
            nonce: "n".into(),
            ciphertext: "c".into(),
        },
        created_at: 1,
        previous: None,
    }
}

fn event(webhook: &str, n: u32) -> NewDelivery {
    NewDelivery {
        webhook: webhook.into(),
        event_id: format!("e{n}"),
        event_type: "push".into(),
        subject: format!("s{n}"),
        body: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

fn attempt(code: Option<u16>, next: AttemptNext) -> Attempt {
    Attempt {
        at: 7,
        response_code: code,
        error: code.is_none().then(|| "connection refused".to_string()),
        next,
    }
}

async fn head_of(meta: &Store, id: &str) -> Option<QueuedEvent> {
    let heads = meta.outbox_heads().await.expect("heads");
    heads.into_iter().find(|h| h.webhook == id)
}
