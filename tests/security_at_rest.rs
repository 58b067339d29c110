//! Credentials that must not reach the wrong hands: a cluster's kubeconfig is
//! exported to system administrators only, and what the data directory holds
//! (bcrypt hashes, kubeconfigs, edge passwords, private images) is readable by
//! berth's user alone, with credentials sealed inside the database.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use berth_testkit::berth::{self, kubeconfig, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use serde_json::json;

const CLUSTER_TOKEN: &str = "cluster-token-Q7xT2";
const EDGE_PASSWORD: &str = "edge-pass-W9vK4";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A cluster `edge` with node `n1` whose edge has credentials.
fn add_cluster_and_node(admin: &berth::Admin) {
    let (s, v) = admin.call(
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "edge", "kubeconfig": kubeconfig(CLUSTER_TOKEN)})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = admin.call(
        "POST",
        "/api/v1/nodes",
        Some(
            json!({"name": "n1", "cluster": "edge", "edge_url": "http://127.0.0.1:9",
                    "edge_credentials": {"user": "ctl", "password": EDGE_PASSWORD}}),
        ),
    );
    assert_eq!(s, 201, "{v}");
}

#[test]
fn kubeconfig_export_is_refused_to_project_maintainers() {
    let reg = berth::registry(berth_bin!());
    let admin = reg.admin();
    admin.create_project("team", false);
    admin.create_user("maint", "maint2024ok");
    admin.add_member("team", "maint", "maintainer");
    add_cluster_and_node(&admin);

    let url = format!("{}/api/v1/nodes/n1/kubeconfig?project=team", reg.url());
    let http = reqwest::blocking::Client::new();
    let res = http
        .get(&url)
        .basic_auth("maint", Some("maint2024ok"))
        .send()
        .expect("reachable");
    assert_eq!(res.status().as_u16(), 409);
    let body = res.text().expect("body");
    assert!(!body.contains(CLUSTER_TOKEN), "credential leaked: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("only system administrators"),
        "the refusal says why: {v}"
    );

    // A system administrator still gets it, with the project's namespace.
    let res = http
        .get(&url)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("reachable");
    assert_eq!(res.status().as_u16(), 200);
    let yaml = res.text().expect("body");
    assert!(yaml.contains(CLUSTER_TOKEN));
    assert!(yaml.contains("namespace: team"), "{yaml}");

    // The refusal is audited (audit entries are written in the background).
    admin.audit_until(
        "action=kubeconfig.export&actor=maint",
        "the refused export",
        |events| {
            events.iter().any(|e| {
                e["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("refused"))
            })
        },
    );
}

#[test]
fn data_directory_is_private_and_credentials_are_sealed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    // A data directory left world-readable by an earlier release is narrowed on start.
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut reg = berth::registry_in(berth_bin!(), &data, &[], &[]);
    let admin = reg.admin();
    add_cluster_and_node(&admin);

    // The API still answers with what was stored.
    let (s, v) = admin.call("GET", "/api/v1/nodes/n1", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["edge_user"], "ctl", "{v}");
    reg.server.terminate();

    assert_eq!(mode(&data), 0o700, "data directory");
    let db = data.join("berth.redb");
    assert_eq!(mode(&db), 0o600, "metadata database");
    for f in ["admin-password", "token.key", "controller-secret.key"] {
        let p = data.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    let bytes = std::fs::read(&db).expect("read db");
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        !has(CLUSTER_TOKEN),
        "the kubeconfig lies in the clear in the database"
    );
    assert!(
        !has(EDGE_PASSWORD),
        "the edge password lies in the clear in the database"
    );

    // A database file made readable by hand is narrowed again on the next start,
    // and the sealed records open with the key kept in the data directory.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    reg.server.start_again();
    let (s, v) = admin.call("GET", "/api/v1/nodes/n1", None);
    assert_eq!(s, 200, "{v}");
    // No project `team` is needed for the export itself: the namespace is just a name.
    let (s, yaml) = admin.get_text("/api/v1/nodes/n1/kubeconfig?project=team");
    assert_eq!(s, 200);
    assert!(yaml.contains(CLUSTER_TOKEN));
    assert_eq!(mode(&db), 0o600, "narrowed again on start");
}
