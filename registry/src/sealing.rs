//! The port through which the registry seals credentials it keeps at rest
//! (a proxy project's upstream password). The key and the cipher are the
//! ones that seal the controller's secrets and edge passwords
//! (`berth_controller::secrets::SecretBox`, composed in by `berth serve`):
//! one key, one mechanism. Each sealed value is bound to its place, so it
//! cannot be moved to another record.

use serde::{Deserialize, Serialize};

/// A sealed value as it is stored: base64 nonce and ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub nonce: String,
    pub ciphertext: String,
}

pub trait Sealer: Send + Sync {
    /// Seals `plain` for `place` (e.g. `project/dockerhub/proxy-password`).
    fn seal(&self, place: &str, plain: &[u8]) -> Result<SealedSecret, String>;
    /// Opens what `seal` sealed for the same `place`.
    fn open(&self, place: &str, sealed: &SealedSecret) -> Result<Vec<u8>, String>;
}
