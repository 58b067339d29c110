//! The conformance suite's part for replication records (see
//! `conformance.rs`): every `MetaStore` backend runs it.

use super::*;

pub(crate) type Store = Arc<dyn MetaStore>;

fn policy(name: &str) -> ReplicationPolicy {
    ReplicationPolicy {
        name: name.into(),
        direction: Direction::Push,
        remote: RemoteRegistry {
            url: "https://dr.example".into(),
            username: "robot".into(),
            password_sealed: Some(SealedSecret {
                nonce: "n".into(),
                ciphertext: "c".into(),
            }),
        },
        repositories: "team-a/**".into(),
        tags: "v*".into(),
        dest_project: String::new(),
        trigger: ReplicationTrigger::Schedule("*/30 * * * *".into()),
        bandwidth: Some(10 << 20),
        bandwidth_text: "10MiB/s".into(),
        deletes: false,
        created_at: 1,
        updated_at: 1,
    }
}

pub(crate) async fn replication_policies(meta: &Store) {
    assert_eq!(meta.replications().await.expect("none yet"), vec![]);
    let (b, a) = (policy("to-dr"), policy("from-hub"));
    meta.replication_put(&b).await.expect("put");
    meta.replication_put(&a).await.expect("put");
    assert_eq!(
        meta.replication_get("to-dr").await.expect("get"),
        Some(b.clone())
    );
    assert_eq!(meta.replication_get("nope").await.expect("get"), None);
    let names: Vec<String> = meta
        .replications()
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["from-hub", "to-dr"], "listed by name");

    let mut changed = b.clone();
    changed.direction = Direction::Pull;
    changed.trigger = ReplicationTrigger::OnPush;
    changed.bandwidth = None;
    changed.updated_at = 2;
    meta.replication_put(&changed).await.expect("replace");
    assert_eq!(
        meta.replication_get("to-dr").await.expect("get"),
        Some(changed)
    );
    assert_eq!(meta.replications().await.expect("list").len(), 2);

    assert!(meta.replication_delete("to-dr").await.expect("delete"));
    assert!(!meta.replication_delete("to-dr").await.expect("again"));
    assert_eq!(meta.replication_get("to-dr").await.expect("get"), None);
    assert!(meta.replication_delete("from-hub").await.expect("delete"));
}
