//! Who may publish what: refusals in words, the CLI following a publish, registry roles and
//! the projects an app's images may come from.

use super::*;

#[test]
fn refusals_are_clear_and_the_cli_follows_a_publish() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let url = site.registry_url();
    site.add_edge("c1", &url, json!({"role": "cli"}));
    let apps = format!("/api/v1/projects/{PROJECT}/apps");
    let error = |v: &Value| v["error"].as_str().unwrap_or_default().to_string();

    // A kind the controller does not know.
    let (s, v) = site.api(
        "POST",
        &apps,
        Some(json!({"name": "pod", "spec": {"kind": "Pod",
            "containers": [{"name": "a", "image": "acme/a:1"}]}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        error(&v).contains("Pod") && error(&v).contains("Deployment"),
        "names the bad kind and the known ones: {v}"
    );
    // A CronJob whose schedule is not cron.
    let (s, v) = site.api(
        "POST",
        &apps,
        Some(
            json!({"name": "nightly", "spec": {"kind": "CronJob", "schedule": "every night",
            "containers": [{"name": "a", "image": "acme/a:1"}]}}),
        ),
    );
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).contains("schedule"), "{v}");

    // An image whose tag the registry does not have: the publish is accepted,
    // and the publication fails naming the image.
    site.create_app(json!({"name": "ghost", "spec": {"kind": "Deployment",
        "containers": [{"name": "g", "image": "acme/ghost:404"}]}}));
    site.publish("ghost", json!({"nodes": ["c1"]}));
    let p = site
        .wait_publication("ghost", "c1", "failed", LONG, |p| {
            p.is_some_and(|p| p["state"] == "failed")
        })
        .expect("publication");
    let reason = p["reason"].as_str().expect("reason");
    assert!(reason.contains("acme/ghost:404"), "{reason}");
    assert!(site.manifests("c1").is_empty());

    // A node that does not exist.
    let (s, v) = site.api(
        "POST",
        &format!("{}/publish", site.app_path("ghost")),
        Some(json!({"nodes": ["c1", "nowhere"]})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).contains("no node named nowhere"), "{v}");
    let (s, v) = site.api(
        "POST",
        &format!("{}/publish", site.app_path("ghost")),
        Some(json!({"selector": {"role": "none"}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).contains("role=none"), "{v}");

    // The CLI: create from a file, publish, follow progress until running.
    let img = site.push(
        "tool",
        "1",
        ImageBuilder::new().layer_file("bin/tool", "#!/bin/sh\n"),
    );
    let spec = site.tmp.path().join("tool.yaml");
    std::fs::write(
        &spec,
        "kind: Deployment\ncontainers:\n- name: tool\n  image: acme/tool:1\n",
    )
    .expect("spec file");
    let berth = |args: &[&str]| site.cli(args);
    let spec_path = spec.to_string_lossy().into_owned();
    let (ok, out, err) = berth(&["app", "create", "acme/tool", "-f", &spec_path]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created acme/tool version 1"), "{out}");
    let (ok, out, err) = berth(&["app", "publish", "acme/tool", "--nodes", "c1"]);
    assert!(ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("c1")).collect();
    assert!(lines.len() >= 2, "progress, not just the end: {out}");
    assert!(lines.last().is_some_and(|l| l.contains("running")), "{out}");
    // It returned because the node runs.
    let p = site.publication("tool", "c1").expect("publication");
    assert_eq!(p["state"], "running", "{p:#}");
    assert!(site.edge("c1").pinned(&by_digest("tool", img.digest())));
    assert!(site
        .manifests_dir("c1")
        .join(deployment_file("tool", "c1"))
        .exists());

    // The CLI says so when a node fails, and exits non-zero.
    let (ok, out, err) = berth(&["app", "publish", "acme/ghost", "--nodes", "c1"]);
    assert!(!ok, "a failed publish must not exit 0: {out}{err}");
    assert!(err.contains("not running on c1"), "{err}");
    assert!(
        out.contains("failed") && out.contains("acme/ghost:404"),
        "{out}{err}"
    );
}

#[test]
fn roles_decide_who_may_publish_and_which_images() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start();
    let url = site.registry_url();
    site.add_edge("a1", &url, json!({}));
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    // Another private project, with an image the developer cannot see.
    site.admin.create_project("vault", false);
    ImageBuilder::new()
        .layer_file("srv/secret", "secret\n")
        .tag("vault-secret")
        .build(&site.layout);
    site.skopeo.copy(
        &site.layout.reference("vault-secret"),
        &docker_ref(&site.registry.host(), "vault/secret", "1"),
        &berth_testkit::tools::CopyOptions::default().with_dest_creds(&site.admin_creds()),
    );
    site.admin.create_user("dev", "dev-password-1");
    site.admin.add_member(PROJECT, "dev", "developer");
    site.admin.create_user("visitor", "visitor-password-1");
    site.admin.add_member(PROJECT, "visitor", "guest");
    let dev = site.admin.as_user("dev", "dev-password-1");
    let visitor = site.admin.as_user("visitor", "visitor-password-1");
    let apps = format!("/api/v1/projects/{PROJECT}/apps");
    let app = |name: &str, image: &str| {
        json!({"name": name, "spec": {"kind": "Deployment",
            "containers": [{"name": "c", "image": image}]}})
    };

    // A guest reads but does not change.
    let (s, v) = visitor.call("POST", &apps, Some(app("web", "acme/web:1")));
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("visitor")),
        "{v}"
    );

    // A developer creates and publishes with the project's images.
    let (s, v) = dev.call("POST", &apps, Some(app("web", "acme/web:1")));
    assert_eq!(s, 201, "{v}");
    let (s, v) = dev.call(
        "POST",
        &format!("{apps}/web/publish"),
        Some(json!({"nodes": ["a1"]})),
    );
    assert_eq!(s, 202, "{v}");
    site.wait_state("web", "a1", "running", LONG);
    // The registry's audit log has who asked and what the controller did.
    let (s, v) = site.api("GET", "/api/v1/audit?project=acme", None);
    assert_eq!(s, 200, "{v}");
    let events = v.as_array().expect("audit events");
    let has = |actor: &str, action: &str, outcome: &str| {
        events.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(outcome))
        })
    };
    assert!(has("dev", "app.create", "ok"), "{v:#}");
    assert!(has("dev", "app.publish", "ok"), "{v:#}");
    assert!(has("controller", "deploy", "ok"), "{v:#}");
    let (s, v) = visitor.call("GET", &format!("{apps}/web/publications"), None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = visitor.call(
        "POST",
        &format!("{apps}/web/unpublish"),
        Some(json!({"nodes": ["a1"]})),
    );
    assert_eq!(s, 403, "{v}");

    // But not with images of a project the developer may not pull: that
    // would deploy them, and tell their digests.
    let (s, v) = dev.call("POST", &apps, Some(app("leak", "vault/secret:1")));
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("vault")),
        "{v}"
    );
    let (s, v) = dev.call(
        "PUT",
        &format!("{apps}/web"),
        Some(json!({"spec": {"kind": "Deployment",
            "containers": [{"name": "c", "image": "vault/secret:1"}]}})),
    );
    assert_eq!(s, 403, "{v}");
    // The admin may; and a developer cannot publish what the admin wrote.
    let (s, v) = site.api("POST", &apps, Some(app("mixed", "vault/secret:1")));
    assert_eq!(s, 201, "{v}");
    let (s, v) = dev.call(
        "POST",
        &format!("{apps}/mixed/publish"),
        Some(json!({"nodes": ["a1"]})),
    );
    assert_eq!(s, 403, "{v}");
    assert!(site.publication("mixed", "a1").is_none());
}
