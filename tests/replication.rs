//! Replication between registries, end to end against the built binary:
//! policies managed by system administrators only, their remote checked
//! like any outbound target (no private addresses unless configured), the
//! remote's password sealed at rest and never shown; the same through
//! `berth replication`.

use std::process::Command;

use berth_testkit::berth::{registry_with, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use serde_json::{json, Value};

const REMOTE_PASSWORD: &str = "remote-secret-0xBEEF";

fn policy(name: &str, remote: &str) -> Value {
    json!({
        "name": name,
        "direction": "push",
        "remote": {"url": remote, "username": "robot", "password": REMOTE_PASSWORD},
        "filters": {"repositories": "team-a/**", "tags": "v*"},
        "dest_project": "dr",
        "trigger": {"schedule": "*/30 * * * *"},
        "bandwidth": "10MiB/s",
        "deletes": false
    })
}

#[test]
fn policies_are_for_administrators_checked_and_their_passwords_sealed() {
    let mut reg = registry_with(berth_bin!(), &[], &[]);
    let admin = reg.admin();
    let private = "http://127.0.0.1:9";

    // Without the setting, a private remote is refused, and the refusal
    // names the setting that would allow it.
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(policy("to-dr", private)),
    );
    assert_eq!(s, 400, "{v}");
    let err = v["error"].as_str().expect("error");
    assert!(err.contains("replication.allow_private_remotes"), "{err}");
    reg.server.terminate();

    let mut reg = registry_with(
        berth_bin!(),
        &[],
        &[("BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES", "true")],
    );
    let admin = reg.admin();
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(policy("to-dr", private)),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["remote"]["has_password"], true, "{v}");
    assert!(!v.to_string().contains(REMOTE_PASSWORD), "{v}");
    assert_eq!(v["trigger"], json!({"schedule": "*/30 * * * *"}));
    assert_eq!(v["filters"]["repositories"], "team-a/**");
    assert_eq!(v["bandwidth"], "10MiB/s");
    let (s, v) = admin.call(
        "POST",
        "/api/v1/replications",
        Some(policy("to-dr", private)),
    );
    assert_eq!(s, 409, "{v}");

    // Bad input: each refusal says which field, as JSON.
    for (change, words) in [
        (json!({"trigger": {"schedule": "61 * * * *"}}), "minute"),
        (json!({"bandwidth": "fast"}), "bandwidth"),
        (
            json!({"filters": {"repositories": ""}}),
            "filters.repositories",
        ),
        (json!({"dest_project": "a/b"}), "dest_project"),
        (json!({"direction": "sideways"}), "direction"),
        (
            json!({"remote": {"url": "http://127.0.0.1:9/v2/"}}),
            "no path",
        ),
    ] {
        let mut body = policy("bad", private);
        for (k, val) in change.as_object().expect("object") {
            body[k] = val.clone();
        }
        let (s, v) = admin.call("POST", "/api/v1/replications", Some(body));
        assert_eq!(s, 400, "{change}: {v}");
        let err = v["error"].as_str().unwrap_or_default();
        assert!(err.contains(words), "{change}: {err}");
    }

    // Only system administrators see or manage policies.
    admin.create_user("dev", "devpass123");
    let dev = admin.as_user("dev", "devpass123");
    for (m, p, b) in [
        ("GET", "/api/v1/replications", None),
        ("GET", "/api/v1/replications/to-dr", None),
        (
            "POST",
            "/api/v1/replications",
            Some(policy("mine", private)),
        ),
        ("DELETE", "/api/v1/replications/to-dr", None),
    ] {
        let (s, v) = dev.call(m, p, b);
        assert_eq!(s, 403, "{m} {p}: {v}");
    }

    // PATCH changes what it names and keeps the rest.
    let (s, v) = admin.call(
        "PATCH",
        "/api/v1/replications/to-dr",
        Some(json!({"trigger": "on_push", "bandwidth": "", "deletes": true})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["trigger"], "on_push");
    assert_eq!(v["bandwidth"], "");
    assert_eq!(v["deletes"], true);
    assert_eq!(v["remote"]["username"], "robot");
    assert_eq!(v["remote"]["has_password"], true);
    let (s, list) = admin.call("GET", "/api/v1/replications", None);
    assert_eq!(s, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    admin.audit_until("action=replication.update", "the policy change", |events| {
        !events.is_empty()
    });

    // The password is sealed at rest, and the policy survives a restart.
    reg.server.terminate();
    let bytes = std::fs::read(reg.data_dir.join("berth.redb")).expect("database");
    assert!(
        !bytes
            .windows(REMOTE_PASSWORD.len())
            .any(|w| w == REMOTE_PASSWORD.as_bytes()),
        "the remote password lies in the clear in the database"
    );
    reg.server.start_again();
    let (s, v) = admin.call("GET", "/api/v1/replications/to-dr", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deletes"], true);
    let (s, _) = admin.call("DELETE", "/api/v1/replications/to-dr", None);
    assert_eq!(s, 204);
    let (s, v) = admin.call("GET", "/api/v1/replications/to-dr", None);
    assert_eq!(s, 404, "{v}");
}

/// `berth replication ...` as an operator types it.
fn cli(base: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(berth_bin!())
        .args(args)
        .env("BERTH_URL", base)
        .env("BERTH_USER", "admin")
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_REMOTE_PASSWORD", REMOTE_PASSWORD)
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("running berth");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_manages_policies_and_names_flags_in_refusals() {
    let reg = registry_with(
        berth_bin!(),
        &[],
        &[("BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES", "true")],
    );
    let base = reg.url();
    let (ok, out, err) = cli(
        &base,
        &[
            "replication",
            "create",
            "to-dr",
            "--direction",
            "push",
            "--remote",
            "http://127.0.0.1:9",
            "--remote-user",
            "robot",
            "--repositories",
            "team-a/**",
            "--trigger",
            "0 3 * * *",
            "--bandwidth",
            "1MiB/s",
        ],
    );
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["trigger"], json!({"schedule": "0 3 * * *"}));
    assert_eq!(v["remote"]["has_password"], true);

    let (ok, out, err) = cli(
        &base,
        &["replication", "update", "to-dr", "--bandwidth", "lots"],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("--bandwidth") && err.contains("HTTP 400"),
        "{err}"
    );

    let (ok, out, err) = cli(&base, &["replication", "list"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v[0]["name"], "to-dr", "{v}");
    let (ok, out, err) = cli(&base, &["replication", "delete", "to-dr"]);
    assert!(ok && out.contains("deleted"), "{out}{err}");
    let (ok, _, err) = cli(&base, &["replication", "show", "to-dr"]);
    assert!(!ok && err.contains("HTTP 404"), "{err}");
}
