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

/// Pushes `bytes` with one monolithic upload (`POST ?digest=`); returns the digest.
pub fn push_blob(http: &Client, base: &str, auth: &Auth, repo: &str, bytes: Vec<u8>) -> String {
    let digest = crate::fixtures::digest_of(&bytes);
    let a = send(
        http,
        "POST",
        &format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"),
        auth,
        Some(("application/octet-stream", bytes)),
    );
    assert_eq!(a.status, 201, "blob upload to {repo}: {a:?}");
    digest
}

/// Pushes `bytes` as a monolithic upload in two steps (`POST`, then `PUT
/// <location>?digest=` with the bytes), as registries without the one-step
/// form (distribution 2.8) need; returns the digest.
pub fn push_blob_in_two_steps(
    http: &Client,
    base: &str,
    auth: &Auth,
    repo: &str,
    bytes: Vec<u8>,
) -> String {
    let digest = crate::fixtures::digest_of(&bytes);
    let mut post = http.post(format!("{base}/v2/{repo}/blobs/uploads/"));
    if let Auth::Basic(u, p) = auth {
        post = post.basic_auth(u, Some(p));
    }
    let res = post.send().expect("upload start");
    assert_eq!(res.status().as_u16(), 202, "upload start in {repo}");
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload Location")
        .to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let a = send(
        http,
        "PUT",
        &format!("{url}{sep}digest={digest}"),
        auth,
        Some(("application/octet-stream", bytes)),
    );
    assert_eq!(a.status, 201, "blob upload to {repo}: {a:?}");
    digest
}

/// What [`push_image`] pushed.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// The manifest's digest.
    pub digest: String,
    /// The digest of its one layer.
    pub layer: String,
}

/// Pushes `config` and `layers` as blobs, then the OCI image manifest over
/// them as `repo:tag` (see [`manifest::image_manifest`](crate::manifest::image_manifest));
/// returns the manifest's bytes and digest.
pub fn push_image_with(
    http: &Client,
    base: &str,
    auth: &Auth,
    (repo, tag): (&str, &str),
    config: &[u8],
    layers: &[&[u8]],
) -> (Vec<u8>, String) {
    use crate::fixtures::media_types::OCI_MANIFEST;
    push_blob(http, base, auth, repo, config.to_vec());
    for layer in layers {
        push_blob(http, base, auth, repo, layer.to_vec());
    }
    let manifest = crate::manifest::image_manifest(config, layers);
    let a = send(
        http,
        "PUT",
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        auth,
        Some((OCI_MANIFEST, manifest.clone())),
    );
    assert_eq!(a.status, 201, "manifest push to {repo}:{tag}: {a:?}");
    let digest = crate::fixtures::digest_of(&manifest);
    (manifest, digest)
}

/// Pushes a small one-layer OCI image whose config and layer are unique to
/// `repo:tag`, for tests that need an image and not particular bytes.
pub fn push_image(http: &Client, base: &str, auth: &Auth, repo: &str, tag: &str) -> Pushed {
    let config = crate::manifest::config_for(repo, tag);
    let layer = format!("a layer of {repo}:{tag}").into_bytes();
    let (manifest, digest) = push_image_with(http, base, auth, (repo, tag), &config, &[&layer]);
    Pushed {
        manifest,
        digest,
        layer: crate::fixtures::digest_of(&layer),
    }
}

// ------------------------------------------------------------------ tokens

/// `/v2/token` (service `berth`) asking for `scopes`.
pub fn token_url(base: &str, scopes: &[&str]) -> String {
    let mut url = format!("{base}/v2/token?service=berth");
    for s in scopes {
        url.push_str(&format!("&scope={s}"));
    }
    url
}

/// A token for `scopes` from `/v2/token`, asked for with `auth` (Basic or
/// anonymous), or the refusal. The answer names it as both `token` and
/// `access_token`, as clients of either name expect.
pub fn token(
    http: &Client,
    base: &str,
    auth: &Auth,
    scopes: &[&str],
) -> Result<String, Box<Answer>> {
    let a = send(http, "GET", &token_url(base, scopes), auth, None);
    if a.status != 200 {
        return Err(Box::new(a));
    }
    let t = a.body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {a:?}"))
        .to_string();
    assert_eq!(a.body["access_token"].as_str(), Some(t.as_str()), "{a:?}");
    Ok(t)
}

/// The claims of a berth token: the base64url JSON before the first dot
/// (signed, not secret).
pub fn token_claims(token: &str) -> Value {
    let body = token.split('.').next().expect("token body");
    serde_json::from_slice(&b64url_decode(body)).expect("token claims are JSON")
}

/// base64url without padding, as in tokens.
pub fn b64url_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; panics on anything else.
pub fn b64url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64url ({e}): {text}"))
}

/// The base64 of `user:password`, as an `Authorization: Basic` value carries it.
pub fn basic_credentials(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}
