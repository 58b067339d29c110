//! System robot accounts (`/api/v1/robots`), end to end: a robot that pulls
//! from two private projects is the one credential of an edge that serves
//! both; a third project stays hidden from it; only system administrators
//! manage them; the secret is shown once; revoking it ends its access.

use std::time::Duration;

use berth_testkit::berth::{self, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::http::{basic, push_image, send};
use serde_json::json;

const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// GET `url` anonymously (as a node's containerd asks its edge): status and body.
fn get(url: &str) -> (u16, Vec<u8>) {
    let res = http()
        .get(url)
        .header("Accept", ACCEPT)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (res.status().as_u16(), res.bytes().expect("body").to_vec())
}

#[test]
fn a_two_project_system_robot_serves_both_projects_through_one_edge() {
    let registry = berth::registry(berth_bin!());
    let base = registry.url();
    let admin = registry.admin();
    let root = basic("admin", ADMIN_PASSWORD);
    let mut pushed = Vec::new();
    for p in ["alpha", "beta", "gamma"] {
        admin.create_project(p, false);
        pushed.push(push_image(
            &http(),
            &base,
            &root,
            &format!("{p}/app"),
            "1.0",
        ));
    }

    // Only system administrators manage system robots.
    admin.create_user("dev", "dev-password-1234");
    admin.add_member("alpha", "dev", "project-admin");
    let dev = admin.as_user("dev", "dev-password-1234");
    let body = json!({"name": "edge", "projects": ["alpha", "beta"], "access": "pull"});
    let (status, v) = dev.call("POST", "/api/v1/robots", Some(body.clone()));
    assert_eq!(status, 403, "{v}");
    let (status, v) = dev.call("GET", "/api/v1/robots", None);
    assert_eq!(status, 403, "{v}");
    for (bad, says) in [
        (
            json!({"name": "x", "projects": ["alpha"], "access": "push"}),
            "system robots pull",
        ),
        (
            json!({"name": "x", "projects": ["nope"], "access": "pull"}),
            "no project named nope",
        ),
        (
            json!({"name": "x", "projects": [], "access": "pull"}),
            "at least one project",
        ),
        (
            json!({"name": "x", "projects": "alpha", "access": "pull"}),
            "\"*\"",
        ),
    ] {
        let (status, v) = admin.call("POST", "/api/v1/robots", Some(bad.clone()));
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| e.contains(says)), "{v}");
    }

    let (status, created) = admin.call("POST", "/api/v1/robots", Some(body.clone()));
    assert_eq!(status, 201, "{created}");
    let name = created["name"].as_str().expect("name").to_string();
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert_eq!(name, "robot$edge");
    let (status, v) = admin.call("POST", "/api/v1/robots", Some(body));
    assert_eq!(status, 409, "a second robot$edge: {v}");
    let (status, listed) = admin.call("GET", "/api/v1/robots", None);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed[0]["projects"], json!(["alpha", "beta"]), "{listed}");
    assert!(
        !listed.to_string().contains(&secret),
        "secret listed: {listed}"
    );

    // The robot reads its two projects, not the third, and pushes nowhere.
    let robot = basic(&name, &secret);
    for (i, p) in ["alpha", "beta"].iter().enumerate() {
        let a = send(
            &http(),
            "GET",
            &format!("{base}/v2/{p}/app/manifests/1.0"),
            &robot,
            None,
        );
        assert_eq!(a.status, 200, "{p}: {a:?}");
        assert_eq!(a.body["layers"][0]["digest"], pushed[i].layer.as_str());
    }
    let a = send(
        &http(),
        "GET",
        &format!("{base}/v2/gamma/app/manifests/1.0"),
        &robot,
        None,
    );
    assert_eq!(a.status, 404, "gamma is hidden from it: {a:?}");
    let a = send(
        &http(),
        "POST",
        &format!("{base}/v2/alpha/app/blobs/uploads/"),
        &robot,
        None,
    );
    assert!(a.status == 401 || a.status == 403, "push: {a:?}");

    // One edge, one credential, both projects.
    let cache = tempfile::tempdir().expect("tempdir");
    let edge = berth::edge(
        berth_bin!(),
        &base,
        cache.path(),
        Some((&name, &secret)),
        &[],
    );
    let edge_url = edge.base_url();
    for (i, p) in ["alpha", "beta"].iter().enumerate() {
        let (status, body) = get(&format!("{edge_url}/v2/{p}/app/manifests/1.0"));
        assert_eq!(status, 200, "{p}: {}", String::from_utf8_lossy(&body));
        assert_eq!(berth_testkit::fixtures::digest_of(&body), pushed[i].digest);
        let (status, _) = get(&format!("{edge_url}/v2/{p}/app/blobs/{}", pushed[i].layer));
        assert_eq!(status, 200, "{p} layer");
    }
    let (status, _) = get(&format!("{edge_url}/v2/gamma/app/manifests/1.0"));
    assert_eq!(status, 404, "gamma through the edge");

    // Revoked: the registry refuses its secret; audited both ways.
    let (status, v) = admin.call("DELETE", &format!("/api/v1/robots/{name}"), None);
    assert_eq!(status, 204, "{v}");
    let a = send(
        &http(),
        "GET",
        &format!("{base}/v2/alpha/app/manifests/1.0"),
        &robot,
        None,
    );
    assert_eq!(a.status, 401, "revoked robot: {a:?}");
    assert!(a.message.contains("revoked"), "{}", a.message);
    let (status, v) = admin.call("DELETE", "/api/v1/robots/robot$alpha+ci", None);
    assert_eq!(status, 404, "a project robot is not a system robot: {v}");
    admin.audit_until("actor=admin", "the robot's creation and revocation", |e| {
        let has = |action: &str| {
            e.iter()
                .any(|x| x["action"] == action && x["target"] == "robot$edge")
        };
        has("robot.create") && has("robot.revoke")
    });
}
