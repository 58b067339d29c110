//! What replication asks of a remote registry beyond pulls: its catalog,
//! and pushes — a cross-repository mount, chunked uploads that resume at
//! the offset the server reports, manifest PUTs, manifest and tag
//! deletes. The same client, token flow (with `pull,push` scope) and
//! circuit breaker as the reads in `upstream.rs`.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};

use super::{Request, Upstream, UpstreamError};
use crate::oci::{Digest, RepoName};

/// How a mount attempt ended.
pub enum Mounted {
    Yes,
    /// The remote started an upload instead: its location.
    Upload(String),
}

impl Upstream {
    async fn push_request(
        &self,
        method: Method,
        url: &str,
        repo: &RepoName,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let actions = if method == Method::DELETE {
            "pull,push,delete"
        } else {
            "pull,push"
        };
        self.send_to(Request {
            at: 0,
            method,
            url,
            repo,
            headers,
            body,
            actions,
        })
        .await
    }

    /// An upload location as an absolute URL (registries may answer a path).
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// The remote's words for a refused request.
    async fn refusal(what: &str, res: reqwest::Response) -> UpstreamError {
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/errors/0/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.trim().chars().take(200).collect());
        UpstreamError::Protocol(format!("{what}: the remote answered {status}: {message}"))
    }

    fn location(res: &reqwest::Response) -> Result<String, UpstreamError> {
        res.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| UpstreamError::Protocol("an upload answer without a Location".into()))
    }

    /// Every repository in the remote's catalog.
    pub async fn catalog(&self, repo_for_auth: &RepoName) -> Result<Vec<String>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let mut out: Vec<String> = Vec::new();
        loop {
            let path = match out.last() {
                Some(last) => format!("/v2/_catalog?n=1000&last={last}"),
                None => "/v2/_catalog?n=1000".to_string(),
            };
            let res = self
                .send(Method::GET, &path, repo_for_auth, HeaderMap::new())
                .await?;
            if !res.status().is_success() {
                return Err(Self::refusal("listing the remote's repositories", res).await);
            }
            let page: Page = res
                .json()
                .await
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            let n = page.repositories.len();
            out.extend(page.repositories);
            if n < 1000 {
                return Ok(out);
            }
        }
    }

    /// Asks the remote to mount `digest` into `repo` from `from`.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<Mounted, UpstreamError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={digest}&from={}",
            self.base,
            self.remote(repo),
            self.remote(from)
        );
        let res = self
            .push_request(Method::POST, &url, repo, HeaderMap::new(), None)
            .await?;
        match res.status() {
            StatusCode::CREATED => Ok(Mounted::Yes),
            StatusCode::ACCEPTED => Ok(Mounted::Upload(self.absolute(&Self::location(&res)?))),
            _ => Err(Self::refusal(&format!("mounting {digest}"), res).await),
        }
    }

    /// Starts an upload into `repo`: its location.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<String, UpstreamError> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base, self.remote(repo));
        let res = self
            .push_request(Method::POST, &url, repo, HeaderMap::new(), None)
            .await?;
        if res.status() != StatusCode::ACCEPTED {
            return Err(Self::refusal("starting an upload", res).await);
        }
        Ok(self.absolute(&Self::location(&res)?))
    }

    /// How many bytes the upload at `location` holds, as the remote says;
    /// None when the upload is gone (finished, expired or cancelled).
    pub async fn upload_offset(
        &self,
        repo: &RepoName,
        location: &str,
    ) -> Result<Option<u64>, UpstreamError> {
        let res = self
            .push_request(Method::GET, location, repo, HeaderMap::new(), None)
            .await?;
        if !res.status().is_success() {
            // 404 BLOB_UPLOAD_UNKNOWN, or distribution's 400 BLOB_UPLOAD_INVALID
            // for an upload it cancelled after a cut: start again.
            return Ok(None);
        }
        let range = res
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Some(range.as_deref().map_or(0, upload_range_end)))
    }

    /// Appends `bytes` at `offset` to the upload at `location`: its next location.
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        location: &str,
        offset: u64,
        bytes: Bytes,
    ) -> Result<String, UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let end = offset + (bytes.len() as u64).max(1) - 1;
        if let Ok(v) = HeaderValue::from_str(&format!("{offset}-{end}")) {
            h.insert("content-range", v);
        }
        h.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        let res = self
            .push_request(Method::PATCH, location, repo, h, Some(bytes))
            .await?;
        if res.status() != StatusCode::ACCEPTED {
            return Err(Self::refusal(&format!("appending at byte {offset}"), res).await);
        }
        Ok(self.absolute(&Self::location(&res)?))
    }

    /// Ends the upload at `location`; the remote verifies `digest`.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        location: &str,
        digest: &Digest,
    ) -> Result<(), UpstreamError> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from(0));
        let res = self
            .push_request(Method::PUT, &url, repo, h, Some(Bytes::new()))
            .await?;
        if res.status() != StatusCode::CREATED {
            return Err(Self::refusal(&format!("finishing the upload of {digest}"), res).await);
        }
        Ok(())
    }

    /// PUTs a manifest under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), UpstreamError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base,
            self.remote(repo)
        );
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(media_type) {
            h.insert(CONTENT_TYPE, v);
        }
        let res = self
            .push_request(Method::PUT, &url, repo, h, Some(bytes))
            .await?;
        if res.status() != StatusCode::CREATED {
            return Err(Self::refusal(&format!("putting manifest {reference}"), res).await);
        }
        Ok(())
    }

    /// DELETE of a manifest by tag or digest; false when the remote had none.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> Result<bool, UpstreamError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base,
            self.remote(repo)
        );
        let res = self
            .push_request(Method::DELETE, &url, repo, HeaderMap::new(), None)
            .await?;
        match res.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Self::refusal(&format!("deleting {reference}"), res).await),
        }
    }
}

/// The bytes an upload holds from its `Range: 0-<last>` answer. distribution
/// (and berth after it) answer `0-0` for an empty upload as for one byte:
/// it is read as empty, the likely case; a one-byte upload then gets its
/// byte again and is refused, and the blob fails in words.
fn upload_range_end(range: &str) -> u64 {
    match range
        .trim()
        .trim_start_matches("bytes=")
        .split_once('-')
        .and_then(|(_, end)| end.trim().parse::<u64>().ok())
    {
        None | Some(0) => 0,
        Some(last) => last + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::upload_range_end;

    #[test]
    fn upload_ranges() {
        assert_eq!(upload_range_end("0-0"), 0);
        assert_eq!(upload_range_end("0-4194303"), 4 << 20);
        assert_eq!(upload_range_end("bytes=0-9"), 10);
        assert_eq!(upload_range_end("junk"), 0);
    }
}
