//! The account store's conformance suite: every `AccountStore` backend must
//! pass it (`suite`, given a fresh, empty store). Each operation's checks
//! run inside its transaction: a refused change writes nothing, racing
//! changes cannot both pass a check only one of them may pass (two deletions
//! of the last two administrators, two creations of one name), and records
//! come back as they were stored.

use std::sync::Arc;

use super::*;
use crate::signature::RequireSignature;

type Store = Arc<dyn AccountStore>;

pub(crate) async fn suite(store: Store) {
    assert!(store.load().await.expect("load").users.is_empty());
    users_and_passwords(&store).await;
    the_last_administrator_stays(&store).await;
    one_name_one_account(&store).await;
    projects_and_their_settings(&store).await;
    members_change_only_as_expected(&store).await;
    robots(&store).await;
    deleting_takes_what_belongs(&store).await;
    audit_log(&store).await;
    proxy_passwords_are_resealed(&store).await;
}

/// `reseal_proxy_passwords` moves what an older key sealed to the current
/// key, leaves what it cannot open as it was, and says why.
async fn proxy_passwords_are_resealed(store: &Store) {
    use crate::sealing::test_sealer::KeyedSealer;
    use crate::sealing::Sealer;
    let place = proxy_password_place("mirror-r");
    let k1 = KeyedSealer {
        current: "k1",
        previous: &[],
    };
    let mut p = project("mirror-r");
    p.proxy = Some(ProxyUpstream {
        url: "https://hub.example".into(),
        username: "u".into(),
        password_sealed: Some(k1.seal(&place, b"pw").expect("seal")),
        capacity: None,
        expire_after_secs: None,
    });
    store.create_project(&p).await.expect("create");
    store
        .create_project(&project("plain-r"))
        .await
        .expect("create");
    let stored = |name: &'static str| async move {
        let records = store.load().await.expect("load");
        records
            .projects
            .into_iter()
            .find(|p| p.name == name)
            .expect("project")
    };
    let sealed = |p: Project| p.proxy.and_then(|u| u.password_sealed).expect("sealed");
    let k2 = Arc::new(KeyedSealer {
        current: "k2",
        previous: &["k1"],
    });
    let count = store
        .reseal_proxy_passwords(k2.clone())
        .await
        .expect("reseal");
    assert_eq!(
        (count.resealed, count.current, count.failed.len()),
        (1, 0, 0)
    );
    let now = sealed(stored("mirror-r").await);
    assert_eq!(now.key_id.as_deref(), Some("k2"));
    assert_eq!(k2.open(&place, &now).expect("open"), b"pw");
    assert!(stored("plain-r").await.proxy.is_none(), "others untouched");
    let again = store.reseal_proxy_passwords(k2).await.expect("reseal");
    assert_eq!((again.resealed, again.current), (0, 1));
    let lost = store
        .reseal_proxy_passwords(Arc::new(KeyedSealer {
            current: "k3",
            previous: &[],
        }))
        .await
        .expect("reseal");
    assert_eq!(lost.failed.len(), 1, "{lost:?}");
    assert!(lost.failed[0].contains("key k2"), "{lost:?}");
    assert_eq!(sealed(stored("mirror-r").await), now, "left as it was");
}

pub(crate) fn user(name: &str, admin: bool) -> User {
    User {
        name: name.into(),
        id: new_instance_id(),
        hash: format!("hash-of-{name}"),
        admin,
        must_reset: true,
        created: 7,
    }
}

pub(crate) fn project(name: &str) -> Project {
    Project {
        name: name.into(),
        public: false,
        created: 8,
        require_signature: None,
        proxy: None,
    }
}

pub(crate) fn robot(project: &str, name: &str) -> Robot {
    Robot {
        name: format!("robot${project}+{name}"),
        id: new_instance_id(),
        project: project.into(),
        hash: "robot-hash".into(),
        push: true,
        expires_at: Some(99),
        revoked: false,
        created: 9,
        system: None,
    }
}

async fn stored_user(s: &Store, name: &str) -> Option<User> {
    let all = s.load().await.expect("load").users;
    all.into_iter().find(|u| u.name == name)
}

async fn role(s: &Store, project: &str, user: &str) -> Option<Role> {
    let all = s.load().await.expect("load").members;
    all.into_iter()
        .find(|(p, u, _)| p == project && u == user)
        .map(|(_, _, r)| r)
}

async fn users_and_passwords(s: &Store) {
    let first = user("root", true);
    assert!(s.create_first_user(&first).await.expect("first"));
    assert!(!s
        .create_first_user(&user("other", true))
        .await
        .expect("not first"));
    assert!(stored_user(s, "other").await.is_none());
    let got = stored_user(s, "root").await.expect("stored");
    assert_eq!(
        (
            got.id.as_str(),
            got.hash.as_str(),
            got.admin,
            got.must_reset,
            got.created
        ),
        (first.id.as_str(), "hash-of-root", true, true, 7)
    );
    let err = s
        .create_user(&user("root", false))
        .await
        .expect_err("taken");
    assert!(matches!(err, AccountError::Conflict(_)), "{err}");
    assert!(stored_user(s, "root").await.expect("kept").admin);

    s.create_user(&user("pat", false)).await.expect("pat");
    let err = s
        .set_password("nobody", None, "h", false)
        .await
        .expect_err("no account");
    assert!(matches!(err, AccountError::NotFound(_)), "{err}");
    // Replacing a hash that is no longer the stored one changes nothing.
    let err = s
        .set_password("pat", Some("stale"), "h2", false)
        .await
        .expect_err("stale");
    assert!(matches!(err, AccountError::Forbidden(_)), "{err}");
    assert_eq!(
        stored_user(s, "pat").await.expect("pat").hash,
        "hash-of-pat"
    );
    let u = s
        .set_password("pat", Some("hash-of-pat"), "h2", false)
        .await
        .expect("replaced");
    assert_eq!((u.hash.as_str(), u.must_reset), ("h2", false));
    let u = s
        .set_password("pat", None, "h3", true)
        .await
        .expect("set by an administrator");
    assert_eq!((u.hash.as_str(), u.must_reset), ("h3", true));
    assert_eq!(stored_user(s, "pat").await.expect("pat").hash, "h3");
}

/// Two administrators deleted at once: one deletion wins, one is refused.
async fn the_last_administrator_stays(s: &Store) {
    s.create_user(&user("boss", true)).await.expect("boss");
    let (a, b) = tokio::join!(s.delete_user("root"), s.delete_user("boss"));
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let refused = a.err().or(b.err()).expect("one refused");
    assert!(matches!(refused, AccountError::Conflict(_)), "{refused}");
    let admins: Vec<_> = s.load().await.expect("load").users;
    assert_eq!(admins.iter().filter(|u| u.admin).count(), 1);
    let err = s.delete_user("nobody").await.expect_err("no account");
    assert!(matches!(err, AccountError::NotFound(_)), "{err}");
}

/// Eight creations of one name at once: one account.
async fn one_name_one_account(s: &Store) {
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.create_user(&user("dup", false)).await })
        })
        .collect();
    let mut created = 0;
    for t in attempts {
        match t.await.expect("task") {
            Ok(()) => created += 1,
            Err(e) => assert!(matches!(e, AccountError::Conflict(_)), "{e}"),
        }
    }
    assert_eq!(created, 1);
    let all = s.load().await.expect("load").users;
    assert_eq!(all.iter().filter(|u| u.name == "dup").count(), 1);
}

async fn projects_and_their_settings(s: &Store) {
    s.create_project(&project("team")).await.expect("team");
    let err = s.create_project(&project("team")).await.expect_err("taken");
    assert!(matches!(err, AccountError::Conflict(_)), "{err}");
    let policy = RequireSignature {
        public_keys: vec!["-----BEGIN PUBLIC KEY-----\nkey\n-----END PUBLIC KEY-----\n".into()],
    };
    let change = ProjectChange {
        public: None,
        require_signature: Some(Some(policy.clone())),
    };
    let p = s.update_project("team", &change).await.expect("policy");
    assert_eq!(
        (p.public, p.require_signature.as_ref()),
        (false, Some(&policy))
    );
    let public = ProjectChange {
        public: Some(true),
        require_signature: None,
    };
    let p = s.update_project("team", &public).await.expect("public");
    assert_eq!(
        (p.public, p.require_signature.as_ref()),
        (true, Some(&policy))
    );
    let stored = s.load().await.expect("load").projects;
    let stored = stored.iter().find(|p| p.name == "team").expect("team");
    assert_eq!((stored.public, stored.created), (true, 8));
    assert_eq!(stored.require_signature.as_ref(), Some(&policy));
    let clear = ProjectChange {
        public: None,
        require_signature: Some(None),
    };
    let p = s.update_project("team", &clear).await.expect("cleared");
    assert!(p.require_signature.is_none() && p.public);
    let err = s
        .update_project("nothing", &clear)
        .await
        .expect_err("no project");
    assert!(matches!(err, AccountError::NotFound(_)), "{err}");
}

async fn members_change_only_as_expected(s: &Store) {
    for (p, u) in [("nothing", "pat"), ("team", "nobody")] {
        let err = s
            .set_member(p, u, Role::Guest, IfRole::Any)
            .await
            .expect_err("must exist");
        assert!(matches!(err, AccountError::NotFound(_)), "{err}");
    }
    let before = s
        .set_member("team", "pat", Role::Developer, IfRole::Is(None))
        .await
        .expect("joined");
    assert_eq!(before, None);
    // Decided on "not a member", but pat is a developer now: refused.
    let err = s
        .set_member("team", "pat", Role::ProjectAdmin, IfRole::Is(None))
        .await
        .expect_err("changed meanwhile");
    assert!(matches!(err, AccountError::Conflict(_)), "{err}");
    assert_eq!(role(s, "team", "pat").await, Some(Role::Developer));
    let before = s
        .set_member(
            "team",
            "pat",
            Role::Maintainer,
            IfRole::Is(Some(Role::Developer)),
        )
        .await
        .expect("raised");
    assert_eq!(before, Some(Role::Developer));
    let err = s
        .remove_member("team", "pat", IfRole::Is(Some(Role::Guest)))
        .await
        .expect_err("not a guest");
    assert!(matches!(err, AccountError::Conflict(_)), "{err}");
    assert_eq!(role(s, "team", "pat").await, Some(Role::Maintainer));
    let had = s
        .remove_member("team", "pat", IfRole::Is(Some(Role::Maintainer)))
        .await
        .expect("removed");
    assert_eq!(had, Role::Maintainer);
    assert_eq!(role(s, "team", "pat").await, None);
    let err = s
        .remove_member("team", "pat", IfRole::Any)
        .await
        .expect_err("not a member");
    assert!(matches!(err, AccountError::NotFound(_)), "{err}");
}

async fn robots(s: &Store) {
    let err = s
        .create_robot(&robot("nothing", "ci"))
        .await
        .expect_err("no project");
    assert!(matches!(err, AccountError::NotFound(_)), "{err}");
    let first = robot("team", "ci");
    s.create_robot(&first).await.expect("robot");
    let err = s
        .create_robot(&robot("team", "ci"))
        .await
        .expect_err("exists");
    assert!(matches!(err, AccountError::Conflict(_)), "{err}");
    let err = s
        .revoke_robot("other", &first.name)
        .await
        .expect_err("another project's");
    assert!(matches!(err, AccountError::NotFound(_)), "{err}");
    let r = s.revoke_robot("team", &first.name).await.expect("revoked");
    assert!(r.revoked && r.id == first.id);
    // A revoked robot's name can be given to a new one.
    let second = robot("team", "ci");
    s.create_robot(&second).await.expect("replaced");
    let all = s.load().await.expect("load").robots;
    let got: Vec<_> = all.iter().filter(|r| r.name == first.name).collect();
    assert_eq!(got.len(), 1);
    let r = got[0];
    assert_eq!(
        (
            r.id.as_str(),
            r.hash.as_str(),
            r.push,
            r.expires_at,
            r.revoked,
            r.created
        ),
        (second.id.as_str(), "robot-hash", true, Some(99), false, 9)
    );
}

async fn deleting_takes_what_belongs(s: &Store) {
    s.create_project(&project("gone")).await.expect("project");
    s.create_user(&user("sam", false)).await.expect("sam");
    for p in ["team", "gone"] {
        s.set_member(p, "sam", Role::Guest, IfRole::Any)
            .await
            .expect("member");
        s.create_robot(&robot(p, "bot")).await.expect("robot");
    }
    s.delete_project("gone").await.expect("deleted");
    let err = s.delete_project("gone").await.expect_err("gone");
    assert!(matches!(err, AccountError::NotFound(_)), "{err}");
    let all = s.load().await.expect("load");
    assert!(all.projects.iter().all(|p| p.name != "gone"));
    assert!(all.members.iter().all(|(p, _, _)| p != "gone"));
    assert!(all.robots.iter().all(|r| r.project != "gone"));
    assert_eq!(role(s, "team", "sam").await, Some(Role::Guest));
    s.delete_user("sam").await.expect("deleted");
    let all = s.load().await.expect("load");
    assert!(all.members.iter().all(|(_, u, _)| u != "sam"));
    assert!(all.robots.iter().any(|r| r.name == "robot$team+bot"));
}

async fn audit_log(s: &Store) {
    let mut ids = Vec::new();
    for (i, (actor, action)) in [("ann", "a"), ("bob", "b"), ("ann", "b")]
        .iter()
        .enumerate()
    {
        let e = AuditEvent {
            id: 0,
            time: 100 + i as u64,
            actor: actor.to_string(),
            client: Some("127.0.0.1".into()),
            action: action.to_string(),
            project: (i > 0).then(|| "team".to_string()),
            target: format!("t{i}"),
            outcome: if i == 1 { "refused" } else { "ok" }.into(),
            detail: (i == 1).then(|| "not a member".to_string()),
        };
        ids.push(s.append_audit(&e).await.expect("append"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let all = s.audit_events(&AuditQuery::default()).await.expect("query");
    let targets: Vec<_> = all.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["t2", "t1", "t0"], "newest first");
    assert_eq!(all[0].id, ids[2]);
    assert_eq!(
        all[1].detail.as_deref(),
        Some("not a member"),
        "kept as written"
    );
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery::default();
        f(&mut q);
        q
    };
    let cases: [(AuditQuery, &[&str]); 6] = [
        (q(|q| q.outcome = Some("refused".into())), &["t1"]),
        (q(|q| q.actor = Some("ann".into())), &["t2", "t0"]),
        (q(|q| q.action = Some("b".into())), &["t2", "t1"]),
        (q(|q| q.project = Some("team".into())), &["t2", "t1"]),
        (
            q(|q| {
                q.since = Some(101);
                q.until = Some(101)
            }),
            &["t1"],
        ),
        (q(|q| q.limit = Some(1)), &["t2"]),
    ];
    for (query, want) in cases {
        let got = s.audit_events(&query).await.expect("query");
        let got: Vec<_> = got.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(got, want, "{query:?}");
    }
    // The whole log, oldest first, page by page (what a copy reads).
    let page = |after, limit| s.audit_page(after, limit);
    let first = page(0, 2).await.expect("page");
    let targets: Vec<_> = first.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["t0", "t1"], "oldest first, at most the limit");
    assert_eq!(first[1].id, ids[1]);
    let rest = page(first[1].id, 2).await.expect("page");
    let targets: Vec<_> = rest.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["t2"], "after the last id seen");
    assert!(page(ids[2], 10).await.expect("page").is_empty());
    // Several at once (the audit writer's batches): in order, each its id.
    let batch: Vec<AuditEvent> = ["t3", "t4"]
        .iter()
        .map(|t| AuditEvent {
            target: t.to_string(),
            ..all[0].clone()
        })
        .collect();
    s.append_audits(&batch).await.expect("append several");
    let more = page(ids[2], 10).await.expect("page");
    let targets: Vec<_> = more.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["t3", "t4"], "appended in order");
    assert!(more[0].id > ids[2] && more[1].id > more[0].id, "{more:?}");
}
