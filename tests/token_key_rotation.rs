//! `berth token-key rotate`: on PostgreSQL a second key is published while
//! tokens already issued keep verifying on a running replica; on the
//! embedded default the key file is replaced (0600), and only while no
//! registry runs on the data directory.

use std::process::{Command, Output};

use berth_testkit::berth::{registry_in, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::http::{self, Auth};
use berth_testkit::postgres::Postgres;

fn rotate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(berth_bin!());
    cmd.args(["token-key", "rotate"])
        .args(args)
        .env_remove("BERTH_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("berth runs")
}

fn admin() -> Auth {
    Auth::Basic("admin".into(), ADMIN_PASSWORD.into())
}

#[test]
fn a_rotation_on_postgres_keeps_issued_tokens_verifying() {
    assert!(
        berth_testkit::postgres::available(),
        "PostgreSQL (initdb, pg_ctl) is needed"
    );
    let url = Postgres::shared().database();
    let tmp = tempfile::tempdir().expect("tmp");
    let key = "5e".repeat(32);
    let env = [
        ("BERTH_META_BACKEND", "postgres"),
        ("BERTH_META_URL", url.as_str()),
        ("BERTH_CONTROLLER_SECRET_KEY", key.as_str()),
    ];
    let reg = registry_in(berth_bin!(), &tmp.path().join("data"), &[], &env);
    let client = reqwest::blocking::Client::new();
    let token =
        http::token(&client, &reg.url(), &admin(), &["registry:catalog:*"]).expect("a token");
    let keys = |sql: &str| Postgres::shared().psql(&url, sql);
    assert_eq!(keys("SELECT count(*) FROM auth_token_keys"), "1");

    let out = rotate(&[], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("published a new token signing key"),
        "{stdout}"
    );
    assert_eq!(keys("SELECT count(*) FROM auth_token_keys"), "2");
    let catalog = format!("{}/v2/_catalog", reg.url());
    let a = http::send(&client, "GET", &catalog, &Auth::Bearer(token), None);
    assert_eq!(a.status, 200, "the token issued before verifies: {a:?}");
    let fresh = http::token(&client, &reg.url(), &admin(), &["registry:catalog:*"])
        .expect("a token after the rotation");
    let a = http::send(&client, "GET", &catalog, &Auth::Bearer(fresh), None);
    assert_eq!(a.status, 200, "{a:?}");
}

#[test]
fn a_rotation_on_the_embedded_default_replaces_the_key_file_of_a_stopped_registry() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let dir = data.to_str().expect("path");
    let mut reg = registry_in(berth_bin!(), &data, &[], &[]);
    let out = rotate(&["--data-dir", dir], &[]);
    assert!(!out.status.success(), "refused while the registry runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another berth process"),
        "{stderr}"
    );
    reg.server.terminate();

    let before = std::fs::read(data.join("token.key")).expect("key");
    let out = rotate(&["--data-dir", dir], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read(data.join("token.key")).expect("key");
    assert_eq!(after.len(), 32);
    assert_ne!(before, after, "a new key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("token.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The registry starts with it and issues tokens that verify.
    let reg = registry_in(berth_bin!(), &data, &[], &[]);
    let client = reqwest::blocking::Client::new();
    let token =
        http::token(&client, &reg.url(), &admin(), &["registry:catalog:*"]).expect("a token");
    let catalog = format!("{}/v2/_catalog", reg.url());
    let a = http::send(&client, "GET", &catalog, &Auth::Bearer(token), None);
    assert_eq!(a.status, 200, "{a:?}");
}
