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

fn execution(policy: &str) -> Execution {
    Execution {
        policy: policy.into(),
        id: 0,
        trigger: "manual".into(),
        status: ExecutionStatus::Running,
        started_at: 5,
        finished_at: None,
        images: vec![ImageProgress {
            source: "team-a/app:v1".into(),
            dest: "dr/app:v1".into(),
            digest: "sha256:00".into(),
            status: ItemStatus::Pending,
            error: None,
            delete: false,
        }],
        blobs: vec![BlobProgress {
            digest: "sha256:11".into(),
            size: 100,
            done: 40,
            status: BlobStatus::Partial,
            repo: "dr/app".into(),
            session: Some("http://dr.example/v2/dr/app/blobs/uploads/u1".into()),
            retries: 1,
            error: None,
        }],
        error: None,
    }
}

pub(crate) async fn replication_executions(meta: &Store) {
    meta.replication_put(&policy("runs")).await.expect("policy");
    meta.replication_put(&policy("other"))
        .await
        .expect("policy");
    let first = meta
        .execution_create(&execution("runs"))
        .await
        .expect("create");
    let second = meta
        .execution_create(&execution("runs"))
        .await
        .expect("create");
    assert_eq!((first, second), (1, 2), "ids count per policy from 1");
    assert_eq!(
        meta.execution_create(&execution("other"))
            .await
            .expect("create"),
        1
    );

    let mut e = meta
        .execution_get("runs", 1)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(e.id, 1);
    assert_eq!(e.blobs[0].done, 40);
    e.blobs[0].done = 100;
    e.status = ExecutionStatus::Succeeded;
    e.finished_at = Some(9);
    meta.execution_put(&e).await.expect("put");
    assert_eq!(meta.execution_get("runs", 1).await.expect("get"), Some(e));
    assert_eq!(meta.execution_get("runs", 3).await.expect("get"), None);

    let ids = |v: Vec<Execution>| v.into_iter().map(|e| (e.policy, e.id)).collect::<Vec<_>>();
    assert_eq!(
        ids(meta.executions(Some("runs"), 10).await.expect("list")),
        vec![("runs".to_string(), 2), ("runs".to_string(), 1)],
        "newest first"
    );
    assert_eq!(
        meta.executions(Some("runs"), 1).await.expect("list").len(),
        1
    );
    assert_eq!(meta.executions(None, 10).await.expect("all").len(), 3);

    // A policy's executions go with it; ids start again for a new one.
    assert!(meta.replication_delete("runs").await.expect("delete"));
    assert!(meta
        .executions(Some("runs"), 10)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(meta.execution_get("runs", 2).await.expect("get"), None);
    meta.replication_put(&policy("runs")).await.expect("policy");
    assert_eq!(
        meta.execution_create(&execution("runs"))
            .await
            .expect("create"),
        1
    );
    assert!(meta.replication_delete("runs").await.expect("delete"));
    assert!(meta.replication_delete("other").await.expect("delete"));
}
