//! The one name matcher: splits a `/v2/...` path into repository and endpoint.

use crate::oci::{Digest, ErrorCode, Reference, RepoName};
use crate::service::ServiceError;

use super::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, Reference),
    Blob(RepoName, Digest),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, Digest),
}

fn name(s: &str) -> Result<RepoName, ApiError> {
    s.parse().map_err(|e: crate::oci::NameError| {
        ApiError::Service(ServiceError::with_detail(
            ErrorCode::NameInvalid,
            e.to_string(),
            serde_json::json!({"name": s}),
        ))
    })
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    s.parse().map_err(|e: crate::oci::DigestError| {
        ApiError::Service(ServiceError::oci(ErrorCode::DigestInvalid, e.to_string()))
    })
}

/// Parses the path of a `/v2` request.
pub fn parse(path: &str) -> Result<Endpoint, ApiError> {
    let rest = path
        .strip_prefix("/v2")
        .ok_or_else(|| ApiError::NotFound(path.to_string()))?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Endpoint::Base);
    }
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return Ok(Endpoint::Tags(name(repo)?));
    }
    if let Some(repo) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Endpoint::UploadStart(name(repo)?));
    }
    if let Some(i) = rest.rfind("/blobs/uploads/") {
        let id = &rest[i + "/blobs/uploads/".len()..];
        if !id.contains('/') {
            return Ok(Endpoint::Upload(name(&rest[..i])?, id.to_string()));
        }
    }
    // The endpoint is the second-to-last segment: names may contain "manifests",
    // "blobs" or "referrers" as components, references and digests never contain '/'.
    let (head, last) = rest.rsplit_once('/').unwrap_or(("", rest));
    let (repo, kind) = head.rsplit_once('/').unwrap_or(("", head));
    match kind {
        "manifests" => {
            let reference: Reference = last.parse().map_err(|e: crate::oci::NameError| {
                let code = if e.what == "digest" {
                    ErrorCode::DigestInvalid
                } else {
                    ErrorCode::ManifestInvalid
                };
                ApiError::Service(ServiceError::oci(code, e.to_string()))
            })?;
            return Ok(Endpoint::Manifest(name(repo)?, reference));
        }
        "referrers" => return Ok(Endpoint::Referrers(name(repo)?, digest(last)?)),
        "blobs" => return Ok(Endpoint::Blob(name(repo)?, digest(last)?)),
        _ => {}
    }
    Err(ApiError::NotFound(path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_every_endpoint() {
        let d = Digest::sha256_of(b"x");
        let n = |s: &str| s.parse::<RepoName>().expect("name");
        assert_eq!(parse("/v2/").ok(), Some(Endpoint::Base));
        assert_eq!(parse("/v2").ok(), Some(Endpoint::Base));
        assert_eq!(parse("/v2/_catalog").ok(), Some(Endpoint::Catalog));
        assert_eq!(
            parse("/v2/a/b/c/tags/list").ok(),
            Some(Endpoint::Tags(n("a/b/c")))
        );
        assert_eq!(
            parse("/v2/p/blobs/uploads/").ok(),
            Some(Endpoint::UploadStart(n("p")))
        );
        assert_eq!(
            parse("/v2/p/blobs/app/blobs/uploads/abc").ok(),
            Some(Endpoint::Upload(n("p/blobs/app"), "abc".into()))
        );
        assert_eq!(
            parse(&format!("/v2/p/manifests/app/manifests/{d}")).ok(),
            Some(Endpoint::Manifest(
                n("p/manifests/app"),
                Reference::Digest(d.clone())
            ))
        );
        assert_eq!(
            parse(&format!("/v2/p/x/blobs/{d}")).ok(),
            Some(Endpoint::Blob(n("p/x"), d.clone()))
        );
        assert_eq!(
            parse(&format!("/v2/p/x/referrers/{d}")).ok(),
            Some(Endpoint::Referrers(n("p/x"), d))
        );
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        let d = Digest::sha256_of(b"x");
        let n = |s: &str| s.parse::<RepoName>().expect("name");
        assert_eq!(
            parse(&format!("/v2/pub/manifests/blobs/{d}")).ok(),
            Some(Endpoint::Blob(n("pub/manifests"), d.clone()))
        );
        assert_eq!(
            parse(&format!("/v2/pub/referrers/blobs/{d}")).ok(),
            Some(Endpoint::Blob(n("pub/referrers"), d.clone()))
        );
        assert_eq!(
            parse("/v2/pub/blobs/manifests/v1").ok(),
            Some(Endpoint::Manifest(
                n("pub/blobs"),
                Reference::Tag("v1".parse().expect("tag"))
            ))
        );
        assert_eq!(
            parse(&format!("/v2/a/manifests/referrers/{d}")).ok(),
            Some(Endpoint::Referrers(n("a/manifests"), d))
        );
    }

    #[test]
    fn rejects_bad_names_and_digests() {
        assert!(matches!(
            parse("/v2/UPPER/tags/list"),
            Err(ApiError::Service(ServiceError::Oci {
                code: ErrorCode::NameInvalid,
                ..
            }))
        ));
        assert!(matches!(
            parse("/v2/p/blobs/sha256:zz"),
            Err(ApiError::Service(ServiceError::Oci {
                code: ErrorCode::DigestInvalid,
                ..
            }))
        ));
        assert!(matches!(
            parse("/v2/p/manifests/bad:tag"),
            Err(ApiError::Service(ServiceError::Oci {
                code: ErrorCode::DigestInvalid,
                ..
            }))
        ));
        assert!(matches!(
            parse("/v2/p/whatever"),
            Err(ApiError::NotFound(_))
        ));
    }
}
