//! The "done means" flow: the operator's commands and alice's and bob's podman
//! against one registry, in named steps.

use super::*;

/// The "done means": an operator sets up a private project and an account
/// with the CLI; the user resets the password, logs in with podman and pushes;
/// another account cannot even list the repository; a public project is open to all.
#[test]
fn operator_flow_with_the_cli_and_podman() {
    if !require_tools(&["podman", "skopeo"]) {
        return;
    }
    let reg = berth::registry(berth_bin!());
    let flow = Flow {
        base: reg.url(),
        host: reg.host(),
        http: Client::new(),
        podman: Podman::new(),
        bobs: Podman::new(),
    };
    the_operator_creates_a_private_project_and_two_accounts(&flow);
    initial_passwords_only_serve_to_choose_a_new_one(&flow);
    let (name, digest) = alice_logs_in_with_podman_and_pushes(&flow);
    bob_can_neither_list_nor_pull_the_private_project(&flow, &name);
    a_public_project_is_open_to_all_and_only_members_push(&flow, &name);
    a_maintainer_creates_a_pull_robot_and_revokes_it(&flow, &digest);
    visibility_is_for_project_admins(&flow);
    accounts_are_listed_reset_and_deleted(&flow);
    refusals_carry_the_servers_reason(&flow);
    a_project_with_repositories_is_deleted_only_with_force(&flow);
}

/// The registry the operator flow runs against, alice's podman and bob's.
struct Flow {
    base: String,
    host: String,
    http: Client,
    podman: Podman,
    bobs: Podman,
}

const ROOT: Option<(&str, &str)> = Some(("admin", ADMIN_PASSWORD));

const ALICE: Option<(&str, &str)> = Some(("alice", "alicepw2024"));

const BOB: Option<(&str, &str)> = Some(("bob", "bobpw2024x"));

/// A private project (as the --help example writes it), two accounts.
fn the_operator_creates_a_private_project_and_two_accounts(f: &Flow) {
    let base = &f.base;
    let out = cli_ok(
        base,
        ROOT,
        &["project", "create", "team-a", "--private"],
        &[],
    );
    assert!(out.contains("created private project team-a"), "{out}");
    let out = cli_ok(
        base,
        ROOT,
        &["user", "add", "alice"],
        &[("BERTH_NEW_PASSWORD", "welcome123")],
    );
    assert!(out.contains("berth passwd alice"), "{out}");
    cli_ok(
        base,
        ROOT,
        &["user", "add", "bob", "--initial-password", "welcome456"],
        &[],
    );
    let out = cli_ok(
        base,
        ROOT,
        &[
            "project",
            "add-member",
            "team-a",
            "alice",
            "--role",
            "developer",
        ],
        &[],
    );
    assert!(out.contains("alice is now developer in team-a"), "{out}");
}

/// Alice cannot use the initial password until she resets it.
fn initial_passwords_only_serve_to_choose_a_new_one(f: &Flow) {
    let base = &f.base;
    f.podman
        .try_login(&f.host, &Creds::new("alice", "welcome123"))
        .expect_err("initial password refused");
    let out = cli_ok(
        base,
        None,
        &["passwd", "--user", "alice"],
        &[
            ("BERTH_OLD_PASSWORD", "welcome123"),
            ("BERTH_NEW_PASSWORD", "alicepw2024"),
        ],
    );
    assert!(out.contains("password of alice changed"), "{out}");
    cli_ok(
        base,
        None,
        &["passwd", "bob"],
        &[
            ("BERTH_OLD_PASSWORD", "welcome456"),
            ("BERTH_NEW_PASSWORD", "bobpw2024x"),
        ],
    );
}

/// Returns the pushed image's name and digest.
fn alice_logs_in_with_podman_and_pushes(f: &Flow) -> (String, String) {
    f.podman.login(&f.host, &Creds::new("alice", "alicepw2024"));
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = layout_image(&tmp, "team-a");
    let name = format!("{}/team-a/app:v1", f.host);
    f.podman.pull_layout(&layout, "v1", &name);
    let digest = f.podman.push(&name, None);
    (name, digest)
}

/// She sees her repository; bob cannot even list it, nor does the admin API
/// show him the project.
fn bob_can_neither_list_nor_pull_the_private_project(f: &Flow, name: &str) {
    let (base, host, http) = (&f.base, &f.host, &f.http);
    assert_eq!(catalog(http, base, ALICE), ["team-a/app"]);
    assert!(catalog(http, base, BOB).is_empty());
    let (s, v) = get(http, &format!("{base}/v2/team-a/app/tags/list"), BOB);
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN");
    f.bobs.login(host, &Creds::new("bob", "bobpw2024x"));
    f.bobs.try_pull(name).expect_err("bob cannot pull team-a");
    Skopeo::new()
        .try_inspect_raw(
            &format!("docker://{host}/team-a/app:v1"),
            Some(&Creds::new("bob", "bobpw2024x")),
        )
        .expect_err("bob cannot inspect team-a");
    let out = cli_ok(base, BOB, &["project", "list"], &[]);
    assert!(!out.contains("team-a"), "{out}");
    let err = cli_err(base, BOB, &["project", "show", "team-a"]);
    assert!(err.contains("404"), "{err}");
    let out = cli_ok(base, ALICE, &["project", "show", "team-a"], &[]);
    let shown: Value = serde_json::from_str(&out).expect("project show JSON");
    assert_eq!(shown["repositories"], json!(["team-a/app"]));
    assert_eq!(shown["public"], false);
    assert_eq!(
        shown["members"],
        json!([{"user": "alice", "role": "developer"}])
    );
}

/// Anyone pulls from a public project without logging in; only members push;
/// membership ends with remove-member; made private again, it disappears for
/// strangers.
fn a_public_project_is_open_to_all_and_only_members_push(f: &Flow, name: &str) {
    let (base, host, http) = (&f.base, &f.host, &f.http);
    cli_ok(
        base,
        ROOT,
        &["project", "create", "shared", "--public"],
        &[],
    );
    cli_ok(
        base,
        ROOT,
        &["project", "add-member", "shared", "alice"],
        &[],
    );
    let shared = format!("{host}/shared/tool:v1");
    f.podman.tag(name, &shared);
    let shared_digest = f.podman.push(&shared, None);
    let anyone = Podman::new();
    anyone.pull(&shared);
    assert_eq!(anyone.image_digest(&shared), shared_digest);
    assert_eq!(catalog(http, base, None), ["shared/tool"]);
    assert_eq!(catalog(http, base, BOB), ["shared/tool"]);
    // And only members push there.
    f.bobs.pull(&shared);
    f.bobs.tag(&shared, &format!("{host}/shared/tool:bob"));
    f.bobs
        .try_push(&format!("{host}/shared/tool:bob"), None)
        .expect_err("bob is not a member of shared");
    // Membership ends with remove-member (as admin: --user is not the member argument).
    let out = cli_ok(
        base,
        ROOT,
        &["project", "remove-member", "shared", "alice"],
        &[],
    );
    assert!(out.contains("removed alice from shared"), "{out}");
    let members: Value =
        serde_json::from_str(&cli_ok(base, ROOT, &["project", "show", "shared"], &[]))
            .expect("project show JSON");
    assert_eq!(members["members"], json!([]));
    let out = cli_ok(base, ROOT, &["project", "set", "shared", "--private"], &[]);
    assert!(out.contains("shared is now private"), "{out}");
    Podman::new()
        .try_pull(&shared)
        .expect_err("anonymous pull of a now-private project");
}

/// A pull robot for a CI job: maintainers create them, developers cannot; it
/// pulls `digest` until revoked.
fn a_maintainer_creates_a_pull_robot_and_revokes_it(f: &Flow, digest: &str) {
    let (base, host) = (&f.base, &f.host);
    let err = cli_err(base, ROOT, &["robot", "create", "nope", "ci"]);
    assert!(err.contains("404") && err.contains("nope"), "{err}");
    let err = cli_err(base, ALICE, &["robot", "create", "team-a", "ci"]);
    assert!(
        err.contains("403") && err.contains("not a maintainer"),
        "{err}"
    );
    cli_ok(
        base,
        ROOT,
        &[
            "project",
            "add-member",
            "team-a",
            "alice",
            "--role",
            "maintainer",
        ],
        &[],
    );
    let out = cli_ok(
        base,
        ALICE,
        &["robot", "create", "team-a", "ci", "--access", "pull"],
        &[],
    );
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{k} in {out}"))
    };
    let (robot, secret) = (field("name:"), field("secret:"));
    assert_eq!(robot, "robot$team-a+ci");
    let skopeo = Skopeo::new();
    let robot_creds = Creds::new(&robot, &secret);
    assert_eq!(
        skopeo.manifest_digest(
            &format!("docker://{host}/team-a/app:v1"),
            Some(&robot_creds)
        ),
        digest
    );
    let listed: Value =
        serde_json::from_str(&cli_ok(base, ALICE, &["robot", "list", "team-a"], &[]))
            .expect("robot list JSON");
    assert_eq!(listed[0]["name"], robot);
    assert_eq!(listed[0]["access"], "pull");
    cli_ok(base, ALICE, &["robot", "revoke", "team-a", "ci"], &[]);
    skopeo
        .try_inspect_raw(
            &format!("docker://{host}/team-a/app:v1"),
            Some(&robot_creds),
        )
        .expect_err("revoked robot");
}

/// Alice, a maintainer, is refused until made a project admin.
fn visibility_is_for_project_admins(f: &Flow) {
    let base = &f.base;
    let err = cli_err(base, ALICE, &["project", "set", "team-a", "--public"]);
    assert!(
        err.contains("403") && err.contains("not a project admin"),
        "{err}"
    );
    let out = cli_ok(
        base,
        ROOT,
        &[
            "project",
            "add-member",
            "team-a",
            "alice",
            "--role",
            "project-admin",
        ],
        &[],
    );
    assert!(
        out.contains("alice is now project-admin in team-a"),
        "{out}"
    );
    cli_ok(base, ALICE, &["project", "set", "team-a", "--public"], &[]);
    cli_ok(base, ALICE, &["project", "set", "team-a", "--private"], &[]);
}

fn accounts_are_listed_reset_and_deleted(f: &Flow) {
    let base = &f.base;
    let users: Value =
        serde_json::from_str(&cli_ok(base, ROOT, &["user", "list"], &[])).expect("user list JSON");
    let names: Vec<&str> = users
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    cli_ok(
        base,
        ROOT,
        &[
            "user",
            "reset-password",
            "bob",
            "--initial-password",
            "again1234",
        ],
        &[],
    );
    let (s, v) = get(&f.http, &format!("{base}/v2/"), BOB);
    assert_eq!(s, 401, "bob's password was reset: {v}");
    cli_ok(base, ROOT, &["user", "delete", "bob"], &[]);
    let err = cli_err(base, ROOT, &["user", "delete", "bob"]);
    assert!(err.contains("404"), "{err}");
}

/// Non-admins and wrong passwords get the server's reason.
fn refusals_carry_the_servers_reason(f: &Flow) {
    let base = &f.base;
    let err = cli_err(base, ALICE, &["project", "create", "mine"]);
    assert!(
        err.contains("403") && err.contains("not a system administrator"),
        "{err}"
    );
    let err = cli_err(base, None, &["project", "list"]);
    assert!(err.contains("401") && err.contains("credentials"), "{err}");
    let err = cli_err(base, Some(("alice", "wrong-pass1")), &["project", "list"]);
    assert!(err.contains("401"), "{err}");
}

fn a_project_with_repositories_is_deleted_only_with_force(f: &Flow) {
    let (base, http) = (&f.base, &f.http);
    let err = cli_err(base, ROOT, &["project", "delete", "team-a"]);
    assert!(
        err.contains("409") && err.contains("team-a/app") && err.contains("force"),
        "{err}"
    );
    cli_ok(base, ROOT, &["project", "delete", "team-a", "--force"], &[]);
    let (s, _) = get(http, &format!("{base}/v2/team-a/app/tags/list"), ROOT);
    assert_eq!(s, 404);
    assert_eq!(catalog(http, base, ROOT), ["shared/tool"]);
}
