//! Token signing keys: listed (never their secrets) and rotated with
//! overlap through the admin API and `berth token-keys`, on the embedded
//! file (kept across restarts) and on PostgreSQL, where every replica picks
//! up a rotation: a token replica A signs with the new key verifies on B,
//! and a token signed before the rotation keeps working until it expires.

use std::process::Command;
use std::time::Duration;

use berth_testkit::berth::{registry_in, Registry, ADMIN_PASSWORD};
use berth_testkit::http::{self, Auth};
use berth_testkit::postgres::Postgres;
use berth_testkit::{berth_bin, wait_until};
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(120);

/// `berth token-keys ARGS --json` as the administrator, its JSON answer.
fn cli(reg: &Registry, args: &[&str]) -> Value {
    let out = Command::new(berth_bin!())
        .arg("token-keys")
        .args(args)
        .arg("--json")
        .env("BERTH_URL", reg.url())
        .env("BERTH_USER", "admin")
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("berth token-keys");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "berth token-keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn token(reg: &Registry) -> String {
    let admin = Auth::Basic("admin".into(), ADMIN_PASSWORD.into());
    http::token(&reqwest::blocking::Client::new(), &reg.url(), &admin, &[]).expect("token")
}

/// The status `/v2/` answers `token` with.
fn with_token(reg: &Registry, token: &str) -> u16 {
    let http = reqwest::blocking::Client::new();
    http::send(
        &http,
        "GET",
        &format!("{}/v2/", reg.url()),
        &Auth::Bearer(token.into()),
        None,
    )
    .status
}

fn states(list: &Value) -> Vec<(u64, String)> {
    list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["id"].as_u64().expect("id"),
                k["state"].as_str().expect("state").into(),
            )
        })
        .collect()
}

#[test]
fn embedded_keys_rotate_with_overlap_and_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let mut reg = registry_in(berth_bin!(), &data, &[], &[]);
    let first = cli(&reg, &["list"]);
    let [(id, state)] = states(&first).try_into().expect("one key at first");
    assert_eq!(state, "signing");
    assert_eq!(first["signing_here"], id);
    let text = first.to_string();
    assert!(!text.contains("secret"), "never a secret: {text}");
    let before = token(&reg);

    let rotated = cli(&reg, &["rotate"]);
    let new = rotated["published"]["id"].as_u64().expect("new id");
    assert_eq!(
        states(&rotated),
        vec![(id, "retiring".into()), (new, "signing".into())],
        "{rotated}"
    );
    assert_eq!(rotated["signing_here"], new, "one process signs at once");
    let retiring = &rotated["keys"][0];
    assert!(retiring["retires_at"].as_u64() >= rotated["published"]["signs_from"].as_u64());
    let after = token(&reg);
    assert_eq!(with_token(&reg, &before), 200, "signed before, still valid");
    assert_eq!(with_token(&reg, &after), 200);
    reg.admin()
        .audit_until("action=token-keys.rotate", "the rotation", |e| {
            e.iter().any(|e| e["target"] == format!("key {new}"))
        });

    // Administrators only.
    let admin = reg.admin();
    admin.create_user("pat", "pat-password-1");
    let pat = admin.as_user("pat", "pat-password-1");
    assert_eq!(pat.call("GET", "/api/v1/system/token-keys", None).0, 403);
    assert_eq!(
        pat.call("POST", "/api/v1/system/token-keys/rotate", None).0,
        403
    );

    // Kept in the data directory: a restart changes nothing.
    reg.server.terminate();
    drop(reg);
    let reg = registry_in(berth_bin!(), &data, &[], &[]);
    assert_eq!(with_token(&reg, &before), 200);
    assert_eq!(with_token(&reg, &after), 200);
    assert_eq!(cli(&reg, &["list"])["signing_here"], new);
    assert!(!data.join("token.key").exists());
}

fn replica(data: &std::path::Path, url: &str) -> Registry {
    registry_in(
        berth_bin!(),
        data,
        &[],
        &[
            ("BERTH_META_BACKEND", "postgres"),
            ("BERTH_META_URL", url),
            ("BERTH_CONTROLLER_SECRET_KEY", &"6b".repeat(32)),
            ("BERTH_AUTH_TOKEN_TTL", "60s"),
            ("BERTH_AUTH_TOKEN_KEY_REFRESH", "1s"),
        ],
    )
}

#[test]
fn every_replica_takes_up_a_rotation_and_old_tokens_live_out_their_time() {
    assert!(
        berth_testkit::postgres::available(),
        "PostgreSQL (initdb, pg_ctl) is needed"
    );
    let url = Postgres::shared().database();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let a = replica(&data, &url);
    let b = replica(&data, &url);
    let old = cli(&a, &["list"])["signing_here"]
        .as_u64()
        .expect("signing");
    assert_eq!(cli(&b, &["list"])["signing_here"], old, "one key");
    let before = token(&a);

    let (status, rotated) = a
        .admin()
        .call("POST", "/api/v1/system/token-keys/rotate", None);
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["published"]["id"].as_u64().expect("new id");
    assert_eq!(
        rotated["published"]["state"], "published",
        "signs later: {rotated}"
    );
    assert_eq!(rotated["signing_here"], old);

    // Once A signs with it, B verifies what A signs (B read it before).
    wait_until("A signs with the new key", BOUND, || {
        cli(&a, &["list"])["signing_here"] == new
    });
    let after = token(&a);
    assert_eq!(with_token(&b, &after), 200, "A's new token on B");
    assert_eq!(with_token(&b, &before), 200, "the old key still verifies");
    wait_until("B signs with the new key", BOUND, || {
        cli(&b, &["list"])["signing_here"] == new
    });
    assert_eq!(with_token(&a, &token(&b)), 200, "B's new token on A");

    // The token signed before expires; then the old key retires.
    wait_until("the old token to expire", BOUND, || {
        with_token(&b, &before) == 401
    });
    wait_until("the old key to retire", BOUND, || {
        states(&cli(&b, &["list"])) == vec![(new, "signing".to_string())]
    });
    assert_eq!(with_token(&b, &token(&a)), 200, "the new key signs on");
}
