//! An app using images of two private projects, end to end: the node whose
//! edge pulls with one project's robot fails, saying that its edge cannot
//! read the other project and how to give it a robot that can (not "manifest
//! … is not in repository"); a node whose edge pulls with a system robot of
//! both projects runs it, through the one edge.

mod controller_support;

use std::time::Duration;

use berth_testkit::berth::ADMIN_PASSWORD;
use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::http::{basic, push_image};
use controller_support::*;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn a_publish_the_edge_credential_cannot_read_says_so_and_a_system_robot_serves_both() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let web = site.push("web", "1", ImageBuilder::new().layer_random(64 << 10));
    site.admin.create_project("beta", false);
    let http = reqwest::blocking::Client::new();
    let tool = push_image(
        &http,
        &site.registry_url(),
        &basic("admin", ADMIN_PASSWORD),
        "beta/tool",
        "1",
    );
    let registry = site.registry_url();
    // n1's edge pulls with acme's robot, which cannot read beta.
    site.add_edge("n1", &registry, json!({}));
    site.create_app(
        json!({"name": "mix", "spec": {"kind": "Deployment", "containers": [
        {"name": "web", "image": format!("{PROJECT}/web:1")},
        {"name": "tool", "image": "beta/tool:1"}]}}),
    );
    site.publish("mix", json!({"nodes": ["n1"]}));
    let p = site.wait_state("mix", "n1", "failed", LONG);
    let reason = p.to_string();
    assert!(
        reason.contains("node n1's edge cannot read project beta")
            && reason.contains("POST /api/v1/robots"),
        "{reason}"
    );
    assert!(!reason.contains("cannot read project acme"), "{reason}");

    // A system robot of both projects: one edge serves the app.
    let (status, robot) = site.api(
        "POST",
        "/api/v1/robots",
        Some(json!({"name": "edge-n2", "projects": [PROJECT, "beta"], "access": "pull"})),
    );
    assert_eq!(status, 201, "{robot}");
    site.robot = (
        robot["name"].as_str().expect("name").to_string(),
        robot["secret"].as_str().expect("secret").to_string(),
    );
    site.add_edge("n2", &registry, json!({}));
    site.publish("mix", json!({"nodes": ["n2"]}));
    site.wait_state("mix", "n2", "running", LONG);
    let edge = site.edge("n2");
    assert!(edge.pinned(&format!("{PROJECT}/web@{}", web.digest())));
    assert!(edge.pinned(&format!("beta/tool@{}", tool.digest)));
}
