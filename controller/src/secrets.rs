//! Sealing of secret values at rest (ChaCha20-Poly1305, random 96-bit nonce per
//! value, the value's place `project/secret/key` as associated data so a sealed
//! value cannot be moved to another secret or key).
//!
//! Rotation with overlap: a `SecretBox` seals with the current key
//! (`controller.secret_key`) and opens with it or any previous one
//! (`controller.previous_secret_keys`). Each sealed value names the key that
//! sealed it by its id (`key_id`: a hash of the key, not the key); values
//! sealed before ids existed carry none and are opened by trying each key.
//! `reseal` seals again with the current key what an older key sealed, after
//! which the older key can be dropped.
//!
//! Owns: the keys and the operations. Must not touch: storage or HTTP; plain
//! values leave this module only to be rendered into a Secret object.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::resources::SealedValue;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret value for {0} cannot be decrypted with controller.secret_key or any of \
         controller.previous_secret_keys (sealed with a key no longer configured, or a \
         damaged record)"
    )]
    Open(String),
    #[error(
        "secret value for {place} was sealed with key {key_id}, which is neither \
         controller.secret_key (key {current}) nor in controller.previous_secret_keys: put \
         the key that sealed it back into controller.previous_secret_keys (then run \
         `berth reseal`)"
    )]
    UnknownKey {
        place: String,
        key_id: String,
        current: String,
    },
    #[error("secret value for {0} cannot be encrypted")]
    Seal(String),
}

/// What resealing one kind of value did: how many were moved to the
/// current key, how many were sealed with it already, and the values no
/// configured key opens (each with why; never a value).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResealCount {
    pub resealed: u64,
    pub current: u64,
    pub failed: Vec<String>,
}

impl ResealCount {
    /// Counts one `SecretBox::reseal`; the new value when there is one.
    pub fn one(
        &mut self,
        resealed: Result<Option<SealedValue>, SecretError>,
    ) -> Option<SealedValue> {
        match resealed {
            Ok(Some(v)) => {
                self.resealed += 1;
                Some(v)
            }
            Ok(None) => {
                self.current += 1;
                None
            }
            Err(e) => {
                self.failed.push(e.to_string());
                None
            }
        }
    }
}

/// The id a sealed value names its key by: the first 8 bytes of a hash of
/// the key, in hex. It tells keys apart and reveals nothing of them.
pub fn key_id(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"berth sealing key id\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

#[derive(Clone)]
struct SealingKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

impl SealingKey {
    fn new(key: &[u8; 32]) -> Self {
        SealingKey {
            id: key_id(key),
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    fn open(&self, place: &str, nonce: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: place.as_bytes(),
                },
            )
            .ok()
    }
}

#[derive(Clone)]
pub struct SecretBox {
    current: SealingKey,
    /// Open what they sealed; never seal.
    previous: Vec<SealingKey>,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self::with_previous(key, &[])
    }

    /// Seals with `key`; opens with it or any of `previous`.
    pub fn with_previous(key: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        SecretBox {
            current: SealingKey::new(key),
            previous: previous.iter().map(SealingKey::new).collect(),
        }
    }

    /// The id of the key that seals.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    pub fn seal(&self, place: &str, plain: &[u8]) -> Result<SealedValue, SecretError> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Seal(place.to_string()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(SealedValue {
            nonce: b64.encode(nonce),
            ciphertext: b64.encode(ct),
            key_id: Some(self.current.id.clone()),
        })
    }

    pub fn open(&self, place: &str, sealed: &SealedValue) -> Result<Vec<u8>, SecretError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let err = || SecretError::Open(place.to_string());
        let nonce = b64.decode(&sealed.nonce).map_err(|_| err())?;
        let ct = b64.decode(&sealed.ciphertext).map_err(|_| err())?;
        if nonce.len() != 12 {
            return Err(err());
        }
        let mut keys = std::iter::once(&self.current).chain(&self.previous);
        match &sealed.key_id {
            Some(id) => {
                let key = keys
                    .find(|k| &k.id == id)
                    .ok_or_else(|| SecretError::UnknownKey {
                        place: place.to_string(),
                        key_id: id.clone(),
                        current: self.current.id.clone(),
                    })?;
                key.open(place, &nonce, &ct).ok_or_else(err)
            }
            // Sealed before values named their key: whichever opens it.
            None => keys
                .find_map(|k| k.open(place, &nonce, &ct))
                .ok_or_else(err),
        }
    }

    /// `sealed` sealed again with the current key; `None` when it is
    /// sealed with it already.
    pub fn reseal(
        &self,
        place: &str,
        sealed: &SealedValue,
    ) -> Result<Option<SealedValue>, SecretError> {
        if sealed.key_id.as_deref() == Some(self.current.id.as_str()) {
            return Ok(None);
        }
        let plain = self.open(place, sealed)?;
        self.seal(place, &plain).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let b = SecretBox::new(&[7u8; 32]);
        let s = b.seal("shop/db/password", b"hunter2").expect("seal");
        assert!(!s.ciphertext.contains("hunter2"));
        assert_eq!(b.open("shop/db/password", &s).expect("open"), b"hunter2");
        assert!(b.open("shop/db/user", &s).is_err(), "bound to its place");
        assert!(SecretBox::new(&[8u8; 32])
            .open("shop/db/password", &s)
            .is_err());
        let s2 = b.seal("shop/db/password", b"hunter2").expect("seal");
        assert_ne!(s.nonce, s2.nonce);
    }

    #[test]
    fn previous_keys_open_and_reseal_moves_values_to_the_current_key() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let old = SecretBox::new(&k1);
        let sealed = old.seal("p/s/k", b"v1").expect("seal");
        assert_eq!(sealed.key_id.as_deref(), Some(key_id(&k1).as_str()));
        // Without ids (an earlier release's values): found by trying.
        let legacy = SealedValue {
            key_id: None,
            ..sealed.clone()
        };

        let rotated = SecretBox::with_previous(&k2, &[k1]);
        assert_eq!(rotated.open("p/s/k", &sealed).expect("open"), b"v1");
        assert_eq!(rotated.open("p/s/k", &legacy).expect("open"), b"v1");
        let moved = rotated
            .reseal("p/s/k", &sealed)
            .expect("reseal")
            .expect("moved");
        assert_eq!(moved.key_id.as_deref(), Some(rotated.key_id()));
        assert!(rotated.reseal("p/s/k", &moved).expect("reseal").is_none());
        assert!(rotated.reseal("p/s/k", &legacy).expect("reseal").is_some());

        // The old key dropped: what was moved opens, what was not says why.
        let only_new = SecretBox::new(&k2);
        assert_eq!(only_new.open("p/s/k", &moved).expect("open"), b"v1");
        let err = only_new.open("p/s/k", &sealed).expect_err("old key gone");
        let text = err.to_string();
        assert!(matches!(err, SecretError::UnknownKey { .. }), "{text}");
        assert!(
            text.contains(&key_id(&k1)) && text.contains(&key_id(&k2)),
            "{text}"
        );
        assert!(text.contains("controller.previous_secret_keys"), "{text}");
        assert!(matches!(
            only_new.open("p/s/k", &legacy),
            Err(SecretError::Open(_))
        ));
        assert!(only_new.reseal("p/s/k", &legacy).is_err());
    }
}
