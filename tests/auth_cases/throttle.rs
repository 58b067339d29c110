//! The failed-login throttle, run by `auth_throttle.rs` on one `berth serve`
//! and by `auth_replicated.rs` on two replicas (which count in one table):
//! wrong secrets slow down the (account, client address) pair that sent them,
//! never the account for everyone; guessing spread over many addresses is
//! slowed for those addresses alone; a waiting pair is answered 429 with
//! Retry-After before bcrypt runs; tokens stay valid; X-Forwarded-For names
//! the client only through a trusted proxy; empty Basic credentials are
//! anonymous. Where there are two replicas, guesses sent to A hold the pair
//! back on B.
//!
//! Every client address is a 127.x address (all of 127.0.0.0/8 is loopback). The
//! delays are set long (an hour) wherever a test needs a pair to stay waiting, so
//! nothing here depends on how fast the machine is.

use berth_testkit::berth::{Registry, ADMIN_PASSWORD};
use berth_testkit::http::{basic, client_from, push_image, send, token_url, Answer, Auth};
use reqwest::blocking::Client;

use crate::servers::Servers;
use serde_json::{json, Value};

/// Servers whose waiting pairs keep waiting for the whole test.
fn registry_with_long_delays(extra: &[(&str, &str)]) -> Option<Servers> {
    let mut env = vec![
        ("BERTH_AUTH_LOGIN_BACKOFF", "1h"),
        ("BERTH_AUTH_LOGIN_BACKOFF_MAX", "2h"),
    ];
    env.extend_from_slice(extra);
    crate::setup::start(&env)
}

const CHECKS: &str = "berth_password_checks_total";

fn v2(reg: &Registry) -> String {
    format!("{}/v2/", reg.url())
}

fn assert_throttled(a: &Answer, what: &str) {
    assert_eq!(a.status, 429, "{what}: {a:?}");
    let retry: u64 = a
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: no Retry-After: {a:?}"))
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=7200).contains(&retry), "{what}: Retry-After {retry}");
    assert!(
        a.message.contains("too many failed logins"),
        "{what}: {a:?}"
    );
}

/// The attack: wrong passwords from anywhere locked the account (admin and
/// robots included) for everyone. Now only the addresses that failed wait.
#[test]
fn wrong_passwords_do_not_lock_the_account_for_other_addresses() {
    let Some(reg) = registry_with_long_delays(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("alice", "alicepass1");
    admin.add_member("team", "alice", "developer");
    let (robot, secret) = admin.create_robot("team", "edge", "pull");
    push_image(
        &Client::new(),
        &reg.url(),
        &basic("admin", ADMIN_PASSWORD),
        "team/app",
        "v1",
    );
    reg.caught_up();
    let accounts = [
        ("alice", "alicepass1"),
        ("admin", ADMIN_PASSWORD),
        (robot.as_str(), secret.as_str()),
    ];
    for (name, right) in accounts {
        // Twenty addresses guess once each, on A and B in turn: all refused
        // as wrong, none as locked.
        for n in 2..22 {
            let at = if n % 2 == 0 { reg.a() } else { reg.b() };
            let a = send(
                &client_from(&format!("127.0.0.{n}")),
                "GET",
                &v2(at),
                &basic(name, &format!("guess{n}pass")),
                None,
            );
            assert_eq!(
                (a.status, a.code.as_deref()),
                (401, Some("UNAUTHORIZED")),
                "{name}, guess from 127.0.0.{n}: {a:?}"
            );
        }
        // The owner, from an address that has not failed: every way in works.
        let owner = client_from("127.0.1.1");
        let cred = basic(name, right);
        let a = send(&owner, "GET", &v2(&reg), &cred, None);
        assert_eq!(a.status, 200, "{name} locked out by others' guesses: {a:?}");
        let a = send(
            &owner,
            "GET",
            &token_url(&reg.url(), &["repository:team/app:pull"]),
            &cred,
            None,
        );
        assert_eq!(a.status, 200, "{name}'s token: {a:?}");
        let manifest = format!("{}/v2/team/app/manifests/v1", reg.url());
        let a = send(&owner, "GET", &manifest, &cred, None);
        assert_eq!(a.status, 200, "{name} pulls: {a:?}");
        // An address that guessed (on A) waits, whatever it sends now, on B too.
        let a = send(&client_from("127.0.0.2"), "GET", &v2(reg.b()), &cred, None);
        assert_throttled(&a, &format!("{name} from a guessing address"));
    }
    // The admin API, for the people among them.
    let r = client_from("127.0.1.1")
        .get(format!("{}/api/v1/projects", reg.url()))
        .basic_auth("alice", Some("alicepass1"))
        .send()
        .expect("admin API");
    assert_eq!(r.status().as_u16(), 200);
}

/// Guessing spread over many addresses: past the account's threshold, the
/// addresses that failed share one attempt per interval; new addresses do not.
#[test]
fn guessing_from_many_addresses_is_slowed_for_those_addresses_alone() {
    let Some(reg) = crate::setup::start(&[
        // No per-pair delay, so what holds attempts back here is the shared lane.
        ("BERTH_AUTH_LOGIN_BACKOFF", "0s"),
        ("BERTH_AUTH_ACCOUNT_FAILURE_THRESHOLD", "3"),
        ("BERTH_AUTH_ATTACKED_LOGIN_INTERVAL", "1h"),
    ]) else {
        return;
    };
    reg.admin().create_user("alice", "alicepass1");
    reg.caught_up();
    // Guesses go to A, then B: the lane is the account's on every replica.
    let guess_at = |at: &Registry, ip: &str, pw: &str| {
        send(&client_from(ip), "GET", &v2(at), &basic("alice", pw), None)
    };
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        assert_eq!(guess_at(reg.a(), ip, "guesspass1").status, 401);
    }
    let guess = |ip: &str, pw: &str| guess_at(reg.b(), ip, pw);
    // Under attack: the first failed address to try again takes the slot...
    assert_eq!(guess("127.0.0.2", "guesspass2").status, 401);
    // ...and the others wait for the next one, right password or not.
    for ip in ["127.0.0.3", "127.0.0.4", "127.0.0.2"] {
        let a = guess(ip, "alicepass1");
        assert_throttled(&a, ip);
        assert!(a.message.contains("many addresses"), "{a:?}");
    }
    // The owner's address has not failed: it is never held back.
    assert_eq!(guess("127.0.1.1", "alicepass1").status, 200);
    // Nor is a new address that only guesses once: that is what each guess costs.
    assert_eq!(guess("127.0.1.2", "guesspass3").status, 401);
}

/// A waiting pair is answered at once: 429 with Retry-After, in every API's
/// format, and the secret is not checked (no bcrypt runs).
#[test]
fn a_waiting_pair_gets_429_with_retry_after_before_bcrypt_runs() {
    let Some(reg) = registry_with_long_delays(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_user("alice", "alicepass1");
    admin.create_user("bob", "bobpass123");
    reg.caught_up();
    let guesser = client_from("127.0.0.2");
    let before = reg.metric(CHECKS);
    let a = send(
        &guesser,
        "GET",
        &v2(&reg),
        &basic("alice", "guesspass1"),
        None,
    );
    assert_eq!(a.status, 401, "{a:?}");
    let after_one = reg.metric(CHECKS);
    assert!(
        after_one > before,
        "the first guess was checked: {before} -> {after_one}"
    );

    // The guess was made on A; B holds the pair back as well.
    for pw in ["guesspass2", "alicepass1"] {
        let cred = basic("alice", pw);
        let a = send(&guesser, "GET", &v2(reg.b()), &cred, None);
        assert_throttled(&a, "/v2/");
        assert_eq!(a.code.as_deref(), Some("TOOMANYREQUESTS"));
        let a = send(
            &guesser,
            "GET",
            &token_url(&reg.b().url(), &["repository:x/y:pull"]),
            &cred,
            None,
        );
        assert_throttled(&a, "/v2/token");
        assert_eq!(a.code.as_deref(), Some("TOOMANYREQUESTS"));
        let a = send(
            &guesser,
            "GET",
            &format!("{}/api/v1/projects", reg.url()),
            &cred,
            None,
        );
        assert_throttled(&a, "admin API");
    }
    assert_eq!(
        reg.metric(CHECKS),
        after_one,
        "bcrypt ran for a waiting pair"
    );
    assert!(reg.metric("berth_logins_throttled_total") >= 6.0);

    // Another account from the same address (a shared NAT) is not affected.
    let a = send(
        &guesser,
        "GET",
        &v2(reg.b()),
        &basic("bob", "bobpass123"),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
    // The one checked guess is audited with its address; the refusals are not logins.
    let events = admin.audit_until("action=login&actor=alice", "the failed login", |e| {
        !e.is_empty()
    });
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["client"], "127.0.0.2");
    assert_eq!(events[0]["outcome"], "refused");
    assert_eq!(events[0]["detail"], "wrong password or no such account");
}

/// `PUT /api/v1/users/{n}/password` needs no other credentials, so its old
/// password is a login: throttled per pair in the same way, and no lock.
#[test]
fn changing_a_password_with_a_wrong_old_one_is_throttled_the_same_way() {
    let Some(reg) = registry_with_long_delays(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_user("alice", "alicepass1");
    reg.caught_up();
    // The first guess goes to A; everything after it to B.
    let change_at = |at: &Registry, http: &Client, old: &str| -> Answer {
        let body = serde_json::to_vec(&json!({"old_password": old, "new_password": "newpass123"}))
            .expect("json");
        send(
            http,
            "PUT",
            &format!("{}/api/v1/users/alice/password", at.url()),
            &Auth::None,
            Some(("application/json", body)),
        )
    };
    let change = |http: &Client, old: &str| change_at(reg.b(), http, old);
    let guesser = client_from("127.0.0.9");
    let a = change_at(reg.a(), &guesser, "guesspass1");
    assert_eq!(a.status, 403, "{a:?}");
    let checks = reg.metric(CHECKS);
    assert_throttled(&change(&guesser, "guesspass2"), "second guess");
    assert_throttled(
        &change(&guesser, "alicepass1"),
        "right old password from the guesser",
    );
    assert_eq!(reg.metric(CHECKS), checks, "bcrypt ran for a waiting pair");
    // The guesses count against the pair whatever the endpoint: its logins wait too.
    let a = send(
        &guesser,
        "GET",
        &v2(reg.b()),
        &basic("alice", "alicepass1"),
        None,
    );
    assert_throttled(&a, "login from the guesser");
    // The account is not locked: the owner logs in and changes it from elsewhere.
    let owner = client_from("127.0.0.10");
    let a = send(
        &owner,
        "GET",
        &v2(&reg),
        &basic("alice", "alicepass1"),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(change(&owner, "alicepass1").status, 204);
    admin.audit_until(
        "action=user.password&actor=alice",
        "the failed change",
        |e| {
            e.iter().filter(|e| e["outcome"] == "refused").count() == 1
                && e.iter().any(|e| e["outcome"] == "ok")
        },
    );
}

/// Tokens are not logins: one issued before keeps working while its account's
/// Basic logins from that very address wait, and while the account is attacked.
#[test]
fn tokens_issued_before_stay_valid_while_the_account_is_throttled() {
    let Some(reg) = registry_with_long_delays(&[("BERTH_AUTH_ACCOUNT_FAILURE_THRESHOLD", "3")])
    else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("alice", "alicepass1");
    admin.add_member("team", "alice", "developer");
    let base = reg.url();
    push_image(
        &Client::new(),
        &base,
        &basic("alice", "alicepass1"),
        "team/app",
        "v1",
    );
    reg.caught_up();
    // The token comes from A; the guesses and the token's use go to B.
    let http = client_from("127.0.0.2");
    let a = send(
        &http,
        "GET",
        &token_url(&reg.url(), &["repository:team/app:pull"]),
        &basic("alice", "alicepass1"),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
    let token = Auth::Bearer(a.body["token"].as_str().expect("token").to_string());
    for n in 2..8 {
        let ip = format!("127.0.0.{n}");
        send(
            &client_from(&ip),
            "GET",
            &v2(reg.b()),
            &basic("alice", "guesspass1"),
            None,
        );
    }
    assert_throttled(
        &send(&http, "GET", &v2(&reg), &basic("alice", "alicepass1"), None),
        "Basic from the token's address",
    );
    let a = send(
        &http,
        "GET",
        &format!("{}/v2/team/app/manifests/v1", reg.b().url()),
        &token,
        None,
    );
    assert_eq!(a.status, 200, "the token stopped working: {a:?}");
}

/// Behind a load balancer the client is named in X-Forwarded-For: believed from
/// a configured trusted proxy (rightmost entry that is not a trusted proxy),
/// ignored from anyone else.
#[test]
fn x_forwarded_for_names_the_client_only_through_a_trusted_proxy() {
    let Some(reg) = registry_with_long_delays(&[("BERTH_SERVER_TRUSTED_PROXIES", "127.0.0.2")])
    else {
        return;
    };
    let admin = reg.admin();
    admin.create_user("alice", "alicepass1");
    reg.caught_up();
    // Requests go to A and B in turn.
    let turn = std::cell::Cell::new(0u32);
    let login = |from: &str, xff: Option<&str>, pw: &str| -> u16 {
        turn.set(turn.get() + 1);
        let at = if turn.get() % 2 == 1 {
            reg.a()
        } else {
            reg.b()
        };
        let mut rb = client_from(from).get(v2(at)).basic_auth("alice", Some(pw));
        if let Some(x) = xff {
            rb = rb.header("X-Forwarded-For", x);
        }
        rb.send().expect("GET /v2/").status().as_u16()
    };
    let proxy = "127.0.0.2";
    // Through the proxy: the client is the rightmost untrusted entry, not what the
    // client itself put first.
    assert_eq!(
        login(proxy, Some("6.6.6.6, 203.0.113.7"), "guesspass1"),
        401
    );
    assert_eq!(login(proxy, Some("203.0.113.7"), "alicepass1"), 429);
    assert_eq!(login(proxy, Some("203.0.113.8"), "alicepass1"), 200);
    assert_eq!(login(proxy, None, "alicepass1"), 200);
    // From an untrusted peer the header is ignored: the peer is the client.
    let direct = "127.0.0.3";
    assert_eq!(login(direct, Some("198.51.100.1"), "guesspass2"), 401);
    assert_eq!(login(direct, Some("198.51.100.2"), "alicepass1"), 429);
    // The audit log names the clients so established.
    let events = admin.audit_until("action=login&actor=alice", "two failures", |e| e.len() >= 2);
    let mut clients: Vec<&str> = events.iter().filter_map(|e| e["client"].as_str()).collect();
    clients.sort();
    assert_eq!(clients, ["127.0.0.3", "203.0.113.7"], "{events:#?}");
}

/// `Authorization: Basic Og==` (empty name and password) is what clients such
/// as the OCI conformance suite send without credentials: anonymous.
#[test]
fn empty_basic_credentials_are_anonymous() {
    let Some(reg) = registry_with_long_delays(&[]) else {
        return;
    };
    let admin = reg.admin();
    admin.create_project("pub", true);
    admin.create_project("priv", false);
    let (http, base) = (Client::new(), reg.url());
    let root = basic("admin", ADMIN_PASSWORD);
    push_image(&http, &base, &root, "pub/app", "v1");
    push_image(&http, &base, &root, "priv/app", "v1");
    let empty = Auth::Header("Basic Og==".into());
    let (checks, failures) = (reg.metric(CHECKS), reg.metric("berth_login_failures_total"));
    for _ in 0..3 {
        let a = send(
            &http,
            "GET",
            &format!("{base}/v2/pub/app/manifests/v1"),
            &empty,
            None,
        );
        assert_eq!(a.status, 200, "public pull: {a:?}");
        let a = send(
            &http,
            "GET",
            &format!("{base}/v2/priv/app/manifests/v1"),
            &empty,
            None,
        );
        assert_eq!(
            (a.status, a.code.as_deref()),
            (401, Some("UNAUTHORIZED")),
            "{a:?}"
        );
        let challenge = a.challenge.unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=")
                && challenge.contains("scope=\"repository:priv/app:pull\""),
            "{challenge}"
        );
        let a = send(
            &http,
            "GET",
            &token_url(&reg.url(), &["repository:pub/app:pull"]),
            &empty,
            None,
        );
        assert_eq!(a.status, 200, "anonymous token: {a:?}");
    }
    assert_eq!(
        reg.metric(CHECKS),
        checks,
        "empty credentials were checked as a password"
    );
    assert_eq!(reg.metric("berth_login_failures_total"), failures);
    // Nothing was counted against the address: the admin logs in from it at once,
    // on either replica.
    for at in reg.all() {
        assert_eq!(send(&http, "GET", &v2(at), &root, None).status, 200);
    }
}

/// An initial password that must be reset, retried, proves the secret right: it
/// is refused with the reason, never throttled, and slows nobody down.
#[test]
fn an_unreset_password_retried_is_not_a_guess() {
    let Some(reg) = registry_with_long_delays(&[]) else {
        return;
    };
    let admin = reg.admin();
    let (s, v) = admin.call(
        "POST",
        "/api/v1/users",
        Some(json!({"name": "carol", "password": "initial123"})),
    );
    assert_eq!(s, 201, "{v}");
    admin.create_user("bob", "bobpass123");
    reg.caught_up();
    // Carol's retries go to A and B in turn; bob logs in on B.
    let (http, url) = (Client::new(), v2(reg.b()));
    for n in 0..6 {
        let at = if n % 2 == 0 { reg.a() } else { reg.b() };
        let a = send(&http, "GET", &v2(at), &basic("carol", "initial123"), None);
        assert_eq!(
            (a.status, a.code.as_deref()),
            (401, Some("UNAUTHORIZED")),
            "{a:?}"
        );
        assert!(
            a.message.contains("must be reset") && a.message.contains("berth passwd carol"),
            "{a:?}"
        );
    }
    let a = send(&http, "GET", &url, &basic("bob", "bobpass123"), None);
    assert_eq!(a.status, 200, "bob held back by carol's retries: {a:?}");
    admin.audit_until("action=login&actor=carol", "six refusals", |e| {
        e.len() == 6
            && e.iter()
                .all(|e| e["outcome"] == "refused" && e["detail"] == "password reset required")
    });
}

/// The controller API checks credentials with the client's address too.
#[test]
fn guesses_through_the_controller_api_are_throttled_per_address() {
    let Some(reg) = registry_with_long_delays(&[]) else {
        return;
    };
    let clusters = format!("{}/api/v1/clusters", reg.url());
    let guesser = client_from("127.0.0.9");
    let a = send(
        &guesser,
        "GET",
        &clusters,
        &basic("admin", "guesspass1"),
        None,
    );
    assert_eq!(a.status, 401, "{a:?}");
    // Guessed on A, held back on B.
    let clusters = format!("{}/api/v1/clusters", reg.b().url());
    let a = send(
        &guesser,
        "GET",
        &clusters,
        &basic("admin", ADMIN_PASSWORD),
        None,
    );
    assert_eq!(a.status, 429, "{a:?}");
    assert!(a.retry_after.is_some(), "{a:?}");
    let a = send(
        &client_from("127.0.0.10"),
        "GET",
        &clusters,
        &basic("admin", ADMIN_PASSWORD),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
    let v: &Value = &a.body;
    assert!(v.is_array(), "{v}");
}
