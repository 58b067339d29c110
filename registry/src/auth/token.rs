//! Bearer tokens: short-lived, HMAC-SHA256 signed claims. Verifying one is a
//! MAC over a few hundred bytes (microseconds), never a bcrypt.
//!
//! Format: `base64url(claims JSON) "." base64url(HMAC-SHA256(key, first part))`.
//! Clients treat tokens as opaque, so no JOSE header is needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::Action;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account or robot; empty for anonymous.
    pub sub: String,
    /// The instance id of that account or robot: the token dies with the account,
    /// and does not come back when the name is taken again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aid: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Whether `sub` was an administrator when the token was issued. For
    /// information only: decisions take the flag from the account.
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub robot: bool,
    pub access: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired; request a new one")]
    Expired,
    #[error("token was issued for service {0:?}, not this one")]
    WrongService(String),
}

/// The keys tokens are signed and verified with: one signs, and it and
/// the previous ones still within their tokens' lifetime verify (rotation
/// with overlap). Clones share the set, so `replace` reaches every user.
#[derive(Clone)]
pub struct TokenKey {
    keys: Arc<RwLock<KeySet>>,
    /// Bumped by every `replace`: what was verified under an earlier set is
    /// verified again (a key dropped from the set no longer vouches for it).
    generation: Arc<AtomicU64>,
}

struct KeySet {
    signing: Vec<u8>,
    /// Verify too: keys signing before `signing`, or about to sign after it.
    others: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self::with_others(key, Vec::new())
    }

    /// `signing` signs; it and `others` verify.
    pub fn with_others(signing: Vec<u8>, others: Vec<Vec<u8>>) -> Self {
        Self {
            keys: Arc::new(RwLock::new(KeySet { signing, others })),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Replaces the set, for every clone of this key.
    pub fn replace(&self, signing: Vec<u8>, others: Vec<Vec<u8>>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = KeySet { signing, others };
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes with every `replace`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `secret` is the key that signs now.
    pub fn signs_with(&self, secret: &[u8]) -> bool {
        self.set().signing == secret
    }

    fn set(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = mac(&self.set().signing);
        mac.update(body.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    pub fn verify(&self, token: &str, service: &str, now: u64) -> Result<Claims, TokenError> {
        let (body, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let set = self.set();
        let signed_by = |key: &Vec<u8>| {
            let mut mac = mac(key);
            mac.update(body.as_bytes());
            // Constant-time comparison.
            mac.verify_slice(&sig).is_ok()
        };
        if !signed_by(&set.signing) && !set.others.iter().any(signed_by) {
            return Err(TokenError::BadSignature);
        }
        drop(set);
        let claims: Claims =
            serde_json::from_slice(&B64.decode(body).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.aud != service {
            return Err(TokenError::WrongService(claims.aud));
        }
        Ok(claims)
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"))
}

/// Parses `repository:<name>:<actions>` scopes; unknown types and actions are skipped.
pub fn parse_scope(scope: &str) -> Vec<(String, Vec<Action>)> {
    let mut out = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        let mut parts = s.splitn(2, ':');
        let kind = parts.next().unwrap_or("");
        let rest = parts.next().unwrap_or("");
        if kind != "repository" {
            continue;
        }
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let acts: Vec<Action> = actions
            .split(',')
            .filter_map(|a| match a.trim() {
                "pull" => Some(Action::Pull),
                "push" => Some(Action::Push),
                "delete" => Some(Action::Delete),
                "*" => None,
                _ => None,
            })
            .collect();
        let acts = if actions.split(',').any(|a| a.trim() == "*") {
            vec![Action::Pull, Action::Push, Action::Delete]
        } else {
            acts
        };
        out.push((name.to_string(), acts));
    }
    out
}

/// Claims of `sub` granting pull on `p/app` for service `berth`, valid until `exp`.
#[cfg(test)]
pub(crate) fn test_claims(sub: &str, exp: u64) -> Claims {
    Claims {
        sub: sub.into(),
        aid: "0123abcd".into(),
        aud: "berth".into(),
        iat: 1,
        exp,
        admin: false,
        robot: false,
        access: vec![Grant {
            kind: "repository".into(),
            name: "p/app".into(),
            actions: vec![Action::Pull],
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        test_claims("alice", exp)
    }

    #[test]
    fn sign_verify_tamper_expire() {
        let k = TokenKey::new(vec![7; 32]);
        let t = k.sign(&claims(100));
        assert_eq!(k.verify(&t, "berth", 50), Ok(claims(100)));
        assert_eq!(k.verify(&t, "berth", 100), Err(TokenError::Expired));
        assert!(matches!(
            k.verify(&t, "other", 50),
            Err(TokenError::WrongService(_))
        ));
        // Tamper with the claims: grant push.
        let (body, sig) = t.split_once('.').expect("two parts");
        let mut c: Claims = serde_json::from_slice(&B64.decode(body).expect("b64")).expect("json");
        c.access[0].actions.push(Action::Push);
        let forged = format!(
            "{}.{sig}",
            B64.encode(serde_json::to_vec(&c).expect("json"))
        );
        assert_eq!(
            k.verify(&forged, "berth", 50),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            TokenKey::new(vec![8; 32]).verify(&t, "berth", 50),
            Err(TokenError::BadSignature)
        );
        assert_eq!(k.verify("garbage", "berth", 50), Err(TokenError::Malformed));
    }

    /// After a rotation the new key signs, and tokens of the previous one
    /// verify while it is kept; once dropped from the set, they do not.
    #[test]
    fn rotation_keeps_the_previous_key_verifying() {
        let k = TokenKey::new(vec![1; 32]);
        let shared = k.clone();
        let old = k.sign(&claims(100));
        k.replace(vec![2; 32], vec![vec![1; 32]]);
        let new = shared.sign(&claims(100));
        assert_ne!(old, new, "the clone signs with the new key");
        assert_eq!(shared.verify(&old, "berth", 50), Ok(claims(100)));
        assert_eq!(shared.verify(&new, "berth", 50), Ok(claims(100)));
        assert_eq!(
            TokenKey::new(vec![1; 32]).verify(&new, "berth", 50),
            Err(TokenError::BadSignature)
        );
        k.replace(vec![2; 32], Vec::new());
        assert_eq!(
            shared.verify(&old, "berth", 50),
            Err(TokenError::BadSignature)
        );
        assert_eq!(shared.verify(&new, "berth", 50), Ok(claims(100)));
    }

    #[test]
    fn scopes() {
        let s = parse_scope("repository:p/app:pull,push repository:q/x:* registry:catalog:*");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], ("p/app".into(), vec![Action::Pull, Action::Push]));
        assert_eq!(s[1].1.len(), 3);
    }
}
