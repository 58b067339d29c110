//! The typed reads: manifests (verified against their digest), blobs from an offset, tag lists, referrers and JSON documents.

use std::sync::atomic::Ordering;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, RANGE};
use reqwest::{Method, StatusCode};

use super::{BlobBody, Extent, FetchedManifest, Upstream, UpstreamError, MANIFEST_ACCEPT};
use crate::oci::{media, Descriptor, Digest, RepoName};

impl Upstream {
    /// HEAD of a manifest: its digest, or None when upstream does not have it.
    pub async fn head_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<Option<Digest>, UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let Some(res) = self
            .found(
                Method::HEAD,
                &format!("/v2/{}/manifests/{reference}", self.remote(repo)),
                repo,
                h,
            )
            .await?
        else {
            return Ok(None);
        };
        match res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) => d
                .parse()
                .map(Some)
                .map_err(|e: crate::oci::DigestError| UpstreamError::Protocol(e.to_string())),
            // No digest header: fall back to GET, as containerd does.
            None => Ok(self.get_manifest(repo, reference).await?.map(|m| m.digest)),
        }
    }

    /// GET of a manifest, verified against the digest asked for (or the one upstream claims).
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<Option<FetchedManifest>, UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        // A cache filling is not a pull: a berth upstream does not count it
        // (the cache counts, and an edge reports, the pulls it serves).
        h.insert(crate::pulls::FILL_HEADER, HeaderValue::from_static("1"));
        let Some(res) = self
            .found(
                Method::GET,
                &format!("/v2/{}/manifests/{reference}", self.remote(repo)),
                repo,
                h,
            )
            .await?
        else {
            return Ok(None);
        };
        let media_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media::essence)
            .unwrap_or_default();
        let claimed = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| d.parse::<Digest>().ok());
        let bytes = res
            .bytes()
            .await
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        let expected = reference.parse::<Digest>().ok().or(claimed);
        let digest = match expected {
            Some(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if actual != d {
                    return Err(UpstreamError::Protocol(format!(
                        "upstream sent a manifest with digest {actual} for {d}"
                    )));
                }
                d
            }
            None => Digest::sha256_of(&bytes),
        };
        Ok(Some(FetchedManifest {
            digest,
            media_type,
            bytes,
        }))
    }

    pub async fn head_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let Some(res) = self
            .found(
                Method::HEAD,
                &format!("/v2/{}/blobs/{digest}", self.remote(repo)),
                repo,
                HeaderMap::new(),
            )
            .await?
        else {
            return Ok(None);
        };
        // Not `res.content_length()`: for a HEAD that is the (empty) body's
        // size, 0, which made a cold blob look empty (Range GETs got 416).
        Ok(res
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok()))
    }

    /// GET of a blob from byte `from` on. None when upstream does not have it.
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: u64,
    ) -> Result<Option<BlobBody>, UpstreamError> {
        let mut h = HeaderMap::new();
        if from > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={from}-")) {
                h.insert(RANGE, v);
            }
        }
        self.counters.blob_gets.fetch_add(1, Ordering::Relaxed);
        let Some(res) = self
            .found(
                Method::GET,
                &format!("/v2/{}/blobs/{digest}", self.remote(repo)),
                repo,
                h,
            )
            .await?
        else {
            return Ok(None);
        };
        let len = res.content_length();
        let (extent, total) = if res.status() == StatusCode::PARTIAL_CONTENT {
            let range = res
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range);
            if let Some((start, _)) = range.filter(|(start, _)| *start != from) {
                return Err(UpstreamError::Protocol(format!(
                    "asked for {digest} from byte {from}, upstream sent it from byte {start}"
                )));
            }
            let total = range.and_then(|(_, t)| t).or(len.map(|l| l + from));
            (Extent::From(from), total)
        } else {
            (Extent::Full, len)
        };
        let counters = self.counters.clone();
        let stream = res
            .bytes_stream()
            .map(move |chunk| match chunk {
                Ok(c) => {
                    counters.bytes.fetch_add(c.len() as u64, Ordering::Relaxed);
                    Ok(c)
                }
                Err(e) => Err(UpstreamError::Unreachable(e.to_string())),
            })
            .boxed();
        Ok(Some(BlobBody {
            extent,
            total,
            stream,
        }))
    }

    /// A repository's tags, or None when upstream does not know it.
    pub async fn tags(&self, repo: &RepoName) -> Result<Option<Vec<String>>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let list: Option<TagList> = self
            .get_json(repo, &format!("/v2/{}/tags/list", self.remote(repo)))
            .await?;
        Ok(list.map(|l| l.tags.unwrap_or_default()))
    }

    /// The manifests referring to `subject` in `repo` (none when upstream
    /// answers 404: a registry without the referrers API).
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let index: Option<Index> = self
            .get_json(
                repo,
                &format!("/v2/{}/referrers/{subject}", self.remote(repo)),
            )
            .await?;
        Ok(index.map(|i| i.manifests).unwrap_or_default())
    }

    /// A JSON document. None on 404.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        repo: &RepoName,
        path: &str,
    ) -> Result<Option<T>, UpstreamError> {
        let Some(res) = self
            .found(Method::GET, path, repo, HeaderMap::new())
            .await?
        else {
            return Ok(None);
        };
        res.json()
            .await
            .map(Some)
            .map_err(|e| UpstreamError::Protocol(e.to_string()))
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL); TOTAL is None for `*`.
pub(super) fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}
