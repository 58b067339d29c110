//! The tokens the registry issues: the token endpoint's grants, and the console's session tokens.

use std::time::Duration;

use super::RegistryAccess;
use crate::auth::policy::Decision;
use crate::auth::token::{parse_scope, Claims, Grant};
use crate::auth::{Action, Refusal, RequestInfo, Subject};
use crate::meta::now;

/// What the token endpoint answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
}

impl RegistryAccess {
    /// A bearer token that names `subject` and grants no repository scope, valid
    /// for `ttl`: what the console sends, in-process, to the admin and
    /// controller APIs for a signed-in session (each request re-checks the
    /// account as it is now, as for any bearer token).
    pub fn session_token(&self, subject: &Subject, ttl: Duration) -> String {
        let iat = now();
        self.key.sign(&Claims {
            sub: subject.name.clone().unwrap_or_default(),
            aid: subject.account_id.clone().unwrap_or_default(),
            aud: self.cfg.service.clone(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            admin: subject.admin,
            robot: subject.robot,
            access: Vec::new(),
        })
    }

    /// Issues a token for the scopes asked, granting only what is allowed.
    pub async fn issue_token(
        &self,
        req: &RequestInfo<'_>,
        scope: &str,
        service: Option<&str>,
    ) -> Result<TokenResponse, Refusal> {
        if let Some(s) = service {
            if s != self.cfg.service {
                return Err(Refusal::Denied(format!(
                    "this token endpoint issues tokens for service {:?}, not {s:?}",
                    self.cfg.service
                )));
            }
        }
        let subject = self.identify(req).await?;
        let subject = Subject {
            token_grants: None,
            ..subject
        };
        let mut access = Vec::new();
        for (name, actions) in parse_scope(scope) {
            let granted: Vec<Action> = actions
                .into_iter()
                .filter(|a| self.decision(&subject, &name, *a) == Decision::Allow)
                .collect();
            access.push(Grant {
                kind: "repository".into(),
                name,
                actions: granted,
            });
        }
        let iat = now();
        let ttl = self.cfg.token_ttl.as_secs().max(1);
        let claims = Claims {
            sub: subject.name.clone().unwrap_or_default(),
            aid: subject.account_id.clone().unwrap_or_default(),
            aud: self.cfg.service.clone(),
            iat,
            exp: iat + ttl,
            admin: subject.admin,
            robot: subject.robot,
            access,
        };
        let token = self.key.sign(&claims);
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: ttl,
            issued_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        })
    }
}
