//! Webhook helpers over a running registry's admin API: create an endpoint,
//! read its delivery log, wait for deliveries, and check signatures (HMAC-
//! SHA256 of the body, computed here independently of berth).

use std::time::Duration;

use serde_json::{json, Value};

use crate::berth::Registry;
use crate::receiver::{HookReceiver, Received};
use crate::wait::wait_until;

/// Bound on waits for deliveries.
pub const WAIT: Duration = Duration::from_secs(60);

/// Creates a webhook of `project` for `events`; its id and secret.
pub fn create_hook(reg: &Registry, project: &str, url: &str, events: &[&str]) -> (String, String) {
    let (s, v) = reg.admin().call(
        "POST",
        &format!("/api/v1/projects/{project}/webhooks"),
        Some(json!({"url": url, "events": events})),
    );
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let secret = v["secret"]
        .as_str()
        .expect("secret shown at creation")
        .to_string();
    (id, secret)
}

/// The delivery log of webhook `id`, newest first.
pub fn deliveries(reg: &Registry, project: &str, id: &str) -> Vec<Value> {
    let (s, v) = reg.admin().call(
        "GET",
        &format!("/api/v1/projects/{project}/webhooks/{id}/deliveries"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v.as_array().expect("a list").clone()
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

/// Asserts that `X-Berth-Signature` is the body's HMAC by `secret`.
pub fn assert_signed(r: &Received, secret: &str) {
    let want = signature(secret, &r.body);
    assert_eq!(
        r.header("x-berth-signature"),
        Some(want.as_str()),
        "signature"
    );
}

/// The first `n` (or more) requests `rx` received, once it has them.
pub fn received_n(rx: &HookReceiver, n: usize) -> Vec<Received> {
    wait_until(&format!("{n} deliveries"), WAIT, || {
        let got = rx.received();
        if got.len() >= n {
            Ok(got)
        } else {
            Err(format!("{} so far", got.len()))
        }
    })
}

/// `berth webhook ARGS` (the binary `bin`) as the administrator of `reg`:
/// its stdout, or its stderr when it fails.
pub fn webhook_cli(bin: &str, reg: &Registry, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(bin)
        .arg("webhook")
        .args(args)
        .env("BERTH_URL", reg.url())
        .env("BERTH_USER", "admin")
        .env("BERTH_PASSWORD", crate::berth::ADMIN_PASSWORD)
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("berth runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// Each publication event starts where the one before ended, from
/// `first_previous`, and says why in `detail`.
pub fn assert_chained(events: &[Value], first_previous: Value) {
    let mut previous = first_previous;
    for e in events {
        assert_eq!(e["previous_state"], previous, "{events:#?}");
        previous = e["state"].clone();
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "{e}");
    }
}
