//! Raw registry requests for tests that assert statuses, OCI error codes and
//! challenges one request at a time (the auth matrix, the login edge cases).

use reqwest::blocking::Client;
use serde_json::Value;

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
    /// A raw `Authorization` header value, e.g. `Basic Og==` (empty user and password).
    Header(String),
}

/// A client whose connections come from `ip`: any 127.x address reaches a
/// registry on 127.0.0.1, so one machine can act as many client addresses.
pub fn client_from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().expect("ip"))
        .build()
        .expect("client")
}

/// HTTP Basic credentials.
pub fn basic(user: &str, password: &str) -> Auth {
    Auth::Basic(user.to_string(), password.to_string())
}

/// One answer, with what the assertions look at.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The first OCI error code, if the body is an OCI error.
    pub code: Option<String>,
    /// The first OCI error message, or the admin API's `error`; empty if neither.
    pub message: String,
    pub challenge: Option<String>,
    pub retry_after: Option<String>,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
}

impl Answer {
    /// `403 DENIED`, or just the status when there is no OCI code.
    pub fn describe(&self) -> String {
        match &self.code {
            Some(c) => format!("{} {c}", self.status),
            None => self.status.to_string(),
        }
    }
}

/// Sends one request (`Accept` set to the OCI manifest type); `body` is a
/// content type and bytes. Panics if the request cannot be sent.
pub fn send(
    http: &Client,
    method: &str,
    url: &str,
    auth: &Auth,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = http
        .request(m, url)
        .header("Accept", crate::fixtures::media_types::OCI_MANIFEST);
    rb = match auth {
        Auth::None => rb,
        Auth::Basic(u, p) => rb.basic_auth(u, Some(p)),
        Auth::Bearer(t) => rb.bearer_auth(t),
        Auth::Header(v) => rb.header("Authorization", v),
    };
    if let Some((ctype, bytes)) = body {
        rb = rb.header("Content-Type", ctype).body(bytes);
    }
    let res = rb.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (challenge, retry_after) = (header("www-authenticate"), header("retry-after"));
    let text = res.text().unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let message = body
        .pointer("/errors/0/message")
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Answer {
        status,
        code: body
            .pointer("/errors/0/code")
            .and_then(Value::as_str)
            .map(str::to_string),
        message,
        challenge,
        retry_after,
        body,
    }
}

/// Pushes a one-layer OCI image (monolithic blob uploads, then the manifest)
/// and returns the manifest's digest. The layer's bytes name `repo`.
pub fn push_image(http: &Client, base: &str, auth: &Auth, repo: &str, tag: &str) -> String {
    use crate::fixtures::{digest_of, media_types};
    let blob = |bytes: Vec<u8>| {
        let d = digest_of(&bytes);
        let a = send(
            http,
            "POST",
            &format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"),
            auth,
            Some(("application/octet-stream", bytes)),
        );
        assert_eq!(a.status, 201, "blob upload to {repo}: {a:?}");
        d
    };
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = format!("a layer of {repo}").into_bytes();
    let (cs, ls) = (config.len(), layer.len());
    let (cd, ld) = (blob(config.to_vec()), blob(layer));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": cd, "size": cs},
        "layers": [{"mediaType": media_types::OCI_LAYER_GZIP, "digest": ld, "size": ls}],
    }))
    .expect("manifest");
    let a = send(
        http,
        "PUT",
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        auth,
        Some((media_types::OCI_MANIFEST, manifest.clone())),
    );
    assert_eq!(a.status, 201, "manifest push to {repo}:{tag}: {a:?}");
    digest_of(&manifest)
}
