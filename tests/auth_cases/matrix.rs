//! The permission matrix, run by `auth_matrix.rs` on one `berth serve` and
//! by `auth_replicated.rs` on two replicas, with raw HTTP.
//!
//! Subjects {anonymous, guest, developer, maintainer, project admin, admin, robot pull,
//! robot push, member of another project, robot of another project, account with an
//! unreset password} × projects {public, private} × operations {pull, push, delete, catalog,
//! tags, referrers, mount}. Every cell asserts the status and the OCI error code,
//! once with Basic credentials straight on `/v2` and once through the token flow
//! (`/v2/token` with Basic → bearer token). The expected table is written out in
//! full below; it is also what the report shows. The accounts, projects
//! and images are made on replica A; the cells ask replica B, with tokens A
//! issued (one server plays both parts when there is one).

use std::collections::BTreeMap;

use berth_testkit::berth::{self, Admin};
use berth_testkit::fixtures::media_types::OCI_MANIFEST;
use berth_testkit::http::{push_image, send, token, token_claims, Answer, Auth, Pushed};
use reqwest::blocking::Client;

const PASSWORD: &str = "secret123";

// ------------------------------------------------------------------ the world

/// Projects, accounts, robots and one image per project.
struct World {
    reg: crate::servers::Servers,
    http: Client,
    admin: Admin,
    /// Subject name → its Basic credentials (None: anonymous).
    creds: BTreeMap<&'static str, Option<(String, String)>>,
    images: BTreeMap<&'static str, Pushed>,
}

const PUB: &str = "pub";
const PRIV: &str = "priv";
const OTHER: &str = "other";

fn world() -> Option<World> {
    // A long delay shows that the unreset account's repeated (correct) logins are
    // not counted as guesses: one counted would turn its next cells into 429.
    let reg = crate::setup::start(&[
        ("BERTH_AUTH_LOGIN_BACKOFF", "1h"),
        ("BERTH_AUTH_LOGIN_BACKOFF_MAX", "1h"),
    ])?;
    let admin = reg.admin();
    let http = Client::new();
    let base = reg.url();
    admin.create_project(PUB, true);
    admin.create_project(PRIV, false);
    admin.create_project(OTHER, false);
    for (user, role) in [
        ("guest", "guest"),
        ("dev", "developer"),
        ("maint", "maintainer"),
        ("padmin", "project-admin"),
    ] {
        admin.create_user(user, PASSWORD);
        admin.add_member(PUB, user, role);
        admin.add_member(PRIV, user, role);
    }
    admin.create_user("outsider", PASSWORD);
    admin.add_member(OTHER, "outsider", "developer");
    // Created with an initial password and never reset; a developer everywhere, which must not help.
    let (s, v) = admin.call(
        "POST",
        "/api/v1/users",
        Some(serde_json::json!({"name": "unreset", "password": "initial123"})),
    );
    assert_eq!(s, 201, "{v}");
    admin.add_member(PUB, "unreset", "developer");
    admin.add_member(PRIV, "unreset", "developer");

    let mut creds: BTreeMap<&'static str, Option<(String, String)>> = BTreeMap::new();
    creds.insert("anonymous", None);
    for u in ["guest", "dev", "maint", "padmin", "outsider"] {
        creds.insert(u, Some((u.to_string(), PASSWORD.to_string())));
    }
    creds.insert(
        "admin",
        Some(("admin".to_string(), berth::ADMIN_PASSWORD.to_string())),
    );
    creds.insert(
        "unreset",
        Some(("unreset".to_string(), "initial123".to_string())),
    );
    for p in [PUB, PRIV] {
        let (n, s) = admin.create_robot(p, "puller", "pull");
        creds.insert(leak(format!("robot-pull@{p}")), Some((n, s)));
        let (n, s) = admin.create_robot(p, "pusher", "push");
        creds.insert(leak(format!("robot-push@{p}")), Some((n, s)));
    }
    let (n, s) = admin.create_robot(OTHER, "pusher", "push");
    creds.insert("robot-other", Some((n, s)));

    let admin_auth = Auth::Basic("admin".into(), berth::ADMIN_PASSWORD.into());
    let mut images = BTreeMap::new();
    for p in [PUB, PRIV, OTHER] {
        images.insert(
            p,
            push_image(&http, &base, &admin_auth, &format!("{p}/app"), "v1"),
        );
    }
    reg.caught_up();
    Some(World {
        reg,
        http,
        admin,
        creds,
        images,
    })
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

// ------------------------------------------------------------------ the matrix

const OPS: [&str; 7] = [
    "pull",
    "push",
    "delete",
    "catalog",
    "tags",
    "referrers",
    "mount",
];

/// Expected cells: "200", "201", "202" (success), "200+" / "200-" (catalog answered and
/// lists / does not list `<project>/app`), "401" (UNAUTHORIZED with a challenge),
/// "403" (DENIED), "404" (NAME_UNKNOWN).
///
/// Rows: (row label, subject per project, project, cells in OPS order).
#[rustfmt::skip]
fn expected() -> Vec<(&'static str, &'static str, &'static str, [&'static str; 7])> {
    //                                                  pull   push   delete catalog tags   refs   mount
    vec![
        ("anonymous", "anonymous", PUB, ["200", "401", "401", "200+", "200", "200", "401"]),
        ("anonymous", "anonymous", PRIV, ["401", "401", "401", "200-", "401", "401", "401"]),
        ("guest", "guest", PUB, ["200", "403", "403", "200+", "200", "200", "403"]),
        ("guest", "guest", PRIV, ["200", "403", "403", "200+", "200", "200", "403"]),
        ("developer", "dev", PUB, ["200", "201", "403", "200+", "200", "200", "201"]),
        ("developer", "dev", PRIV, ["200", "201", "403", "200+", "200", "200", "201"]),
        ("maintainer", "maint", PUB, ["200", "201", "202", "200+", "200", "200", "201"]),
        ("maintainer", "maint", PRIV, ["200", "201", "202", "200+", "200", "200", "201"]),
        ("project admin", "padmin", PUB, ["200", "201", "202", "200+", "200", "200", "201"]),
        ("project admin", "padmin", PRIV, ["200", "201", "202", "200+", "200", "200", "201"]),
        ("admin", "admin", PUB, ["200", "201", "202", "200+", "200", "200", "201"]),
        ("admin", "admin", PRIV, ["200", "201", "202", "200+", "200", "200", "201"]),
        ("robot pull (own project)", "robot-pull@pub", PUB, ["200", "403", "403", "200+", "200", "200", "403"]),
        ("robot pull (own project)", "robot-pull@priv", PRIV, ["200", "403", "403", "200+", "200", "200", "403"]),
        ("robot push (own project)", "robot-push@pub", PUB, ["200", "201", "403", "200+", "200", "200", "201"]),
        ("robot push (own project)", "robot-push@priv", PRIV, ["200", "201", "403", "200+", "200", "200", "201"]),
        ("member of another project", "outsider", PUB, ["200", "403", "403", "200+", "200", "200", "403"]),
        ("member of another project", "outsider", PRIV, ["404", "403", "404", "200-", "404", "404", "403"]),
        ("robot of another project", "robot-other", PUB, ["200", "403", "403", "200+", "200", "200", "403"]),
        ("robot of another project", "robot-other", PRIV, ["404", "403", "404", "200-", "404", "404", "403"]),
        ("unreset password", "unreset", PUB, ["401", "401", "401", "401", "401", "401", "401"]),
        ("unreset password", "unreset", PRIV, ["401", "401", "401", "401", "401", "401", "401"]),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Basic credentials on every /v2 request.
    Direct,
    /// Basic credentials on /v2/token, the bearer token on /v2.
    Token,
}

/// Performs one cell and returns what was observed, as written in the table,
/// and the server that answered (its URL).
fn cell(w: &World, mode: Mode, subject: &str, project: &str, op: &str) -> (String, Answer, String) {
    // Tokens come from A; the registry is asked on B.
    let (base_a, base) = (w.reg.url(), w.reg.b().url());
    let repo = format!("{project}/app");
    let target = format!("{project}/mnt");
    let img = &w.images[project];
    let basic = match &w.creds[subject] {
        None => Auth::None,
        Some((u, p)) => Auth::Basic(u.clone(), p.clone()),
    };
    if op == "delete" {
        // A tag to delete, recreated before every delete cell.
        let admin = Auth::Basic("admin".into(), berth::ADMIN_PASSWORD.into());
        let a = send(
            &w.http,
            "PUT",
            &format!("{base_a}/v2/{repo}/manifests/scratch"),
            &admin,
            Some((OCI_MANIFEST, img.manifest.clone())),
        );
        assert_eq!(a.status, 201, "recreating {repo}:scratch: {a:?}");
    }
    let auth = match mode {
        Mode::Direct => basic,
        Mode::Token => {
            let scopes = [
                format!("repository:{repo}:pull,push,delete"),
                format!("repository:{target}:pull,push"),
                "registry:catalog:*".to_string(),
            ];
            let scopes = scopes.iter().map(String::as_str).collect::<Vec<_>>();
            match token(&w.http, &base_a, &basic, &scopes) {
                Ok(t) => Auth::Bearer(t),
                // Refused at the token endpoint: that is the cell's answer.
                Err(a) => return (a.status.to_string(), *a, base_a),
            }
        }
    };
    let a = match op {
        "pull" => send(
            &w.http,
            "GET",
            &format!("{base}/v2/{repo}/manifests/v1"),
            &auth,
            None,
        ),
        "push" => send(
            &w.http,
            "PUT",
            &format!("{base}/v2/{repo}/manifests/v1"),
            &auth,
            Some((OCI_MANIFEST, img.manifest.clone())),
        ),
        "delete" => send(
            &w.http,
            "DELETE",
            &format!("{base}/v2/{repo}/manifests/scratch"),
            &auth,
            None,
        ),
        "catalog" => send(&w.http, "GET", &format!("{base}/v2/_catalog"), &auth, None),
        "tags" => send(
            &w.http,
            "GET",
            &format!("{base}/v2/{repo}/tags/list"),
            &auth,
            None,
        ),
        "referrers" => send(
            &w.http,
            "GET",
            &format!("{base}/v2/{repo}/referrers/{}", img.digest),
            &auth,
            None,
        ),
        "mount" => send(
            &w.http,
            "POST",
            &format!(
                "{base}/v2/{target}/blobs/uploads/?mount={}&from={repo}",
                img.layer
            ),
            &auth,
            None,
        ),
        other => unreachable!("operation {other}"),
    };
    let mut seen = a.status.to_string();
    if op == "catalog" && a.status == 200 {
        let listed = a.body["repositories"]
            .as_array()
            .expect("catalog repositories")
            .iter()
            .any(|r| r.as_str() == Some(repo.as_str()));
        seen.push(if listed { '+' } else { '-' });
    }
    (seen, a, base)
}

/// The scope a challenge names for an anonymous caller's `op` on `project`.
fn challenge_scope(project: &str, op: &str) -> String {
    match op {
        "push" => format!("repository:{project}/app:pull,push"),
        "mount" => format!("repository:{project}/mnt:pull,push"),
        "delete" => format!("repository:{project}/app:delete"),
        _ => format!("repository:{project}/app:pull"),
    }
}

fn run_matrix(mode: Mode) {
    let Some(w) = world() else {
        return;
    };
    let mut failures = Vec::new();
    let mut table = String::from(
        "| subject | project | pull | push | delete | catalog | tags | referrers | mount |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (label, subject, project, cells) in expected() {
        let mut row = format!("| {label} | {project} |");
        for (&op, want) in OPS.iter().zip(cells) {
            let (seen, a, base) = cell(&w, mode, subject, project, op);
            let shown = match seen.as_str() {
                "200+" => format!("200 (lists {project}/app)"),
                "200-" => format!("200 (omits {project}/app)"),
                _ => a.describe(),
            };
            row.push_str(&format!(" {shown} |"));
            let at = format!("{mode:?} {label} ({subject}) {project} {op}");
            if seen != want {
                failures.push(format!("{at}: want {want}, got {seen}: {a:?}"));
                continue;
            }
            let want_code = match a.status {
                401 => Some("UNAUTHORIZED"),
                403 => Some("DENIED"),
                404 => Some("NAME_UNKNOWN"),
                _ => None,
            };
            if a.code.as_deref() != want_code {
                failures.push(format!("{at}: code {:?}, want {want_code:?}", a.code));
            }
            if a.status == 401 {
                let realm = format!("Bearer realm=\"{base}/v2/token\",service=\"berth\"");
                let ch = a.challenge.clone().unwrap_or_default();
                if !ch.starts_with(&realm) {
                    failures.push(format!(
                        "{at}: challenge {ch:?}, want it to start {realm:?}"
                    ));
                }
                if subject == "anonymous" {
                    let scope = format!(",scope=\"{}\"", challenge_scope(project, op));
                    if !ch.contains(&scope) {
                        failures.push(format!("{at}: challenge {ch:?} lacks {scope}"));
                    }
                }
                if subject == "unreset"
                    && !(a.message.contains("must be reset") && a.message.contains("berth passwd"))
                {
                    failures.push(format!(
                        "{at}: the message should say the password must be reset and how: {:?}",
                        a.message
                    ));
                }
            }
            if a.status == 403 && op == "push" {
                // Non-members of a private project are told it may not exist; members
                // are told which role they lack.
                let hidden = project == PRIV && ["outsider", "robot-other"].contains(&subject);
                let want = if hidden {
                    "does not exist or you are not a member"
                } else {
                    "may not push in project"
                };
                if !a.message.contains(want) {
                    failures.push(format!("{at}: message {:?} lacks {want:?}", a.message));
                }
            }
            if a.status == 404 && a.message.contains(&format!("{project}/app")) {
                // The repository's name may be echoed; its existence must not be confirmed.
                let m = a.message.to_lowercase();
                if !(m.contains("not known") || m.contains("no access")) {
                    failures.push(format!("{at}: message {:?} confirms too much", a.message));
                }
            }
        }
        table.push_str(&row);
        table.push('\n');
    }
    eprintln!("{mode:?} permission matrix (observed):\n{table}");
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The unreset account's repeated logins did not lock anyone out.
    let (s, _) = w.admin.call("GET", "/api/v1/projects", None);
    assert_eq!(s, 200);
}

#[test]
fn permission_matrix_with_basic_credentials_on_v2() {
    run_matrix(Mode::Direct);
}

#[test]
fn permission_matrix_through_the_token_flow() {
    run_matrix(Mode::Token);
}

// ------------------------------------------------------------------ around the matrix

/// Non-members of a private project cannot tell a missing repository from a
/// hidden one: both are 404 NAME_UNKNOWN with the same message shape.
#[test]
fn private_repositories_do_not_leak_their_existence() {
    let Some(w) = world() else {
        return;
    };
    let base = w.reg.b().url();
    let outsider = Auth::Basic("outsider".into(), PASSWORD.into());
    let real = send(
        &w.http,
        "GET",
        &format!("{base}/v2/priv/app/tags/list"),
        &outsider,
        None,
    );
    let missing = send(
        &w.http,
        "GET",
        &format!("{base}/v2/priv/nothing-here/tags/list"),
        &outsider,
        None,
    );
    let no_project = send(
        &w.http,
        "GET",
        &format!("{base}/v2/nosuchproject/app/tags/list"),
        &outsider,
        None,
    );
    for a in [&real, &missing, &no_project] {
        assert_eq!(
            (a.status, a.code.as_deref()),
            (404, Some("NAME_UNKNOWN")),
            "{a:?}"
        );
    }
    let shape = |a: &Answer, name: &str| a.message.replace(name, "<repo>");
    assert_eq!(
        shape(&real, "priv/app"),
        shape(&missing, "priv/nothing-here"),
        "a hidden repository and a missing one must read the same"
    );
    // A push into a project the caller cannot see reads the same whether it exists or not.
    let push_hidden = send(
        &w.http,
        "POST",
        &format!("{base}/v2/priv/app/blobs/uploads/"),
        &outsider,
        None,
    );
    assert_eq!(
        (push_hidden.status, push_hidden.code.as_deref()),
        (403, Some("DENIED"))
    );
    assert!(
        push_hidden
            .message
            .contains("does not exist or you are not a member"),
        "{push_hidden:?}"
    );
    // The blob of a private image is not readable through a public repository by digest.
    let layer = &w.images[PRIV].layer;
    let a = send(
        &w.http,
        "GET",
        &format!("{base}/v2/pub/app/blobs/{layer}"),
        &outsider,
        None,
    );
    assert_eq!(a.status, 404, "{a:?}");
}

/// The catalog lists exactly what each subject may pull.
#[test]
fn catalog_lists_only_what_the_subject_may_pull() {
    let Some(w) = world() else {
        return;
    };
    let base = w.reg.b().url();
    let list = |auth: &Auth| -> Vec<String> {
        let a = send(&w.http, "GET", &format!("{base}/v2/_catalog"), auth, None);
        assert_eq!(a.status, 200, "{a:?}");
        a.body["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let basic = |name: &str| match &w.creds[name] {
        Some((u, p)) => Auth::Basic(u.clone(), p.clone()),
        None => Auth::None,
    };
    assert_eq!(list(&Auth::None), ["pub/app"]);
    assert_eq!(list(&basic("outsider")), ["other/app", "pub/app"]);
    assert_eq!(list(&basic("guest")), ["priv/app", "pub/app"]);
    assert_eq!(list(&basic("robot-pull@priv")), ["priv/app", "pub/app"]);
    assert_eq!(list(&basic("robot-other")), ["other/app", "pub/app"]);
    assert_eq!(list(&basic("admin")), ["other/app", "priv/app", "pub/app"]);
    // The same through a bearer token: the token's repository grants do not widen it.
    let t = token(&w.http, &base, &basic("outsider"), &["registry:catalog:*"]).expect("token");
    assert_eq!(list(&Auth::Bearer(t)), ["other/app", "pub/app"]);
    // Pagination does not leak hidden names through `last` or the Link header.
    let a = send(
        &w.http,
        "GET",
        &format!("{base}/v2/_catalog?n=1"),
        &basic("outsider"),
        None,
    );
    assert_eq!(a.body["repositories"], serde_json::json!(["other/app"]));
}

/// A cross-project mount needs pull rights on the source; without them berth falls
/// back to a plain upload session (202), never a 201 that would hand over the blob.
#[test]
fn cross_project_mount_needs_pull_rights_on_the_source() {
    let Some(w) = world() else {
        return;
    };
    let base = w.reg.b().url();
    let dev = Auth::Basic("dev".into(), PASSWORD.into());
    let mount = |from: &str, layer: &str, auth: &Auth| {
        send(
            &w.http,
            "POST",
            &format!("{base}/v2/priv/copy/blobs/uploads/?mount={layer}&from={from}"),
            auth,
            None,
        )
    };
    // dev is not a member of `other` (private): fallback to an upload session.
    let other_layer = &w.images[OTHER].layer;
    let a = mount("other/app", other_layer, &dev);
    assert_eq!(a.status, 202, "{a:?}");
    // The blob did not become readable in the target.
    let get = send(
        &w.http,
        "GET",
        &format!("{base}/v2/priv/copy/blobs/{other_layer}"),
        &dev,
        None,
    );
    assert_eq!(get.status, 404, "{get:?}");
    // Without `from`, a digest known elsewhere is not mounted from another project either.
    let a = send(
        &w.http,
        "POST",
        &format!("{base}/v2/priv/copy/blobs/uploads/?mount={other_layer}"),
        &dev,
        None,
    );
    assert_eq!(a.status, 202, "{a:?}");
    // Through a token that even names the source: the live rights decide.
    let t = token(
        &w.http,
        &base,
        &dev,
        &[
            "repository:priv/copy:pull,push",
            "repository:other/app:pull",
        ],
    )
    .expect("token");
    let a = mount("other/app", other_layer, &Auth::Bearer(t));
    assert_eq!(a.status, 202, "{a:?}");
    // From a public project: mounted.
    let a = mount("pub/app", &w.images[PUB].layer, &dev);
    assert_eq!(a.status, 201, "{a:?}");
    // Once dev may pull from `other` (guest), the same mount succeeds.
    w.admin.add_member(OTHER, "dev", "guest");
    w.reg.caught_up();
    let a = mount("other/app", other_layer, &dev);
    assert_eq!(a.status, 201, "{a:?}");
    let get = send(
        &w.http,
        "GET",
        &format!("{base}/v2/priv/copy/blobs/{other_layer}"),
        &dev,
        None,
    );
    assert_eq!(get.status, 200, "{get:?}");
}

/// What an anonymous client is told, and that `/v2/` asks everyone to log in.
#[test]
fn anonymous_clients_get_a_bearer_challenge() {
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project(PUB, true);
    let http = Client::new();
    let base = reg.url();
    let a = send(&http, "GET", &format!("{base}/v2/"), &Auth::None, None);
    assert_eq!(
        (a.status, a.code.as_deref()),
        (401, Some("UNAUTHORIZED")),
        "{a:?}"
    );
    assert_eq!(
        a.challenge.as_deref(),
        Some(format!("Bearer realm=\"{base}/v2/token\",service=\"berth\"").as_str())
    );
    // With credentials, /v2/ answers 200 (what `podman login` checks).
    let a = send(
        &http,
        "GET",
        &format!("{base}/v2/"),
        &Auth::Basic("admin".into(), berth::ADMIN_PASSWORD.into()),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
    // Anonymous tokens exist and grant pull on public projects only.
    let t = token(&http, &base, &Auth::None, &["repository:pub/app:pull,push"])
        .expect("anonymous token");
    let claims = token_claims(&t);
    assert_eq!(claims["sub"], "");
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "pub/app", "actions": ["pull"]}])
    );
    // Wrong credentials are refused, not silently downgraded to anonymous.
    let a = send(
        &http,
        "GET",
        &format!("{base}/v2/pub/app/tags/list"),
        &Auth::Basic("admin".into(), "wrong-password1".into()),
        None,
    );
    assert_eq!(
        (a.status, a.code.as_deref()),
        (401, Some("UNAUTHORIZED")),
        "{a:?}"
    );
}

// ------------------------------------------------------------------ project roles in the admin API

/// Visibility and project settings are for project admins (and system admins);
/// maintainers keep deleting, members and robots, but cannot make or unmake
/// project admins, themselves included.
#[test]
fn project_settings_need_a_project_admin_and_maintainers_cannot_grant_it() {
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    for (user, role) in [
        ("maint", "maintainer"),
        ("owner", "project-admin"),
        ("dev", "developer"),
    ] {
        admin.create_user(user, PASSWORD);
        admin.add_member("team", user, role);
    }
    admin.create_user("newbie", PASSWORD);
    // The maintainer works on A, the project admin on B.
    reg.caught_up();
    let maint = admin.as_user("maint", PASSWORD);
    let owner = reg.b().admin().as_user("owner", PASSWORD);
    let public = |v: bool| Some(serde_json::json!({ "public": v }));
    let is_public = || admin.call("GET", "/api/v1/projects/team", None).1["public"].clone();

    // A maintainer cannot publish a private project, and is told which role can.
    let (s, v) = maint.call("PATCH", "/api/v1/projects/team", public(true));
    assert_eq!(s, 403, "{v}");
    let msg = v["error"].as_str().unwrap_or("");
    assert!(
        msg.contains("project-admin") && msg.contains("maint"),
        "{v}"
    );
    assert_eq!(is_public(), false);
    // A project admin can, both ways.
    let (s, v) = owner.call("PATCH", "/api/v1/projects/team", public(true));
    assert_eq!((s, &v["public"]), (200, &serde_json::json!(true)), "{v}");
    let (s, v) = owner.call("PATCH", "/api/v1/projects/team", public(false));
    assert_eq!((s, &v["public"]), (200, &serde_json::json!(false)), "{v}");

    // Maintainers manage members up to their own role...
    let role = |r: &str| Some(serde_json::json!({ "role": r }));
    let (s, v) = maint.call(
        "PUT",
        "/api/v1/projects/team/members/newbie",
        role("maintainer"),
    );
    assert_eq!(s, 204, "{v}");
    // ...but make no project admin: not another account, not themselves, whatever the spelling,
    for (who, spelling) in [
        ("newbie", "project-admin"),
        ("maint", "project-admin"),
        ("newbie", "projectAdmin"),
    ] {
        let (s, v) = maint.call(
            "PUT",
            &format!("/api/v1/projects/team/members/{who}"),
            role(spelling),
        );
        assert_eq!(s, 403, "{who} {spelling}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains("project-admin"),
            "{v}"
        );
    }
    // ...and do not demote or remove one.
    let (s, v) = maint.call("PUT", "/api/v1/projects/team/members/owner", role("guest"));
    assert_eq!(s, 403, "{v}");
    let (s, v) = maint.call("DELETE", "/api/v1/projects/team/members/owner", None);
    assert_eq!(s, 403, "{v}");
    // They keep robots.
    let (s, v) = maint.call(
        "POST",
        "/api/v1/projects/team/robots",
        Some(serde_json::json!({"name": "ci", "access": "push"})),
    );
    assert_eq!(s, 201, "{v}");
    // A project admin grants the role (Harbor's spelling accepted); it reads back as stored.
    reg.caught_up();
    let (s, v) = owner.call(
        "PUT",
        "/api/v1/projects/team/members/newbie",
        role("projectAdmin"),
    );
    assert_eq!(s, 204, "{v}");
    reg.caught_up();
    let (_, v) = admin.call("GET", "/api/v1/projects/team/members", None);
    let roles: BTreeMap<String, String> = v
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap_or("").into(),
                m["role"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(roles["newbie"], "project-admin", "{v}");
    assert_eq!(roles["maint"], "maintainer", "{v}");
    // A developer manages nothing.
    let dev = admin.as_user("dev", PASSWORD);
    let (s, v) = dev.call("PUT", "/api/v1/projects/team/members/newbie", role("guest"));
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a maintainer"),
        "{v}"
    );

    // The controller's project checks hold with the new role on top: project-wide
    // administration (a node's kubeconfig for the project) is maintainer and above;
    // past that check, the cluster's own credential is still for system
    // administrators only (409, before the node is looked up).
    let kubeconfig = "/api/v1/nodes/nowhere/kubeconfig?project=team";
    for (who, want) in [(&owner, 409), (&maint, 409), (&dev, 403)] {
        let (s, v) = who.call("GET", kubeconfig, None);
        assert_eq!(s, want, "{}: {v}", who.user);
    }
}
