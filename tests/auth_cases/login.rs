//! Logging in, run by `auth_login.rs` on one `berth serve` and by
//! `auth_replicated.rs` on two replicas: real clients (podman login, skopeo
//! --creds), the token endpoint's edge cases (expiry, tampering, wrong
//! service, narrowed scopes), credentials and tokens of changed, deleted and
//! recreated accounts, and the password rule. Where there are two replicas,
//! a token or a change made on A is tried on B.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_testkit::berth::{self, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::{ImageBuilder, OciLayout};
use berth_testkit::http::{
    b64url_encode, basic, push_image, send, token, token_claims, token_url, Auth,
};
use berth_testkit::metrics::Metrics;
use berth_testkit::tools::{docker_ref, require_tools, CopyOptions, Creds, Podman, Skopeo};
use reqwest::blocking::Client;
use serde_json::{json, Value};

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

// ------------------------------------------------------------------ real clients

fn layout_image(tmp: &tempfile::TempDir) -> (OciLayout, String) {
    let layout = OciLayout::create(tmp.path().join("src"));
    let image = ImageBuilder::new()
        .layer_files([("etc/hello", "hello from auth_login\n")])
        .layer_random(256 << 10)
        .tag("v1")
        .build(&layout);
    let digest = image.digest().to_string();
    (layout, digest)
}

#[test]
fn podman_login_push_and_pull_through_the_token_flow() {
    if !require_tools(&["podman", "skopeo"]) {
        return;
    }
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("dev", "devpass123");
    admin.add_member("team", "dev", "developer");
    admin.create_user("viewer", "viewpass123");
    admin.add_member("team", "viewer", "guest");
    let host = reg.host();
    let tmp = tempfile::tempdir().expect("tmp");
    let (layout, _) = layout_image(&tmp);

    // /v2/ challenges; podman follows the Bearer realm.
    let http = Client::new();
    let a = send(
        &http,
        "GET",
        &format!("{}/v2/", reg.url()),
        &Auth::None,
        None,
    );
    assert_eq!(a.status, 401);
    assert!(a
        .challenge
        .as_deref()
        .unwrap_or("")
        .starts_with("Bearer realm="));

    let podman = Podman::new();
    podman.login(&host, &Creds::new("dev", "devpass123"));
    let name = format!("{host}/team/app:v1");
    podman.pull_layout(&layout, "v1", &name);
    let pushed = podman.push(&name, None);

    // The push went through bearer tokens: the token endpoint answered.
    let metrics = Metrics::scrape(&reg.url()).text;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("route=\"token\"") && l.contains("status=\"200\"")),
        "no successful /v2/token request in\n{metrics}"
    );
    // And the audit log names the account.
    admin.audit_until("action=push&actor=dev", "dev's push", |e| {
        e.iter()
            .any(|e| e["target"].as_str().unwrap_or("").contains(&pushed))
    });

    // A wrong password is refused. (Tried last: right after a wrong one, the same
    // account from the same address waits a moment; auth_throttle.rs shows that.)
    let wrong = Podman::new()
        .try_login(&host, &Creds::new("dev", "wrong-pass1"))
        .expect_err("wrong password refused");
    assert!(
        wrong.stderr.to_lowercase().contains("unauthorized")
            || wrong.stderr.to_lowercase().contains("invalid"),
        "{wrong}"
    );

    // A guest logs in and pulls it (through B), but cannot push.
    reg.caught_up();
    let host_b = reg.b().host();
    let name_b = format!("{host_b}/team/app:v1");
    let viewer = Podman::new();
    viewer.login(&host_b, &Creds::new("viewer", "viewpass123"));
    viewer.pull(&name_b);
    assert_eq!(viewer.image_digest(&name_b), pushed);
    viewer.tag(&name_b, &format!("{host_b}/team/app:copy"));
    let denied = viewer
        .try_push(&format!("{host_b}/team/app:copy"), None)
        .expect_err("a guest cannot push");
    assert!(
        denied.stderr.contains("denied") || denied.stderr.contains("DENIED"),
        "{denied}"
    );

    // Without logging in, the private image is not pullable.
    let stranger = Podman::new();
    stranger
        .try_pull(&name_b)
        .expect_err("anonymous pull of a private image");

    // An unreset account's login is refused. podman shows only "invalid username/password";
    // the reason berth gives is checked on /v2/token directly.
    let (s, v) = admin.call(
        "POST",
        "/api/v1/users",
        Some(json!({"name": "fresh", "password": "initial123"})),
    );
    assert_eq!(s, 201, "{v}");
    reg.caught_up();
    let fresh = Podman::new();
    let refused = fresh
        .try_login(&host_b, &Creds::new("fresh", "initial123"))
        .expect_err("unreset account refused");
    assert!(
        refused.stderr.contains("invalid username/password"),
        "{refused}"
    );
    let a = send(
        &http,
        "GET",
        &token_url(&reg.b().url(), &[]),
        &basic("fresh", "initial123"),
        None,
    );
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.message.contains("must be reset"), "{a:?}");
    podman.logout(&host);
}

#[test]
fn skopeo_with_creds_and_dest_creds() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("dev", "devpass123");
    admin.add_member("team", "dev", "developer");
    admin.create_user("viewer", "viewpass123");
    admin.add_member("team", "viewer", "guest");
    let (robot, secret) = admin.create_robot("team", "ci", "push");
    let host = reg.host();
    let tmp = tempfile::tempdir().expect("tmp");
    let (layout, digest) = layout_image(&tmp);
    let skopeo = Skopeo::new();
    let dest = docker_ref(&host, "team/app", "v1");
    let dev = Creds::new("dev", "devpass123");
    let viewer = Creds::new("viewer", "viewpass123");

    // Without credentials, and with a guest's: refused.
    skopeo
        .try_copy(&layout.reference("v1"), &dest, &CopyOptions::default())
        .expect_err("anonymous push");
    let denied = skopeo
        .try_copy(
            &layout.reference("v1"),
            &dest,
            &CopyOptions::default().with_dest_creds(&viewer),
        )
        .expect_err("guest push");
    assert!(denied.stderr.to_lowercase().contains("denied"), "{denied}");

    skopeo.copy(
        &layout.reference("v1"),
        &dest,
        &CopyOptions::default()
            .with_dest_creds(&dev)
            .preserving_digests(),
    );
    // Read back through B.
    reg.caught_up();
    let host_b = reg.b().host();
    let dest_b = docker_ref(&host_b, "team/app", "v1");
    assert_eq!(skopeo.manifest_digest(&dest_b, Some(&viewer)), digest);
    assert_eq!(
        skopeo.list_tags(&format!("docker://{host_b}/team/app"), Some(&viewer)),
        ["v1"]
    );
    skopeo
        .try_inspect_raw(&dest_b, None)
        .expect_err("anonymous inspect of a private image");
    skopeo
        .try_inspect_raw(&dest_b, Some(&Creds::new("dev", "wrong-pass1")))
        .expect_err("wrong password");

    // A push robot copies between repositories of its project (src and dest
    // creds), from B to A.
    let robot = Creds::new(&robot, &secret);
    skopeo.copy(
        &dest_b,
        &docker_ref(&host, "team/copy", "v1"),
        &CopyOptions::default()
            .with_src_creds(&robot)
            .with_dest_creds(&robot)
            .preserving_digests(),
    );
    assert_eq!(
        skopeo.manifest_digest(&docker_ref(&host, "team/copy", "v1"), Some(&robot)),
        digest
    );
    // A guest cannot delete; skopeo delete as the guest fails.
    skopeo
        .try_delete(&dest_b, Some(&viewer))
        .expect_err("guest delete");
}

// ------------------------------------------------------------------ tokens

#[test]
fn tokens_expire_after_their_ttl() {
    let Some(reg) = crate::setup::start(&[("BERTH_AUTH_TOKEN_TTL", "1s")]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("dev", "devpass123");
    admin.add_member("team", "dev", "developer");
    let (robot, secret) = admin.create_robot("team", "ci", "pull");
    let (http, base) = (Client::new(), reg.url());
    let dev = basic("dev", "devpass123");
    push_image(&http, &base, &dev, "team/app", "v1");
    // Tokens from A, used on B.
    let url = format!("{}/v2/team/app/manifests/v1", reg.b().url());
    reg.caught_up();

    // Token times are whole seconds (exp = iat + 1, iat truncated): ask right after a
    // second begins, so the token is still valid for the immediate use. Retry only if
    // the clock provably passed exp in between (a loaded machine).
    let mut valid_token = None;
    for _ in 0..5 {
        while unix_millis() % 1000 > 300 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = token(&http, &base, &dev, &["repository:team/app:pull"]).expect("token");
        let c = token_claims(&t);
        let exp = c["exp"].as_u64().expect("exp");
        assert_eq!(exp - c["iat"].as_u64().expect("iat"), 1);
        let a = send(&http, "GET", &url, &Auth::Bearer(t.clone()), None);
        if a.status == 200 {
            valid_token = Some(t);
            break;
        }
        assert!(
            unix_millis() >= u128::from(exp) * 1000,
            "a fresh token was refused before its exp: {a:?}"
        );
    }
    let t = valid_token.expect("a token used within its second");

    std::thread::sleep(Duration::from_millis(1500));
    let a = send(&http, "GET", &url, &Auth::Bearer(t), None);
    assert_eq!(
        (a.status, a.code.as_deref()),
        (401, Some("UNAUTHORIZED")),
        "{a:?}"
    );
    assert!(a.message.contains("expired"), "{a:?}");
    assert!(a
        .challenge
        .as_deref()
        .unwrap_or("")
        .starts_with("Bearer realm="));

    // A robot's token stops working when the robot is revoked, before it
    // expires (on the replica that revoked it: within the token's second;
    // across replicas, a_deleted_accounts_tokens_do_not_revive_with_its_name).
    let url = format!("{base}/v2/team/app/manifests/v1");
    let rt = token(
        &http,
        &base,
        &basic(&robot, &secret),
        &["repository:team/app:pull"],
    )
    .expect("token");
    let (s, v) = admin.call("DELETE", "/api/v1/projects/team/robots/ci", None);
    assert_eq!(s, 204, "{v}");
    let a = send(&http, "GET", &url, &Auth::Bearer(rt), None);
    assert_eq!(a.status, 401, "{a:?}");
}

#[test]
fn tampered_and_foreign_tokens_are_refused() {
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let other = berth::registry(berth_bin!());
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("guest", "guestpass1");
    admin.add_member("team", "guest", "guest");
    let (http, base) = (Client::new(), reg.url());
    push_image(
        &http,
        &base,
        &basic("admin", ADMIN_PASSWORD),
        "team/app",
        "v1",
    );
    let t = token(
        &http,
        &base,
        &basic("guest", "guestpass1"),
        &["repository:team/app:pull"],
    )
    .expect("token");
    // Issued by A, checked by B.
    reg.caught_up();
    let base_b = reg.b().url();
    let pull = |auth: &Auth| {
        send(
            &http,
            "GET",
            &format!("{base_b}/v2/team/app/manifests/v1"),
            auth,
            None,
        )
    };
    assert_eq!(pull(&Auth::Bearer(t.clone())).status, 200);

    let (body, sig) = t.split_once('.').expect("two parts");
    let flip = |s: &str, at: usize| -> String {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).expect("ascii")
    };
    // One character of the claims changed.
    let flipped_body = format!("{}.{sig}", flip(body, body.len() / 2));
    // The claims rewritten to grant push and admin, the old signature kept.
    let mut c = token_claims(&t);
    c["admin"] = json!(true);
    c["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    let forged = format!(
        "{}.{sig}",
        b64url_encode(&serde_json::to_vec(&c).expect("json"))
    );
    // One character of the signature changed.
    let flipped_sig = format!("{body}.{}", flip(sig, 3));
    // A token signed by another registry's key.
    let foreign = token(
        &http,
        &other.url(),
        &basic("admin", ADMIN_PASSWORD),
        &["repository:team/app:pull"],
    )
    .expect("token");
    for (what, bad) in [
        ("flipped claims", flipped_body),
        ("forged claims", forged),
        ("flipped signature", flipped_sig),
        ("another registry's token", foreign),
        ("garbage", "not-a-token".to_string()),
    ] {
        let a = pull(&Auth::Bearer(bad.clone()));
        assert_eq!(
            (a.status, a.code.as_deref()),
            (401, Some("UNAUTHORIZED")),
            "{what}: {a:?}"
        );
        assert!(a.message.contains("bearer token refused"), "{what}: {a:?}");
        assert!(a.challenge.is_some(), "{what}: no challenge");
        // The admin API refuses it too.
        let r = http
            .get(format!("{base_b}/api/v1/users"))
            .bearer_auth(&bad)
            .send()
            .expect("admin API");
        assert_eq!(r.status().as_u16(), 401, "{what} on the admin API");
    }
}

#[test]
fn token_endpoint_refuses_another_service() {
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let (http, base) = (Client::new(), reg.url());
    let a = send(
        &http,
        "GET",
        &format!("{base}/v2/token?service=other&scope=repository:x/y:pull"),
        &basic("admin", ADMIN_PASSWORD),
        None,
    );
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("DENIED")),
        "{a:?}"
    );
    assert!(
        a.message.contains("\"berth\"") && a.message.contains("\"other\""),
        "{a:?}"
    );
    assert!(a.body.get("token").is_none());
    // The OAuth2 form (POST, as containerd may send it) checks the same (on B).
    let base = reg.b().url();
    let r = http
        .post(format!("{base}/v2/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=admin&password={ADMIN_PASSWORD}&service=other&scope=repository:x/y:pull"
        ))
        .send()
        .expect("POST token");
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(format!("{base}/v2/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=admin&password={ADMIN_PASSWORD}&service=berth&scope=repository:x/y:pull"
        ))
        .send()
        .expect("POST token");
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn tokens_grant_only_what_is_allowed() {
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_project("open", true);
    for (u, role) in [
        ("guest", "guest"),
        ("dev", "developer"),
        ("maint", "maintainer"),
    ] {
        admin.create_user(u, "secret123");
        admin.add_member("team", u, role);
    }
    admin.create_user("outsider", "secret123");
    let (http, base) = (Client::new(), reg.url());
    let dev = basic("dev", "secret123");
    push_image(&http, &base, &dev, "team/app", "v1");
    let granted = |auth: &Auth, scope: &str| -> Value {
        token_claims(&token(&http, &base, auth, &[scope]).expect("token"))["access"][0]["actions"]
            .clone()
    };
    let all = "repository:team/app:pull,push,delete";
    assert_eq!(granted(&basic("guest", "secret123"), all), json!(["pull"]));
    assert_eq!(granted(&dev, all), json!(["pull", "push"]));
    assert_eq!(
        granted(&basic("maint", "secret123"), all),
        json!(["pull", "push", "delete"])
    );
    assert_eq!(
        granted(&basic("maint", "secret123"), "repository:team/app:*"),
        json!(["pull", "push", "delete"])
    );
    assert_eq!(granted(&basic("outsider", "secret123"), all), json!([]));
    assert_eq!(
        granted(&Auth::None, "repository:open/app:pull,push"),
        json!(["pull"])
    );
    assert_eq!(granted(&Auth::None, all), json!([]));

    // A guest's narrowed token cannot push: 403, asking again will not help.
    // (Tokens from A, used on B.)
    let g = token(&http, &base, &basic("guest", "secret123"), &[all]).expect("token");
    let p = token(&http, &base, &dev, &["repository:team/app:pull"]).expect("token");
    reg.caught_up();
    let base = reg.b().url();
    let a = send(
        &http,
        "POST",
        &format!("{base}/v2/team/app/blobs/uploads/"),
        &Auth::Bearer(g),
        None,
    );
    assert_eq!(
        (a.status, a.code.as_deref()),
        (403, Some("DENIED")),
        "{a:?}"
    );
    // A developer holding a pull-only token is told to ask for more (insufficient_scope).
    let a = send(
        &http,
        "POST",
        &format!("{base}/v2/team/app/blobs/uploads/"),
        &Auth::Bearer(p.clone()),
        None,
    );
    assert_eq!(
        (a.status, a.code.as_deref()),
        (401, Some("UNAUTHORIZED")),
        "{a:?}"
    );
    let ch = a.challenge.unwrap_or_default();
    assert!(
        ch.contains("scope=\"repository:team/app:pull,push\"")
            && ch.contains("error=\"insufficient_scope\""),
        "{ch}"
    );
    // A token for one repository does not open another of the same project.
    let a = send(
        &http,
        "GET",
        &format!("{base}/v2/team/other/tags/list"),
        &Auth::Bearer(p),
        None,
    );
    assert_eq!(a.status, 401, "{a:?}");
}

// ------------------------------------------------------------------ credential changes

#[test]
fn a_changed_password_stops_working_at_once() {
    // This test tries old passwords on purpose, each followed at once by the right
    // one from the same address: no per-address delay here (auth_throttle.rs has them).
    let Some(reg) = crate::setup::start(&[("BERTH_AUTH_LOGIN_BACKOFF", "0s")]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("alice", "firstpass1");
    admin.add_member("team", "alice", "developer");
    // Changes are made on A and tried on B (once B has heard of them).
    let http = Client::new();
    let v2 = format!("{}/v2/", reg.b().url());
    let status = |u: &str, p: &str| send(&http, "GET", &v2, &basic(u, p), None).status;
    let change = |u: &str, old: &str, new: &str| {
        let (s, v) = admin.call(
            "PUT",
            &format!("/api/v1/users/{u}/password"),
            Some(json!({"old_password": old, "new_password": new})),
        );
        assert_eq!(s, 204, "{v}");
        reg.caught_up();
    };
    reg.caught_up();
    // Logged in once: the credential is cached.
    assert_eq!(status("alice", "firstpass1"), 200);
    change("alice", "firstpass1", "secondpass2");
    assert_eq!(
        status("alice", "firstpass1"),
        401,
        "the old password still works after a change"
    );
    assert_eq!(status("alice", "secondpass2"), 200);

    // An administrator resets alice; she sets a new one; the one before the reset is gone.
    let (s, v) = admin.call(
        "PUT",
        "/api/v1/users/alice/password",
        Some(json!({"new_password": "resetpass3"})),
    );
    assert_eq!(s, 204, "{v}");
    reg.caught_up();
    assert_eq!(status("alice", "secondpass2"), 401);
    change("alice", "resetpass3", "thirdpass4");
    assert_eq!(
        status("alice", "secondpass2"),
        401,
        "a password from before the reset came back"
    );
    assert_eq!(status("alice", "thirdpass4"), 200);

    // Deleted and recreated under the same name: the old password is not the new account's.
    let (s, v) = admin.call("DELETE", "/api/v1/users/alice", None);
    assert_eq!(s, 204, "{v}");
    admin.create_user("alice", "otherpass5");
    reg.caught_up();
    assert_eq!(
        status("alice", "thirdpass4"),
        401,
        "the deleted account's password opens the new one"
    );
    assert_eq!(status("alice", "otherpass5"), 200);

    // A robot revoked and created again under the same name: only the new secret works.
    let (name, old_secret) = admin.create_robot("team", "ci", "push");
    reg.caught_up();
    assert_eq!(status(&name, &old_secret), 200);
    let (s, v) = admin.call("DELETE", "/api/v1/projects/team/robots/ci", None);
    assert_eq!(s, 204, "{v}");
    reg.caught_up();
    assert_eq!(status(&name, &old_secret), 401);
    let (again, new_secret) = admin.create_robot("team", "ci", "push");
    reg.caught_up();
    assert_eq!(again, name);
    assert_eq!(
        status(&name, &old_secret),
        401,
        "the revoked secret works again"
    );
    assert_eq!(status(&name, &new_secret), 200);
}

/// A token names the account instance it was issued to: deleting the account ends
/// it, and a new account under the same name (here without admin rights) does not
/// bring it back. Admin rights come from the account, never from the token.
#[test]
fn a_deleted_accounts_tokens_do_not_revive_with_its_name() {
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    let (http, base) = (Client::new(), reg.url());
    push_image(
        &http,
        &base,
        &basic("admin", ADMIN_PASSWORD),
        "team/app",
        "v1",
    );
    let create = |admin_flag: bool, password: &str| {
        let (s, v) = admin.call(
            "POST",
            "/api/v1/users",
            Some(json!({"name": "boss", "password": "initial123", "admin": admin_flag})),
        );
        assert_eq!(s, 201, "{v}");
        let (s, v) = admin.call(
            "PUT",
            "/api/v1/users/boss/password",
            Some(json!({"old_password": "initial123", "new_password": password})),
        );
        assert_eq!(s, 204, "{v}");
    };
    let scope = ["repository:team/app:pull,push,delete"];
    // Accounts change on A; tokens are issued by A and used on B.
    let base_b = reg.b().url();
    let manifest = format!("{base_b}/v2/team/app/manifests/v1");
    let users = format!("{base_b}/api/v1/users");

    create(true, "bosspass1");
    reg.caught_up();
    let old =
        Auth::Bearer(token(&http, &base, &basic("boss", "bosspass1"), &scope).expect("token"));
    assert_eq!(send(&http, "GET", &manifest, &old, None).status, 200);
    assert_eq!(send(&http, "GET", &users, &old, None).status, 200);

    let (s, v) = admin.call("DELETE", "/api/v1/users/boss", None);
    assert_eq!(s, 204, "{v}");
    reg.caught_up();
    assert_eq!(send(&http, "GET", &manifest, &old, None).status, 401);

    // The name again, for someone who is neither an administrator nor a member.
    create(false, "bosspass2");
    reg.caught_up();
    for url in [&manifest, &users] {
        let a = send(&http, "GET", url, &old, None);
        assert_eq!(
            a.status, 401,
            "the deleted boss's token works again at {url}: {a:?}"
        );
        assert!(a.message.contains("no longer valid"), "{a:?}");
    }
    // The new boss's own token: no admin rights, no access to the private project.
    let new =
        Auth::Bearer(token(&http, &base, &basic("boss", "bosspass2"), &scope).expect("token"));
    assert_eq!(
        token_claims(match &new {
            Auth::Bearer(t) => t,
            _ => unreachable!(),
        })["access"][0]["actions"],
        json!([])
    );
    assert_eq!(send(&http, "GET", &users, &new, None).status, 403);
    assert_eq!(
        send(&http, "GET", &users, &basic("boss", "bosspass2"), None).status,
        403
    );

    // A robot revoked and created again under its name: the old robot's token stays dead.
    let (robot, secret) = admin.create_robot("team", "ci", "pull");
    reg.caught_up();
    let robot_token = Auth::Bearer(
        token(
            &http,
            &base,
            &basic(&robot, &secret),
            &["repository:team/app:pull"],
        )
        .expect("token"),
    );
    assert_eq!(
        send(&http, "GET", &manifest, &robot_token, None).status,
        200
    );
    let (s, v) = admin.call("DELETE", "/api/v1/projects/team/robots/ci", None);
    assert_eq!(s, 204, "{v}");
    admin.create_robot("team", "ci", "pull");
    reg.caught_up();
    let a = send(&http, "GET", &manifest, &robot_token, None);
    assert_eq!(
        a.status, 401,
        "the revoked robot's token works again: {a:?}"
    );
}

// ------------------------------------------------------------------ the password rule

#[test]
fn password_rule_edge_cases() {
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let admin = reg.admin();
    let create = |name: &str, pw: &str| {
        admin.call(
            "POST",
            "/api/v1/users",
            Some(json!({"name": name, "password": pw})),
        )
    };
    let cases: [(&str, &str, bool); 15] = [
        ("seven", "abcdef1", false),
        ("eight", "abcdefg1", true),
        ("twenty", "a1234567890123456789", true),
        ("twentyone", "a12345678901234567890", false),
        ("letters", "abcdefghij", false),
        ("digits", "1234567890", false),
        ("spaces", "pass word 1", true),
        // Non-ASCII letters count as letters; length is counted in characters.
        ("umlauts", "pässwört1", true),
        ("eight-umlauts", "ÄÖÜäöüß1", true),
        ("kana", "パスワードです1", true),
        // Digits must be 0-9: Arabic-Indic digits are neither digits nor letters here.
        ("arabic-digits", "abcdefg١٢", false),
        // 20 characters but 77 bytes: over bcrypt's 72.
        ("long-bytes", "𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜1", false),
        // 20 characters and 72 bytes: the most that fits; one byte more does not.
        ("max-bytes", "𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜éa1", true),
        ("max-bytes-plus-one", "𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜𝒜éé1", false),
        ("control", "abc\u{7}defg1", false),
    ];
    for (name, pw, ok) in cases {
        let (s, v) = create(name, pw);
        if ok {
            assert_eq!(s, 201, "{name} {pw:?}: {v}");
        } else {
            assert_eq!(s, 400, "{name} {pw:?}: {v}");
            let msg = v["error"].as_str().unwrap_or("");
            for part in [
                "8 to 20 characters",
                "letter",
                "digit 0-9",
                "72 bytes",
                "control",
            ] {
                assert!(
                    msg.contains(part),
                    "{name}: the message should state the rule ({part}): {msg}"
                );
            }
        }
    }
    // The same rule when the owner changes it and when an administrator resets it.
    let (s, v) = admin.call(
        "PUT",
        "/api/v1/users/eight/password",
        Some(json!({"old_password": "abcdefg1", "new_password": "short1"})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = admin.call(
        "PUT",
        "/api/v1/users/eight/password",
        Some(json!({"new_password": "onlyletters"})),
    );
    assert_eq!(s, 400, "{v}");
    // A non-ASCII password works end to end once reset.
    let (s, v) = admin.call(
        "PUT",
        "/api/v1/users/umlauts/password",
        Some(json!({"old_password": "pässwört1", "new_password": "grüße-über-1"})),
    );
    assert_eq!(s, 204, "{v}");
    reg.caught_up();
    let a = send(
        &Client::new(),
        "GET",
        &format!("{}/v2/", reg.b().url()),
        &basic("umlauts", "grüße-über-1"),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
}

// ------------------------------------------------------------------ the next request, elsewhere

/// Behind a load balancer the request after a change may reach the other
/// replica: an account, a password or a robot made on A is good on B at
/// once (not after B hears of it), and a client that uses it there is not
/// refused, nor counted as guessing. On one server this holds trivially.
/// (The project is public: what is checked here is the credential, not a
/// membership.)
#[test]
fn what_a_replica_just_made_works_on_the_other_at_once() {
    // A long delay: one login refused as a guess would turn the next into 429.
    let Some(reg) = crate::setup::start(&[
        ("BERTH_AUTH_LOGIN_BACKOFF", "1h"),
        ("BERTH_AUTH_LOGIN_BACKOFF_MAX", "1h"),
    ]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", true);
    let (http, base) = (Client::new(), reg.url());
    push_image(
        &http,
        &base,
        &basic("admin", ADMIN_PASSWORD),
        "team/app",
        "v1",
    );
    reg.caught_up();
    let base_b = reg.b().url();
    let manifest_b = format!("{base_b}/v2/team/app/manifests/v1");
    let scope = ["repository:team/app:pull"];
    for round in 0..5 {
        // An account created and reset on A logs in on B.
        let user = format!("fresh{round}");
        admin.create_user(&user, "firstpass1");
        let a = send(&http, "GET", &manifest_b, &basic(&user, "firstpass1"), None);
        assert_eq!(a.status, 200, "round {round}: {user} on B: {a:?}");

        // Its new password, set on A, is good on B.
        let (s, v) = admin.call(
            "PUT",
            &format!("/api/v1/users/{user}/password"),
            Some(json!({"old_password": "firstpass1", "new_password": "secondpass2"})),
        );
        assert_eq!(s, 204, "{v}");
        let a = send(
            &http,
            "GET",
            &manifest_b,
            &basic(&user, "secondpass2"),
            None,
        );
        assert_eq!(a.status, 200, "round {round}: the new password on B: {a:?}");

        // A token A issues to an account A just made opens B.
        let other = format!("other{round}");
        admin.create_user(&other, "otherpass1");
        let t = token(&http, &base, &basic(&other, "otherpass1"), &scope).expect("token");
        let a = send(&http, "GET", &manifest_b, &Auth::Bearer(t), None);
        assert_eq!(
            a.status, 200,
            "round {round}: A's token for {other} on B: {a:?}"
        );

        // A robot made on A pulls through B.
        let (robot, secret) = admin.create_robot("team", &format!("ci{round}"), "pull");
        let a = send(&http, "GET", &manifest_b, &basic(&robot, &secret), None);
        assert_eq!(a.status, 200, "round {round}: {robot} on B: {a:?}");
    }
}

// ------------------------------------------------------------------ console sessions

/// A console session is every replica's: signed in through A, the cookie
/// opens B; signed out on B, A refuses it; signing out everywhere on B ends
/// what A started; an account deleted on A loses its session on B.
#[test]
fn console_sessions_hold_on_every_replica() {
    use berth_testkit::console::{csrf_token, no_redirects, set_cookie, sign_in};
    let Some(reg) = crate::setup::start(&[]) else {
        return;
    };
    let (http, a, b) = (no_redirects(), reg.a().url(), reg.b().url());
    let session = |base: &str, user: &str, password: &str| -> String {
        let res = sign_in(&http, base, user, password);
        assert_eq!(res.status(), 303, "signing in on {base}");
        set_cookie(&res, "berth_session").expect("session cookie").0
    };
    let page = |base: &str, cookie: &str| -> u16 {
        http.get(format!("{base}/ui/projects"))
            .header("cookie", cookie)
            .send()
            .expect("page")
            .status()
            .as_u16()
    };
    let post = |base: &str, path: &str, cookie: &str| -> u16 {
        let csrf = csrf_token(&http, base, cookie);
        http.post(format!("{base}{path}"))
            .header("cookie", cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .expect("post")
            .status()
            .as_u16()
    };

    let cookie = session(&a, "admin", ADMIN_PASSWORD);
    assert_eq!(page(&a, &cookie), 200);
    assert_eq!(page(&b, &cookie), 200, "A's session on B");
    assert_eq!(post(&b, "/ui/logout", &cookie), 303, "signing out on B");
    assert_eq!(page(&a, &cookie), 303, "signed out on B, still in on A");
    assert_eq!(page(&b, &cookie), 303);

    // Everywhere: two sessions begun on A end with one sign-out on B.
    let (one, two) = (
        session(&a, "admin", ADMIN_PASSWORD),
        session(&a, "admin", ADMIN_PASSWORD),
    );
    assert_eq!(post(&b, "/ui/logout-everywhere", &one), 303);
    for c in [&one, &two] {
        assert_eq!(
            page(&a, c),
            303,
            "signed out everywhere on B, still in on A"
        );
    }

    // An account deleted on A is signed out on B.
    reg.admin().create_user("dora", "dorapass1");
    reg.caught_up();
    let dora = session(&b, "dora", "dorapass1");
    assert_eq!(page(&b, &dora), 200);
    let (s, v) = reg.admin().call("DELETE", "/api/v1/users/dora", None);
    assert_eq!(s, 204, "{v}");
    assert_eq!(page(&b, &dora), 303, "a deleted account's session on B");
}
