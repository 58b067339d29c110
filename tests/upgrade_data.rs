//! Upgrades keep data: a registry data directory and an edge cache directory
//! written by the previous release open with this one, with every image,
//! account, project, robot, cluster, node, app and publication intact.
//!
//! The fixture `tests/fixtures/previous-release-data.tar.gz` was written by
//! berth at commit 22adae7 (the release before the security hardening that
//! seals credentials at rest and tightens file modes). To write it again with
//! a binary of an earlier release:
//!
//! ```sh
//! BERTH_PREVIOUS_BIN=/path/to/old/berth cargo test --test upgrade_data -- --ignored --exact write_fixture_with_previous_release
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_testkit::berth::{self, kubeconfig, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::{ImageBuilder, OciLayout};
use berth_testkit::tools::docker_ref;
use berth_testkit::tools::CopyOptions;
use berth_testkit::{wait_until, Creds, Skopeo};
use serde_json::{json, Value};

const FIXTURE: &str = "tests/fixtures/previous-release-data.tar.gz";
const CLUSTER_TOKEN: &str = "cluster-token-previous-release";
const ALICE_PASSWORD: &str = "alice2024ok";
/// What the fixture's manifest file records about the images it holds.
const FACTS: &str = "facts.json";

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

/// Writes the fixture with the berth binary named by `BERTH_PREVIOUS_BIN`.
#[test]
#[ignore = "writes tests/fixtures/previous-release-data.tar.gz with an older berth"]
fn write_fixture_with_previous_release() {
    let old = std::env::var("BERTH_PREVIOUS_BIN").expect("set BERTH_PREVIOUS_BIN");
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("fixture");
    let (data, cache) = (root.join("data"), root.join("edge-cache"));
    let mut reg = berth::registry_in(&old, &data, &[], &[]);
    let admin = reg.admin();
    admin.create_project("team-a", false);
    admin.create_project("pub", true);
    admin.create_user("alice", ALICE_PASSWORD);
    admin.add_member("team-a", "alice", "developer");
    let robot = admin.create_robot("team-a", "edge", "pull");

    let layout = OciLayout::create(tmp.path().join("layout"));
    let skopeo = Skopeo::new();
    let creds = Creds::new("admin", ADMIN_PASSWORD);
    let mut facts = json!({"robot": [robot.0, robot.1]});
    for (repo, tag, content) in [("team-a/app", "1.0", "app\n"), ("pub/hello", "1", "hi\n")] {
        let image = ImageBuilder::new()
            .layer_file("srv/file", content)
            .layer_random_seeded(200_000, 7)
            .tag(tag)
            .build(&layout);
        skopeo.copy(
            &layout.reference(tag),
            &docker_ref(&reg.host(), repo, tag),
            &CopyOptions::default()
                .preserving_digests()
                .with_dest_creds(&creds),
        );
        facts[repo] = json!(image.digest());
    }

    // The node's edge cache pulls the private image with the robot.
    let mut edge = berth::edge(&old, &reg.url(), &cache, Some((&robot.0, &robot.1)), &[]);
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
            json!({"name": "n1", "cluster": "edge", "edge_url": edge.base_url(),
                    "labels": {"zone": "north"}}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let base = "/api/v1/projects/team-a";
    let (s, v) = admin.call(
        "POST",
        &format!("{base}/secrets"),
        Some(json!({"name": "db", "data": {"password": "s3cret-value"}})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = admin.call(
        "POST",
        &format!("{base}/apps"),
        Some(json!({"name": "web", "spec": {"kind": "Deployment",
            "containers": [{"name": "web", "image": "team-a/app:1.0"}]}})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = admin.call(
        "POST",
        &format!("{base}/apps/web/publish"),
        Some(json!({"nodes": ["n1"]})),
    );
    assert_eq!(s, 202, "{v}");
    wait_until("web running on n1", Duration::from_secs(60), || {
        let (_, v) = admin.call("GET", &format!("{base}/apps/web/publications"), None);
        v["publications"][0]["state"] == "running"
    });
    edge.terminate();
    reg.server.terminate();
    std::fs::write(root.join(FACTS), facts.to_string()).expect("facts");
    // The edge's URL changes with every run; the test points the node at the new edge.
    let out = Command::new("tar")
        .arg("-czf")
        .arg(fixture_path())
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .expect("tar");
    assert!(out.success());
}

fn unpack(dest: &Path) -> Value {
    std::fs::create_dir_all(dest).expect("mkdir");
    let ok = Command::new("tar")
        .arg("-xzf")
        .arg(fixture_path())
        .arg("-C")
        .arg(dest)
        .status()
        .expect("tar")
        .success();
    assert!(ok, "unpacking {FIXTURE}");
    let facts = std::fs::read_to_string(dest.join(FACTS)).expect("facts");
    serde_json::from_str(&facts).expect("facts JSON")
}

#[test]
fn data_of_the_previous_release_opens() {
    let bin = berth_bin!();
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("fixture");
    let facts = unpack(&root);
    let reg = berth::registry_in(bin, &root.join("data"), &[], &[]);
    let admin = reg.admin();

    // Accounts, projects, memberships and robots.
    let (s, v) = admin.call("GET", "/api/v1/projects", None);
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v
        .as_array()
        .expect("projects")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"team-a") && names.contains(&"pub"), "{v}");
    let (s, v) = admin.call("GET", "/api/v1/projects/team-a/members", None);
    assert_eq!(s, 200, "{v}");
    assert!(v.to_string().contains("alice"), "{v}");

    // Images: alice (developer) and the robot pull the private one, anyone the public one.
    let skopeo = Skopeo::new();
    let robot = (
        facts["robot"][0].as_str().expect("robot").to_string(),
        facts["robot"][1].as_str().expect("secret").to_string(),
    );
    for (who, creds) in [
        ("alice", Some(Creds::new("alice", ALICE_PASSWORD))),
        ("robot", Some(Creds::new(&robot.0, &robot.1))),
    ] {
        let digest = skopeo.manifest_digest(
            &docker_ref(&reg.host(), "team-a/app", "1.0"),
            creds.as_ref(),
        );
        assert_eq!(digest, facts["team-a/app"], "{who}");
        let out = tmp.path().join(format!("pull-{who}"));
        skopeo.copy(
            &docker_ref(&reg.host(), "team-a/app", "1.0"),
            &format!("oci:{}:x", out.display()),
            &CopyOptions::default().with_src_creds(creds.as_ref().expect("creds")),
        );
    }
    assert_eq!(
        skopeo.manifest_digest(&docker_ref(&reg.host(), "pub/hello", "1"), None),
        facts["pub/hello"]
    );

    // Controller: cluster (its sealed-on-open kubeconfig), node, secret, app, publication.
    let (s, yaml) = admin.get_text("/api/v1/nodes/n1/kubeconfig?project=team-a");
    assert_eq!(s, 200);
    assert!(yaml.contains(CLUSTER_TOKEN));
    let (s, v) = admin.call("GET", "/api/v1/nodes/n1", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["labels"]["zone"], "north", "{v}");
    let (s, v) = admin.call("GET", "/api/v1/projects/team-a/secrets/db", None);
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains("s3cret-value"), "{v}");
    let (s, v) = admin.call("GET", "/api/v1/projects/team-a/apps/web", None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = admin.call("GET", "/api/v1/projects/team-a/apps/web/publications", None);
    assert_eq!(s, 200, "{v}");
    let p = &v["publications"][0];
    assert_eq!(p["node"], "n1", "{v}");
    assert_eq!(p["images"][0]["digest"], facts["team-a/app"], "{v}");

    // The edge cache directory serves what it cached with its upstream gone.
    let dead = format!("http://127.0.0.1:{}", berth_testkit::proc::free_port());
    let edge = berth::edge(
        bin,
        &dead,
        &root.join("edge-cache"),
        Some((&robot.0, &robot.1)),
        &[],
    );
    let digest = skopeo.manifest_digest(
        &docker_ref(
            &edge.host(),
            "team-a/app",
            facts["team-a/app"].as_str().expect("digest"),
        ),
        None,
    );
    assert_eq!(digest, facts["team-a/app"]);
}
