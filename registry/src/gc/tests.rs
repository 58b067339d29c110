use std::sync::Arc;

use super::repository::parents_first;
use super::*;
use crate::content::ContentStore;
use crate::oci::Descriptor;
use crate::oci::ManifestSummary;

fn desc(d: &str) -> Descriptor {
    Descriptor {
        media_type: "x".into(),
        digest: Digest::sha256_of(d.as_bytes()),
        size: 1,
        artifact_type: None,
        annotations: None,
        platform: None,
        urls: None,
    }
}

#[test]
fn mark_follows_children_and_referrers() {
    let k = |s: &str| Digest::sha256_of(s.as_bytes()).to_string();
    let summary = |children: &[&str], subject: Option<&str>| ManifestSummary {
        media_type: "x".into(),
        blobs: vec![],
        manifests: children.iter().map(|c| desc(c)).collect(),
        subject: subject.map(desc),
        artifact_type: None,
        annotations: None,
    };
    let mut m = BTreeMap::new();
    m.insert(k("index"), Some(summary(&["amd64", "arm64"], None)));
    m.insert(k("amd64"), Some(summary(&[], None)));
    m.insert(k("arm64"), Some(summary(&[], None)));
    m.insert(k("sig"), Some(summary(&[], Some("index"))));
    m.insert(k("sig-of-sig"), Some(summary(&[], Some("sig"))));
    m.insert(k("orphan"), Some(summary(&[], None)));
    m.insert(k("orphan-sbom"), Some(summary(&[], Some("orphan"))));
    let live = mark(&m, &BTreeSet::from([k("index")]));
    for l in ["index", "amd64", "arm64", "sig", "sig-of-sig"] {
        assert!(live.contains(&k(l)), "{l} should live");
    }
    assert!(!live.contains(&k("orphan")));
    assert!(!live.contains(&k("orphan-sbom")));
}

#[test]
fn a_sweep_keeps_what_survivors_reach_and_their_blobs() {
    let k = |s: &str| Digest::sha256_of(s.as_bytes()).to_string();
    let summary = |blobs: &[&str], children: &[&str], subject: Option<&str>| ManifestSummary {
        media_type: "x".into(),
        blobs: blobs.iter().map(|b| desc(b)).collect(),
        manifests: children.iter().map(|c| desc(c)).collect(),
        subject: subject.map(desc),
        artifact_type: None,
        annotations: None,
    };
    // GC saw all five dead; the index was pushed again since.
    let mut batch = BTreeMap::new();
    batch.insert(k("index"), Some(summary(&[], &["amd64"], None)));
    batch.insert(k("amd64"), Some(summary(&["config", "layer"], &[], None)));
    batch.insert(k("sig"), Some(summary(&["sig-layer"], &[], Some("index"))));
    batch.insert(k("old"), Some(summary(&["old-layer", "layer"], &[], None)));
    batch.insert(k("unread"), None);
    let (keep, blobs) = crate::meta::kept_in_sweep(&batch, &BTreeSet::from([k("index")]));
    assert_eq!(keep, BTreeSet::from([k("index"), k("amd64"), k("sig")]));
    let want: std::collections::HashSet<String> = ["config", "layer", "sig-layer"]
        .iter()
        .map(|b| k(b))
        .collect();
    assert_eq!(
        blobs, want,
        "the kept manifests' blobs, not the swept one's own"
    );
    let (keep, blobs) = crate::meta::kept_in_sweep(&batch, &BTreeSet::new());
    assert!(
        keep.is_empty() && blobs.is_empty(),
        "with no survivor, nothing is kept"
    );
}

#[test]
fn dead_manifests_are_swept_parents_and_subjects_first() {
    let k = |s: &str| Digest::sha256_of(s.as_bytes()).to_string();
    let summary = |children: &[&str], subject: Option<&str>| ManifestSummary {
        media_type: "x".into(),
        blobs: vec![],
        manifests: children.iter().map(|c| desc(c)).collect(),
        subject: subject.map(desc),
        artifact_type: None,
        annotations: None,
    };
    let mut m = BTreeMap::new();
    m.insert(k("amd64"), Some(summary(&[], None)));
    m.insert(k("sig"), Some(summary(&[], Some("amd64"))));
    m.insert(k("index"), Some(summary(&["amd64", "arm64"], None)));
    m.insert(k("arm64"), Some(summary(&[], None)));
    m.insert(k("live"), Some(summary(&[], None)));
    let order = parents_first(&m, &BTreeSet::from([k("live")]));
    let at = |s: &str| order.iter().position(|d| *d == k(s)).expect(s);
    assert_eq!(order.len(), 4, "only the dead");
    assert!(at("index") < at("amd64") && at("index") < at("arm64"));
    assert!(at("amd64") < at("sig"), "the subject before its referrer");
}

/// A sweep of more dead manifests, links and blobs than one batch holds
/// collects them all, over several write transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_larger_than_a_batch_collects_everything() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = crate::meta::RedbMeta::open(&dir.path().join("berth.redb")).expect("meta");
    let content = ContentStore::local(&dir.path().join("store"), &dir.path().join("uploads"))
        .expect("content");
    let metrics = Arc::new(crate::service::metrics::Metrics::new());
    let registry = LocalRegistry::embedded(meta, content, metrics);
    let (m, content, _) = registry.gc_parts();
    let repo: RepoName = "p/app".parse().expect("name");
    let n = BATCH * 2 + 3;
    let config = bytes::Bytes::from_static(b"{}");
    let mut layers = Vec::new();
    for i in 0..n {
        let layer = bytes::Bytes::from(format!("layer {i}"));
        for b in [&config, &layer] {
            let d = Digest::sha256_of(b);
            content.put_bytes(&d, b.clone()).await.expect("bytes");
            m.record_and_link(&repo, &d, b.len() as u64)
                .await
                .expect("record");
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len()}],
        });
        let body = bytes::Bytes::from(serde_json::to_vec(&manifest).expect("json"));
        let summary =
            crate::oci::manifest::decode(crate::oci::media::OCI_MANIFEST, &body).expect("manifest");
        let tags: Vec<crate::oci::Tag> = (i == 0)
            .then(|| "kept".parse().expect("tag"))
            .into_iter()
            .collect();
        let d = Digest::sha256_of(&body);
        m.put_manifest(
            &repo,
            &d,
            body,
            &summary,
            &tags,
            crate::meta::References::Required,
        )
        .await
        .expect("put")
        .expect("accepted");
        layers.push(Digest::sha256_of(&layer));
    }
    let opts = GcOptions {
        grace: Duration::ZERO,
        upload_ttl: Duration::from_secs(3600),
        delete_untagged: true,
        dry_run: true,
    };
    let dry = run(&registry, opts).await.expect("dry run");
    let report = run(
        &registry,
        GcOptions {
            dry_run: false,
            ..opts
        },
    )
    .await
    .expect("gc");
    let dead = (n - 1) as u64;
    for r in [&dry, &report] {
        assert_eq!(
            (r.manifests_deleted, r.links_removed, r.blobs_deleted),
            (dead, dead, dead),
            "{r:?}"
        );
    }
    assert_eq!(m.blob_size(&layers[0]).await.expect("size"), Some(7));
    assert!(content.stat(&layers[0]).await.expect("stat").is_some());
    for d in &layers[1..] {
        assert_eq!(m.blob_size(d).await.expect("size"), None);
        assert_eq!(content.stat(d).await.expect("stat"), None, "{d}");
    }
    let again = run(
        &registry,
        GcOptions {
            dry_run: false,
            ..opts
        },
    )
    .await
    .expect("gc");
    assert_eq!((again.manifests_deleted, again.blobs_deleted), (0, 0));
}

/// An object without a record (an upload placed it and has not recorded it
/// yet) stays while its time is within the grace window, also when the
/// store gives that time to the whole second, up to a second before the
/// write; it goes once the window and that second have passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_object_placed_within_the_grace_window_stays() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = crate::meta::RedbMeta::open(&dir.path().join("berth.redb")).expect("meta");
    let store = dir.path().join("store");
    let content = ContentStore::local(&store, &dir.path().join("uploads")).expect("content");
    let metrics = Arc::new(crate::service::metrics::Metrics::new());
    let registry = LocalRegistry::embedded(meta, content, metrics);
    let (_, content, _) = registry.gc_parts();
    let bytes = bytes::Bytes::from_static(b"placed, not recorded yet");
    let d = Digest::sha256_of(&bytes);
    content.put_bytes(&d, bytes).await.expect("bytes");
    let file = store.join(crate::content::blob_path(&d).as_ref());
    let grace = Duration::from_secs(2);
    let age = |secs: f64| {
        let t = std::time::SystemTime::now() - Duration::from_secs_f64(secs);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(t))
            .expect("set the object's time");
    };
    let opts = GcOptions {
        grace,
        upload_ttl: Duration::from_secs(3600),
        delete_untagged: true,
        dry_run: false,
    };
    // Placed 1.6 s ago, its time rounded down to 2.5 s ago: kept.
    age(2.5);
    let report = run(&registry, opts).await.expect("gc");
    assert_eq!(report.orphans_deleted, 0, "{report:?}");
    assert!(content.stat(&d).await.expect("stat").is_some());
    // Past the window and the rounding: collected.
    age(3.5);
    let report = run(&registry, opts).await.expect("gc");
    assert_eq!(report.orphans_deleted, 1, "{report:?}");
    assert_eq!(content.stat(&d).await.expect("stat"), None);
}
