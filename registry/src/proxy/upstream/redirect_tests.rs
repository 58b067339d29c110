//! The upstream client against a registry that redirects blob GETs to
//! presigned URLs on another host (distribution's and berth's
//! `storage.redirect`): it follows the `307`, carries the `Range` of a
//! resumed fill along, and never sends the registry's credentials to the
//! bucket (S3 refuses a request signed twice, and the bucket has no
//! business seeing them).

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::*;

const BLOB: &[u8] = b"layer bytes that live in the bucket, not in the registry";

/// What the bucket was asked: the Authorization and Range headers.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn bucket(State(seen): State<Seen>, req: Request) -> Response {
    let h = req.headers();
    let range = text(h, header::RANGE);
    if let Ok(mut s) = seen.lock() {
        s.push((text(h, header::AUTHORIZATION), range.clone()));
    }
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    match from {
        Some(n) => (
            StatusCode::PARTIAL_CONTENT,
            [(
                header::CONTENT_RANGE,
                format!("bytes {n}-{}/{}", BLOB.len() - 1, BLOB.len()),
            )],
            &BLOB[n..],
        )
            .into_response(),
        None => BLOB.into_response(),
    }
}

/// A registry asking for Basic credentials, then redirecting to `bucket`.
async fn registry(State(bucket): State<String>, req: Request) -> Response {
    if text(req.headers(), header::AUTHORIZATION).is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"registry\"")],
        )
            .into_response();
    }
    let url = format!("{bucket}/blobs/data?X-Amz-Expires=1200&X-Amz-Signature=abc");
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response()
}

async fn collect(body: BlobBody) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = body.stream;
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("a chunk"));
    }
    out
}

#[tokio::test]
async fn a_redirect_to_the_bucket_is_followed_without_the_registrys_credentials() {
    let seen: Seen = Arc::default();
    let bucket_url = serve(
        axum::Router::new()
            .fallback(bucket)
            .with_state(seen.clone()),
    )
    .await;
    let registry_url = serve(
        axum::Router::new()
            .fallback(registry)
            .with_state(bucket_url),
    )
    .await;
    let up = Upstream::new(
        &registry_url,
        Some(("robot".into(), "secret".into())),
        Duration::from_secs(5),
        false,
    )
    .expect("an upstream");
    let repo: RepoName = "team/app".parse().expect("a name");
    let digest = Digest::sha256_of(BLOB);

    let body = up
        .get_blob(&repo, &digest, 0)
        .await
        .expect("fetched")
        .expect("found");
    assert_eq!(body.extent, Extent::Full);
    assert_eq!(collect(body).await, BLOB);

    let body = up
        .get_blob(&repo, &digest, 10)
        .await
        .expect("resumed")
        .expect("found");
    assert_eq!(body.extent, Extent::From(10));
    assert_eq!(body.total, Some(BLOB.len() as u64));
    assert_eq!(collect(body).await, &BLOB[10..]);

    let seen = seen.lock().expect("seen").clone();
    assert_eq!(
        seen,
        vec![(None, None), (None, Some("bytes=10-".into()))],
        "the bucket gets the Range and never the registry's Authorization"
    );
}
