//! Webhook secrets end to end: a rotation through the admin API and the
//! CLI gives a new secret once, deliveries carry signatures by both secrets
//! while the overlap lasts (`X-Berth-Signature` by the new one,
//! `X-Berth-Signature-Previous` by the old one), the old secret is dropped
//! after it, and only project admins rotate; and a project's webhooks go
//! with the project when it is deleted.

use berth_testkit::berth::{registry_with, Registry, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::hooks::{assert_signed, create_hook, received_n, signature, webhook_cli, WAIT};
use berth_testkit::http::{basic, push_image};
use berth_testkit::receiver::HookReceiver;
use berth_testkit::wait::wait_until;
use serde_json::{json, Value};

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("BERTH_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")]
}

fn push(reg: &Registry, repo: &str, tag: &str) -> String {
    let http = reqwest::blocking::Client::new();
    let auth = basic("admin", ADMIN_PASSWORD);
    push_image(&http, &reg.url(), &auth, repo, tag).digest
}

fn rotate(reg: &Registry, project: &str, id: &str, body: Option<Value>) -> (u16, Value) {
    reg.admin().call(
        "POST",
        &format!("/api/v1/projects/{project}/webhooks/{id}/rotate-secret"),
        body,
    )
}

fn hook(reg: &Registry, project: &str, id: &str) -> Value {
    let (s, v) = reg.admin().call(
        "GET",
        &format!("/api/v1/projects/{project}/webhooks/{id}"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn audit_targets(reg: &Registry, action: &str) -> Vec<String> {
    let (s, v) = reg.admin().call("GET", "/api/v1/audit?limit=1000", None);
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| e["target"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends() {
    let reg = registry_with(berth_bin!(), &[], &env());
    reg.admin().create_project("shop", false);
    let rx = HookReceiver::start();
    let (id, old) = create_hook(&reg, "shop", &rx.url(), &["push"]);
    push(&reg, "shop/web", "v1");
    let first = &received_n(&rx, 1)[0];
    assert_signed(first, &old);
    assert_eq!(first.header("x-berth-signature-previous"), None);

    // Only project admins rotate; an unknown endpoint or overlap is refused.
    reg.admin().create_user("dev", "dev-pass-1");
    reg.admin().add_member("shop", "dev", "developer");
    let dev = reg.admin().as_user("dev", "dev-pass-1");
    let path = format!("/api/v1/projects/shop/webhooks/{id}/rotate-secret");
    assert_eq!(dev.call("POST", &path, None).0, 403);
    assert_eq!(rotate(&reg, "shop", "nope", None).0, 404);
    let (s, v) = rotate(
        &reg,
        "shop",
        &id,
        Some(json!({"overlap_seconds": 8 * 86400})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = rotate(&reg, "shop", &id, Some(json!({"overlap": 1})));
    assert_eq!(s, 400, "unknown fields are refused: {v}");
    assert_eq!(
        hook(&reg, "shop", &id)["previous_secret_expires_at"],
        Value::Null
    );

    // A rotation with a short overlap (a bound, not a measurement: the push
    // below is delivered long before it ends): a new secret, shown once.
    let (s, v) = rotate(&reg, "shop", &id, Some(json!({"overlap_seconds": 30})));
    assert_eq!(s, 200, "{v}");
    let new = v["secret"].as_str().expect("the new secret").to_string();
    assert_ne!(new, old);
    let until = v["previous_secret_expires_at"]
        .as_u64()
        .expect("an overlap");
    let shown = hook(&reg, "shop", &id);
    assert_eq!(shown["secret"], Value::Null, "never shown again");
    assert_eq!(shown["previous_secret_expires_at"], until);
    assert!(audit_targets(&reg, "webhook.rotate-secret")
        .iter()
        .any(|d| d.contains(&id)));

    // During the overlap: signed by both, each in its own header.
    push(&reg, "shop/web", "v2");
    let second = &received_n(&rx, 2)[1];
    assert_signed(second, &new);
    assert_eq!(
        second.header("x-berth-signature-previous"),
        Some(signature(&old, &second.body).as_str())
    );

    // After it the old secret is dropped at rest, and signs nothing.
    wait_until("the previous secret dropped", WAIT * 2, || {
        let v = hook(&reg, "shop", &id);
        if v["previous_secret_expires_at"].is_null() {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    push(&reg, "shop/web", "v3");
    let third = &received_n(&rx, 3)[2];
    assert_signed(third, &new);
    assert_eq!(third.header("x-berth-signature-previous"), None);

    // The CLI rotates too; with no overlap the old secret stops at once.
    let out = webhook_cli(
        berth_bin!(),
        &reg,
        &["rotate-secret", "shop", &id, "--overlap", "0s"],
    )
    .expect("rotate-secret");
    let v: Value = serde_json::from_str(&out).expect("json");
    let newest = v["secret"].as_str().expect("secret").to_string();
    assert_ne!(newest, new);
    assert_eq!(v["previous_secret_expires_at"], Value::Null);
    push(&reg, "shop/web", "v4");
    let fourth = &received_n(&rx, 4)[3];
    assert_signed(fourth, &newest);
    assert_eq!(fourth.header("x-berth-signature-previous"), None);
    // The CLI's default overlap is the server's (24 h).
    let out =
        webhook_cli(berth_bin!(), &reg, &["rotate-secret", "shop", &id]).expect("rotate-secret");
    let v: Value = serde_json::from_str(&out).expect("json");
    let until = v["previous_secret_expires_at"]
        .as_u64()
        .expect("an overlap");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        until > now + 23 * 3600 && until <= now + 24 * 3600 + 60,
        "{v}"
    );
}

#[test]
fn a_deleted_projects_webhooks_go_with_it() {
    let reg = registry_with(berth_bin!(), &[], &env());
    let admin = reg.admin();
    admin.create_project("gone", false);
    let old_rx = HookReceiver::start();
    old_rx.answer(503);
    let (id, _) = create_hook(&reg, "gone", &old_rx.url(), &["push", "delete"]);
    push(&reg, "gone/web", "v1");
    received_n(&old_rx, 1);
    let (s, v) = admin.call("DELETE", "/api/v1/projects/gone?force=true", None);
    assert_eq!(s, 204, "{v}");
    assert_eq!(audit_targets(&reg, "project.delete"), ["gone"]);
    assert_eq!(
        audit_targets(&reg, "webhook.delete"),
        [id.as_str()],
        "each endpoint that went with it is audited"
    );

    // A project of the same name starts without them.
    admin.create_project("gone", false);
    let (s, v) = admin.call("GET", "/api/v1/projects/gone/webhooks", None);
    assert_eq!((s, v), (200, json!([])));
    let (s, _) = admin.call("GET", &format!("/api/v1/projects/gone/webhooks/{id}"), None);
    assert_eq!(s, 404);
    let rx = HookReceiver::start();
    create_hook(&reg, "gone", &rx.url(), &["push"]);
    let seen_before = old_rx.received().len();
    old_rx.answer(200);
    push(&reg, "gone/web", "v2");
    received_n(&rx, 1);
    assert_eq!(
        old_rx.received().len(),
        seen_before,
        "nothing more reached the deleted project's endpoint"
    );
}
