//! `Accounts` over the embedded store: logins, the snapshot, announcements.
//! What every store must do is in `auth/store/conformance.rs`.

use std::path::Path;

use super::*;
use crate::meta::RedbMeta;

fn store(dir: &Path) -> Arc<dyn AccountStore> {
    let meta = RedbMeta::open(&dir.join("a.redb")).expect("db");
    Arc::new(meta.accounts().expect("accounts"))
}

async fn open(dir: &Path, cost: u32) -> Accounts {
    Accounts::open(store(dir), cost).await.expect("open")
}

#[tokio::test]
async fn losing_access_to_a_project_is_announced() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = open(dir.path(), 4).await;
    let mut removed = a.access_removed();
    a.create_user("ann", "initial123", false)
        .await
        .expect("user");
    a.create_project("team", false).await.expect("project");
    a.set_member("team", "ann", Role::Maintainer, IfRole::Any)
        .await
        .expect("member");
    assert!(removed.try_recv().is_err(), "joining takes nothing away");
    a.set_member("team", "ann", Role::Developer, IfRole::Any)
        .await
        .expect("lowered");
    assert_eq!(removed.try_recv().ok().as_deref(), Some("team"));
    a.remove_member("team", "ann", IfRole::Any)
        .await
        .expect("removed");
    assert_eq!(removed.try_recv().ok().as_deref(), Some("team"));
    a.delete_project("team").await.expect("deleted");
    assert_eq!(removed.try_recv().ok().as_deref(), Some("team"));
}

#[tokio::test]
async fn unknown_names_cost_the_same_as_known_ones() {
    for cost in [4, 5] {
        let dir = tempfile::tempdir().expect("tmp");
        let a = open(dir.path(), cost).await;
        a.create_user(&format!("u{cost}"), "initial123", false)
            .await
            .expect("user");
        let real = a.read().users[&format!("u{cost}")].hash.clone();
        let prefix = |h: &str| h.get(..7).map(str::to_string);
        assert_eq!(prefix(a.dummy_hash()), prefix(&real), "cost {cost}");
        assert!(matches!(
            a.verify("nobody", "whatever1"),
            Err(LoginError::BadCredentials)
        ));
        let before = a.checks.get();
        let err = a
            .change_password("nobody", "whatever1", "newpass123")
            .await
            .expect_err("no such account");
        assert!(matches!(err, AccountError::Forbidden(_)), "{err}");
        assert_eq!(a.checks.get(), before + 1, "an unknown name is checked too");
    }
}

#[tokio::test]
async fn accounts_round_trip_through_the_store() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let a = open(dir.path(), 4).await;
        assert!(a
            .bootstrap_admin(dir.path(), Some("admin12345"))
            .await
            .expect("boot")
            .is_none());
        a.create_user("alice", "initial123", false)
            .await
            .expect("user");
        assert!(matches!(
            a.verify("alice", "initial123"),
            Err(LoginError::MustReset(_))
        ));
        a.change_password("alice", "initial123", "changed123")
            .await
            .expect("reset");
        assert!(a.verify("alice", "changed123").is_ok());
        assert!(matches!(
            a.verify("alice", "wrong1234"),
            Err(LoginError::BadCredentials)
        ));
        a.create_project("team-a", false).await.expect("project");
        a.set_member("team-a", "alice", Role::Developer, IfRole::Is(None))
            .await
            .expect("member");
        let (robot, secret) = a
            .create_robot("team-a", "ci", true, None)
            .await
            .expect("robot");
        assert_eq!(robot.name, "robot$team-a+ci");
        assert!(a.verify(&robot.name, &secret).expect("robot login").robot);
    }
    let a = open(dir.path(), 4).await;
    assert_eq!(a.role("team-a", "alice"), Some(Role::Developer));
    assert_eq!(a.project_public("team-a"), Some(false));
    assert!(a.verify("admin", "admin12345").expect("admin").admin);
    // A second start creates no second administrator.
    assert!(a
        .bootstrap_admin(dir.path(), None)
        .await
        .expect("boot")
        .is_none());
    assert_eq!(a.users().len(), 2);
    a.revoke_robot("team-a", "ci").await.expect("revoke");
    assert_eq!(a.robots("team-a").len(), 1);
    assert!(a.robots("team-a")[0].revoked);
}

#[tokio::test]
async fn a_name_taken_again_is_another_account() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = open(dir.path(), 4).await;
    a.bootstrap_admin(dir.path(), Some("admin12345"))
        .await
        .expect("boot");
    a.create_user("boss", "initial123", true)
        .await
        .expect("boss");
    a.change_password("boss", "initial123", "bosspass1")
        .await
        .expect("reset");
    let old = a.verify("boss", "bosspass1").expect("login");
    assert!(old.admin);
    assert_eq!(a.who(&old, "p"), Who::Admin);
    a.delete_user("boss").await.expect("delete");
    a.create_user("boss", "initial123", false)
        .await
        .expect("boss again");
    a.change_password("boss", "initial123", "bosspass2")
        .await
        .expect("reset");
    // The old subject (a token, a cached login) is not the new boss.
    assert!(a.current(&old).is_none());
    assert_eq!(a.who(&old, "p"), Who::Anonymous);
    let new = a.verify("boss", "bosspass2").expect("login");
    assert_ne!(new.account_id, old.account_id);
    assert!(!a.current(&new).expect("current").admin);
    // Whatever a subject claims, the admin flag is the account's.
    let claimed = Subject { admin: true, ..new };
    assert!(!a.current(&claimed).expect("current").admin);
    assert_eq!(a.who(&claimed, "p"), Who::Member(None));
}

#[tokio::test]
async fn a_system_robot_reads_the_projects_it_was_given_and_no_namesake() {
    let dir = tempfile::tempdir().expect("tmp");
    let st = store(dir.path());
    let project = |name: &str, created: u64| Project {
        name: name.into(),
        public: false,
        created,
        require_signature: None,
        proxy: None,
    };
    // "old" existed when the robot was made; "again" was deleted and
    // created anew after it; "other" it never named.
    for (name, created) in [("old", 10), ("again", 100), ("other", 10)] {
        st.create_project(&project(name, created))
            .await
            .expect("project");
    }
    let robot = |name: &str, covered: RobotProjects| Robot {
        name: format!("{ROBOT_PREFIX}{name}"),
        id: name.into(),
        project: String::new(),
        hash: "h".into(),
        push: false,
        expires_at: None,
        revoked: false,
        created: 50,
        system: Some(covered),
    };
    st.create_robot(&robot(
        "two",
        RobotProjects::Only(vec!["old".into(), "again".into()]),
    ))
    .await
    .expect("robot");
    st.create_robot(&robot("every", RobotProjects::All))
        .await
        .expect("robot");
    let a = Accounts::open(st, 4).await.expect("open");
    let subject = |name: &str| Subject {
        name: Some(format!("{ROBOT_PREFIX}{name}")),
        account_id: Some(name.into()),
        admin: false,
        robot: true,
        token_grants: None,
    };
    let reads =
        |who: Who, p: &str| matches!(who, Who::Robot { project, push: false } if project == p);
    assert!(reads(a.who(&subject("two"), "old"), "old"));
    assert!(!reads(a.who(&subject("two"), "again"), "again"));
    assert!(!reads(a.who(&subject("two"), "other"), "other"));
    for p in ["old", "again", "other"] {
        assert!(reads(a.who(&subject("every"), p), p), "{p}");
    }
    assert!(!reads(a.who(&subject("every"), "missing"), "missing"));
}
