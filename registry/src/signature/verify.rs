//! Verifying one simple-signing signature: pure, no I/O.
//!
//! A cosign or containers-tools ("sigstore") signature is an ECDSA signature
//! (ASN.1 DER, base64 in the `dev.cosignproject.cosign/signature` layer
//! annotation) over the layer's bytes, a JSON "simple signing" payload whose
//! `critical.image.docker-manifest-digest` names the signed manifest. Keys
//! are PEM `PUBLIC KEY` blocks (SPKI) on the NIST P-256 curve, as
//! `cosign generate-key-pair` and `skopeo generate-sigstore-key` write them.

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use crate::oci::Digest;

/// The `critical.type` of a container image simple-signing payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// The public keys a policy trusts, parsed once.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<VerifyingKey>,
}

/// Why a signature did not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the signature is not valid base64 or not an ECDSA signature")]
    Malformed,
    #[error("no key of the policy verifies the signature")]
    WrongKey,
    #[error("the signed payload is not a container image simple-signing payload")]
    BadPayload,
    #[error("the signature is for {0}, not this image")]
    OtherImage(String),
}

impl TrustedKeys {
    /// Parses PEM public keys; the error says which one is wrong and why.
    pub fn parse(pems: &[String]) -> Result<Self, String> {
        if pems.is_empty() {
            return Err("require_signature needs at least one key in public_keys".into());
        }
        let mut keys = Vec::with_capacity(pems.len());
        for (i, pem) in pems.iter().enumerate() {
            let key = p256::PublicKey::from_public_key_pem(pem.trim()).map_err(|e| {
                format!(
                    "public_keys[{i}] is not a PEM \"PUBLIC KEY\" on the P-256 curve (ECDSA keys as cosign and skopeo write them): {e}"
                )
            })?;
            keys.push(VerifyingKey::from(&key));
        }
        Ok(Self { keys })
    }

    /// Checks `signature_b64` over `payload` against the keys, then that the
    /// payload signs `image`.
    pub fn verify(
        &self,
        payload: &[u8],
        signature_b64: &str,
        image: &Digest,
    ) -> Result<(), Rejection> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| Rejection::Malformed)?;
        // cosign and containers/image write ASN.1 DER; a fixed-size r||s is accepted too.
        let verified = if let Ok(sig) = DerSignature::from_bytes(&raw) {
            self.keys.iter().any(|k| k.verify(payload, &sig).is_ok())
        } else if let Ok(sig) = Signature::from_slice(&raw) {
            self.keys.iter().any(|k| k.verify(payload, &sig).is_ok())
        } else {
            return Err(Rejection::Malformed);
        };
        if !verified {
            return Err(Rejection::WrongKey);
        }
        let signed = signed_digest(payload).ok_or(Rejection::BadPayload)?;
        if signed != image.to_string() {
            return Err(Rejection::OtherImage(signed));
        }
        Ok(())
    }
}

/// The manifest digest a simple-signing payload names, if it is one.
pub fn signed_digest(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let critical = v.get("critical")?;
    let kind = critical.get("type")?.as_str()?;
    if !kind.eq_ignore_ascii_case(PAYLOAD_TYPE) {
        return None;
    }
    Some(
        critical
            .get("image")?
            .get("docker-manifest-digest")?
            .as_str()?
            .to_string(),
    )
}

/// The `optional.creator` of a payload (containers tools write their name
/// and version there; cosign writes none unless asked).
pub fn creator(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some(v.get("optional")?.get("creator")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn key() -> (SigningKey, String) {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let pem = VerifyingKey::from(&sk)
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        (sk, pem)
    }

    fn payload(digest: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {"identity": {"docker-reference": "r/p/app"},
                "image": {"docker-manifest-digest": digest},
                "type": PAYLOAD_TYPE},
            "optional": {"creator": "test"}
        }))
        .expect("json")
    }

    fn sign(sk: &SigningKey, payload: &[u8]) -> String {
        let sig: DerSignature = sk.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())
    }

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .expect("digest")
    }

    #[test]
    fn a_signature_by_a_trusted_key_over_this_image_verifies() {
        let (sk, pem) = key();
        let keys = TrustedKeys::parse(&[pem]).expect("keys");
        let p = payload(&digest('a').to_string());
        assert_eq!(keys.verify(&p, &sign(&sk, &p), &digest('a')), Ok(()));
        assert_eq!(creator(&p).as_deref(), Some("test"));
    }

    #[test]
    fn wrong_key_tampered_payload_and_other_image_are_rejected() {
        let (sk, _) = key();
        let (_, other_pem) = key();
        let (_, pem) = key();
        let keys = TrustedKeys::parse(std::slice::from_ref(&other_pem)).expect("keys");
        let p = payload(&digest('a').to_string());
        let sig = sign(&sk, &p);
        assert_eq!(
            keys.verify(&p, &sig, &digest('a')),
            Err(Rejection::WrongKey)
        );

        let keys = TrustedKeys::parse(&[pem, other_pem]).expect("keys");
        let (sk2, pem2) = key();
        let keys2 = TrustedKeys::parse(&[pem2]).expect("keys");
        let mut tampered = p.clone();
        let at = tampered.len() - 3;
        tampered[at] ^= 1;
        assert_eq!(
            keys2.verify(&tampered, &sign(&sk2, &p), &digest('a')),
            Err(Rejection::WrongKey)
        );
        let p_b = payload(&digest('b').to_string());
        assert_eq!(
            keys2.verify(&p_b, &sign(&sk2, &p_b), &digest('a')),
            Err(Rejection::OtherImage(digest('b').to_string()))
        );
        assert_eq!(
            keys.verify(&p, "not base64!", &digest('a')),
            Err(Rejection::Malformed)
        );
        let not_simple = br#"{"critical":{"type":"something else"}}"#;
        assert_eq!(
            keys2.verify(not_simple, &sign(&sk2, not_simple), &digest('a')),
            Err(Rejection::BadPayload)
        );
    }

    #[test]
    fn keys_must_be_p256_pem() {
        assert!(TrustedKeys::parse(&[]).is_err());
        let e = TrustedKeys::parse(&[
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into()
        ])
        .expect_err("garbage");
        assert!(e.contains("public_keys[0]"), "{e}");
    }
}
