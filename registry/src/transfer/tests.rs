//! A copy between two embedded stores: everything the recount counts
//! arrives, tags resolve to the same digests, credentials are the same
//! hashes, and a target that holds anything is refused.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::auth::policy::Role;
use crate::auth::store::conformance::{project, robot, user};
use crate::auth::store::AuditEvent;
use crate::meta::{RedbMeta, SealedSecret, Webhook};
use crate::oci::{manifest, media, Digest, ManifestSummary};

fn stores(dir: &std::path::Path) -> Stores {
    let meta = RedbMeta::open(&dir.join("berth.redb")).expect("open");
    Stores {
        accounts: Arc::new(meta.accounts().expect("accounts")),
        cache: Arc::new(meta.clone()),
        meta: Arc::new(meta),
    }
}

fn image(layer: &[u8]) -> (Digest, Bytes, ManifestSummary) {
    let d = |b: &[u8]| serde_json::json!({"mediaType": "application/octet-stream", "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
    let v = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": d(b"{}"), "layers": [d(layer)],
    });
    let bytes = Bytes::from(serde_json::to_vec(&v).expect("json"));
    let summary = manifest::decode(media::OCI_MANIFEST, &bytes).expect("manifest");
    (Digest::sha256_of(&bytes), bytes, summary)
}

async fn fill(s: &Stores) {
    let a = &s.accounts;
    a.create_user(&user("ann", false)).await.expect("user");
    a.create_project(&project("team")).await.expect("project");
    a.set_member("team", "ann", Role::Developer, IfRole::Any)
        .await
        .expect("member");
    a.create_robot(&robot("team", "ci")).await.expect("robot");
    for i in 0..3 {
        let e = AuditEvent {
            id: 0,
            time: 100 + i,
            actor: "ann".into(),
            client: None,
            action: "push".into(),
            project: Some("team".into()),
            target: format!("t{i}"),
            outcome: "ok".into(),
            detail: None,
        };
        a.append_audit(&e).await.expect("audit");
    }
    let repo: RepoName = "team/app".parse().expect("repo");
    for layer in [b"one".as_slice(), b"two"] {
        for b in [b"{}".as_slice(), layer] {
            s.meta
                .record_and_link(&repo, &Digest::sha256_of(b), b.len() as u64)
                .await
                .expect("blob");
        }
        let (digest, bytes, summary) = image(layer);
        let tag: Tag = String::from_utf8_lossy(layer).parse().expect("tag");
        s.meta
            .put_manifest(
                &repo,
                &digest,
                bytes,
                &summary,
                &[tag],
                References::Required,
            )
            .await
            .expect("put")
            .expect("accepted");
    }
    s.meta.immutable_rule_add("team", "v*").await.expect("rule");
    s.meta
        .webhook_put(&Webhook {
            id: "w1".into(),
            project: "team".into(),
            url: "https://hooks.example/w1".into(),
            events: vec!["push".into()],
            enabled: true,
            secret: SealedSecret {
                nonce: "n".into(),
                ciphertext: "c".into(),
                key_id: None,
            },
            created_at: 1,
            previous: None,
        })
        .await
        .expect("webhook");
    s.cache
        .set_tag_fetched(crate::meta::TagClockOwner::Proxy, "hub/nginx", "1", 77)
        .await
        .expect("clock");
    s.cache
        .pin("team/app:one", &["sha256:aa".into()])
        .await
        .expect("pin");
}

#[tokio::test]
async fn a_copy_carries_every_kind_and_lands_only_in_an_empty_target() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (from, to) = (stores(a.path()), stores(b.path()));
    fill(&from).await;
    ensure_empty(&to, "the target").await.expect("empty");
    copy(&from, &to, &|_| {}).await.expect("copy");
    let (want, got) = (
        count(&from).await.expect("count"),
        count(&to).await.expect("count"),
    );
    assert_eq!(got, want);
    for (kind, n) in [
        ("accounts", 1),
        ("robots", 1),
        ("manifests", 2),
        ("tags", 2),
        ("blobs (linked)", 3),
        ("blob links", 3),
        ("audit events", 3),
        ("webhooks", 1),
        ("immutable-tag rules", 1),
        ("cache pins", 1),
    ] {
        assert_eq!(got.get(kind), Some(&n), "{kind}: {got:?}");
    }
    let repo: RepoName = "team/app".parse().expect("repo");
    let tag: Tag = "two".parse().expect("tag");
    assert_eq!(
        to.meta.resolve_tag(&repo, &tag).await.expect("tag"),
        from.meta.resolve_tag(&repo, &tag).await.expect("tag")
    );
    let users = to.accounts.load().await.expect("load").users;
    assert_eq!(users[0].hash, "hash-of-ann", "the same password hash");
    let events = to.accounts.audit_page(0, 10).await.expect("audit");
    let targets: Vec<_> = events.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["t0", "t1", "t2"], "in their order");
    let refused = ensure_empty(&to, "the target")
        .await
        .expect_err("not empty");
    let msg = refused.to_string();
    assert!(
        msg.contains("the target is not empty") && msg.contains("1 accounts"),
        "{msg}"
    );
}
