//! Manifest handlers: GET and HEAD (signature policy, Accept, pull counts and events), and PUT (size limit, extra tags, the push event).

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::request::Ctx;
use super::response::{empty, hv, location, stale_warning};
use super::{authorize, events, ApiError, ApiState, CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG};
use crate::auth::Action;
use crate::oci::{media, Digest, ErrorCode, Reference, RepoName, Tag};
use crate::service::ServiceError;
use crate::webhooks::EventKind;

pub(super) async fn manifest_get(
    st: &ApiState,
    ctx: &Ctx,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    let subject = authorize(st, ctx, Some((repo, Action::Pull))).await?;
    let m = st.ns.manifest(repo, reference).await?;
    if let Some(gate) = st.signatures.as_ref().filter(|g| g.applies(repo)) {
        // Boxed: its checks are large, and a GET of a project without a
        // policy should not carry (and copy) them on every request.
        Box::pin(gate.check_pull(repo, &m.digest)).await?;
    }
    let filling = ctx.headers.contains_key(crate::pulls::FILL_HEADER);
    if let (Some(pulls), true) = (&st.pulls, ctx.method == Method::GET && !filling) {
        pulls.pulled(repo, &m.digest);
    }
    if let (Some(events), true) = (&st.events, ctx.method == Method::GET) {
        events.emit_later(repo.project(), EventKind::Pull, || {
            events::manifest_pulled(repo, reference, &m.digest, &m.media_type, &subject)
        });
    }
    let accept = ctx
        .headers
        .get_all(header::ACCEPT)
        .into_iter()
        .filter_map(|v| v.to_str().ok());
    if !media::acceptable(&m.media_type, accept) {
        return Err(ApiError::Service(ServiceError::with_detail(
            ErrorCode::ManifestUnknown,
            format!(
                "manifest {reference} in {repo} is a {}, which the client's Accept header does not list",
                m.media_type
            ),
            serde_json::json!({"mediaType": m.media_type}),
        )));
    }
    // No Content-Length: hyper writes the body's exact length itself (and
    // `dispatch` sets it on a HEAD answer), without a string for it here.
    let mut r = Response::new(Body::from(m.bytes.clone()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, media_type_value(&m.media_type));
    let (digest, etag) = digest_values(&m.digest);
    h.insert(CONTENT_DIGEST, digest);
    h.insert(header::ETAG, etag);
    if m.stale {
        h.insert(header::WARNING, stale_warning());
    }
    Ok(r)
}

/// A manifest's media type as a header value: the usual ones without a copy.
fn media_type_value(media_type: &str) -> HeaderValue {
    match media_type {
        media::OCI_MANIFEST => HeaderValue::from_static(media::OCI_MANIFEST),
        media::OCI_INDEX => HeaderValue::from_static(media::OCI_INDEX),
        media::DOCKER_MANIFEST => HeaderValue::from_static(media::DOCKER_MANIFEST),
        media::DOCKER_LIST => HeaderValue::from_static(media::DOCKER_LIST),
        other => hv(other),
    }
}

/// `Docker-Content-Digest` and `ETag` (the digest in quotes) for `d`, both
/// views of one buffer.
fn digest_values(d: &Digest) -> (HeaderValue, HeaderValue) {
    let (alg, hex) = (d.algorithm().as_str(), d.hex());
    let mut b = BytesMut::with_capacity(alg.len() + hex.len() + 3);
    b.extend_from_slice(b"\"");
    b.extend_from_slice(alg.as_bytes());
    b.extend_from_slice(b":");
    b.extend_from_slice(hex.as_bytes());
    b.extend_from_slice(b"\"");
    let quoted = b.freeze();
    let bare = quoted.slice(1..quoted.len() - 1);
    // A digest is `<algorithm>:<lower-case hex>`: always a valid value.
    let value = |v: Bytes| HeaderValue::from_maybe_shared(v).unwrap_or_else(|_| hv(""));
    (value(bare), value(quoted))
}

pub(super) async fn manifest_put(
    st: &ApiState,
    ctx: &Ctx,
    repo: &RepoName,
    reference: &Reference,
    body: Body,
) -> Result<Response, ApiError> {
    let subject = authorize(st, ctx, Some((repo, Action::Push))).await?;
    let bytes = manifest_body(st, ctx, body).await?;
    let content_type = ctx.header(header::CONTENT_TYPE).unwrap_or("");
    let size = bytes.len() as u64;
    let extra = extra_tags(ctx)?;
    // The push's event is queued with the manifest, in one transaction.
    let hooks = st.events.as_deref();
    let actor = &subject;
    let build = hooks.map(|h| {
        move |p: &crate::service::PushedManifest| {
            h.outbox_event(&events::manifest_pushed(repo, p, content_type, size, actor))
        }
    });
    let event: Option<crate::service::PushEvent<'_>> = build.as_ref().map(|b| b as _);
    let pushed = st
        .ns
        .manifest_put(repo, reference, content_type, bytes, &extra, event)
        .await?;
    st.access.record(
        &subject,
        ctx.peer,
        "push",
        repo,
        &format!("{repo}:{reference}@{}", pushed.digest),
    );
    if let Some(h) = hooks {
        let e = events::manifest_pushed(repo, &pushed, content_type, size, &subject);
        h.queued(&e, pushed.events_dropped);
    }
    Ok(pushed_answer(st, repo, &pushed, !extra.is_empty()))
}

/// The manifest's bytes, at most `server.max_manifest_bytes` of them: 413
/// above, before reading when Content-Length says so.
async fn manifest_body(st: &ApiState, ctx: &Ctx, body: Body) -> Result<bytes::Bytes, ApiError> {
    let limit = st.max_manifest_bytes;
    let too_big = || {
        ApiError::TooLarge(format!(
            "manifest is larger than the {limit}-byte limit; split the image or raise server.max_manifest_bytes"
        ))
    };
    if ctx
        .header(header::CONTENT_LENGTH)
        .and_then(|l| l.trim().parse::<u64>().ok())
        .is_some_and(|l| l > limit)
    {
        return Err(too_big());
    }
    let bytes = http_body_util::Limited::new(body, limit as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_big()
            } else {
                ApiError::Service(ServiceError::oci(
                    ErrorCode::ManifestInvalid,
                    format!("the manifest body broke off: {e}"),
                ))
            }
        })?
        .to_bytes();
    Ok(bytes)
}

/// The `?tag=` parameters of a push, each a valid tag.
fn extra_tags(ctx: &Ctx) -> Result<Vec<Tag>, ApiError> {
    let mut extra = Vec::new();
    for t in ctx.q_all("tag") {
        extra.push(t.parse::<Tag>().map_err(|e| {
            ApiError::Service(ServiceError::oci(ErrorCode::ManifestInvalid, e.to_string()))
        })?);
    }
    Ok(extra)
}

/// 201 with the manifest's location and digest, its subject, and with
/// `?tag=` the tags it now has.
fn pushed_answer(
    st: &ApiState,
    repo: &RepoName,
    pushed: &crate::service::PushedManifest,
    with_tags: bool,
) -> Response {
    let mut r = empty(StatusCode::CREATED);
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        location(st, format!("/v2/{repo}/manifests/{}", pushed.digest)),
    );
    h.insert(CONTENT_DIGEST, hv(&pushed.digest.to_string()));
    if let Some(s) = &pushed.subject {
        h.insert(OCI_SUBJECT, hv(&s.to_string()));
    }
    if with_tags {
        for t in &pushed.tags {
            h.append(OCI_TAG, hv(t.as_str()));
        }
    }
    r
}
