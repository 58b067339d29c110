//! Deleting a project takes its controller records with it (issue 13, part
//! 5), end to end: `berth serve` with the directory deployer, one `berth
//! edge` as node r1, an image pushed with skopeo.
//!
//! What this proves: a project with a published app and a config map cannot
//! be deleted without `force` (409 naming both); with `force` its app and
//! config map records go at once, the node's files for the project are taken
//! down and the image pin released, and the audit log has each step.

mod controller_support;

use std::time::Duration;

use berth_testkit::fixtures::ImageBuilder;
use berth_testkit::wait_until;
use controller_support::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn audit_has(site: &Site, action: &str, target: &str, outcome: &str) -> bool {
    let (_, v) = site.api("GET", &format!("/api/v1/audit?project={PROJECT}"), None);
    v.as_array().is_some_and(|events| {
        events.iter().any(|e| {
            e["action"] == action
                && e["target"] == target
                && format!(
                    "{} {}",
                    e["outcome"].as_str().unwrap_or(""),
                    e["detail"].as_str().unwrap_or("")
                )
                .contains(outcome)
        })
    })
}

fn project_files(site: &Site, node: &str) -> Vec<String> {
    site.manifests(node)
        .into_iter()
        .filter(|f| f.starts_with(&format!("{PROJECT}-")))
        .collect()
}

#[test]
fn deleting_a_project_with_force_takes_its_apps_and_resources_down() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let url = site.registry_url();
    site.add_edge("r1", &url, json!({"site": "shop"}));
    let image = site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    let pin = format!("{PROJECT}/web@{}", image.manifest.digest());
    let (s, v) = site.api(
        "POST",
        &format!("/api/v1/projects/{PROJECT}/configmaps"),
        Some(json!({"name": "settings", "data": {"a": "1"}})),
    );
    assert_eq!(s, 201, "{v}");
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": "acme/web:1",
            "volume_mounts": [{"name": "conf", "mount_path": "/etc/web"}]}],
        "volumes": [{"name": "conf", "config_map": "settings"}]}}));
    site.publish("web", json!({"nodes": ["r1"]}));
    site.wait_state("web", "r1", "running", LONG);
    assert_eq!(
        project_files(&site, "r1"),
        vec![
            "acme-shared-configmap-settings-r1.yaml".to_string(),
            "acme-web-deployment-web-r1.yaml".to_string(),
        ]
    );
    assert!(
        site.edge("r1").pinned(&pin),
        "{:#?}",
        site.edge("r1").images()
    );

    // Without force: refused, naming what the project still holds.
    let (s, v) = site.api("DELETE", &format!("/api/v1/projects/{PROJECT}"), None);
    assert_eq!(s, 409, "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("apps/web") && e.contains("configmaps/settings"),
        "{v}"
    );
    assert_eq!(
        project_files(&site, "r1").len(),
        2,
        "a refusal changes nothing"
    );
    let (s, v) = site.api("GET", &site.app_path("web"), None);
    assert_eq!(s, 200, "{v}");

    // With force: the records go now, the node is taken back to nothing.
    let (s, v) = site.api(
        "DELETE",
        &format!("/api/v1/projects/{PROJECT}?force=true"),
        None,
    );
    assert_eq!(s, 204, "{v}");
    let (s, v) = site.api("GET", &site.app_path("web"), None);
    assert_eq!(s, 404, "{v}");
    let (s, v) = site.api(
        "GET",
        &format!("/api/v1/projects/{PROJECT}/configmaps/settings"),
        None,
    );
    assert_eq!(s, 404, "{v}");
    wait_until("the project's files off r1", LONG, || {
        let left = project_files(&site, "r1");
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    wait_until("the pin released on r1", LONG, || {
        if site.edge("r1").pinned(&pin) {
            Err(format!("{:#?}", site.edge("r1").images()))
        } else {
            Ok(())
        }
    });
    wait_until("the audit has every step", LONG, || {
        let wanted = [
            ("project.delete", PROJECT, "ok"),
            ("app.delete", "web", "the project was deleted"),
            ("configmaps.delete", "settings", "the project was deleted"),
            ("project.unpublish", "r1", "configmaps/settings"),
            ("app.force_unpublish", "web@r1", "reconciled to nothing"),
        ];
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(a, t, o)| !audit_has(&site, a, t, o))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            let (_, v): (u16, Value) = site.api("GET", "/api/v1/audit?project=acme", None);
            Err(format!("missing {missing:?} in {v:#}"))
        }
    });

    // A new project of the same name starts empty.
    site.admin.create_project(PROJECT, false);
    let (s, v) = site.api("GET", &format!("/api/v1/projects/{PROJECT}/apps"), None);
    assert_eq!((s, v), (200, json!([])));
}
