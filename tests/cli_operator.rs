//! The operator's side: the `berth project|user|robot|passwd` commands against a
//! running registry (the "done means" flow with podman), and the admin
//! API under them: users, projects, members, robots, repositories and tags, GC,
//! audit, error bodies, and the OpenAPI document.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_testkit::berth::{self, Admin, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::media_types::OCI_MANIFEST;
use berth_testkit::fixtures::{ImageBuilder, OciLayout};
use berth_testkit::http::{basic, push_image};
use berth_testkit::tools::{require_tools, Creds, Podman, Skopeo};
use berth_testkit::wait_until;
use reqwest::blocking::Client;
use serde_json::{json, Value};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// What one `berth` invocation did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `berth ARGS` against `base` as `who` (user, password), through the
/// environment variables the commands document.
fn berth_cli(base: &str, who: Option<(&str, &str)>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(berth_bin!());
    cmd.args(args).env("BERTH_URL", base);
    for v in [
        "BERTH_USER",
        "BERTH_PASSWORD",
        "BERTH_NEW_PASSWORD",
        "BERTH_OLD_PASSWORD",
        "BERTH_CONFIG",
    ] {
        cmd.env_remove(v);
    }
    if let Some((u, p)) = who {
        cmd.env("BERTH_USER", u).env("BERTH_PASSWORD", p);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running berth");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cli_ok(base: &str, who: Option<(&str, &str)>, args: &[&str], env: &[(&str, &str)]) -> String {
    let r = berth_cli(base, who, args, env);
    assert!(
        r.ok,
        "berth {} failed:\n{}\n{}",
        args.join(" "),
        r.stdout,
        r.stderr
    );
    r.stdout
}

fn cli_err(base: &str, who: Option<(&str, &str)>, args: &[&str]) -> String {
    let r = berth_cli(base, who, args, &[]);
    assert!(
        !r.ok,
        "berth {} should have failed:\n{}",
        args.join(" "),
        r.stdout
    );
    r.stderr
}

/// `GET` with optional Basic credentials: (status, JSON body).
fn get(http: &Client, url: &str, who: Option<(&str, &str)>) -> (u16, Value) {
    let mut rb = http.get(url).header("Accept", OCI_MANIFEST);
    if let Some((u, p)) = who {
        rb = rb.basic_auth(u, Some(p));
    }
    let r = rb.send().expect("GET");
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

fn catalog(http: &Client, base: &str, who: Option<(&str, &str)>) -> Vec<String> {
    let (s, v) = get(http, &format!("{base}/v2/_catalog"), who);
    assert_eq!(s, 200, "{v}");
    v["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect()
}

fn layout_image(tmp: &tempfile::TempDir, what: &str) -> OciLayout {
    let layout = OciLayout::create(tmp.path().join(what));
    ImageBuilder::new()
        .layer_files([("etc/what", what)])
        .layer_random(64 << 10)
        .tag("v1")
        .build(&layout);
    layout
}

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

// ------------------------------------------------------------------ admin API

/// Asserts an admin API error: status, a JSON `error` that is a sentence.
fn assert_error(answer: (u16, Value), status: u16, mentions: &str) {
    let (s, v) = answer;
    assert_eq!(s, status, "{v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error message: {v}"));
    assert!(
        msg.contains(mentions),
        "error {msg:?} should mention {mentions:?}"
    );
}

#[test]
fn admin_api_users() {
    let reg = berth::registry(berth_bin!());
    let admin = reg.admin();
    let (s, v) = admin.call(
        "POST",
        "/api/v1/users",
        Some(json!({"name": "alice", "password": "initial123"})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (
            v["name"].as_str(),
            v["must_reset"].as_bool(),
            v["admin"].as_bool()
        ),
        (Some("alice"), Some(true), Some(false))
    );
    assert!(
        v.get("hash").is_none() && v.get("password").is_none(),
        "{v}"
    );
    assert_error(
        admin.call(
            "POST",
            "/api/v1/users",
            Some(json!({"name": "alice", "password": "initial123"})),
        ),
        409,
        "already exists",
    );
    assert_error(
        admin.call(
            "POST",
            "/api/v1/users",
            Some(json!({"name": "Alice!", "password": "initial123"})),
        ),
        400,
        "invalid account name",
    );
    let (s, v) = admin.call("GET", "/api/v1/users", None);
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    assert!(
        v.to_string().find("$2").is_none(),
        "no hashes in listings: {v}"
    );

    // Reset by the admin: a new initial password; the owner resets it herself.
    let (s, v) = admin.call(
        "PUT",
        "/api/v1/users/alice/password",
        Some(json!({"new_password": "another123"})),
    );
    assert_eq!(s, 204, "{v}");
    let alice = admin.as_user("alice", "another123");
    assert_error(
        alice.call("GET", "/api/v1/projects", None),
        401,
        "must be reset",
    );
    let (s, v) = alice.call(
        "PUT",
        "/api/v1/users/alice/password",
        Some(json!({"old_password": "another123", "new_password": "alicepass1"})),
    );
    assert_eq!(s, 204, "{v}");
    let alice = admin.as_user("alice", "alicepass1");
    assert_error(
        alice.call("GET", "/api/v1/users", None),
        403,
        "not a system administrator",
    );
    assert_error(
        alice.call(
            "PUT",
            "/api/v1/users/admin/password",
            Some(json!({"new_password": "takeover123"})),
        ),
        403,
        "old_password",
    );
    assert_error(
        alice.call(
            "PUT",
            "/api/v1/users/alice/password",
            Some(json!({"old_password": "alicepass1", "new_password": "alicepass1"})),
        ),
        400,
        "differ",
    );

    // Delete; the last administrator stays.
    assert_error(
        admin.call("DELETE", "/api/v1/users/admin", None),
        409,
        "last administrator",
    );
    let (s, _) = admin.call("DELETE", "/api/v1/users/alice", None);
    assert_eq!(s, 204);
    assert_error(
        admin.call("DELETE", "/api/v1/users/alice", None),
        404,
        "alice",
    );
    assert_error(alice.call("GET", "/api/v1/projects", None), 401, "invalid");
}

#[test]
fn admin_api_projects_members_repositories() {
    let reg = berth::registry(berth_bin!());
    let admin = reg.admin();
    projects_are_created_once_under_valid_names(&admin);
    for u in ["dev", "maint", "stranger"] {
        admin.create_user(u, "secret123");
    }
    members_are_added_changed_and_listed(&admin);
    let team = Team {
        http: Client::new(),
        base: reg.url(),
        dev: admin.as_user("dev", "secret123"),
        maint: admin.as_user("maint", "secret123"),
        stranger: admin.as_user("stranger", "secret123"),
        admin,
    };
    maintainers_manage_members_and_developers_do_not(&team);
    strangers_see_public_projects_and_project_admins_set_visibility(&team);
    maintainers_delete_tags_and_repositories(&team);
    projects_are_deleted_at_once_when_empty_and_otherwise_with_force(&team);
}

/// The accounts of project `team`, as admin API clients.
struct Team {
    http: Client,
    base: String,
    admin: Admin,
    dev: Admin,
    maint: Admin,
    stranger: Admin,
}

/// `team` (private unless asked) and the public `empty`.
fn projects_are_created_once_under_valid_names(admin: &Admin) {
    let (s, v) = admin.call("POST", "/api/v1/projects", Some(json!({"name": "team"})));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["public"], false, "private unless asked");
    assert_error(
        admin.call("POST", "/api/v1/projects", Some(json!({"name": "team"}))),
        409,
        "already exists",
    );
    assert_error(
        admin.call(
            "POST",
            "/api/v1/projects",
            Some(json!({"name": "Bad_Name"})),
        ),
        400,
        "invalid project name",
    );
    admin.create_project("empty", true);
}

/// Members: add, change, refuse unknown roles and accounts.
fn members_are_added_changed_and_listed(admin: &Admin) {
    admin.add_member("team", "dev", "guest");
    admin.add_member("team", "dev", "developer");
    admin.add_member("team", "maint", "maintainer");
    assert_error(
        admin.call(
            "PUT",
            "/api/v1/projects/team/members/dev",
            Some(json!({"role": "owner"})),
        ),
        400,
        "guest, developer, maintainer or project-admin",
    );
    assert_error(
        admin.call(
            "PUT",
            "/api/v1/projects/team/members/nobody",
            Some(json!({"role": "guest"})),
        ),
        404,
        "nobody",
    );
    let (s, v) = admin.call("GET", "/api/v1/projects/team/members", None);
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!([{"user": "dev", "role": "developer"}, {"user": "maint", "role": "maintainer"}])
    );
}

fn maintainers_manage_members_and_developers_do_not(t: &Team) {
    let (dev, maint) = (&t.dev, &t.maint);
    let (s, v) = maint.call(
        "PUT",
        "/api/v1/projects/team/members/stranger",
        Some(json!({"role": "guest"})),
    );
    assert_eq!(s, 204, "{v}");
    let (s, _) = maint.call("DELETE", "/api/v1/projects/team/members/stranger", None);
    assert_eq!(s, 204);
    assert_error(
        maint.call("DELETE", "/api/v1/projects/team/members/stranger", None),
        404,
        "not a member",
    );
    assert_error(
        dev.call(
            "PUT",
            "/api/v1/projects/team/members/stranger",
            Some(json!({"role": "guest"})),
        ),
        403,
        "not a maintainer",
    );
}

/// Strangers see public projects only, and 404 for private ones; visibility is
/// a project admin's (a maintainer's, before project admins existed).
fn strangers_see_public_projects_and_project_admins_set_visibility(t: &Team) {
    let (admin, dev, maint, stranger) = (&t.admin, &t.dev, &t.maint, &t.stranger);
    let names = |a: &Admin| -> Vec<String> {
        let (s, v) = a.call("GET", "/api/v1/projects", None);
        assert_eq!(s, 200, "{v}");
        v.as_array()
            .expect("projects")
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(names(admin), ["empty", "team"]);
    assert_eq!(names(dev), ["empty", "team"]);
    assert_eq!(names(stranger), ["empty"]);
    assert_error(
        stranger.call("GET", "/api/v1/projects/team", None),
        404,
        "team",
    );
    assert_error(
        stranger.call(
            "PATCH",
            "/api/v1/projects/team",
            Some(json!({"public": true})),
        ),
        404,
        "team",
    );
    assert_error(
        dev.call(
            "PATCH",
            "/api/v1/projects/team",
            Some(json!({"public": true})),
        ),
        403,
        "not a project admin",
    );
    assert_error(
        maint.call(
            "PATCH",
            "/api/v1/projects/team",
            Some(json!({"public": true})),
        ),
        403,
        "not a project admin",
    );
    admin.create_user("owner", "secret123");
    admin.add_member("team", "owner", "project-admin");
    let owner = admin.as_user("owner", "secret123");
    let (s, v) = owner.call(
        "PATCH",
        "/api/v1/projects/team",
        Some(json!({"public": true})),
    );
    assert_eq!((s, &v["public"]), (200, &json!(true)), "{v}");
    assert_eq!(names(stranger), ["empty", "team"]);
    let (s, v) = owner.call(
        "PATCH",
        "/api/v1/projects/team",
        Some(json!({"public": false})),
    );
    assert_eq!((s, &v["public"]), (200, &json!(false)), "{v}");
}

/// Repositories and tags as the admin API lists them; maintainers delete them.
fn maintainers_delete_tags_and_repositories(t: &Team) {
    let (http, base, dev, maint) = (&t.http, &t.base, &t.dev, &t.maint);
    let root = ("admin", ADMIN_PASSWORD);
    let d1 = push_image(http, base, &basic("dev", "secret123"), "team/app", "v1").digest;
    push_image(http, base, &basic("dev", "secret123"), "team/app", "v2");
    push_image(
        http,
        base,
        &basic("dev", "secret123"),
        "team/tools/cli",
        "v1",
    );
    let (s, v) = dev.call("GET", "/api/v1/projects/team/repositories", None);
    assert_eq!(
        (s, v.clone()),
        (200, json!(["team/app", "team/tools/cli"])),
        "{v}"
    );
    let (s, v) = dev.call("GET", "/api/v1/projects/team", None);
    assert_eq!(s, 200);
    assert_eq!(v["repositories"], json!(["team/app", "team/tools/cli"]));
    let (s, v) = dev.call("GET", "/api/v1/projects/team/repositories/app/tags", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v[0]["name"], &v[0]["digest"], &v[0]["signatures"]),
        (&json!("v1"), &json!(d1), &json!([])),
        "{v}"
    );
    assert_eq!(v[0]["pull_count"], json!(0), "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    let (s, v) = dev.call(
        "GET",
        "/api/v1/projects/team/repositories/tools%2Fcli/tags",
        None,
    );
    assert_eq!((s, v[0]["name"].clone()), (200, json!("v1")), "{v}");
    assert_error(
        dev.call(
            "DELETE",
            "/api/v1/projects/team/repositories/app/tags/v2",
            None,
        ),
        403,
        "not a maintainer",
    );
    let (s, _) = maint.call(
        "DELETE",
        "/api/v1/projects/team/repositories/app/tags/v2",
        None,
    );
    assert_eq!(s, 204);
    assert_error(
        maint.call(
            "DELETE",
            "/api/v1/projects/team/repositories/app/tags/v2",
            None,
        ),
        404,
        "v2",
    );
    let (s, v) = get(http, &format!("{base}/v2/team/app/tags/list"), Some(root));
    assert_eq!((s, v["tags"].clone()), (200, json!(["v1"])));
    let (s, _) = maint.call(
        "DELETE",
        "/api/v1/projects/team/repositories/tools%2Fcli",
        None,
    );
    assert_eq!(s, 204);
    assert_error(
        maint.call(
            "DELETE",
            "/api/v1/projects/team/repositories/tools%2Fcli",
            None,
        ),
        404,
        "team/tools/cli",
    );
    let (s, _) = get(
        http,
        &format!("{base}/v2/team/tools/cli/tags/list"),
        Some(root),
    );
    assert_eq!(s, 404);
}

/// An empty project goes at once, a non-empty one only with force, and its
/// memberships with it.
fn projects_are_deleted_at_once_when_empty_and_otherwise_with_force(t: &Team) {
    let (http, base, admin, maint) = (&t.http, &t.base, &t.admin, &t.maint);
    let root = ("admin", ADMIN_PASSWORD);
    let (s, _) = admin.call("DELETE", "/api/v1/projects/empty", None);
    assert_eq!(s, 204);
    assert_error(
        admin.call("DELETE", "/api/v1/projects/empty", None),
        404,
        "empty",
    );
    assert_error(
        admin.call("DELETE", "/api/v1/projects/team", None),
        409,
        "force=true",
    );
    assert_error(
        maint.call("DELETE", "/api/v1/projects/team?force=true", None),
        403,
        "not a system administrator",
    );
    let (s, _) = admin.call("DELETE", "/api/v1/projects/team?force=true", None);
    assert_eq!(s, 204);
    assert!(catalog(http, base, Some(root)).is_empty());
    // Its memberships went with it: a new project of that name starts empty.
    admin.create_project("team", false);
    let (s, v) = admin.call("GET", "/api/v1/projects/team/members", None);
    assert_eq!((s, v), (200, json!([])));
    let (s, v) = get(
        http,
        &format!("{base}/v2/team/app/tags/list"),
        Some(("dev", "secret123")),
    );
    assert_eq!(s, 404, "{v}");
}

#[test]
fn admin_api_robots() {
    let reg = berth::registry(berth_bin!());
    let admin = reg.admin();
    let (http, base) = (Client::new(), reg.url());
    admin.create_project("team", false);
    push_image(
        &http,
        &base,
        &basic("admin", ADMIN_PASSWORD),
        "team/app",
        "v1",
    );
    let v2 = format!("{base}/v2/team/app/tags/list");
    let (name, secret) = admin.create_robot("team", "ci", "push");
    assert_eq!(name, "robot$team+ci");
    let robot = (name.as_str(), secret.as_str());
    let (s, _) = get(&http, &v2, Some(robot));
    assert_eq!(s, 200);
    assert_error(
        admin.call(
            "POST",
            "/api/v1/projects/team/robots",
            Some(json!({"name": "ci", "access": "push"})),
        ),
        409,
        "already exists",
    );
    assert_error(
        admin.call(
            "POST",
            "/api/v1/projects/team/robots",
            Some(json!({"name": "x", "access": "admin"})),
        ),
        400,
        "\"pull\" or \"push\"",
    );
    // Robots are for pulls and pushes, not for the admin API: Basic or token.
    let as_robot = admin.as_user(&name, &secret);
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/team/robots",
        "/api/v1/users",
    ] {
        assert_error(
            as_robot.call("GET", path, None),
            403,
            "robot accounts cannot use the admin API",
        );
    }
    let t: Value = http
        .get(format!(
            "{base}/v2/token?service=berth&scope=repository:team/app:pull"
        ))
        .basic_auth(&name, Some(&secret))
        .send()
        .expect("token")
        .json()
        .expect("token JSON");
    let r = http
        .get(format!("{base}/api/v1/projects"))
        .bearer_auth(t["token"].as_str().expect("token"))
        .send()
        .expect("admin API with a robot token");
    assert_eq!(r.status().as_u16(), 403);

    // An expiring robot: works, then expires; its login says so.
    let (s, v) = admin.call(
        "POST",
        "/api/v1/projects/team/robots",
        Some(json!({"name": "short", "access": "pull", "expires_in": 1})),
    );
    assert_eq!(s, 201, "{v}");
    let short = (
        v["name"].as_str().expect("name").to_string(),
        v["secret"].as_str().expect("secret").to_string(),
    );
    assert!(v["expires_at"].as_u64().expect("expires_at") <= unix_now() + 1);
    std::thread::sleep(Duration::from_millis(2100));
    let r = http
        .get(&v2)
        .basic_auth(&short.0, Some(&short.1))
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().expect("error JSON");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{body}"
    );

    // Revoked: cannot log in any more, and is listed as revoked.
    let (s, _) = admin.call("DELETE", "/api/v1/projects/team/robots/ci", None);
    assert_eq!(s, 204);
    let (s, v) = get(&http, &v2, Some(robot));
    assert_eq!(s, 401, "{v}");
    let (s, v) = get(&http, &format!("{base}/v2/"), Some(robot));
    assert_eq!(s, 401, "{v}");
    // The right secret of a revoked robot says so, and is not a guess: an edge node
    // retrying with it must not be slowed down as a guesser.
    for _ in 0..6 {
        let (s, v) = get(&http, &v2, Some(robot));
        assert_eq!(s, 401, "{v}");
        let msg = v["errors"][0]["message"].as_str().unwrap_or("");
        assert!(msg.contains("revoked"), "{v}");
    }
    // A wrong secret for it reads like any wrong password.
    let (s, v) = get(&http, &v2, Some((&name, "not-the-secret1")));
    assert_eq!(s, 401, "{v}");
    assert!(!v.to_string().contains("revoked"), "{v}");
    let (s, v) = admin.call("GET", "/api/v1/projects/team/robots", None);
    assert_eq!(s, 200);
    let list = v.as_array().expect("robots");
    let ci = list.iter().find(|r| r["name"] == name).expect("ci listed");
    assert_eq!(
        (ci["revoked"].clone(), ci["access"].clone()),
        (json!(true), json!("push"))
    );
    assert!(
        ci.get("secret").is_none() && ci.get("hash").is_none(),
        "{ci}"
    );
    assert_error(
        admin.call("DELETE", "/api/v1/projects/team/robots/nope", None),
        404,
        "nope",
    );
    // Another project's robots cannot be revoked through this one.
    admin.create_project("other", false);
    let (other, _) = admin.create_robot("other", "ci", "pull");
    assert_error(
        admin.call(
            "DELETE",
            &format!(
                "/api/v1/projects/team/robots/{}",
                other.replace('$', "%24").replace('+', "%2B")
            ),
            None,
        ),
        404,
        "team",
    );
}

#[test]
fn admin_api_gc_and_audit() {
    let reg = berth::registry(berth_bin!());
    let admin = reg.admin();
    let (http, base) = (Client::new(), reg.url());
    let start = unix_now();
    admin.create_project("team", false);
    admin.create_user("dev", "secret123");
    admin.add_member("team", "dev", "developer");
    admin.create_project("other", true);
    let digest = push_image(&http, &base, &basic("dev", "secret123"), "team/app", "v1").digest;
    push_image(
        &http,
        &base,
        &basic("admin", ADMIN_PASSWORD),
        "other/app",
        "v1",
    );

    // GC: dry run and real, and its last report; administrators only.
    let (s, v) = admin.call("POST", "/api/v1/gc?dry_run=true", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dry_run"], true);
    let (s, v) = admin.call("POST", "/api/v1/gc", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dry_run"], false);
    let (s, v) = admin.call("GET", "/api/v1/gc", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["running"].clone(), v["last"]["dry_run"].clone()),
        (json!(false), json!(false))
    );
    let dev = admin.as_user("dev", "secret123");
    assert_error(
        dev.call("POST", "/api/v1/gc", None),
        403,
        "not a system administrator",
    );
    assert_error(
        dev.call("GET", "/api/v1/gc", None),
        403,
        "not a system administrator",
    );
    // The pushed image survived (it is tagged).
    let (s, _) = get(
        &http,
        &format!("{base}/v2/team/app/manifests/{digest}"),
        Some(("dev", "secret123")),
    );
    assert_eq!(s, 200);

    // Audit: by actor, project, action, time.
    let audit = |q: &str| -> Vec<Value> {
        let (s, v) = admin.call("GET", &format!("/api/v1/audit?{q}"), None);
        assert_eq!(s, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    };
    wait_until(
        "audit events of the GC and the push",
        Duration::from_secs(10),
        || {
            if audit("action=gc").is_empty() || audit("actor=dev&action=push").is_empty() {
                Err(format!("{:#?}", audit("")))
            } else {
                Ok(())
            }
        },
    );
    let pushes = audit("actor=dev&action=push");
    assert_eq!(pushes.len(), 1, "{pushes:#?}");
    assert_eq!(pushes[0]["project"], "team");
    assert!(pushes[0]["target"].as_str().unwrap_or("").contains(&digest));
    assert_eq!(pushes[0]["client"], "127.0.0.1");
    assert!(audit("project=team").iter().all(|e| e["project"] == "team"));
    let actions: Vec<String> = audit("project=team")
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect();
    for a in ["project.create", "member.set", "push"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    assert!(audit("actor=admin&action=project.create").len() == 2);
    assert!(audit(&format!("since={}", unix_now() + 100)).is_empty());
    assert!(audit(&format!("until={}", start.saturating_sub(100))).is_empty());
    let all = audit(&format!("since={start}&until={}", unix_now() + 1));
    assert!(all.len() >= 6, "{all:#?}");
    // Newest first, and limit works.
    let ids: Vec<u64> = all.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(audit("limit=2").len(), 2);
    assert_error(
        dev.call("GET", "/api/v1/audit", None),
        403,
        "not a system administrator",
    );
}

/// Every error of the admin API is JSON with a message, including the ones the
/// framework produces (bad JSON, wrong content type, wrong method, bad query).
#[test]
fn admin_api_errors_are_json_with_a_message() {
    let reg = berth::registry(berth_bin!());
    let base = reg.url();
    let http = Client::new();
    let send =
        |method: reqwest::Method, path: &str, ctype: Option<&str>, body: &str, auth: bool| {
            let mut rb = http.request(method, format!("{base}{path}"));
            if auth {
                rb = rb.basic_auth("admin", Some(ADMIN_PASSWORD));
            }
            if let Some(c) = ctype {
                rb = rb.header("Content-Type", c);
            }
            let r = rb.body(body.to_string()).send().expect("admin API");
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let text = r.text().unwrap_or_default();
            (status, ct, text)
        };
    use reqwest::Method;
    let cases: Vec<(&str, (u16, String, String))> = vec![
        (
            "no credentials",
            send(Method::GET, "/api/v1/users", None, "", false),
        ),
        (
            "broken JSON",
            send(
                Method::POST,
                "/api/v1/projects",
                Some("application/json"),
                "{\"name\":",
                true,
            ),
        ),
        (
            "wrong JSON shape",
            send(
                Method::POST,
                "/api/v1/projects",
                Some("application/json"),
                "{\"nom\":\"x\"}",
                true,
            ),
        ),
        (
            "a form, which browsers send across sites",
            send(
                Method::POST,
                "/api/v1/projects",
                Some("application/x-www-form-urlencoded"),
                "name=x1",
                true,
            ),
        ),
        (
            "bad query",
            send(
                Method::DELETE,
                "/api/v1/projects/x?force=maybe",
                None,
                "",
                true,
            ),
        ),
        (
            "wrong method",
            send(Method::PATCH, "/api/v1/users", None, "", true),
        ),
        (
            "unknown project",
            send(Method::GET, "/api/v1/projects/nothing", None, "", true),
        ),
    ];
    let mut bad = Vec::new();
    for (what, (status, ct, text)) in &cases {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let msg = v["error"].as_str().unwrap_or("");
        if !(400..500).contains(status) || !ct.starts_with("application/json") || msg.len() < 10 {
            bad.push(format!("{what}: {status} {ct:?} {text:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "admin API errors that are not JSON with a message:\n{}",
        bad.join("\n")
    );
    assert_eq!(cases[0].1 .0, 401);
    assert_eq!(cases[5].1 .0, 405);
    // JSON sent with no Content-Type at all (`curl -d @project.json`) is read as JSON.
    let (status, _, text) = send(
        Method::POST,
        "/api/v1/projects",
        None,
        "{\"name\":\"x1\"}",
        true,
    );
    assert_eq!(status, 201, "{text}");
}

/// `/api/v1/openapi.json` is an OpenAPI 3 document that lists every admin
/// route, each of which the router really serves.
#[test]
fn openapi_document_lists_every_admin_route() {
    let reg = berth::registry(berth_bin!());
    let base = reg.url();
    let http = Client::new();
    let doc: Value = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .expect("openapi.json")
        .json()
        .expect("JSON");
    // OpenAPI 3 shape.
    let version = doc["openapi"].as_str().unwrap_or("");
    assert!(version.starts_with("3."), "openapi {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "$ref {r} does not resolve");
    }
    // The routes, as the router table in registry/src/admin/mod.rs has them.
    let expected: Vec<(&str, &str)> = vec![
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("delete", "/api/v1/users/{name}"),
        ("put", "/api/v1/users/{name}/password"),
        ("get", "/api/v1/projects"),
        ("post", "/api/v1/projects"),
        ("get", "/api/v1/projects/{project}"),
        ("patch", "/api/v1/projects/{project}"),
        ("delete", "/api/v1/projects/{project}"),
        ("get", "/api/v1/projects/{project}/members"),
        ("put", "/api/v1/projects/{project}/members/{user}"),
        ("delete", "/api/v1/projects/{project}/members/{user}"),
        ("get", "/api/v1/projects/{project}/robots"),
        ("post", "/api/v1/projects/{project}/robots"),
        ("delete", "/api/v1/projects/{project}/robots/{robot}"),
        ("get", "/api/v1/projects/{project}/repositories"),
        (
            "delete",
            "/api/v1/projects/{project}/repositories/{repository}",
        ),
        (
            "get",
            "/api/v1/projects/{project}/repositories/{repository}/tags",
        ),
        (
            "delete",
            "/api/v1/projects/{project}/repositories/{repository}/tags/{tag}",
        ),
        ("get", "/api/v1/gc"),
        ("post", "/api/v1/gc"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/projects/{project}/webhooks"),
        ("post", "/api/v1/projects/{project}/webhooks"),
        ("get", "/api/v1/projects/{project}/webhooks/{id}"),
        ("patch", "/api/v1/projects/{project}/webhooks/{id}"),
        ("delete", "/api/v1/projects/{project}/webhooks/{id}"),
        ("get", "/api/v1/projects/{project}/webhooks/{id}/deliveries"),
        ("post", "/api/v1/projects/{project}/usage/recount"),
        ("get", "/api/v1/projects/{project}/immutable-tags"),
        ("post", "/api/v1/projects/{project}/immutable-tags"),
        (
            "delete",
            "/api/v1/projects/{project}/immutable-tags/{pattern}",
        ),
        ("get", "/api/v1/projects/{project}/retention"),
        ("put", "/api/v1/projects/{project}/retention"),
        ("post", "/api/v1/projects/{project}/retention/run"),
    ];
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
                // Every {param} in the path is declared.
                for seg in path.split('/').filter(|s| s.starts_with('{')) {
                    let p = seg.trim_matches(['{', '}']);
                    let declared = op["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|x| x["name"] == p && x["in"] == "path"));
                    assert!(declared, "{method} {path}: path parameter {p} not declared");
                }
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    want.sort();
    // The document describes the controller's routes and /v2/token too
    // (tests/openapi_routes.rs holds it against every route).
    let missing: Vec<_> = want.iter().filter(|w| !documented.contains(w)).collect();
    assert!(
        missing.is_empty(),
        "admin routes not documented: {missing:?}"
    );

    // Each documented route is served: a JSON answer from a handler, never the
    // router's bare 404/405. Names that do not exist keep this harmless.
    for (method, path) in &want {
        let concrete = path
            .replace("{project}", "zz-none")
            .replace("{name}", "zz-none")
            .replace("{user}", "zz-none")
            .replace("{robot}", "zz-none")
            .replace("{repository}", "zz-none")
            .replace("{tag}", "zz-none")
            .replace("{id}", "zz-none")
            .replace("{pattern}", "zz-none");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut rb = http
            .request(m, format!("{base}{concrete}"))
            .basic_auth("admin", Some(ADMIN_PASSWORD));
        if ["post", "put", "patch"].contains(&method.as_str()) {
            rb = rb.json(&json!({}));
        }
        let r = rb.send().expect("request");
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        assert!(
            status != 405 && !(status == 404 && text.is_empty()),
            "{method} {concrete}: {status} {text:?} (not routed?)"
        );
    }
}
