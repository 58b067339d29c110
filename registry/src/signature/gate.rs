//! The `require_signature` decision for pulls and publications, with a cache
//! of verdicts.
//!
//! A verdict depends only on content-addressed things: the image digest, the
//! digests of the signature manifests attached to it, and the policy's keys.
//! So it is cached under exactly those: finding the attached signatures is
//! two metadata reads, and once an image is verified no pull verifies again.
//! A signature pushed or deleted changes the attached set, and a changed
//! policy changes the keys, so either misses the cache and verifies afresh;
//! nothing has to remember to invalidate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::attached::{attached_signatures, is_attachment, MAX_PAYLOAD};
use super::verify::TrustedKeys;
use super::{RequireSignature, SignatureFormat};
use crate::auth::accounts::Accounts;
use crate::oci::{media, Digest, ErrorCode, RepoName};
use crate::service::{LocalRegistry, ServiceError};

/// Verdicts kept per project; the cache of a project is emptied when full.
const MAX_VERDICTS: usize = 10_000;

/// Whether an image satisfies its project's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// Why not, completing "the image ...".
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VerdictKey {
    repo: String,
    image: Digest,
    signatures: Vec<Digest>,
}

struct ProjectVerdicts {
    policy: RequireSignature,
    keys: Result<Arc<TrustedKeys>, String>,
    verdicts: HashMap<VerdictKey, Verdict>,
}

/// Decides pulls and publications under the projects' signature policies.
pub struct SignatureGate {
    registry: Arc<LocalRegistry>,
    accounts: Arc<Accounts>,
    cache: Mutex<HashMap<String, ProjectVerdicts>>,
}

impl SignatureGate {
    pub fn new(registry: Arc<LocalRegistry>, accounts: Arc<Accounts>) -> Self {
        Self {
            registry,
            accounts,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `repo`'s project has a policy at all (no copy of it).
    pub fn applies(&self, repo: &RepoName) -> bool {
        self.accounts
            .with_project(repo.project(), |p| p.require_signature.is_some())
            .unwrap_or(false)
    }

    fn policy(&self, repo: &RepoName) -> Option<RequireSignature> {
        self.accounts
            .with_project(repo.project(), |p| p.require_signature.clone())
            .flatten()
    }

    /// The keys of the policy, parsed once per policy; the cached verdicts
    /// of a project whose policy changed are dropped.
    fn keys(&self, project: &str, policy: &RequireSignature) -> Result<Arc<TrustedKeys>, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache
            .entry(project.to_string())
            .or_insert_with(|| ProjectVerdicts {
                policy: policy.clone(),
                keys: TrustedKeys::parse(&policy.public_keys).map(Arc::new),
                verdicts: HashMap::new(),
            });
        if &entry.policy != policy {
            entry.policy = policy.clone();
            entry.keys = TrustedKeys::parse(&policy.public_keys).map(Arc::new);
            entry.verdicts.clear();
        }
        entry.keys.clone()
    }

    fn cached(&self, project: &str, key: &VerdictKey) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(project)?.verdicts.get(key).cloned()
    }

    fn remember(&self, project: &str, policy: &RequireSignature, key: VerdictKey, v: &Verdict) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get_mut(project).filter(|p| &p.policy == policy) {
            if p.verdicts.len() >= MAX_VERDICTS {
                p.verdicts.clear();
            }
            p.verdicts.insert(key, v.clone());
        }
    }

    /// The verdict on `image` in `repo` under its project's policy; None when
    /// the project has no policy.
    pub async fn verdict(
        &self,
        repo: &RepoName,
        image: &Digest,
    ) -> Result<Option<Verdict>, ServiceError> {
        let Some(policy) = self.policy(repo) else {
            return Ok(None);
        };
        Ok(Some(self.verdict_under(repo, image, &policy).await?))
    }

    async fn verdict_under(
        &self,
        repo: &RepoName,
        image: &Digest,
        policy: &RequireSignature,
    ) -> Result<Verdict, ServiceError> {
        let project = repo.project();
        let keys = match self.keys(project, policy) {
            Ok(k) => k,
            Err(e) => return Ok(Verdict::Refused(format!("cannot be verified: {e}"))),
        };
        let attached = attached_signatures(&self.registry, repo, image).await?;
        let mut signatures: Vec<Digest> = attached.iter().map(|a| a.manifest.clone()).collect();
        signatures.sort_by_key(|d| d.to_string());
        let key = VerdictKey {
            repo: repo.to_string(),
            image: image.clone(),
            signatures,
        };
        if let Some(v) = self.cached(project, &key) {
            return Ok(v);
        }
        let mut reason = None;
        for a in attached
            .iter()
            .filter(|a| a.format == SignatureFormat::Cosign)
        {
            for l in &a.layers {
                let Some(payload) = self
                    .registry
                    .small_blob(repo, &l.payload, MAX_PAYLOAD)
                    .await?
                else {
                    continue;
                };
                match keys.verify(&payload, &l.signature, image) {
                    Ok(()) => {
                        tracing::debug!(%repo, %image, signature = %a.manifest, "signature verified");
                        let v = Verdict::Verified;
                        self.remember(project, policy, key, &v);
                        return Ok(v);
                    }
                    Err(e) => {
                        reason.get_or_insert_with(|| format!("{} ({e})", a.manifest));
                    }
                }
            }
        }
        let v = Verdict::Refused(match reason {
            Some(r) => format!("has no signature that the policy's public keys verify: {r}"),
            None if attached.is_empty() => "is not signed".to_string(),
            None => "has no cosign or sigstore signature (notation signatures do not satisfy require_signature)".to_string(),
        });
        self.remember(project, policy, key, &v);
        Ok(v)
    }

    /// Whether the manifest `digest` of `repo` may be pulled: always without a
    /// policy; under one, if it is verified, is a signature or other
    /// attachment, or is a child of a verified index in the same repository.
    /// A refusal is `DENIED`, naming the policy.
    pub async fn check_pull(&self, repo: &RepoName, digest: &Digest) -> Result<(), ServiceError> {
        let Some(policy) = self.policy(repo) else {
            return Ok(());
        };
        let Some(summary) = self.registry.manifest_summary(repo, digest).await? else {
            return Ok(());
        };
        if is_attachment(&summary) {
            return Ok(());
        }
        let reason = match self.verdict_under(repo, digest, &policy).await? {
            Verdict::Verified => return Ok(()),
            Verdict::Refused(r) => r,
        };
        if media::manifest_kind(&summary.media_type) != Some(media::ManifestKind::Index) {
            for parent in self.registry.indexes_containing(repo, digest).await? {
                if self.verdict_under(repo, &parent, &policy).await? == Verdict::Verified {
                    return Ok(());
                }
            }
        }
        Err(refusal(repo, digest, &reason))
    }
}

/// The `DENIED` refusal of an image under a project's policy.
pub fn refusal(repo: &RepoName, digest: &Digest, reason: &str) -> ServiceError {
    ServiceError::with_detail(
        ErrorCode::Denied,
        format!(
            "{repo}@{digest} is refused by project {}'s require_signature policy: the image {reason}",
            repo.project()
        ),
        serde_json::json!({"policy": "require_signature", "project": repo.project(), "digest": digest.to_string()}),
    )
}
