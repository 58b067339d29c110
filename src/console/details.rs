//! What the tags screen shows beyond the API's tag list: each image's size,
//! platforms and push time, and its referrers, read from the same service
//! the API serves (only for a repository the API has just shown the caller).

use std::collections::BTreeMap;

use berth_registry::oci::{Digest, Reference, RepoName};
use berth_registry::service::{LocalRegistry, Namespace};
use futures::StreamExt as _;
use serde_json::Value;

/// One image as the tags screen shows it.
#[derive(Debug, Default, Clone)]
pub struct ImageDetails {
    /// Manifest, config and layers (of every platform, for an index).
    pub size: u64,
    /// `os/arch[/variant]`.
    pub platforms: Vec<String>,
    /// Unix seconds.
    pub pushed: Option<u64>,
    /// Referrers: (artifact or media type, digest).
    pub referrers: Vec<(String, String)>,
}

/// A config blob is read for its platform only up to this size.
const MAX_CONFIG: usize = 256 * 1024;

/// Push times of the repository's manifests, from one snapshot.
pub async fn push_times(reg: &LocalRegistry, repo: &RepoName) -> BTreeMap<String, u64> {
    match reg.meta().gc_view(repo).await {
        Ok(v) => v
            .manifests
            .into_iter()
            .map(|(d, (at, _))| (d.to_string(), at))
            .collect(),
        Err(e) => {
            tracing::warn!(repo = %repo, error = %e, "console: push times unavailable");
            BTreeMap::new()
        }
    }
}

pub async fn image(
    reg: &LocalRegistry,
    repo: &RepoName,
    digest: &str,
    pushed: Option<u64>,
) -> ImageDetails {
    let mut out = ImageDetails {
        pushed,
        ..ImageDetails::default()
    };
    let Ok(d) = digest.parse::<Digest>() else {
        return out;
    };
    let Some(doc) = manifest(reg, repo, &d, &mut out.size).await else {
        return out;
    };
    if let Some(children) = doc["manifests"].as_array() {
        for c in children {
            let p = &c["platform"];
            if let (Some(os), Some(arch)) = (p["os"].as_str(), p["architecture"].as_str()) {
                out.platforms
                    .push(platform(os, arch, p["variant"].as_str()));
            }
            if let Some(cd) = c["digest"].as_str().and_then(|s| s.parse::<Digest>().ok()) {
                if let Some(child) = manifest(reg, repo, &cd, &mut out.size).await {
                    out.size += layers_size(&child);
                }
            }
        }
    } else {
        out.size += layers_size(&doc);
        if let Some(p) = config_platform(reg, repo, &doc).await {
            out.platforms.push(p);
        }
    }
    if let Ok(r) = reg.referrers(repo, &d).await {
        out.referrers = r
            .manifests
            .into_iter()
            .map(|m| {
                (
                    m.artifact_type.unwrap_or(m.media_type),
                    m.digest.to_string(),
                )
            })
            .collect();
    }
    out
}

fn platform(os: &str, arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}

/// The manifest as JSON; its own size is added to `size`.
async fn manifest(
    reg: &LocalRegistry,
    repo: &RepoName,
    d: &Digest,
    size: &mut u64,
) -> Option<Value> {
    let m = reg
        .manifest(repo, &Reference::Digest(d.clone()))
        .await
        .ok()?;
    *size += m.bytes.len() as u64;
    serde_json::from_slice(&m.bytes).ok()
}

fn layers_size(doc: &Value) -> u64 {
    let config = doc["config"]["size"].as_u64().unwrap_or(0);
    let layers: u64 = doc["layers"]
        .as_array()
        .map_or(0, |l| l.iter().filter_map(|x| x["size"].as_u64()).sum());
    config + layers
}

async fn config_platform(reg: &LocalRegistry, repo: &RepoName, doc: &Value) -> Option<String> {
    let size = doc["config"]["size"].as_u64()?;
    if size as usize > MAX_CONFIG {
        return None;
    }
    let d: Digest = doc["config"]["digest"].as_str()?.parse().ok()?;
    let read = reg.blob_read(repo, &d, None).await.ok()?;
    let mut bytes = Vec::new();
    let mut body = read.body;
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.ok()?);
        if bytes.len() > MAX_CONFIG {
            return None;
        }
    }
    let c: Value = serde_json::from_slice(&bytes).ok()?;
    Some(platform(
        c["os"].as_str()?,
        c["architecture"].as_str()?,
        c["variant"].as_str(),
    ))
}
