//! Presigned URLs of stored blobs (`storage.redirect`).
//!
//! Owns the signer and the URLs' lifetime, nothing else: whether a caller
//! may have a URL (authorization, the blob's link to the repository) is
//! decided above, before `presigned_get` is called. A URL is a bearer
//! credential for one object until it expires, so it is never logged.
//! Signing is local (SigV4 over the configured keys): no request to the
//! bucket, so a redirect costs no more than the checks before it.

use std::sync::Arc;
use std::time::Duration;

use object_store::signer::Signer;

use super::{blob_path, ContentStore, Result};
use crate::oci::Digest;

/// The signer of the bucket blobs are in, and how long its URLs last.
#[derive(Clone)]
pub(super) struct Presign {
    signer: Arc<dyn Signer>,
    expiry: Duration,
}

impl ContentStore {
    /// Blob GETs are to be answered with presigned URLs from `signer` (the
    /// bucket's own client), valid for `expiry`.
    pub fn with_redirects(mut self, signer: Arc<dyn Signer>, expiry: Duration) -> Self {
        self.presign = Some(Presign { signer, expiry });
        self
    }

    /// Whether blob GETs are redirected to presigned URLs.
    pub fn redirects(&self) -> bool {
        self.presign.is_some()
    }

    /// A URL that lets whoever holds it GET the blob `d` from the bucket
    /// until it expires; None when blobs are not redirected.
    pub async fn presigned_get(&self, d: &Digest) -> Result<Option<String>> {
        let Some(p) = &self.presign else {
            return Ok(None);
        };
        let url = p
            .signer
            .signed_url(reqwest::Method::GET, &blob_path(d), p.expiry)
            .await?;
        Ok(Some(url.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> Arc<object_store::aws::AmazonS3> {
        Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_bucket_name("blobs")
                .with_endpoint("http://127.0.0.1:3900")
                .with_region("garage")
                .with_access_key_id("GKexample")
                .with_secret_access_key("secret-never-in-a-url")
                .with_allow_http(true)
                .build()
                .expect("an S3 client"),
        )
    }

    #[tokio::test]
    async fn a_presigned_url_names_the_blob_and_its_expiry_and_never_the_secret() {
        let dir = tempfile::tempdir().expect("tmp");
        let bucket = s3();
        let store = ContentStore::in_bucket(bucket.clone(), 5 << 20, dir.path());
        let d = Digest::sha256_of(b"a layer");
        assert!(!store.redirects());
        assert_eq!(store.presigned_get(&d).await.expect("no signer"), None);

        let store = store.with_redirects(bucket, Duration::from_secs(1200));
        assert!(store.redirects());
        let url = store
            .presigned_get(&d)
            .await
            .expect("signed")
            .expect("a URL");
        let hex = d.hex();
        assert!(
            url.starts_with(&format!(
                "http://127.0.0.1:3900/blobs/blobs/sha256/{}/{hex}?",
                &hex[..2]
            )),
            "{url}"
        );
        for part in [
            "X-Amz-Expires=1200",
            "X-Amz-Signature=",
            "X-Amz-Credential=GKexample",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert!(!url.contains("secret-never-in-a-url"), "{url}");
    }
}
