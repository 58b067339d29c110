//! Decoding manifests into what the registry needs to know: children, subject, artifact type.

use oci_spec::image::{ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use super::media::{self, ManifestKind};
use super::Digest;

/// A content descriptor as it appears in manifests and in the referrers index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    /// Where else the content can be fetched (non-distributable layers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub urls: Option<Vec<String>>,
}

/// The largest size a descriptor may declare: the OCI image spec's `size` is
/// an int64, and Go clients cannot read anything larger.
pub const MAX_DESCRIPTOR_SIZE: u64 = i64::MAX as u64;

impl Descriptor {
    /// Whether a registry holds a manifest referencing this descriptor without
    /// holding its blob. The rule is distribution's: a non-distributable layer
    /// (OCI `…nondistributable…` or Docker's foreign layer) that names at least
    /// one URL is fetched by the client's runtime from those URLs, so the
    /// registry neither requires it at push time nor fetches it itself; without
    /// URLs it is an ordinary blob that must have been pushed. (distribution
    /// refuses a Docker foreign layer without URLs outright; berth accepts it
    /// when the blob was pushed, since it can then serve it.) A layer of this
    /// kind whose blob *was* pushed to the repository is linked and served as
    /// usual. Everything that walks an image's blobs — the edge's prefetch,
    /// GC, the reference check — asks this one question.
    pub fn fetched_from_urls(&self) -> bool {
        media::is_non_distributable(&self.media_type)
            && self.urls.as_ref().is_some_and(|u| !u.is_empty())
    }
}

/// Refuses URLs a client could not fetch from or that could smuggle in other
/// schemes: each must be an absolute `http` or `https` URL without a fragment
/// (distribution's syntactic check; it has no allow list by default here).
fn check_urls(digest: &str, urls: &[String]) -> Result<(), ManifestError> {
    for u in urls {
        let lower = u.to_ascii_lowercase();
        let scheme_ok = lower.starts_with("http://") || lower.starts_with("https://");
        let parsed = u.parse::<http::Uri>().ok();
        let host_ok = parsed
            .as_ref()
            .and_then(|p| p.host())
            .is_some_and(|h| !h.is_empty());
        if !scheme_ok || !host_ok || u.contains('#') {
            return Err(ManifestError::Invalid(format!(
                "descriptor {digest} lists URL {u:?}; a URL must be absolute http or https, without a fragment"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

/// What a pushed manifest references, decoded once at push time and stored beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSummary {
    pub media_type: String,
    /// Config and layers (image manifests): must be blobs linked to the repository.
    pub blobs: Vec<Descriptor>,
    /// Child manifests (indexes): must be manifests in the repository.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without one, its config media type
    /// (what the referrers API reports).
    pub artifact_type: Option<String>,
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

fn convert(d: &oci_spec::image::Descriptor) -> Result<Descriptor, ManifestError> {
    let digest: Digest = d
        .digest()
        .to_string()
        .parse()
        .map_err(|e| ManifestError::Invalid(format!("descriptor: {e}")))?;
    if d.size() > MAX_DESCRIPTOR_SIZE {
        return Err(ManifestError::Invalid(format!(
            "descriptor {digest} declares a size of {} bytes, more than any blob can have",
            d.size()
        )));
    }
    if let Some(urls) = d.urls() {
        check_urls(&digest.to_string(), urls)?;
    }
    Ok(Descriptor {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
        artifact_type: d.artifact_type().as_ref().map(|m| m.to_string()),
        annotations: d
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        platform: d.platform().as_ref().map(|p| Platform {
            architecture: p.architecture().to_string(),
            os: p.os().to_string(),
            variant: p.variant().clone(),
        }),
        urls: d.urls().clone().filter(|u| !u.is_empty()),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    fs_layers: Option<serde_json::Value>,
}

/// Decodes `body`, pushed with `content_type`, checking that the two agree.
pub fn decode(content_type: &str, body: &[u8]) -> Result<ManifestSummary, ManifestError> {
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| ManifestError::Invalid(format!("manifest is not valid JSON: {e}")))?;
    let media_type = manifest_media_type(content_type, &probe)?;
    let kind = media::manifest_kind(&media_type).ok_or_else(|| {
        ManifestError::Invalid(format!(
            "unsupported manifest media type {media_type}; use an OCI image manifest or index, or a Docker schema2 manifest or manifest list"
        ))
    })?;
    match kind {
        ManifestKind::Image => decode_image(media_type, body),
        ManifestKind::Index => decode_index(media_type, body),
    }
}

/// The manifest's media type: the Content-Type's, which must agree with the
/// body's `mediaType`, else the body's, else guessed from its fields; refuses
/// Docker schema1 and a `schemaVersion` other than 2.
fn manifest_media_type(content_type: &str, probe: &Probe) -> Result<String, ManifestError> {
    let header = media::essence(content_type);
    let header = match header.as_str() {
        "" | "application/json" | "application/octet-stream" => None,
        _ => Some(header),
    };
    if probe.fs_layers.is_some()
        || matches!(
            header.as_deref(),
            Some(media::DOCKER_SCHEMA1) | Some(media::DOCKER_SCHEMA1_SIGNED)
        )
    {
        return Err(ManifestError::Unsupported(
            "Docker schema1 manifests are not supported; push with a current client (schema2 or OCI)".into(),
        ));
    }
    if probe.schema_version != Some(2) {
        return Err(ManifestError::Invalid(
            "manifest must have \"schemaVersion\": 2".into(),
        ));
    }
    let media_type = match (&header, &probe.media_type) {
        (Some(h), Some(b)) if h != b => {
            return Err(ManifestError::Invalid(format!(
                "Content-Type {h} does not match the manifest's mediaType {b}"
            )))
        }
        (Some(h), _) => h.clone(),
        (None, Some(b)) => b.clone(),
        (None, None) if probe.manifests.is_some() => media::OCI_INDEX.to_string(),
        (None, None) if probe.layers.is_some() => media::OCI_MANIFEST.to_string(),
        (None, None) => {
            return Err(ManifestError::Invalid(
                "cannot tell the manifest type: send a Content-Type or a mediaType field".into(),
            ))
        }
    };
    Ok(media_type)
}

/// Decodes an image manifest: config and layers are its blobs.
fn decode_image(media_type: String, body: &[u8]) -> Result<ManifestSummary, ManifestError> {
    let m: ImageManifest = serde_json::from_slice(body)
        .map_err(|e| ManifestError::Invalid(format!("invalid image manifest: {e}")))?;
    let config = convert(m.config())?;
    let mut blobs = vec![config.clone()];
    for l in m.layers() {
        blobs.push(convert(l)?);
    }
    let artifact_type = m
        .artifact_type()
        .as_ref()
        .map(|a| a.to_string())
        .or_else(|| Some(config.media_type.clone()));
    Ok(ManifestSummary {
        media_type,
        blobs,
        manifests: vec![],
        subject: m.subject().as_ref().map(convert).transpose()?,
        artifact_type,
        annotations: m
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    })
}

/// Decodes an image index: its entries are child manifests.
fn decode_index(media_type: String, body: &[u8]) -> Result<ManifestSummary, ManifestError> {
    let m: ImageIndex = serde_json::from_slice(body)
        .map_err(|e| ManifestError::Invalid(format!("invalid image index: {e}")))?;
    Ok(ManifestSummary {
        media_type,
        blobs: vec![],
        manifests: m
            .manifests()
            .iter()
            .map(convert)
            .collect::<Result<_, _>>()?,
        subject: m.subject().as_ref().map(convert).transpose()?,
        artifact_type: m.artifact_type().as_ref().map(|a| a.to_string()),
        annotations: m
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: &[u8]) -> Digest {
        Digest::sha256_of(b)
    }

    #[test]
    fn decodes_image_manifest_with_subject() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": media::OCI_EMPTY_CONFIG, "digest": d(b"{}").to_string(), "size": 2},
            "layers": [{"mediaType": "application/json", "digest": d(b"x").to_string(), "size": 1}],
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": d(b"s").to_string(), "size": 10}
        });
        let s = decode(media::OCI_MANIFEST, body.to_string().as_bytes()).expect("decodes");
        assert_eq!(s.blobs.len(), 2);
        assert_eq!(s.subject.map(|x| x.digest), Some(d(b"s")));
        assert_eq!(
            s.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
    }

    #[test]
    fn decodes_docker_list_without_header() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_LIST,
            "manifests": [{"mediaType": media::DOCKER_MANIFEST, "digest": d(b"a").to_string(), "size": 5,
                           "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]
        });
        let s = decode("", body.to_string().as_bytes()).expect("decodes");
        assert_eq!(s.media_type, media::DOCKER_LIST);
        assert_eq!(
            s.manifests[0]
                .platform
                .as_ref()
                .map(|p| p.architecture.as_str()),
            Some("arm64")
        );
    }

    #[test]
    fn refuses_mismatch_and_garbage() {
        let body =
            serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []});
        assert!(decode(media::OCI_MANIFEST, body.to_string().as_bytes()).is_err());
        assert!(decode(media::OCI_MANIFEST, b"{not json").is_err());
        assert!(decode(
            media::OCI_MANIFEST,
            b"{\"schemaVersion\": 1, \"fsLayers\": []}"
        )
        .is_err());
        assert!(decode("text/plain", b"{\"schemaVersion\": 2, \"layers\": []}").is_err());
    }

    fn layer(media_type: &str, content: &[u8], urls: Option<&[&str]>) -> serde_json::Value {
        let mut l = serde_json::json!({"mediaType": media_type, "digest": d(content).to_string(), "size": content.len()});
        if let Some(u) = urls {
            l["urls"] = serde_json::json!(u);
        }
        l
    }

    fn image(layers: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(b"{}").to_string(), "size": 2},
            "layers": layers,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn non_distributable_layers_with_urls_are_fetched_from_them() {
        let url = ["https://store.example.com/blobs/sha256/ab"];
        let body = image(vec![
            layer(media::OCI_LAYER_NONDISTRIBUTABLE_GZIP, b"a", Some(&url)),
            layer(media::OCI_LAYER_NONDISTRIBUTABLE, b"b", Some(&url)),
            layer(media::DOCKER_FOREIGN_LAYER, b"c", Some(&url)),
            layer(media::OCI_LAYER_NONDISTRIBUTABLE, b"d", None),
            layer(media::OCI_LAYER_NONDISTRIBUTABLE, b"e", Some(&[])),
            layer(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                b"f",
                Some(&url),
            ),
        ]);
        let s = decode(media::OCI_MANIFEST, &body).expect("decodes");
        let external: Vec<bool> = s.blobs.iter().map(Descriptor::fetched_from_urls).collect();
        // The config, then the layers in order: only non-distributable ones
        // that name a URL; a normal layer with URLs must still be pushed.
        assert_eq!(external, [false, true, true, true, false, false, false]);
        assert_eq!(s.blobs[1].urls.as_deref(), Some(&url.map(String::from)[..]));
        assert_eq!(s.blobs[5].urls, None, "an empty list is no URL");
    }

    #[test]
    fn urls_must_be_http_and_sizes_must_fit_an_int64() {
        for bad in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "https://example.com/x#frag",
            "/relative/path",
            "https://",
            "not a url",
        ] {
            let body = image(vec![layer(
                media::OCI_LAYER_NONDISTRIBUTABLE,
                b"a",
                Some(&[bad]),
            )]);
            match decode(media::OCI_MANIFEST, &body) {
                Err(ManifestError::Invalid(m)) => {
                    assert!(m.contains(&d(b"a").to_string()), "{bad}: {m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let ok = ["HTTP://Example.com:8080/a?b=c", "http://10.0.0.1/x"];
        let body = image(vec![layer(
            media::OCI_LAYER_NONDISTRIBUTABLE,
            b"a",
            Some(&ok),
        )]);
        assert!(decode(media::OCI_MANIFEST, &body).is_ok());

        let mut huge = layer("application/vnd.oci.image.layer.v1.tar", b"h", None);
        huge["size"] = serde_json::json!(u64::MAX);
        match decode(media::OCI_MANIFEST, &image(vec![huge])) {
            Err(ManifestError::Invalid(m)) => assert!(m.contains(&d(b"h").to_string()), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut negative = layer("application/vnd.oci.image.layer.v1.tar", b"n", None);
        negative["size"] = serde_json::json!(-1);
        assert!(decode(media::OCI_MANIFEST, &image(vec![negative])).is_err());
    }

    #[test]
    fn accept_negotiation() {
        assert!(media::acceptable(media::OCI_INDEX, []));
        assert!(media::acceptable(media::OCI_INDEX, ["*/*"]));
        assert!(!media::acceptable(media::OCI_INDEX, [media::OCI_MANIFEST]));
        let both = format!("{}, {}", media::OCI_MANIFEST, media::OCI_INDEX);
        assert!(media::acceptable(media::OCI_INDEX, [both.as_str()]));
        // Case does not matter, parameters are ignored, headers form one list.
        let upper = media::OCI_INDEX.to_ascii_uppercase();
        assert!(media::acceptable(media::OCI_INDEX, [upper.as_str()]));
        assert!(media::acceptable(
            media::DOCKER_LIST,
            [
                media::OCI_MANIFEST,
                "application/vnd.docker.distribution.manifest.list.v2+json; q=0.5"
            ]
        ));
        assert!(!media::acceptable(
            media::DOCKER_LIST,
            [media::OCI_MANIFEST, media::DOCKER_MANIFEST]
        ));
        // Only types that are not manifests: narrowing is not ours to do.
        assert!(media::acceptable(media::OCI_INDEX, ["application/json"]));
    }
}
