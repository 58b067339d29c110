//! Webhooks end to end: a real `berth serve`, images pushed over HTTP, and a
//! receiver in the test that checks each CloudEvent, its signature and their
//! order; retries while the receiver is down, a kill -9 with events queued,
//! the queue's cap, a slow receiver, and the private-target rule; and the
//! controller's publication changes, with a real `berth edge` as the node.

mod controller_support;

use berth_testkit::fixtures::ImageBuilder;
use controller_support::{tools_present, Site, PROJECT};

use berth_testkit::berth::{registry_in, registry_with, Registry, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::hooks::{
    assert_chained, assert_signed, create_hook, deliveries, received_n, webhook_cli, WAIT,
};
use berth_testkit::http::{basic, push_image, send, Auth};
use berth_testkit::proc::free_port;
use berth_testkit::receiver::HookReceiver;
use berth_testkit::wait::wait_until;
use serde_json::{json, Value};

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BERTH_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true"),
        ("BERTH_WEBHOOKS_RETRY_INITIAL", "1s"),
        ("BERTH_WEBHOOKS_RETRY_MAX", "1s"),
    ]
}

fn admin_auth() -> Auth {
    basic("admin", ADMIN_PASSWORD)
}

fn push(reg: &Registry, repo: &str, tag: &str) -> String {
    let http = reqwest::blocking::Client::new();
    push_image(&http, &reg.url(), &admin_auth(), repo, tag).digest
}

#[test]
fn pushes_deletes_and_opted_in_pulls_arrive_signed_and_in_order() {
    let reg = registry_with(berth_bin!(), &[], &env());
    reg.admin().create_project("shop", false);
    let rx = HookReceiver::start();
    let pulls = HookReceiver::start();
    let (_, secret) = create_hook(&reg, "shop", &rx.url(), &["push", "delete"]);
    let (_, pull_secret) = create_hook(&reg, "shop", &pulls.url(), &["pull"]);
    assert_ne!(secret, pull_secret);

    let digests: Vec<String> = ["v1", "v2", "v3"]
        .iter()
        .map(|t| push(&reg, "shop/web", t))
        .collect();
    let got = received_n(&rx, 3);
    for (r, (tag, digest)) in got.iter().zip(["v1", "v2", "v3"].iter().zip(&digests)) {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.header("content-type"),
            Some("application/cloudevents+json; charset=utf-8")
        );
        assert_signed(r, &secret);
        let ce = r.json();
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["type"], "io.berth.artifact.pushed");
        assert_eq!(ce["source"], format!("{}/shop", reg.url()));
        assert_eq!(ce["subject"], format!("shop/web@{digest}"));
        assert_eq!(ce["data"]["repository"], "shop/web");
        assert_eq!(ce["data"]["digest"], digest.as_str());
        assert_eq!(ce["data"]["tags"], json!([tag]));
        assert_eq!(ce["data"]["actor"], "admin");
        assert!(ce["id"].as_str().is_some_and(|i| !i.is_empty()));
    }
    assert!(
        pulls.received().is_empty(),
        "pushes are not sent to a pull-only endpoint"
    );

    // A pull reaches the endpoint that opted in, and only it.
    let http = reqwest::blocking::Client::new();
    let a = send(
        &http,
        "GET",
        &format!("{}/v2/shop/web/manifests/v2", reg.url()),
        &admin_auth(),
        None,
    );
    assert_eq!(a.status, 200);
    let pulled = received_n(&pulls, 1);
    assert_signed(&pulled[0], &pull_secret);
    let ce = pulled[0].json();
    assert_eq!(ce["type"], "io.berth.artifact.pulled");
    assert_eq!(ce["subject"], format!("shop/web@{}", digests[1]));
    assert_eq!(ce["data"]["tag"], "v2");

    // A delete follows the pushes, in order.
    let url = format!("{}/v2/shop/web/manifests/{}", reg.url(), digests[0]);
    assert_eq!(send(&http, "DELETE", &url, &admin_auth(), None).status, 202);
    let got = received_n(&rx, 4);
    let ce = got[3].json();
    assert_eq!(ce["type"], "io.berth.artifact.deleted");
    assert_eq!(ce["subject"], format!("shop/web@{}", digests[0]));
    assert_eq!(
        rx.received().len(),
        4,
        "the pull went to the pull endpoint only"
    );
}

#[test]
fn a_receiver_that_is_down_gets_its_events_when_it_comes_back() {
    let reg = registry_with(berth_bin!(), &[], &env());
    reg.admin().create_project("shop", false);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (id, secret) = create_hook(&reg, "shop", &url, &["push"]);
    let digest = push(&reg, "shop/web", "v1");
    wait_until("two failed attempts in the delivery log", WAIT, || {
        let log = deliveries(&reg, "shop", &id);
        let d = &log[0];
        if d["status"] == "pending" && d["attempts"].as_u64() >= Some(2) && d["error"].is_string() {
            Ok(())
        } else {
            Err(log[0].to_string())
        }
    });
    let rx = HookReceiver::start_on(port);
    let got = received_n(&rx, 1);
    assert_signed(&got[0], &secret);
    assert_eq!(got[0].json()["subject"], format!("shop/web@{digest}"));
    let d = wait_until("the delivery logged", WAIT, || {
        let log = deliveries(&reg, "shop", &id);
        if log[0]["status"] == "delivered" {
            Ok(log[0].clone())
        } else {
            Err(log[0].to_string())
        }
    });
    assert!(d["attempts"].as_u64() >= Some(3), "{d}");
    assert_eq!(d["response_code"], 200);
    assert_eq!(d["event_type"], "io.berth.artifact.pushed");
}

#[test]
fn events_queued_before_a_kill_9_are_delivered_after_the_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let mut reg = registry_in(berth_bin!(), &data, &[], &env());
    reg.admin().create_project("shop", false);
    let port = free_port();
    let (id, _) = create_hook(
        &reg,
        "shop",
        &format!("http://127.0.0.1:{port}/hook"),
        &["push"],
    );
    let digests: Vec<String> = ["a", "b"]
        .iter()
        .map(|t| push(&reg, "shop/web", t))
        .collect();
    assert_eq!(
        deliveries(&reg, "shop", &id).len(),
        2,
        "both queued when the pushes returned"
    );
    reg.server.kill9();
    let rx = HookReceiver::start_on(port);
    let reg = registry_in(berth_bin!(), &data, &[], &env());
    let got = received_n(&rx, 2);
    let subjects: Vec<Value> = got.iter().map(|r| r.json()["subject"].clone()).collect();
    let want: Vec<Value> = digests
        .iter()
        .map(|d| json!(format!("shop/web@{d}")))
        .collect();
    assert_eq!(subjects, want);
    drop(reg);
}

#[test]
fn a_full_queue_drops_its_oldest_events_and_counts_them() {
    let mut e = env();
    e.push(("BERTH_WEBHOOKS_QUEUE_CAP", "2"));
    let reg = registry_with(berth_bin!(), &[], &e);
    reg.admin().create_project("shop", false);
    let port = free_port();
    let (id, _) = create_hook(
        &reg,
        "shop",
        &format!("http://127.0.0.1:{port}/hook"),
        &["push"],
    );
    let digests: Vec<String> = ["t1", "t2", "t3", "t4"]
        .iter()
        .map(|t| push(&reg, "shop/web", t))
        .collect();
    assert_eq!(reg.metric("berth_webhook_events_dropped_total"), 2.0);
    let log = deliveries(&reg, "shop", &id);
    let statuses: Vec<&str> = log
        .iter()
        .map(|d| d["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["pending", "pending", "dropped", "dropped"]);
    let rx = HookReceiver::start_on(port);
    let got = received_n(&rx, 2);
    let subjects: Vec<Value> = got.iter().map(|r| r.json()["subject"].clone()).collect();
    assert_eq!(
        subjects,
        vec![
            json!(format!("shop/web@{}", digests[2])),
            json!(format!("shop/web@{}", digests[3]))
        ]
    );
}

#[test]
fn a_slow_receiver_does_not_hold_up_a_push() {
    let reg = registry_with(berth_bin!(), &[], &env());
    reg.admin().create_project("shop", false);
    let rx = HookReceiver::start();
    rx.hold();
    create_hook(&reg, "shop", &rx.url(), &["push"]);
    push(&reg, "shop/web", "first");
    // The receiver has the first event and is not answering it...
    received_n(&rx, 1);
    // ...and the next push still completes (push_image asserts its 201).
    let second = push(&reg, "shop/web", "second");
    assert_eq!(
        rx.received().len(),
        1,
        "in order: the second waits for the first's answer"
    );
    rx.release();
    let got = received_n(&rx, 2);
    assert_eq!(got[1].json()["subject"], format!("shop/web@{second}"));
}

#[test]
fn private_targets_are_refused_unless_allowed() {
    let reg = registry_with(berth_bin!(), &[], &[]);
    reg.admin().create_project("shop", false);
    let rx = HookReceiver::start();
    for url in [
        rx.url(),
        format!("http://localhost:{}/hook", rx.port()),
        "http://169.254.169.254/".into(),
    ] {
        let (s, v) = reg.admin().call(
            "POST",
            "/api/v1/projects/shop/webhooks",
            Some(json!({"url": url, "events": ["push"]})),
        );
        assert_eq!(s, 400, "{url}: {v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("allow_private_targets")),
            "{v}"
        );
    }
    let (s, v) = reg.admin().call(
        "POST",
        "/api/v1/projects/shop/webhooks",
        Some(json!({"url": "http://203.0.113.9/hook", "events": ["push", "nonsense"]})),
    );
    assert_eq!(s, 400, "{v}");
    // Allowed, the same URL is taken; a redirect is not followed.
    let allowed = registry_with(berth_bin!(), &[], &env());
    allowed.admin().create_project("shop", false);
    rx.answer(302);
    let (id, _) = create_hook(&allowed, "shop", &rx.url(), &["push"]);
    push(&allowed, "shop/web", "v1");
    let d = wait_until("an attempt answered 302", WAIT, || {
        let log = deliveries(&allowed, "shop", &id);
        if log[0]["response_code"] == 302 {
            Ok(log[0].clone())
        } else {
            Err(log[0].to_string())
        }
    });
    assert_eq!(
        d["status"], "pending",
        "a redirect is a failed attempt: {d}"
    );
    assert!(
        d["error"].as_str().is_some_and(|e| e.contains("redirect")),
        "{d}"
    );
}

#[test]
fn webhooks_are_for_project_admins() {
    let reg = registry_with(berth_bin!(), &[], &env());
    let admin = reg.admin();
    admin.create_project("shop", false);
    admin.create_user("dev", "devpassword1");
    admin.add_member("shop", "dev", "maintainer");
    let dev = admin.as_user("dev", "devpassword1");
    let (s, v) = dev.call(
        "POST",
        "/api/v1/projects/shop/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/"})),
    );
    assert_eq!(s, 403, "{v}");
    let rx = HookReceiver::start();
    let (id, secret) = create_hook(&reg, "shop", &rx.url(), &["push"]);
    let db = std::fs::read(reg.data_dir.join("berth.redb")).expect("db");
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is sealed at rest"
    );
    let (s, list) = admin.call("GET", "/api/v1/projects/shop/webhooks", None);
    assert_eq!(s, 200);
    assert_eq!(list[0]["id"], id.as_str());
    assert!(
        list[0].get("secret").is_none(),
        "the secret is shown once: {list}"
    );
    let (s, v) = admin.call(
        "PATCH",
        &format!("/api/v1/projects/shop/webhooks/{id}"),
        Some(json!({"enabled": false})),
    );
    assert_eq!((s, v["enabled"].clone()), (200, json!(false)), "{v}");
    let (s, _) = admin.call(
        "DELETE",
        &format!("/api/v1/projects/shop/webhooks/{id}"),
        None,
    );
    assert_eq!(s, 204);
    let (s, _) = admin.call("GET", &format!("/api/v1/projects/shop/webhooks/{id}"), None);
    assert_eq!(s, 404);
}

fn cli(reg: &Registry, args: &[&str]) -> Result<String, String> {
    webhook_cli(berth_bin!(), reg, args)
}

#[test]
fn the_cli_manages_webhooks_and_reads_their_deliveries() {
    let reg = registry_with(berth_bin!(), &[], &env());
    reg.admin().create_project("shop", false);
    let rx = HookReceiver::start();
    let created: Value = serde_json::from_str(
        &cli(
            &reg,
            &[
                "create",
                "shop",
                "--endpoint",
                &rx.url(),
                "--events",
                "push,pull",
            ],
        )
        .expect("create"),
    )
    .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert_eq!(created["events"], json!(["push", "pull"]));
    let listed: Value =
        serde_json::from_str(&cli(&reg, &["list", "shop"]).expect("list")).expect("json");
    assert_eq!(listed[0]["id"], id.as_str());
    let digest = push(&reg, "shop/web", "v1");
    assert_signed(&received_n(&rx, 1)[0], &secret);
    let log = wait_until("a delivered entry", WAIT, || {
        let v: Value = serde_json::from_str(&cli(&reg, &["deliveries", "shop", &id]).expect("log"))
            .expect("json");
        if v[0]["status"] == "delivered" {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(log[0]["subject"], format!("shop/web@{digest}"));
    let updated: Value =
        serde_json::from_str(&cli(&reg, &["update", "shop", &id, "--disable"]).expect("update"))
            .expect("json");
    assert_eq!(updated["enabled"], false);
    let err = cli(&reg, &["update", "shop", &id, "--endpoint", "ftp://x"]).expect_err("refused");
    assert!(
        err.contains("not an http:// or https:// URL") && err.contains("HTTP 400"),
        "{err}"
    );
    cli(&reg, &["delete", "shop", &id]).expect("delete");
    let err = cli(&reg, &["show", "shop", &id]).expect_err("gone");
    assert!(err.contains("HTTP 404"), "{err}");
}

/// The publication events `rx` holds once the last is `last` (their data).
fn publication_events_until(rx: &HookReceiver, last: &str, secret: &str) -> Vec<Value> {
    let got = wait_until(&format!("a publication event to {last}"), WAIT, || {
        let got = rx.received();
        if got
            .last()
            .is_some_and(|r| r.json()["data"]["state"] == last)
        {
            Ok(got)
        } else {
            let seen: Vec<Value> = got.iter().map(|r| r.json()["data"].clone()).collect();
            Err(format!("{seen:#?}"))
        }
    });
    got.iter()
        .map(|r| {
            assert_signed(r, secret);
            let ce = r.json();
            assert_eq!(ce["type"], "io.berth.publication.changed", "{ce}");
            assert_eq!(ce["subject"], "web@n1", "{ce}");
            ce["data"].clone()
        })
        .collect()
}

#[test]
fn publishing_an_app_sends_its_state_changes_to_subscribed_endpoints_in_order() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start_with(&env());
    let rx = HookReceiver::start();
    let pushes = HookReceiver::start();
    let (_, secret) = create_hook(&site.registry, PROJECT, &rx.url(), &["publication"]);
    let (push_id, _) = create_hook(&site.registry, PROJECT, &pushes.url(), &["push"]);
    let url = site.registry_url();
    site.add_edge("n1", &url, json!({}));
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": "acme/web:1"}]}}));
    site.publish("web", json!({"nodes": ["n1"]}));

    // The request (a new publication: from nothing), then the reconciler's steps.
    let events = publication_events_until(&rx, "running", &secret);
    assert_eq!(events[0]["state"], "resolving", "{events:#?}");
    assert_chained(&events, Value::Null);
    let states: Vec<&str> = events.iter().filter_map(|e| e["state"].as_str()).collect();
    let pos = |s: &str| {
        states
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("no {s} in {states:?}"))
    };
    assert!(
        pos("prefetching") < pos("deploying") && pos("deploying") < pos("running"),
        "{states:?}"
    );
    for e in &events {
        assert_eq!(e["project"], PROJECT);
        assert_eq!(e["app"], "web");
        assert_eq!(e["node"], "n1");
        assert_eq!(e["version"], 1);
    }
    site.wait_state("web", "n1", "running", WAIT);

    // An unpublish: removing, then removed once the publication is gone.
    site.unpublish("web", json!({"nodes": ["n1"]}));
    let all = publication_events_until(&rx, "removed", &secret);
    assert_eq!(all[..events.len()], events[..], "earlier events come once");
    let after: Vec<&Value> = all[events.len()..].iter().map(|e| &e["state"]).collect();
    assert_eq!(after, ["removing", "removed"], "{all:#?}");
    assert_chained(&all[events.len()..], json!("running"));

    // The push-only endpoint got the push, and no publication event was
    // ever queued for it.
    let log = deliveries(&site.registry, PROJECT, &push_id);
    let types: Vec<&str> = log
        .iter()
        .filter_map(|d| d["event_type"].as_str())
        .collect();
    assert_eq!(types, ["io.berth.artifact.pushed"], "{log:#?}");
    let got = received_n(&pushes, 1);
    assert_eq!(got[0].json()["type"], "io.berth.artifact.pushed");
}

#[test]
fn publication_changes_survive_a_kill_9_mid_publish() {
    if !tools_present() {
        return;
    }
    let mut site = Site::start_with(&env());
    let rx = HookReceiver::start();
    let (_, secret) = create_hook(&site.registry, PROJECT, &rx.url(), &["publication"]);
    let url = site.registry_url();
    site.add_edge("n1", &url, json!({}));
    site.push(
        "web",
        "1",
        ImageBuilder::new().layer_file("srv/web", "web\n"),
    );
    site.create_app(json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": "acme/web:1"}]}}));
    // Killed as soon as the publish is answered: its change (and maybe the
    // reconciler's first steps) stored, not yet passed on.
    site.publish("web", json!({"nodes": ["n1"]}));
    site.registry.server.kill9();
    site.registry.server.start_again();

    site.wait_state("web", "n1", "running", WAIT);
    publication_events_until(&rx, "running", &secret);
    // At least once: a change queued but not yet taken off the controller's
    // outbox at the kill comes again under the same id; none is missing.
    let mut seen = std::collections::BTreeSet::new();
    let events: Vec<Value> = rx
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|ce| seen.insert(ce["id"].as_str().expect("id").to_string()))
        .map(|ce| ce["data"].clone())
        .collect();
    assert_eq!(events[0]["state"], "resolving", "{events:#?}");
    assert_chained(&events, Value::Null);
    assert_eq!(
        events.last().map(|e| &e["state"]),
        Some(&json!("running")),
        "{events:#?}"
    );
}

#[test]
fn tag_and_repository_deletes_through_the_admin_api_send_deleted_events() {
    let reg = registry_with(berth_bin!(), &[], &env());
    reg.admin().create_project("shop", false);
    let rx = HookReceiver::start();
    let (_, secret) = create_hook(&reg, "shop", &rx.url(), &["delete"]);
    push(&reg, "shop/web", "v1");
    push(&reg, "shop/web", "v2");

    let (s, v) = reg.admin().call(
        "DELETE",
        "/api/v1/projects/shop/repositories/shop%2Fweb/tags/v1",
        None,
    );
    assert_eq!(s, 204, "{v}");
    let (s, v) = reg
        .admin()
        .call("DELETE", "/api/v1/projects/shop/repositories/web", None);
    assert_eq!(s, 204, "{v}");

    let got = received_n(&rx, 2);
    for r in &got {
        assert_signed(r, &secret);
    }
    let (tag, repo) = (got[0].json(), got[1].json());
    assert_eq!(tag["type"], "io.berth.artifact.deleted", "{tag}");
    assert_eq!(tag["subject"], "shop/web:v1");
    assert_eq!(tag["data"]["repository"], "shop/web");
    assert_eq!(tag["data"]["tag"], "v1");
    assert_eq!(tag["data"]["actor"], "admin");
    assert_eq!(repo["type"], "io.berth.artifact.deleted", "{repo}");
    assert_eq!(repo["subject"], "shop/web");
    assert_eq!(repo["data"]["scope"], "repository");
    assert_eq!(repo["data"]["digest"], Value::Null);
    assert_eq!(repo["data"]["actor"], "admin");
    assert_eq!(rx.received().len(), 2, "one event per delete");
}
