//! The admin API's accounts: users and robots.

use super::*;

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
