//! Retention of proxy-cache projects: each keeps at most its capacity (its
//! storage usage, as the quota counts it) and drops images nobody pulled
//! within its expiry. A sweep runs every `[proxy] sweep_interval`, and at
//! once when a pull finds the project over its capacity.
//!
//! An image's last access is the later of its last pull (the pull counts the
//! router keeps in memory and writes in batches, `crate::pulls`; a sweep
//! flushes them first, so no pull writes anything itself) and when it was
//! cached. Eviction goes least recently used first and takes the image's
//! tags, its manifest (and an index's children nothing else refers to) and
//! the links of blobs no image left in the repository uses: the project's
//! usage drops at once, the bytes go at the next GC when nothing else holds
//! them. What `GcRoots` hold (a controller publication's images) is never
//! evicted, nor an image one of them refers to.
//!
//! Owns: the limits in force, choosing and evicting, the audit and metrics of
//! evictions. Not: access times (`pulls`), GC, the fill.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::auth::access::RegistryAccess;
use crate::auth::accounts::{Accounts, ProxyUpstream};
use crate::meta::MetaStore;
use crate::oci::{Digest, RepoName, Tag};
use crate::pulls::PullCounter;
use crate::service::metrics::Metrics;
use crate::service::{LocalRegistry, ServiceError};

type Result<T> = std::result::Result<T, ServiceError>;

/// The limits in force for one proxy project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub capacity: Option<u64>,
    pub expire_after: Option<Duration>,
}

impl Limits {
    /// The project's own, else the configuration's.
    pub fn of(up: &ProxyUpstream, cfg: &berth_config::ProxyConfig) -> Limits {
        let expire = up
            .expire_after_secs
            .map(Duration::from_secs)
            .unwrap_or(cfg.expire_after);
        Limits {
            capacity: up.capacity.or(cfg.capacity.map(|b| b.0)),
            expire_after: (!expire.is_zero()).then_some(expire),
        }
    }
}

/// A tagged image of a proxy project, as a sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    pub repo: String,
    pub digest: String,
    /// Unix seconds of the last pull, or of caching when later.
    pub last_access: u64,
    /// Held by a `GcRoots` (directly or as an index's child).
    pub rooted: bool,
    /// Bytes of its blobs (what evicting it frees at most).
    pub size: u64,
}

/// Which images go: those not accessed since `expire_before`, then the least
/// recently accessed until `usage` (less what each frees) is within
/// `capacity`. Rooted images stay. Indexes into `images`, in order.
pub fn choose(images: &[CachedImage], usage: u64, limits: Limits, now: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..images.len()).filter(|&i| !images[i].rooted).collect();
    order.sort_by_key(|&i| (images[i].last_access, i));
    let cutoff = limits.expire_after.map(|d| now.saturating_sub(d.as_secs()));
    let mut left = usage;
    let mut out = Vec::new();
    for i in order {
        let expired = cutoff.is_some_and(|c| images[i].last_access < c);
        let over = limits.capacity.is_some_and(|c| left > c);
        if !(expired || over) {
            continue;
        }
        left = left.saturating_sub(images[i].size);
        out.push(i);
    }
    out
}

/// What one sweep of a project did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub images: Vec<String>,
    pub usage_before: u64,
    pub usage_after: u64,
}

pub struct ProxyRetention {
    local: Arc<LocalRegistry>,
    accounts: Arc<Accounts>,
    pulls: Arc<PullCounter>,
    access: Arc<RegistryAccess>,
    config: berth_config::ProxyConfig,
    evicted_images: Counter,
    evicted_bytes: Counter,
    kick: tokio::sync::Notify,
}

impl ProxyRetention {
    pub fn new(
        local: Arc<LocalRegistry>,
        accounts: Arc<Accounts>,
        pulls: Arc<PullCounter>,
        access: Arc<RegistryAccess>,
        config: berth_config::ProxyConfig,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let me = Arc::new(Self {
            local,
            accounts,
            pulls,
            access,
            config,
            evicted_images: Counter::default(),
            evicted_bytes: Counter::default(),
            kick: tokio::sync::Notify::new(),
        });
        let (images, bytes) = (me.evicted_images.clone(), me.evicted_bytes.clone());
        metrics.register(move |r| {
            r.register(
                "proxy_evicted_images",
                "Images proxy-cache projects evicted for capacity or expiry",
                images.clone(),
            );
            r.register(
                "proxy_evicted_bytes",
                "Usage proxy-cache projects freed by evicting images",
                bytes.clone(),
            );
        });
        me
    }

    /// A pull was served from `project`: sweeps soon if it is over capacity.
    pub fn pulled(&self, project: &str) {
        if self
            .accounts
            .project(project)
            .and_then(|p| p.proxy)
            .is_some_and(|up| Limits::of(&up, &self.config).capacity.is_some())
        {
            self.kick.notify_one();
        }
    }

    /// Sweeps every `sweep_interval`, and when kicked, until `stop`.
    pub fn spawn(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let kicked = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(me.config.sweep_interval) => false,
                    _ = me.kick.notified() => true,
                };
                // Replicas on one database: one of them expires content.
                if !me
                    .local
                    .duties()
                    .hold(crate::duties::Duty::ProxyExpiry)
                    .await
                {
                    continue;
                }
                me.sweep_all(kicked).await;
            }
        });
    }

    /// Sweeps every proxy project (when `only_over`, those over capacity).
    /// Pull counts are flushed first, and only when something is swept.
    pub async fn sweep_all(&self, only_over: bool) {
        let mut due = Vec::new();
        for p in self.accounts.projects() {
            let Some(up) = p.proxy else { continue };
            let limits = Limits::of(&up, &self.config);
            if limits == Limits::default() {
                continue;
            }
            if only_over {
                let usage = self.local.quota(&p.name).await.map(|q| q.usage);
                if !matches!((usage, limits.capacity), (Ok(u), Some(c)) if u > c) {
                    continue;
                }
            }
            due.push((p.name, limits));
        }
        if due.is_empty() {
            return;
        }
        self.pulls.flush(self.local.meta().as_ref()).await;
        for (project, limits) in due {
            match self.sweep(&project, limits).await {
                Ok(s) if !s.images.is_empty() => self.account(&project, &s, None),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(project = %project, error = %e, "proxy project sweep failed")
                }
            }
        }
    }

    /// One audit entry per sweep that evicted, and the counters.
    fn account(&self, project: &str, s: &Swept, peer: Option<IpAddr>) {
        let freed = s.usage_before.saturating_sub(s.usage_after);
        self.evicted_images.inc_by(s.images.len() as u64);
        self.evicted_bytes.inc_by(freed);
        const SHOWN: usize = 20;
        let mut target = format!(
            "{} images, usage {} -> {} bytes: {}",
            s.images.len(),
            s.usage_before,
            s.usage_after,
            s.images
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        if s.images.len() > SHOWN {
            target.push_str(&format!(" and {} more", s.images.len() - SHOWN));
        }
        tracing::info!(
            project,
            images = s.images.len(),
            freed,
            "proxy project evicted images"
        );
        self.access.audit(
            "proxy-retention",
            peer,
            "proxy.evict",
            Some(project),
            &target,
            crate::auth::audit::Outcome::OK,
        );
    }

    /// Evicts what `limits` say must go from `project`.
    pub async fn sweep(&self, project: &str, limits: Limits) -> Result<Swept> {
        let meta = self.local.meta();
        let name: RepoName = project
            .parse()
            .map_err(|e: crate::oci::NameError| ServiceError::Internal(e.to_string()))?;
        let roots: HashSet<(String, String)> = {
            let mut all = HashSet::new();
            for r in self.local.gc_roots() {
                all.extend(r.roots().await);
            }
            all
        };
        let mut images = Vec::new();
        for repo in self.local.project_repositories(&name).await? {
            let Ok(r) = repo.parse::<RepoName>() else {
                continue;
            };
            let pulled: HashMap<String, u64> = meta
                .pulls(&r)
                .await?
                .into_iter()
                .map(|p| (p.digest, p.last_pulled_at))
                .collect();
            let mut seen = HashSet::new();
            for t in meta.tag_records(&r).await? {
                if !seen.insert(t.digest.clone()) {
                    continue;
                }
                let Ok(d) = t.digest.parse::<Digest>() else {
                    continue;
                };
                let (blobs, children) = parts(meta.as_ref(), &d).await?;
                let rooted = roots.contains(&(repo.clone(), t.digest.clone()))
                    || children
                        .iter()
                        .any(|c| roots.contains(&(repo.clone(), c.to_string())));
                let mut size = 0;
                for b in &blobs {
                    size += meta.blob_size(b).await?.unwrap_or(0);
                }
                images.push(CachedImage {
                    repo: repo.clone(),
                    last_access: pulled.get(&t.digest).copied().unwrap_or(0).max(t.pushed_at),
                    digest: t.digest,
                    rooted,
                    size,
                });
            }
        }
        let usage_before = self.local.quota(project).await?.usage;
        let now = crate::meta::now();
        let chosen = choose(&images, usage_before, limits, now);
        let mut swept = Swept {
            usage_before,
            ..Default::default()
        };
        for i in chosen {
            let img = &images[i];
            let Ok(repo) = img.repo.parse::<RepoName>() else {
                continue;
            };
            let Ok(d) = img.digest.parse::<Digest>() else {
                continue;
            };
            evict(meta.as_ref(), &repo, &d).await?;
            swept.images.push(format!("{}@{}", img.repo, img.digest));
        }
        swept.usage_after = self.local.quota(project).await?.usage;
        Ok(swept)
    }
}

/// An image's blobs (config and layers, its children's for an index) and
/// child manifests.
async fn parts(meta: &dyn MetaStore, digest: &Digest) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let Some(s) = meta.manifest_summary(digest).await? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut blobs: Vec<Digest> = s.blobs.iter().map(|b| b.digest.clone()).collect();
    let mut children = Vec::new();
    for c in &s.manifests {
        if let Some(cs) = meta.manifest_summary(&c.digest).await? {
            blobs.extend(cs.blobs.iter().map(|b| b.digest.clone()));
        }
        children.push(c.digest.clone());
    }
    Ok((blobs, children))
}

/// Removes an image from `repo`: its tags and manifest, its children and
/// blob links no image left in the repository uses.
async fn evict(meta: &dyn MetaStore, repo: &RepoName, digest: &Digest) -> Result<()> {
    let (blobs, children) = parts(meta, digest).await?;
    for (tag, d) in meta.tags_with_digests(repo).await? {
        if d == digest.to_string() {
            if let Ok(t) = tag.parse::<Tag>() {
                meta.delete_tag(repo, &t).await?;
            }
        }
    }
    meta.delete_manifest(repo, digest).await?;
    let mut kept_blobs = HashSet::new();
    let mut kept_manifests = HashSet::new();
    for (_, d) in meta.tags_with_digests(repo).await? {
        let Ok(d) = d.parse::<Digest>() else { continue };
        let (b, c) = parts(meta, &d).await?;
        kept_blobs.extend(b);
        kept_manifests.extend(c);
        kept_manifests.insert(d);
    }
    for c in children.iter().filter(|c| !kept_manifests.contains(*c)) {
        meta.delete_manifest(repo, c).await?;
    }
    for b in blobs.iter().filter(|b| !kept_blobs.contains(*b)) {
        meta.unlink_blob(repo, b).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, last_access: u64, rooted: bool) -> CachedImage {
        CachedImage {
            repo: format!("hub/{name}"),
            digest: format!("sha256:{name}"),
            last_access,
            rooted,
            size: 10,
        }
    }

    #[test]
    fn capacity_evicts_least_recently_pulled_first_and_never_a_root() {
        // 4 images of 10 bytes; capacity 20: two must go.
        let images = [
            img("old-published", 1, true),
            img("old", 2, false),
            img("recent", 9, false),
            img("middle", 5, false),
        ];
        let limits = Limits {
            capacity: Some(20),
            expire_after: None,
        };
        let chosen = choose(&images, 40, limits, 10);
        let names: Vec<&str> = chosen.iter().map(|&i| images[i].repo.as_str()).collect();
        assert_eq!(names, ["hub/old", "hub/middle"]);
        // Within capacity nothing goes.
        assert!(choose(&images, 20, limits, 10).is_empty());
    }

    #[test]
    fn expiry_takes_what_nobody_pulled_within_it() {
        let images = [
            img("stale", 100, false),
            img("fresh", 950, false),
            img("pinned", 0, true),
        ];
        let limits = Limits {
            capacity: None,
            expire_after: Some(Duration::from_secs(100)),
        };
        let chosen = choose(&images, 0, limits, 1000);
        assert_eq!(chosen, [0]);
    }

    #[test]
    fn a_project_setting_wins_over_the_configuration() {
        let mut cfg = berth_config::ProxyConfig {
            capacity: Some(berth_config::ByteSize(100)),
            ..Default::default()
        };
        let mut up = ProxyUpstream {
            url: "https://r.example".into(),
            username: String::new(),
            password_sealed: None,
            capacity: None,
            expire_after_secs: None,
        };
        assert_eq!(Limits::of(&up, &cfg).capacity, Some(100));
        assert_eq!(Limits::of(&up, &cfg).expire_after, None);
        up.capacity = Some(5);
        up.expire_after_secs = Some(60);
        cfg.expire_after = Duration::from_secs(1);
        let l = Limits::of(&up, &cfg);
        assert_eq!(l.capacity, Some(5));
        assert_eq!(l.expire_after, Some(Duration::from_secs(60)));
        up.expire_after_secs = Some(0);
        assert_eq!(Limits::of(&up, &cfg).expire_after, None, "0: never");
    }
}
