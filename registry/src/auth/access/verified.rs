//! Bearer tokens already verified: a client sends the same token with every
//! request of a pull, so its signature is checked and its claims decoded
//! once, and each later request costs a lookup. What the token says is kept;
//! what the account is now is still read on every request (`identify`).
//!
//! An entry is used only while its token is unexpired and the key set it was
//! verified under is still the current one (a rotation verifies again, so a
//! key dropped from the set stops vouching at once). The table holds at most
//! `BUDGET` bytes of tokens (a token's cost is twice its length, for the
//! token and its decoded claims, plus a fixed part): when full, expired
//! entries go, and if that is not enough, all of them (tokens are cheap to
//! verify again). A token longer than `MAX_TOKEN` (a scope naming hundreds
//! of repositories) is verified every time and never kept, so nobody can
//! fill the table with a few large ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::auth::token::{Claims, TokenError, TokenKey};
use crate::auth::TokenGrants;

/// Bytes of tokens kept: about 4,000 tokens of a usual size (a few hundred bytes).
const BUDGET: usize = 4 << 20;

/// Tokens longer than this are not kept.
const MAX_TOKEN: usize = 8 << 10;

/// What an entry costs beside twice its token's length.
const ENTRY_COST: usize = 256;

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
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_signature: HashMap<Box<str>, Arc<Verified>>,
    /// The cost of the entries, in bytes.
    used: usize,
}

fn cost(token: &str) -> usize {
    2 * token.len() + ENTRY_COST
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
        if !signature.is_empty() && token.len() <= MAX_TOKEN {
            self.insert(signature, v.clone(), generation, now);
        }
        Ok(v)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, signature: &str) -> Option<Arc<Verified>> {
        self.table().by_signature.get(signature).cloned()
    }

    fn insert(&self, signature: &str, v: Arc<Verified>, generation: u64, now: u64) {
        let mut t = self.table();
        let added = cost(&v.token);
        if t.used + added > BUDGET {
            t.by_signature
                .retain(|_, e| e.exp > now && e.generation == generation);
            t.used = t.by_signature.values().map(|e| cost(&e.token)).sum();
            if t.used + added > BUDGET {
                t.by_signature.clear();
                t.used = 0;
            }
        }
        if let Some(old) = t.by_signature.insert(signature.into(), v) {
            t.used -= cost(&old.token);
        }
        t.used += added;
    }

    #[cfg(test)]
    fn used(&self) -> (usize, usize) {
        let t = self.table();
        (t.by_signature.len(), t.used)
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
    use crate::auth::token::{test_claims, Grant};
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
        assert_eq!(other.used(), (0, 0));
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

    /// The table keeps within its byte budget however many tokens come,
    /// and a token past `MAX_TOKEN` is verified but never kept.
    #[test]
    fn the_table_stays_within_its_budget() {
        let key = TokenKey::new(vec![7; 32]);
        let tokens = VerifiedTokens::default();
        let first = key.sign(&claims("user", 100));
        let per = cost(&first);
        for i in 0..BUDGET / per + 10 {
            let t = key.sign(&claims(&format!("user{i:06}"), 100));
            tokens.verify(&key, &t, "berth", 50).expect("valid");
            let (n, used) = tokens.used();
            assert!(used <= BUDGET, "{used} bytes in {n} entries");
        }
        let mut huge = claims("wide", 100);
        huge.access = (0..400)
            .map(|i| Grant {
                kind: "repository".into(),
                name: format!("p/repository-number-{i}"),
                actions: vec![Action::Pull],
            })
            .collect();
        let t = key.sign(&huge);
        assert!(t.len() > MAX_TOKEN);
        let before = tokens.used();
        let v = tokens.verify(&key, &t, "berth", 50).expect("valid");
        assert_eq!(v.grants.len(), 400);
        assert_eq!(tokens.used(), before, "a token past MAX_TOKEN is not kept");
    }
}
