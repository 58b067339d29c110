//! Finding the signatures attached to an image in its repository: the
//! `<alg>-<hex>.sig` tag and the signature referrers.

use super::{
    verify, SignatureFormat, SignatureView, StoredAs, COSIGN_SIGNATURE_ARTIFACT,
    DSSE_ENVELOPE_LAYER, NOTATION_SIGNATURE_ARTIFACT, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_LAYER,
};
use crate::oci::{Digest, ManifestSummary, RepoName, Tag};
use crate::service::{LocalRegistry, Namespace, Result};

/// Payloads larger than this are not read (simple-signing payloads are a few hundred bytes).
pub(super) const MAX_PAYLOAD: u64 = 256 * 1024;

/// A manifest holding signatures of an image.
#[derive(Debug, Clone)]
pub struct AttachedSignature {
    pub manifest: Digest,
    pub format: SignatureFormat,
    pub stored_as: StoredAs,
    pub tag: Option<String>,
    /// The signed payloads and their base64 signatures (cosign format).
    pub layers: Vec<SignedLayer>,
}

#[derive(Debug, Clone)]
pub struct SignedLayer {
    pub payload: Digest,
    pub signature: String,
}

/// The tag the cosign scheme stores an image's signatures under.
pub fn signature_tag(image: &Digest) -> Option<Tag> {
    format!("{}-{}.sig", image.algorithm().as_str(), image.hex())
        .parse()
        .ok()
}

fn signed_layers(summary: &ManifestSummary) -> Vec<SignedLayer> {
    summary
        .blobs
        .iter()
        .filter_map(|b| {
            let sig = b.annotations.as_ref()?.get(SIGNATURE_ANNOTATION)?;
            Some(SignedLayer {
                payload: b.digest.clone(),
                signature: sig.clone(),
            })
        })
        .collect()
}

/// The signature manifests attached to `image` in `repo`, tag scheme first,
/// each listed once.
pub async fn attached_signatures(
    registry: &LocalRegistry,
    repo: &RepoName,
    image: &Digest,
) -> Result<Vec<AttachedSignature>> {
    let mut out = Vec::new();
    if let Some(tag) = signature_tag(image) {
        if let Some(d) = registry.tag_digest(repo, &tag).await? {
            if let Some(s) = registry.manifest_summary(repo, &d).await? {
                out.push(AttachedSignature {
                    manifest: d,
                    format: SignatureFormat::Cosign,
                    stored_as: StoredAs::Tag,
                    tag: Some(tag.to_string()),
                    layers: signed_layers(&s),
                });
            }
        }
    }
    for r in registry.referrers(repo, image).await?.manifests {
        let format = match r.artifact_type.as_deref() {
            Some(COSIGN_SIGNATURE_ARTIFACT) => SignatureFormat::Cosign,
            Some(NOTATION_SIGNATURE_ARTIFACT) => SignatureFormat::Notation,
            _ => continue,
        };
        if out.iter().any(|a| a.manifest == r.digest) {
            continue;
        }
        let layers = match (format, registry.manifest_summary(repo, &r.digest).await?) {
            (SignatureFormat::Cosign, Some(s)) => signed_layers(&s),
            _ => Vec::new(),
        };
        out.push(AttachedSignature {
            manifest: r.digest,
            format,
            stored_as: StoredAs::Referrer,
            tag: None,
            layers,
        });
    }
    Ok(out)
}

/// Whether a manifest is something attached to an image rather than an image
/// to run: a referrer (it has a subject), a signature or attestation artifact,
/// or a manifest of simple-signing / attestation layers only (cosign's tag
/// scheme). These stay pullable under `require_signature`: clients fetch them
/// to verify.
pub fn is_attachment(summary: &ManifestSummary) -> bool {
    if summary.subject.is_some() {
        return true;
    }
    if matches!(
        summary.artifact_type.as_deref(),
        Some(COSIGN_SIGNATURE_ARTIFACT | NOTATION_SIGNATURE_ARTIFACT)
    ) {
        return true;
    }
    // blobs[0] is the config.
    let layers = summary.blobs.get(1..).unwrap_or_default();
    !layers.is_empty()
        && summary.manifests.is_empty()
        && layers
            .iter()
            .all(|b| b.media_type == SIMPLE_SIGNING_LAYER || b.media_type == DSSE_ENVELOPE_LAYER)
}

/// The signatures of `image`, one view per signature (a cosign manifest may
/// hold several), with what their payloads say.
pub async fn signature_views(
    registry: &LocalRegistry,
    repo: &RepoName,
    image: &Digest,
) -> Result<Vec<SignatureView>> {
    let mut out = Vec::new();
    for a in attached_signatures(registry, repo, image).await? {
        let view = |signed_digest, creator| SignatureView {
            format: a.format,
            stored_as: a.stored_as,
            manifest: a.manifest.to_string(),
            tag: a.tag.clone(),
            signed_digest,
            creator,
        };
        if a.layers.is_empty() {
            out.push(view(None, None));
            continue;
        }
        for l in &a.layers {
            let payload = registry
                .small_blob(repo, &l.payload, MAX_PAYLOAD)
                .await
                .ok()
                .flatten();
            out.push(view(
                payload.as_deref().and_then(verify::signed_digest),
                payload.as_deref().and_then(verify::creator),
            ));
        }
    }
    Ok(out)
}
