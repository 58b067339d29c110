//! Proxy-cache projects: the registry's namespace, where every project that
//! has an upstream (`Project::proxy`) is served by a `PullThrough` of that
//! upstream into the registry itself, and every other project by the local
//! registry. `dockerhub/library/nginx:1.25` is the upstream's
//! `library/nginx:1.25`. Nothing can be pushed into a proxy project
//! (`DENIED`); deleting what it cached is the local registry's.
//!
//! Owns the dispatch by project, the pull-through of each proxy project
//! (built on first use, rebuilt when its settings change), and where the
//! registry keeps when upstream last confirmed a tag (its `CacheBook`). Access
//! control is the router's, as for any project.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::upstream::{ProjectUpstream, Upstream};
use super::{BookTagClock, KeepAll, ProxyMetrics, PullThrough, TagClock, TagFreshness, TagPolicy};
use crate::auth::accounts::{proxy_password_place, Accounts, ProxyUpstream};
use crate::oci::{Digest, ErrorCode, Reference, RepoName, Tag};
use crate::sealing::Sealer;
use crate::service::{
    BlobRead, BodyStream, ByteRange, LocalRegistry, Manifest, Namespace, PushEvent, PushedManifest,
    Referrers, ServiceError, TagPage, UploadStatus, Visible,
};

type Result<T> = std::result::Result<T, ServiceError>;

/// What every proxy project shares (`[proxy]` in the configuration).
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub tags: TagPolicy,
    pub connect_timeout: Duration,
    pub allow_private_upstreams: bool,
}

pub struct ProxyProjects {
    local: Arc<LocalRegistry>,
    accounts: Arc<Accounts>,
    sealer: Arc<std::sync::OnceLock<Arc<dyn Sealer>>>,
    options: ProxyOptions,
    clock: Arc<dyn TagClock>,
    metrics: Arc<ProxyMetrics>,
    /// Each proxy project's pull-through, with the settings it was built from.
    pulls: Mutex<HashMap<String, (ProxyUpstream, Arc<PullThrough>)>>,
    /// Told of every manifest served from a proxy project (`set_retention`).
    retention: std::sync::OnceLock<Arc<super::retention::ProxyRetention>>,
}

impl ProxyProjects {
    pub fn new(
        local: Arc<LocalRegistry>,
        accounts: Arc<Accounts>,
        sealer: Arc<std::sync::OnceLock<Arc<dyn Sealer>>>,
        options: ProxyOptions,
        metrics: Arc<ProxyMetrics>,
    ) -> Self {
        let clock = Arc::new(BookTagClock {
            book: local.cache_book(),
            owner: crate::meta::TagClockOwner::Proxy,
        });
        Self {
            local,
            accounts,
            sealer,
            options,
            clock,
            metrics,
            pulls: Mutex::new(HashMap::new()),
            retention: std::sync::OnceLock::new(),
        }
    }

    /// Who keeps proxy projects within their capacity: told of their pulls.
    pub fn set_retention(&self, retention: Arc<super::retention::ProxyRetention>) {
        let _ = self.retention.set(retention);
    }

    /// The pull-through serving `repo`, or None when its project is not a proxy.
    pub fn route(&self, repo: &RepoName) -> Result<Option<Arc<PullThrough>>> {
        let project = repo.as_str().split('/').next().unwrap_or_default();
        let Some(settings) = self
            .accounts
            .with_project(project, |p| p.proxy.clone())
            .flatten()
        else {
            return Ok(None);
        };
        let mut pulls = self.pulls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built, pt)) = pulls.get(project) {
            if *built == settings {
                return Ok(Some(pt.clone()));
            }
        }
        let pt = Arc::new(self.build(project, &settings)?);
        pulls.insert(project.to_string(), (settings, pt.clone()));
        Ok(Some(pt))
    }

    fn build(&self, project: &str, s: &ProxyUpstream) -> Result<PullThrough> {
        let unavailable =
            |why: String| ServiceError::Unavailable(format!("proxy project {project}: {why}"));
        let password = match (&s.password_sealed, self.sealer.get()) {
            (None, _) => String::new(),
            (Some(sealed), Some(sealer)) => {
                let plain = sealer.open(&proxy_password_place(project), sealed);
                String::from_utf8(plain.map_err(unavailable)?)
                    .map_err(|_| unavailable("the upstream password is not UTF-8".into()))?
            }
            (Some(_), None) => {
                return Err(unavailable(
                    "its upstream password is sealed and this registry has no sealing key".into(),
                ))
            }
        };
        let creds = (!s.username.is_empty()).then(|| (s.username.clone(), password));
        let upstream = Upstream::for_project(ProjectUpstream {
            project,
            url: &s.url,
            creds,
            connect_timeout: self.options.connect_timeout,
            allow_private: self.options.allow_private_upstreams,
            private_setting: super::target::SETTING,
        })
        .map_err(unavailable)?;
        Ok(PullThrough::new(
            project,
            self.local.clone(),
            Arc::new(upstream),
            Arc::new(KeepAll),
            TagFreshness::new(self.clock.clone(), self.options.tags),
            self.metrics.clone(),
            Arc::new(|| Ok(())),
        ))
    }

    /// Refuses writes into a proxy project.
    fn writable(&self, repo: &RepoName) -> Result<()> {
        let project = repo.as_str().split('/').next().unwrap_or_default();
        match self
            .accounts
            .with_project(project, |p| p.proxy.clone())
            .flatten()
        {
            None => Ok(()),
            Some(up) => Err(ServiceError::oci(
                ErrorCode::Denied,
                format!(
                    "{project} is a proxy-cache project of {}: its images are pulled from there, \
                     nothing can be pushed into it",
                    up.url
                ),
            )),
        }
    }
}

#[async_trait]
impl Namespace for ProxyProjects {
    async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        match self.route(repo)? {
            Some(pt) => pt.blob_stat(repo, digest).await,
            None => self.local.blob_stat(repo, digest).await,
        }
    }

    async fn blob_read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        match self.route(repo)? {
            Some(pt) => pt.blob_read(repo, digest, range).await,
            None => self.local.blob_read(repo, digest, range).await,
        }
    }

    async fn blob_redirect(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        match self.route(repo)? {
            // A proxy project's blobs are filled and served by the pull-through.
            Some(_) => Ok(None),
            None => self.local.blob_redirect(repo, digest).await,
        }
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Manifest> {
        match self.route(repo)? {
            Some(pt) => {
                let m = pt.manifest(repo, reference).await?;
                if let Some(r) = self.retention.get() {
                    r.pulled(repo.project());
                }
                Ok(m)
            }
            None => self.local.manifest(repo, reference).await,
        }
    }

    async fn tags(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<TagPage> {
        match self.route(repo)? {
            Some(pt) => pt.tags(repo, last, n).await,
            None => self.local.tags(repo, last, n).await,
        }
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Referrers> {
        match self.route(repo)? {
            Some(pt) => pt.referrers(repo, subject).await,
            None => self.local.referrers(repo, subject).await,
        }
    }

    async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)> {
        self.local.catalog(last, n, visible).await
    }

    async fn upload_start(&self, repo: &RepoName) -> Result<UploadStatus> {
        self.writable(repo)?;
        self.local.upload_start(repo).await
    }

    async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        self.local.upload_status(repo, id).await
    }

    async fn upload_append(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        body: BodyStream,
    ) -> Result<UploadStatus> {
        self.writable(repo)?;
        self.local.upload_append(repo, id, range, body).await
    }

    async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: Option<BodyStream>,
    ) -> Result<u64> {
        self.writable(repo)?;
        self.local
            .upload_finish(repo, id, digest, range, body)
            .await
    }

    async fn precheck_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        self.writable(repo)?;
        self.local.precheck_blob(repo, digest, size).await
    }

    async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<()> {
        self.local.upload_cancel(repo, id).await
    }

    async fn blob_put(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: BodyStream,
    ) -> Result<u64> {
        self.writable(repo)?;
        self.local.blob_put(repo, digest, len, body).await
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        may_read: Visible<'_>,
    ) -> Result<Option<u64>> {
        self.writable(repo)?;
        self.local.blob_mount(repo, digest, from, may_read).await
    }

    async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.local.blob_delete(repo, digest).await
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: &str,
        body: Bytes,
        extra_tags: &[Tag],
        event: Option<PushEvent<'_>>,
    ) -> Result<PushedManifest> {
        self.writable(repo)?;
        self.local
            .manifest_put(repo, reference, content_type, body, extra_tags, event)
            .await
    }

    async fn manifest_delete(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        self.local.manifest_delete(repo, reference).await
    }
}
