//! Sealing of secret values at rest (ChaCha20-Poly1305, random 96-bit nonce per
//! value, the value's place `project/secret/key` as associated data so a sealed
//! value cannot be moved to another secret or key).
//!
//! Owns: the key and the two operations. Must not touch: storage or HTTP; plain
//! values leave this module only to be rendered into a Secret object.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

use crate::resources::SealedValue;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret value for {0} cannot be decrypted (wrong key or damaged record)")]
    Open(String),
    #[error("secret value for {0} cannot be encrypted")]
    Seal(String),
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    pub fn seal(&self, place: &str, plain: &[u8]) -> Result<SealedValue, SecretError> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
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
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| err())
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
}
