//! The webhook events of `/v2` requests: what a push, a delete and a pull
//! report (the CloudEvent's subject and data); and of the admin API's tag
//! and repository deletes, as `/v2` deletes word them. Pure.

use crate::auth::Subject;
use crate::oci::{Digest, Reference, RepoName};
use crate::service::PushedManifest;
use crate::webhooks::{EventKind, ProjectEvent};

fn event(
    kind: EventKind,
    repo: &RepoName,
    subject: String,
    data: serde_json::Value,
) -> ProjectEvent {
    ProjectEvent {
        kind,
        project: repo.project().to_string(),
        subject,
        data,
    }
}

/// A manifest push: `<repo>@<digest>`, with its tags.
pub(super) fn manifest_pushed(
    repo: &RepoName,
    pushed: &PushedManifest,
    media_type: &str,
    size: u64,
    actor: &Subject,
) -> ProjectEvent {
    let tags: Vec<&str> = pushed.tags.iter().map(|t| t.as_str()).collect();
    let data = serde_json::json!({
        "repository": repo.as_str(),
        "digest": pushed.digest.to_string(),
        "media_type": media_type,
        "size": size,
        "tags": tags,
        "subject": pushed.subject.as_ref().map(|d| d.to_string()),
        "actor": actor.display(),
    });
    event(
        EventKind::Push,
        repo,
        format!("{repo}@{}", pushed.digest),
        data,
    )
}

fn reference_subject(repo: &RepoName, reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => format!("{repo}:{}", t.as_str()),
        Reference::Digest(d) => format!("{repo}@{d}"),
    }
}

/// A manifest or tag deleted (through `/v2`, or a tag through the admin API).
pub(crate) fn manifest_deleted(
    repo: &RepoName,
    reference: &Reference,
    actor: &Subject,
) -> ProjectEvent {
    let (digest, tag) = match reference {
        Reference::Tag(t) => (None, Some(t.as_str().to_string())),
        Reference::Digest(d) => (Some(d.to_string()), None),
    };
    let data = serde_json::json!({
        "repository": repo.as_str(),
        "digest": digest,
        "tag": tag,
        "actor": actor.display(),
    });
    event(
        EventKind::Delete,
        repo,
        reference_subject(repo, reference),
        data,
    )
}

/// A whole repository deleted through the admin API: subject `<repo>`,
/// neither digest nor tag, `scope` "repository".
pub(crate) fn repository_deleted(repo: &RepoName, actor: &Subject) -> ProjectEvent {
    let data = serde_json::json!({
        "repository": repo.as_str(),
        "digest": null,
        "tag": null,
        "scope": "repository",
        "actor": actor.display(),
    });
    event(EventKind::Delete, repo, repo.to_string(), data)
}

/// A manifest fetched with GET (HEADs are not reported).
pub(super) fn manifest_pulled(
    repo: &RepoName,
    reference: &Reference,
    digest: &Digest,
    media_type: &str,
    actor: &Subject,
) -> ProjectEvent {
    let tag = match reference {
        Reference::Tag(t) => Some(t.as_str().to_string()),
        Reference::Digest(_) => None,
    };
    let data = serde_json::json!({
        "repository": repo.as_str(),
        "digest": digest.to_string(),
        "tag": tag,
        "media_type": media_type,
        "actor": actor.display(),
    });
    event(EventKind::Pull, repo, format!("{repo}@{digest}"), data)
}
