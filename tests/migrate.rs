//! Moving and keeping a registry's data, end to end: a `berth serve` on
//! its embedded defaults (redb, blobs in the data directory) gets projects
//! (one private), an account, a robot, images, a webhook, a retention
//! policy, a cluster and an app; it is stopped; then
//! - `berth migrate --to <PostgreSQL> --blobs-to s3` moves it onto a
//!   PostgreSQL database and a three-node Garage bucket, the recount says
//!   OK for every kind, and a `berth serve` on those serves everything;
//! - `berth backup` then `berth restore` into a fresh data directory does
//!   the same (the sealing key written 0600; missing blobs reported);
//! - a target that holds anything, and a source still running, are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_testkit::berth::{registry_in, Registry, ADMIN_PASSWORD};
use berth_testkit::http::{self, Auth};
use berth_testkit::postgres::Postgres;
use berth_testkit::{berth, berth_bin, digest_of, GarageCluster};
use serde_json::json;

/// What the source registry holds, to find again on the target.
struct Facts {
    /// (repository, tag, manifest digest, layer digest)
    images: Vec<(String, String, String, String)>,
    robot: (String, String),
}

fn admin_auth() -> Auth {
    Auth::Basic("admin".into(), ADMIN_PASSWORD.into())
}

/// A stopped embedded registry in `data` with something of every kind.
fn populated(data: &Path) -> Facts {
    let reg = registry_in(
        berth_bin!(),
        data,
        &[],
        &[("BERTH_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")],
    );
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_project("open", true);
    admin.create_user("pat", "pat-password-1");
    admin.add_member("team", "pat", "developer");
    let robot = admin.create_robot("team", "ci", "pull");
    let client = reqwest::blocking::Client::new();
    let mut images = Vec::new();
    for (repo, tag) in [("team/app", "v1"), ("team/app", "v2"), ("open/tool", "1.0")] {
        let p = http::push_image(&client, &reg.url(), &admin_auth(), repo, tag);
        images.push((repo.into(), tag.into(), p.digest, p.layer));
    }
    let (s, v) = admin.call(
        "POST",
        "/api/v1/projects/team/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/berth", "events": ["push"]})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = admin.call(
        "PUT",
        "/api/v1/projects/team/retention",
        Some(json!({"rules": [{"repositories": "app", "tags": "*", "keep_last": 5}]})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = admin.call(
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "edge", "kubeconfig": berth::kubeconfig("t")})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = admin.call(
        "POST",
        "/api/v1/projects/team/apps",
        Some(json!({"name": "web", "spec": {"kind": "Deployment",
            "containers": [{"name": "web", "image": "team/app:v1"}]}})),
    );
    assert_eq!(s, 201, "{v}");
    stop(reg);
    Facts { images, robot }
}

fn stop(mut reg: Registry) {
    reg.server.terminate();
}

fn berth_cmd(args: &[&str]) -> Output {
    Command::new(berth_bin!())
        .args(args)
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("berth runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The recount table: every kind OK, none MISMATCH, and the kinds that
/// must have been copied with their counts on both sides.
fn assert_recount(stdout: &str) {
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
    for (kind, n) in [
        ("accounts", 2),
        ("projects", 2),
        ("robots", 1),
        ("manifests", 3),
        ("tags", 3),
        ("webhooks", 1),
        ("retention policies", 1),
        ("controller: ctl_clusters", 1),
        ("controller: ctl_apps", 1),
        ("blobs in the target's storage", 6),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{kind} ")))
            .unwrap_or_else(|| panic!("no {kind} in the recount:\n{stdout}"));
        let cols: Vec<&str> = line[kind.len()..].split_whitespace().collect();
        assert_eq!(
            cols,
            [n.to_string().as_str(), &n.to_string(), "OK"],
            "{line}"
        );
    }
}

/// The registry serves everything the source held, as the source did.
fn assert_serves(reg: &Registry, facts: &Facts) {
    let client = reqwest::blocking::Client::new();
    let pat = Auth::Basic("pat".into(), "pat-password-1".into());
    for (repo, tag, digest, layer) in &facts.images {
        let who = if repo.starts_with("team/") {
            &pat
        } else {
            &Auth::None
        };
        let token = http::token(
            &client,
            &reg.url(),
            who,
            &[&format!("repository:{repo}:pull")],
        )
        .unwrap_or_else(|a| panic!("token for {repo}: {a:?}"));
        let res = client
            .get(format!("{}/v2/{repo}/manifests/{tag}", reg.url()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .bearer_auth(&token)
            .send()
            .expect("GET manifest");
        assert_eq!(res.status(), 200, "{repo}:{tag}");
        let header = res.headers()["docker-content-digest"]
            .to_str()
            .expect("header");
        assert_eq!(header, digest, "{repo}:{tag}");
        let body = res.bytes().expect("body");
        assert_eq!(&digest_of(&body), digest, "the same bytes");
        let res = client
            .get(format!("{}/v2/{repo}/blobs/{layer}", reg.url()))
            .bearer_auth(&token)
            .send()
            .expect("GET blob");
        assert_eq!(res.status(), 200, "{repo} layer");
        assert_eq!(&digest_of(&res.bytes().expect("layer")), layer);
    }
    // The private project stays private to anonymous clients.
    let anon = http::send(
        &client,
        "GET",
        &format!("{}/v2/team/app/manifests/v1", reg.url()),
        &Auth::None,
        None,
    );
    assert_eq!(anon.status, 401, "{anon:?}");
    if let Ok(token) = http::token(
        &client,
        &reg.url(),
        &Auth::None,
        &["repository:team/app:pull"],
    ) {
        let a = http::send(
            &client,
            "GET",
            &format!("{}/v2/team/app/manifests/v1", reg.url()),
            &Auth::Bearer(token),
            None,
        );
        assert!(
            a.status == 401 || a.status == 403 || a.status == 404,
            "{a:?}"
        );
    }
    // The robot's secret still opens its project.
    let (name, secret) = &facts.robot;
    http::token(
        &client,
        &reg.url(),
        &Auth::Basic(name.clone(), secret.clone()),
        &["repository:team/app:pull"],
    )
    .expect("the robot logs in");
    let admin = reg.admin();
    let (s, v) = admin.call("GET", "/api/v1/projects/team/webhooks", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["url"], "http://127.0.0.1:9/berth", "{v}");
    let (s, v) = admin.call("GET", "/api/v1/projects/team/retention", None);
    assert_eq!(
        (s, v["rules"][0]["keep_last"].clone()),
        (200, json!(5)),
        "{v}"
    );
    let (s, v) = admin.call("GET", "/api/v1/projects/team/apps", None);
    assert_eq!(s, 200, "{v}");
    assert!(v.to_string().contains("\"web\""), "{v}");
    let (s, v) = admin.call("GET", "/api/v1/clusters", None);
    assert_eq!(s, 200, "{v}");
    assert!(v.to_string().contains("\"edge\""), "{v}");
}

fn sealing_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("controller-secret.key")).expect("the embedded key")
}

/// A configuration file naming PostgreSQL `url`, the cluster's bucket
/// through node 0, and the sealing `key`.
fn target_config(dir: &Path, url: &str, garage: &GarageCluster, key: &str) -> PathBuf {
    let mut storage = String::from("[storage]\n");
    for (k, v) in garage.berth_env(0) {
        let key = k.trim_start_matches("BERTH_STORAGE_").to_lowercase();
        if key == "allow_http" {
            storage.push_str(&format!("{key} = {v}\n"));
        } else {
            storage.push_str(&format!("{key} = \"{v}\"\n"));
        }
    }
    let toml = format!(
        "[meta]\nbackend = \"postgres\"\nurl = \"{url}\"\n\n{storage}\n[controller]\nsecret_key = \"{key}\"\n"
    );
    let path = dir.join("target.toml");
    std::fs::write(&path, toml).expect("config");
    path
}

#[test]
fn migrate_moves_a_registry_onto_postgres_and_s3() {
    assert!(
        berth_testkit::postgres::available(),
        "PostgreSQL (initdb, pg_ctl) is needed"
    );
    let Some(garage) = GarageCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let facts = populated(&data);
    let url = Postgres::shared().database();
    let config = target_config(tmp.path(), &url, &garage, sealing_key(&data).trim());
    let data_arg = data.to_str().expect("path");
    let config_arg = config.to_str().expect("path");
    let out = berth_cmd(&[
        "migrate",
        "--data-dir",
        data_arg,
        "--to",
        &url,
        "--target-config",
        config_arg,
        "--blobs-to",
        "s3",
    ]);
    let stdout = text(&out.stdout);
    eprintln!("{stdout}\n{}", text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_recount(&stdout);
    assert!(
        !stdout.contains(&url),
        "the database password is not printed: {stdout}"
    );

    let reg = registry_in(
        berth_bin!(),
        &tmp.path().join("replica"),
        &[],
        &[("BERTH_CONFIG", config_arg)],
    );
    assert_serves(&reg, &facts);
    assert!(
        !tmp.path().join("replica/blobs").exists(),
        "the blobs are served from the bucket"
    );
}

#[test]
fn backup_and_restore_bring_a_registry_back_into_a_fresh_data_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let facts = populated(&data);
    let backup = tmp.path().join("backup");
    let out = berth_cmd(&[
        "backup",
        "--data-dir",
        data.to_str().expect("path"),
        "--out",
        backup.to_str().expect("path"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
    assert!(stdout.contains("Blob bytes are not in it"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(backup.join("sealing.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the sealing key is its owner's only");
    }
    assert_eq!(
        std::fs::read_to_string(backup.join("sealing.key"))
            .expect("key")
            .trim(),
        sealing_key(&data).trim()
    );
    let listed = std::fs::read_to_string(backup.join("blobs.txt")).expect("list");
    assert_eq!(listed.lines().count(), 6, "{listed}");

    // Without the blobs' bytes, the restore says which are missing.
    let bare = tmp.path().join("bare");
    let restore = |into: &Path| {
        berth_cmd(&[
            "restore",
            "--from",
            backup.to_str().expect("path"),
            "--data-dir",
            into.to_str().expect("path"),
        ])
    };
    let out = restore(&bare);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.matches("missing blob: sha256:").count(),
        6,
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("6 blobs"),
        "{}",
        text(&out.stderr)
    );

    // With them (the object store's own backup, here the directory), all is back.
    let fresh = tmp.path().join("fresh");
    copy_dir(&data.join("blobs"), &fresh.join("blobs"));
    let out = restore(&fresh);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_recount(&stdout);
    assert_eq!(sealing_key(&fresh), sealing_key(&data), "the key is back");

    // A second restore lands on data: refused, nothing changed.
    let out = restore(&fresh);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is not empty") && stderr.contains("accounts"),
        "{stderr}"
    );

    let reg = registry_in(berth_bin!(), &fresh, &[], &[]);
    assert_serves(&reg, &facts);
}

#[test]
fn migrate_refuses_a_running_source_and_a_target_that_holds_data() {
    assert!(
        berth_testkit::postgres::available(),
        "PostgreSQL (initdb, pg_ctl) is needed"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let url = Postgres::shared().database();
    let data_arg = data.to_str().expect("path");

    // The source still running: its database is locked, and migrate says so.
    let running = registry_in(berth_bin!(), &data, &[], &[]);
    let out = berth_cmd(&["migrate", "--data-dir", data_arg, "--to", &url]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("in use by another berth process"),
        "{stderr}"
    );
    stop(running);

    // A replica started on the target first made its administrator there.
    let key = "5e".repeat(32);
    let replica = registry_in(
        berth_bin!(),
        &tmp.path().join("replica"),
        &[],
        &[
            ("BERTH_META_BACKEND", "postgres"),
            ("BERTH_META_URL", &url),
            ("BERTH_CONTROLLER_SECRET_KEY", &key),
        ],
    );
    stop(replica);
    let out = berth_cmd(&["migrate", "--data-dir", data_arg, "--to", &url]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is not empty (it holds 1 accounts")
            && stderr.contains("copies only into an empty target"),
        "{stderr}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
