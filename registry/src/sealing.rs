//! The port through which the registry seals credentials it keeps at rest
//! (a proxy project's upstream password). The key and the cipher are the
//! ones that seal the controller's secrets and edge passwords
//! (`berth_controller::secrets::SecretBox`, composed in by `berth serve`):
//! one key, one mechanism. Each sealed value is bound to its place, so it
//! cannot be moved to another record, and names the key that sealed it
//! (`key_id`), so that a rotated key (`controller.previous_secret_keys`)
//! still opens it until `reseal` seals it again with the current key.

use serde::{Deserialize, Serialize};

/// A sealed value as it is stored: base64 nonce and ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub nonce: String,
    pub ciphertext: String,
    /// The id of the key that sealed it; absent in values sealed before
    /// ids existed (opened by trying each key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

pub trait Sealer: Send + Sync {
    /// Seals `plain` for `place` (e.g. `project/dockerhub/proxy-password`).
    fn seal(&self, place: &str, plain: &[u8]) -> Result<SealedSecret, String>;
    /// Opens what `seal` sealed for the same `place`.
    fn open(&self, place: &str, sealed: &SealedSecret) -> Result<Vec<u8>, String>;
    /// `sealed` sealed again with the current key; `None` when it is
    /// sealed with it already.
    fn reseal(&self, place: &str, sealed: &SealedSecret) -> Result<Option<SealedSecret>, String>;
    /// The id of the key that seals (not secret).
    fn key_id(&self) -> String;
}

/// What resealing one kind of value did: how many were moved to the
/// current key, how many were sealed with it already, and the values no
/// configured key opens (each with why; never a value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResealCount {
    pub resealed: u64,
    pub current: u64,
    pub failed: Vec<String>,
}

impl ResealCount {
    /// Reseals `sealed` (at `place`) with `sealer`, counting what happened;
    /// the new value when there is one.
    pub fn one(
        &mut self,
        sealer: &dyn Sealer,
        place: &str,
        sealed: &SealedSecret,
    ) -> Option<SealedSecret> {
        match sealer.reseal(place, sealed) {
            Ok(Some(v)) => {
                self.resealed += 1;
                Some(v)
            }
            Ok(None) => {
                self.current += 1;
                None
            }
            Err(e) => {
                self.failed.push(e);
                None
            }
        }
    }
}

/// Counts of a reseal, by kind of value (`proxy_passwords`, ...).
pub type ResealReport = std::collections::BTreeMap<String, ResealCount>;

/// Reseals what is kept outside the registry's stores (the controller's
/// records), composed in by `berth serve`.
#[async_trait::async_trait]
pub trait ResealElsewhere: Send + Sync {
    async fn reseal(&self) -> Result<ResealReport, String>;
}

/// A sealer for the stores' conformance tests (the real one is the
/// controller's `SecretBox`, which the registry does not link): a value
/// "sealed" with key `current` carries its place and plain text, and opens
/// only under a key this sealer knows and at the place it was sealed for.
#[cfg(test)]
pub(crate) mod test_sealer {
    use super::{SealedSecret, Sealer};

    pub(crate) struct KeyedSealer {
        pub current: &'static str,
        pub previous: &'static [&'static str],
    }

    impl Sealer for KeyedSealer {
        fn seal(&self, place: &str, plain: &[u8]) -> Result<SealedSecret, String> {
            Ok(SealedSecret {
                nonce: place.into(),
                ciphertext: String::from_utf8_lossy(plain).into(),
                key_id: Some(self.current.into()),
            })
        }

        fn open(&self, place: &str, sealed: &SealedSecret) -> Result<Vec<u8>, String> {
            let id = sealed.key_id.as_deref().unwrap_or_default();
            if id != self.current && !self.previous.contains(&id) {
                return Err(format!(
                    "{place} was sealed with key {id}, which is not configured"
                ));
            }
            if sealed.nonce != place {
                return Err(format!("{place}: sealed for {}", sealed.nonce));
            }
            Ok(sealed.ciphertext.clone().into_bytes())
        }

        fn reseal(
            &self,
            place: &str,
            sealed: &SealedSecret,
        ) -> Result<Option<SealedSecret>, String> {
            if sealed.key_id.as_deref() == Some(self.current) {
                return Ok(None);
            }
            let plain = self.open(place, sealed)?;
            self.seal(place, &plain).map(Some)
        }

        fn key_id(&self) -> String {
            self.current.into()
        }
    }
}
