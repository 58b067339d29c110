//! Bearer tokens already verified: a client sends the same token with every
//! request of a pull, so its signature is checked and its claims decoded
//! once, and each later request costs a lookup. What the token says is kept;
//! what the account is now is still read on every request (`identify`).
//!
//! An entry is used only while its token is unexpired and the key set it was
//! verified under is still the current one (a rotation verifies again, so a
//! key dropped from the set stops vouching at once). The table holds at most
//! `CAPACITY` tokens: when full, expired entries go, and if that is not
//! enough, all of them (tokens are cheap to verify again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::auth::token::{Claims, TokenError, TokenKey};
use crate::auth::TokenGrants;

const CAPACITY: usize = 4096;

/// What a verified token says.
#[derive(Debug)]
pub struct Verified {
    /// The whole token: the table is keyed by its signature part alone, and
    /// a hit must be this exact token.
    token: Box<str>,
    pub sub: String,
    pub aid: String,
    pub robot: bool,
    pub grants: TokenGrants,
    exp: u64,
    generation: u64,
}

#[derive(Default)]
pub struct VerifiedTokens {
    by_signature: Mutex<HashMap<Box<str>, Arc<Verified>>>,
}

impl VerifiedTokens {
    /// What `token` says, verified with `key` for `service` at `now` (seconds).
    pub fn verify(
        &self,
        key: &TokenKey,
        token: &str,
        service: &str,
        now: u64,
    ) -> Result<Arc<Verified>, TokenError> {
        let signature = token.rsplit_once('.').map_or("", |(_, s)| s);
        // Read before verifying: a rotation during the check makes the entry stale.
        let generation = key.generation();
        if let Some(v) = self.lookup(signature) {
            if &*v.token == token && v.generation == generation && v.exp > now {
                return Ok(v);
            }
        }
        let claims = key.verify(token, service, now)?;
        let v = Arc::new(Verified::new(token, claims, generation));
        if !signature.is_empty() {
            self.insert(signature, v.clone(), generation, now);
        }
        Ok(v)
    }

    fn lookup(&self, signature: &str) -> Option<Arc<Verified>> {
        self.by_signature
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(signature)
            .cloned()
    }

    fn insert(&self, signature: &str, v: Arc<Verified>, generation: u64, now: u64) {
        let mut table = self.by_signature.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= CAPACITY {
            table.retain(|_, e| e.exp > now && e.generation == generation);
            if table.len() >= CAPACITY {
                table.clear();
            }
        }
        table.insert(signature.into(), v);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_signature
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl Verified {
    fn new(token: &str, claims: Claims, generation: u64) -> Self {
        Verified {
            token: token.into(),
            sub: claims.sub,
            aid: claims.aid,
            robot: claims.robot,
            grants: claims
                .access
                .into_iter()
                .map(|g| (g.name, g.actions))
                .collect(),
            exp: claims.exp,
            generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::test_claims;
    use crate::auth::Action;

    fn claims(sub: &str, exp: u64) -> Claims {
        test_claims(sub, exp)
    }

    #[test]
    fn a_token_is_verified_once_and_answers_from_the_table_while_valid() {
        let key = TokenKey::new(vec![7; 32]);
        let tokens = VerifiedTokens::default();
        let t = key.sign(&claims("alice", 100));
        let first = tokens.verify(&key, &t, "berth", 50).expect("valid");
        let again = tokens.verify(&key, &t, "berth", 60).expect("valid");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second answer is the table's"
        );
        assert_eq!(again.sub, "alice");
        assert_eq!(&*again.grants, &[("p/app".to_string(), vec![Action::Pull])]);
        // Expiry holds for a remembered token as for a new one.
        assert_eq!(
            tokens.verify(&key, &t, "berth", 100).map(|_| ()),
            Err(TokenError::Expired)
        );
        // The audience is checked before anything is remembered.
        let other = VerifiedTokens::default();
        assert!(matches!(
            other.verify(&key, &t, "elsewhere", 50),
            Err(TokenError::WrongService(_))
        ));
        assert_eq!(other.len(), 0);
    }

    /// A forged token that reuses a remembered token's signature part with
    /// other claims is checked, not taken from the table.
    #[test]
    fn a_signature_reused_with_other_claims_is_refused() {
        let key = TokenKey::new(vec![7; 32]);
        let tokens = VerifiedTokens::default();
        let t = key.sign(&claims("alice", 100));
        tokens.verify(&key, &t, "berth", 50).expect("valid");
        let (_, sig) = t.split_once('.').expect("two parts");
        let forged = format!(
            "{}.{sig}",
            key.sign(&claims("mallory", 100))
                .split_once('.')
                .expect("two parts")
                .0
        );
        assert_eq!(
            tokens.verify(&key, &forged, "berth", 50).map(|_| ()),
            Err(TokenError::BadSignature)
        );
    }

    /// After a rotation drops the key a token was signed with, the table
    /// does not vouch for it.
    #[test]
    fn a_rotation_verifies_again() {
        let key = TokenKey::new(vec![1; 32]);
        let tokens = VerifiedTokens::default();
        let t = key.sign(&claims("alice", 100));
        tokens.verify(&key, &t, "berth", 50).expect("valid");
        key.replace(vec![2; 32], Vec::new());
        assert_eq!(
            tokens.verify(&key, &t, "berth", 50).map(|_| ()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let key = TokenKey::new(vec![7; 32]);
        let tokens = VerifiedTokens::default();
        for i in 0..CAPACITY + 10 {
            let t = key.sign(&claims(&format!("user{i}"), 100));
            tokens.verify(&key, &t, "berth", 50).expect("valid");
            assert!(tokens.len() <= CAPACITY);
        }
    }
}
