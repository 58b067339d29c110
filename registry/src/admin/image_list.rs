//! What the image list shows of each tag beside its digest: size (config
//! and layers; for an index, of every platform's image it holds), platforms,
//! push time, pull count and last pull (the registry's and its edges',
//! written in batches: see `crate::pulls`), the pull command, and the
//! referrers by artifact type. Read-only; the handler in `mod.rs` decides
//! who may see it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use crate::meta::{MetaError, PullCount, TagRecord};
use crate::oci::{Digest, ManifestSummary, RepoName};
use crate::service::LocalRegistry;

/// The image list's view of one tag.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct TagDetails {
    pub media_type: String,
    /// Bytes of the config and layers (for an index: of every image it holds here).
    pub size: u64,
    /// os/architecture[/variant] of each image (one for an image manifest).
    pub platforms: Vec<String>,
    /// Unix seconds the manifest was pushed.
    pub pushed_at: u64,
    /// Pulls of this manifest (GETs, here and through edges, as last written).
    pub pull_count: u64,
    /// Unix seconds of the last pull, if any.
    pub last_pulled_at: Option<u64>,
    /// What to run to pull it.
    pub pull_command: String,
    /// Referrers (signatures, SBOMs, attestations) by artifact type.
    #[schema(value_type = Object)]
    pub referrers: BTreeMap<String, u64>,
}

/// Largest config blob read for its platform.
const CONFIG_LIMIT: u64 = 256 * 1024;

/// The details of each of `records`, keyed by tag.
pub async fn details(
    registry: &LocalRegistry,
    host: &str,
    repo: &RepoName,
    records: &[TagRecord],
) -> Result<HashMap<String, TagDetails>, MetaError> {
    let meta = registry.meta();
    let pulls: HashMap<String, PullCount> = meta
        .pulls(repo)
        .await?
        .into_iter()
        .map(|p| (p.digest.clone(), p))
        .collect();
    let mut out = HashMap::new();
    for r in records {
        let Ok(digest) = r.digest.parse::<Digest>() else {
            continue;
        };
        let mut d = TagDetails {
            media_type: r.media_type.clone(),
            pushed_at: r.pushed_at,
            pull_command: format!("docker pull {host}/{repo}:{}", r.tag),
            ..TagDetails::default()
        };
        if let Some(p) = pulls.get(&r.digest) {
            d.pull_count = p.count;
            d.last_pulled_at = Some(p.last_pulled_at);
        }
        if let Some(s) = meta.manifest_summary(&digest).await? {
            if s.manifests.is_empty() {
                d.size = image_size(&s);
                d.platforms.extend(platform(registry, &s).await);
            } else {
                for child in &s.manifests {
                    if let Some(cs) = meta.manifest_summary(&child.digest).await? {
                        d.size += image_size(&cs);
                    }
                    // An attestation manifest has no platform.
                    if let Some(p) = &child.platform {
                        d.platforms
                            .push(join(&p.os, &p.architecture, p.variant.as_deref()));
                    }
                }
            }
        }
        for referrer in meta.referrers(repo, &digest).await? {
            let kind = referrer
                .artifact_type
                .unwrap_or_else(|| referrer.media_type.clone());
            *d.referrers.entry(kind).or_default() += 1;
        }
        out.insert(r.tag.clone(), d);
    }
    Ok(out)
}

fn image_size(s: &ManifestSummary) -> u64 {
    s.blobs.iter().map(|b| b.size).sum()
}

fn join(os: &str, arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}

/// An image's platform, from its config (the first blob, when it is one).
async fn platform(registry: &LocalRegistry, s: &ManifestSummary) -> Option<String> {
    let config = s
        .blobs
        .first()
        .filter(|b| b.media_type.contains("config"))?;
    let (_, content, _) = registry.gc_parts();
    let bytes = content
        .read_to_bytes(&config.digest, CONFIG_LIMIT)
        .await
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Config {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    let c: Config = serde_json::from_slice(&bytes).ok()?;
    Some(join(&c.os?, &c.architecture?, c.variant.as_deref()))
}
