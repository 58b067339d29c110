//! The admin API's projects, members, repositories and tags, as each role sees them.

use super::*;

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
