//! The front answers `/v2` by the API itself and the rest by the router:
//! every answer must be the router's, byte for byte.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;

use super::{Front, RegistryApp};
use crate::server::App;

async fn answer<A: App>(
    app: &A,
    method: &Method,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (StatusCode, Vec<(String, String)>, bytes::Bytes) {
    let mut req = Request::builder().method(method.clone()).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/vnd.oci.image.manifest.v1+json");
    }
    let req = req.body(Body::from(body.to_vec())).expect("request");
    let res = app.answer(req).await;
    let status = res.status();
    let mut headers: Vec<(String, String)> = res
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    // hyper writes the length of a body whose size is known when the
    // answer has none (the router sets it on the answer itself).
    if *method != Method::HEAD && !headers.iter().any(|(k, _)| k == "content-length") {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    headers.sort();
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_answers_v2_as_the_router_does() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = berth_config::Config::default();
    cfg.server.data_dir = tmp.path().join("data");
    cfg.auth.bcrypt_cost = 4;
    let app = RegistryApp::open(cfg).await.expect("open");
    let accounts = app.access.accounts.clone();
    accounts
        .create_user("alice", "initial123", true)
        .await
        .expect("user");
    accounts
        .change_password("alice", "initial123", "alicepass1")
        .await
        .expect("reset");
    accounts.create_project("pub", true).await.expect("project");
    accounts
        .create_project("priv", false)
        .await
        .expect("project");
    let alice = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alicepass1")
    );

    let router = app.common_layer(false).apply(app.router());
    let front: Front = app.common_layer(false).front(app.router(), app.v2());

    let config = br#"{}"#;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": crate::oci::Digest::sha256_of(config).to_string(), "size": 2},
        "layers": [],
    }))
    .expect("json");
    let digest = crate::oci::Digest::sha256_of(&manifest);
    // The config blob and the manifest, pushed through the router.
    let upload = format!(
        "/v2/pub/app/blobs/uploads/?digest={}",
        crate::oci::Digest::sha256_of(config)
    );
    let (s, _, b) = answer(&router, &Method::POST, &upload, Some(&alice), config).await;
    assert_eq!(s, StatusCode::CREATED, "{b:?}");
    let (s, _, b) = answer(
        &router,
        &Method::PUT,
        "/v2/pub/app/manifests/v1",
        Some(&alice),
        &manifest,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b:?}");

    let by_digest = format!("/v2/pub/app/manifests/{digest}");
    let cases: Vec<(Method, String, Option<&str>)> = vec![
        (Method::GET, "/v2".into(), None),
        (Method::GET, "/v2/".into(), None),
        (Method::GET, "/v2/".into(), Some(&alice)),
        (Method::DELETE, "/v2/".into(), Some(&alice)),
        (Method::GET, "/v2/_catalog".into(), Some(&alice)),
        (
            Method::GET,
            "/v2/token?service=berth&scope=repository:pub/app:pull".into(),
            Some(&alice),
        ),
        (Method::GET, "/v2/pub/app/manifests/v1".into(), None),
        (Method::HEAD, "/v2/pub/app/manifests/v1".into(), None),
        (Method::GET, by_digest.clone(), Some(&alice)),
        (Method::HEAD, by_digest, None),
        (Method::GET, "/v2/pub/app/manifests/v2".into(), None),
        (Method::GET, "/v2/pub/app/tags/list".into(), None),
        (Method::GET, "/v2/priv/app/manifests/v1".into(), None),
        (
            Method::GET,
            "/v2/Bad..Name/manifests/v1".into(),
            Some(&alice),
        ),
        (Method::GET, "/v2/pub/app/blobs/sha256:xyz".into(), None),
        (Method::GET, "/v2/pub/app/nothing".into(), None),
        (Method::GET, "/healthz".into(), None),
        (Method::GET, "/api/v1/projects".into(), Some(&alice)),
    ];
    for (method, path, auth) in cases {
        let want = answer(&router, &method, &path, auth, b"").await;
        let got = answer(&front, &method, &path, auth, b"").await;
        assert_eq!(got, want, "{method} {path}");
    }
}
