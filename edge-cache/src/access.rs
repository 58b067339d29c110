//! Who may use an edge cache's listener. Loopback and configured trusted
//! networks may pull without credentials; anyone else must present the
//! configured client credentials. An edge never turns a private project into
//! an anonymous pull on the network: listening beyond loopback without either
//! is refused at start-up.

use std::net::IpAddr;

use async_trait::async_trait;
use base64::Engine;
use berth_registry::auth::{Access, Action, Refusal, RequestInfo, Subject};
use berth_registry::oci::RepoName;
use subtle::ConstantTimeEq;

pub struct EdgeAccess {
    pub trusted: Vec<ipnet::IpNet>,
    /// "user:password" required from untrusted clients (empty: none accepted).
    pub client: Option<(String, String)>,
}

impl EdgeAccess {
    fn trusted(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            Some(ip) => ip.is_loopback() || self.trusted.iter().any(|n| n.contains(&ip)),
            None => false,
        }
    }

    fn credentials_ok(&self, req: &RequestInfo<'_>) -> bool {
        let Some((user, pass)) = &self.client else {
            return false;
        };
        let Some(h) = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(b64) = h
            .strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let expected = format!("{user}:{pass}");
        decoded.ct_eq(expected.as_bytes()).into()
    }
}

#[async_trait]
impl Access for EdgeAccess {
    async fn check(
        &self,
        req: &RequestInfo<'_>,
        _scope: Option<(&RepoName, Action)>,
    ) -> Result<Subject, Refusal> {
        if self.trusted(req.peer) || self.credentials_ok(req) {
            return Ok(Subject::default());
        }
        Err(Refusal::Unauthorized {
            message: "this edge cache serves trusted networks only; present its client credentials"
                .into(),
            challenge: Some("Basic realm=\"berth-edge\"".into()),
        })
    }

    fn may_pull(&self, _subject: &Subject, _repo: &str) -> bool {
        true
    }
}
