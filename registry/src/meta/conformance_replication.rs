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
                key_id: None,
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

/// `reseal` moves webhook secrets and replication passwords an older key
/// sealed to the current key, and leaves what it cannot open as it was.
pub(crate) async fn sealed_values_are_resealed(meta: &Store) {
    use crate::sealing::test_sealer::KeyedSealer;
    use crate::sealing::Sealer;
    for w in meta.webhooks(None).await.expect("webhooks") {
        meta.webhook_delete(&w.id).await.expect("delete");
    }
    for p in meta.replications().await.expect("policies") {
        meta.replication_delete(&p.name).await.expect("delete");
    }
    let k1 = KeyedSealer {
        current: "k1",
        previous: &[],
    };
    let hook_place = webhook_secret_place("h1");
    let hook = Webhook {
        id: "h1".into(),
        project: "p".into(),
        url: "https://hooks.example/h1".into(),
        events: vec!["push".into()],
        enabled: true,
        secret: k1.seal(&hook_place, b"hook-secret").expect("seal"),
        created_at: 1,
        // A rotation's overlap: the previous secret is resealed too.
        previous: Some(crate::meta::PreviousSecret {
            secret: k1
                .seal(&webhook_previous_secret_place("h1"), b"old-secret")
                .expect("seal"),
            until: 99,
        }),
    };
    meta.webhook_put(&hook).await.expect("put");
    let pw_place = crate::replication::password_place("to-dr");
    let mut p = policy("to-dr");
    p.remote.password_sealed = Some(k1.seal(&pw_place, b"pw").expect("seal"));
    meta.replication_put(&p).await.expect("put");
    let mut anonymous = policy("anon");
    anonymous.remote.password_sealed = None;
    meta.replication_put(&anonymous).await.expect("put");

    let k2 = Arc::new(KeyedSealer {
        current: "k2",
        previous: &["k1"],
    });
    let counts = |r: &crate::sealing::ResealReport| -> Vec<(u64, u64, usize)> {
        [WEBHOOK_SECRETS, REPLICATION_PASSWORDS]
            .iter()
            .map(|k| (r[*k].resealed, r[*k].current, r[*k].failed.len()))
            .collect()
    };
    let report = meta.reseal(k2.clone()).await.expect("reseal");
    assert_eq!(counts(&report), vec![(2, 0, 0), (1, 0, 0)]);
    let w = meta.webhook_get("h1").await.expect("get").expect("h1");
    assert_eq!(
        k2.open(&hook_place, &w.secret).expect("open"),
        b"hook-secret"
    );
    assert_eq!(w.secret.key_id.as_deref(), Some("k2"));
    let previous = w.previous.clone().expect("the previous secret stays");
    assert_eq!(previous.until, 99);
    assert_eq!(previous.secret.key_id.as_deref(), Some("k2"));
    assert_eq!(
        k2.open(&webhook_previous_secret_place("h1"), &previous.secret)
            .expect("open"),
        b"old-secret"
    );
    let stored = meta
        .replication_get("to-dr")
        .await
        .expect("get")
        .expect("to-dr");
    let sealed = stored.remote.password_sealed.clone().expect("sealed");
    assert_eq!(k2.open(&pw_place, &sealed).expect("open"), b"pw");
    assert_eq!(
        meta.replication_get("anon").await.expect("get"),
        Some(anonymous),
        "nothing to reseal"
    );
    let again = meta.reseal(k2).await.expect("reseal");
    assert_eq!(counts(&again), vec![(0, 2, 0), (0, 1, 0)]);

    let lost = meta
        .reseal(Arc::new(KeyedSealer {
            current: "k3",
            previous: &[],
        }))
        .await
        .expect("reseal");
    assert_eq!(counts(&lost), vec![(0, 0, 2), (0, 0, 1)]);
    assert_eq!(
        meta.webhook_get("h1").await.expect("get"),
        Some(w),
        "left as it was"
    );
}
