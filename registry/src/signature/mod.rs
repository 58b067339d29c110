//! Image signatures: finding those attached to a manifest, showing them, and
//! enforcing a project's `require_signature` policy at pull and publish.
//!
//! Three formats are recognised, all as manifests stored beside the image in
//! its repository:
//! - cosign, and sigstore signatures as the containers tools (skopeo,
//!   podman `--sign-by-sigstore-private-key`) write them: the same format, a
//!   manifest tagged `<alg>-<hex>.sig` whose layers are simple-signing
//!   payloads with the signature in the `dev.cosignproject.cosign/signature`
//!   annotation;
//! - cosign's OCI 1.1 mode: the same manifest pushed as a referrer of the
//!   image, with artifact type `application/vnd.dev.cosign.artifact.sig.v1+json`;
//! - notation: a referrer with artifact type `application/vnd.cncf.notary.signature`
//!   (shown; its X.509 trust model is not one a list of public keys can check,
//!   so it does not satisfy `require_signature`).
//!
//! `verify` checks one signature (pure); `attached` finds them through
//! `LocalRegistry`'s lookups; `gate` decides pulls and publications and caches
//! its verdicts. This module owns no tables: policies are stored with the
//! project (`auth::accounts`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod attached;
mod gate;
pub mod verify;

pub use attached::{attached_signatures, AttachedSignature};
pub use attached::{is_attachment, signature_tag, signature_views};
pub use gate::{refusal, SignatureGate, Verdict};

/// Artifact type of cosign signatures pushed as OCI 1.1 referrers.
pub const COSIGN_SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Artifact type of notation signatures.
pub const NOTATION_SIGNATURE_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Media type of an in-toto attestation layer (cosign's `.att` attachments).
pub const DSSE_ENVELOPE_LAYER: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation carrying a base64 signature over the layer's bytes.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// A project's signature policy: pulls (and publications) of images of the
/// project need a signature that one of these keys verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequireSignature {
    /// PEM public keys (`-----BEGIN PUBLIC KEY-----`, ECDSA P-256, as
    /// `cosign generate-key-pair` and `skopeo generate-sigstore-key` write them).
    pub public_keys: Vec<String>,
}

impl RequireSignature {
    /// Checks that every key parses.
    pub fn validate(&self) -> Result<(), String> {
        verify::TrustedKeys::parse(&self.public_keys).map(|_| ())
    }
}

/// The format of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureFormat {
    /// Simple signing in the cosign layout (cosign, skopeo, podman).
    Cosign,
    Notation,
}

/// Where a signature is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoredAs {
    /// Under the `<alg>-<hex>.sig` tag.
    Tag,
    /// As an OCI 1.1 referrer of the image.
    Referrer,
}

/// One signature of an image, as the admin API and the CLI show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignatureView {
    pub format: SignatureFormat,
    pub stored_as: StoredAs,
    /// The manifest holding the signature.
    pub manifest: String,
    /// The tag of that manifest, for the tag scheme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The image digest the signed payload names (cosign format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_digest: Option<String>,
    /// Who wrote the payload, when it says (skopeo and podman name themselves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
}
