//! Credentials: Basic logins (the attempt lock, the throttle, the credential cache, then bcrypt) and bearer tokens, down to the `Subject` a request is made as.

use std::net::IpAddr;
use std::time::Instant;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{RegistryAccess, MAX_NAME_BYTES};
use crate::auth::accounts::LoginError;
use crate::auth::audit::Outcome;
use crate::auth::throttle::Wait;
use crate::auth::token::TokenKey;
use crate::auth::{Refusal, RequestInfo, Subject};
use crate::meta::now;

impl RegistryAccess {
    fn cache_key(&self, name: &str, secret: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"berth credential cache")
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
        mac.update(self.key.sign_input_salt());
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Refuses (429) while the throttle holds back attempts on `name` from `peer`.
    /// Everything that checks a secret asks this first, holding `attempt`'s guard.
    pub async fn check_throttle(&self, name: &str, peer: Option<IpAddr>) -> Result<(), Refusal> {
        let res = self.throttle.check(name, peer).await;
        let now = Instant::now();
        let Err(wait) = res else { return Ok(()) };
        self.metrics.logins_throttled.inc();
        let retry_after = wait.retry_after(now);
        let message = match wait {
            Wait::Pair(_) => format!(
                "too many failed logins for {name} from this address; try again in {retry_after} s"
            ),
            Wait::Account(_) => format!(
                "too many failed logins for {name} from many addresses; addresses that failed share one attempt every {} s; try again in {retry_after} s",
                self.cfg.throttle.attacked_interval.as_secs().max(1)
            ),
        };
        tracing::debug!(account = name, client = ?peer, retry_after, "login attempt throttled");
        Err(Refusal::TooMany {
            message,
            retry_after,
        })
    }

    /// Waits until no other secret check of `name` from `peer` runs; hold the
    /// guard across `check_throttle`, the check, and `record_*`.
    pub async fn attempt(
        &self,
        name: &str,
        peer: Option<IpAddr>,
    ) -> crate::auth::throttle::AttemptGuard {
        self.attempts.acquire(name, peer).await
    }

    /// Counts a wrong secret for `name` from `peer` (a failed login, a wrong old password).
    pub async fn record_failure(&self, name: &str, peer: Option<IpAddr>) {
        self.throttle.fail(name, peer).await;
    }

    /// `name` proved its secret from `peer`: that pair's failures are forgotten.
    pub async fn record_success(&self, name: &str, peer: Option<IpAddr>) {
        self.throttle.succeed(name, peer).await;
    }

    /// A login remembered for (name, secret), as its account is now.
    fn cached(&self, key: &[u8; 32], epoch: u64) -> Option<Subject> {
        let (s, at, verified) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()?;
        if at.elapsed() >= self.cfg.cache_ttl || verified != epoch {
            return None;
        }
        self.accounts.current(&s)
    }

    /// Verifies name and secret: attempt lock and throttle first, then the cache, then bcrypt.
    pub async fn login(
        &self,
        name: &str,
        secret: &str,
        peer: Option<IpAddr>,
    ) -> Result<Subject, Refusal> {
        self.sign_in(name, secret, peer)
            .await
            .map_err(|(refusal, _)| refusal)
    }

    /// `login`, telling also whether the secret was right but is an initial
    /// password that must be reset first (the console then asks for a new one).
    pub async fn sign_in(
        &self,
        name: &str,
        secret: &str,
        peer: Option<IpAddr>,
    ) -> Result<Subject, (Refusal, bool)> {
        if name.len() > MAX_NAME_BYTES {
            return Err((
                self.unauthorized("invalid account name or password", None, false),
                false,
            ));
        }
        let _attempt = self.attempt(name, peer).await;
        self.check_throttle(name, peer)
            .await
            .map_err(|r| (r, false))?;
        let ck = self.cache_key(name, secret);
        // Read before verifying: a change while bcrypt runs makes the entry stale.
        let mut epoch = self.accounts.credentials_epoch();
        if let Some(s) = self.cached(&ck, epoch) {
            self.record_success(name, peer).await;
            return Ok(s);
        }
        let generation = self.accounts.generation();
        let mut res = self.verify(name, secret).await;
        // Another replica may have just made this secret good (behind a
        // balancer, the next request often lands here): check again on the
        // store's record before counting a guess.
        if matches!(res, Err(LoginError::BadCredentials))
            && self.accounts.refresh_for(name, generation).await
        {
            epoch = self.accounts.credentials_epoch();
            res = self.verify(name, secret).await;
        }
        match res {
            Ok(s) => {
                self.record_success(name, peer).await;
                let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if c.len() > 10_000 {
                    let ttl = self.cfg.cache_ttl;
                    c.retain(|_, (_, at, v)| at.elapsed() < ttl && *v == epoch);
                }
                c.insert(ck, (s.clone(), Instant::now(), epoch));
                Ok(s)
            }
            Err(e) => {
                // Only a wrong secret is a guess. An initial password that must be reset,
                // an expired or revoked robot, proved the secret right: counting those would
                // slow down a client that retries them for nothing.
                if e == LoginError::BadCredentials {
                    self.record_failure(name, peer).await;
                }
                self.metrics.login_failures.inc();
                let must_reset = matches!(e, LoginError::MustReset(_));
                let (why, message) = match e {
                    LoginError::BadCredentials => (
                        "wrong password or no such account",
                        "invalid account name or password".to_string(),
                    ),
                    LoginError::MustReset(m) => ("password reset required", m),
                    LoginError::Expired(m) => ("expired", m),
                    LoginError::Revoked(m) => ("revoked", m),
                };
                self.audit(name, peer, "login", None, name, Outcome::Refused(why));
                Err((self.unauthorized(message, None, false), must_reset))
            }
        }
    }

    /// bcrypt off the async runtime.
    async fn verify(&self, name: &str, secret: &str) -> Result<Subject, LoginError> {
        let accounts = self.accounts.clone();
        let (n, sec) = (name.to_string(), secret.to_string());
        tokio::task::spawn_blocking(move || accounts.verify(&n, &sec))
            .await
            .unwrap_or(Err(LoginError::BadCredentials))
    }

    /// The subject behind a request's Authorization header (anonymous without one).
    pub async fn identify(&self, req: &RequestInfo<'_>) -> Result<Subject, Refusal> {
        let Some(h) = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(Subject::default());
        };
        let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
        // The scheme is case-insensitive (RFC 9110): compared in place, not lowered into a copy.
        let scheme_is = |s: &str| scheme.eq_ignore_ascii_case(s);
        match scheme {
            _ if scheme_is("basic") => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| self.unauthorized("malformed Basic credentials", None, false))?;
                let (name, secret) = decoded
                    .split_once(':')
                    .ok_or_else(|| self.unauthorized("malformed Basic credentials", None, false))?;
                if name.is_empty() && secret.is_empty() {
                    // `Basic Og==`: what clients (the OCI conformance suite among them)
                    // send when they have no credentials. Anonymous, not a failed login.
                    return Ok(Subject::default());
                }
                self.login(name, secret, req.peer).await
            }
            _ if scheme_is("bearer") => {
                let token = self
                    .verified
                    .verify(&self.key, value.trim(), &self.cfg.service, now())
                    .map_err(|e| {
                        self.unauthorized(format!("bearer token refused: {e}"), None, false)
                    })?;
                let name = (!token.sub.is_empty()).then_some(token.sub.as_str());
                let id = (!token.aid.is_empty()).then_some(token.aid.as_str());
                // The account as it is now: the same instance, still usable; its admin
                // flag is the account's, whatever the token says.
                let generation = self.accounts.generation();
                let mut current = self.accounts.current_of(name, id, token.robot);
                if current.is_none() {
                    // Issued by another replica for an account this one may not know yet.
                    if let Some(name) = name {
                        if self.accounts.refresh_for(name, generation).await {
                            current = self.accounts.current_of(Some(name), id, token.robot);
                        }
                    }
                }
                let Some(current) = current else {
                    return Err(self.unauthorized(
                        "the token's account is no longer valid; log in again",
                        None,
                        false,
                    ));
                };
                Ok(Subject {
                    token_grants: Some(token.grants.clone()),
                    ..current
                })
            }
            _ => Err(self.unauthorized(
                format!("unsupported authorization scheme {scheme:?}; use Basic or Bearer"),
                None,
                false,
            )),
        }
    }
}

impl TokenKey {
    /// Bytes mixed into the credential-cache MAC so cache keys differ per installation.
    fn sign_input_salt(&self) -> &[u8] {
        b"berth"
    }
}
