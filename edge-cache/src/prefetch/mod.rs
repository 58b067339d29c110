//! Prefetch jobs: bring images (manifests, configs, layers) into the cache
//! ahead of need, optionally pinning them against eviction.
//!
//! A job is persisted on every state change, so it survives a restart and
//! resumes (blobs already cached are skipped at once). Progress is per image
//! and per layer, in bytes, and "done" means every byte is committed here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use berth_registry::oci::{media, Descriptor, Digest, ImageRef, ManifestSummary, Reference};
use berth_registry::service::Namespace;
use serde::{Deserialize, Serialize};

use berth_registry::proxy::PullThrough;

use crate::job_report::{JobReporter, ReportTarget};
use crate::metrics::EdgeMetrics;
use crate::store::{now_ms, EdgeStore};

mod http;

pub use http::router;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerProgress {
    pub digest: String,
    pub size: u64,
    pub bytes_done: u64,
    pub state: JobState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageProgress {
    pub image: String,
    pub digest: Option<String>,
    pub state: JobState,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub error: Option<String>,
    pub layers: Vec<LayerProgress>,
    /// Non-distributable layers with URLs: the node's runtime fetches them
    /// from their URLs, so they are neither cached nor counted here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    pub pin: bool,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub error: Option<String>,
    pub images: Vec<ImageProgress>,
    /// Platforms the request asked for (absent: the edge's configured ones);
    /// kept so that a job resumed after a restart fetches the same images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    pub created: u64,
    pub updated: u64,
    /// The edge will report this job's end to the controller (`job_report`);
    /// absent when it will not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report: bool,
}

#[derive(Debug, Deserialize)]
pub struct PrefetchRequest {
    pub images: Vec<String>,
    #[serde(default)]
    pub pin: bool,
    /// Platforms for multi-arch images, e.g. ["linux/arm64"]; default: the node's.
    #[serde(default)]
    pub platforms: Option<Vec<String>>,
    /// Where to report the job's end (`job_report`).
    #[serde(default)]
    pub report: Option<ReportTarget>,
}

pub struct Prefetcher {
    pt: Arc<PullThrough>,
    store: Arc<EdgeStore>,
    metrics: Arc<EdgeMetrics>,
    jobs: Mutex<HashMap<String, Job>>,
    platforms: Vec<String>,
    limit: Arc<tokio::sync::Semaphore>,
    reporter: Option<Arc<JobReporter>>,
    /// Report targets of the jobs in flight, by job id (memory only).
    reports: Mutex<HashMap<String, ReportTarget>>,
}

/// This machine's platform in OCI terms.
pub fn own_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

fn platform_matches(d: &Descriptor, wanted: &[String]) -> bool {
    let Some(p) = &d.platform else { return false };
    wanted.iter().any(|w| {
        let mut parts = w.split('/');
        let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
        os == Some(p.os.as_str())
            && arch == Some(p.architecture.as_str())
            && (variant.is_none() || variant == p.variant.as_deref())
    })
}

#[derive(Debug)]
pub struct PrefetchError(pub StatusCode, pub String);

impl Prefetcher {
    pub async fn new(
        pt: Arc<PullThrough>,
        store: Arc<EdgeStore>,
        metrics: Arc<EdgeMetrics>,
        platforms: Vec<String>,
        reporter: Option<Arc<JobReporter>>,
    ) -> Arc<Self> {
        let platforms = if platforms.is_empty() {
            vec![own_platform()]
        } else {
            platforms
        };
        let this = Arc::new(Self {
            pt,
            store,
            metrics,
            jobs: Mutex::new(HashMap::new()),
            platforms,
            limit: Arc::new(tokio::sync::Semaphore::new(2)),
            reporter,
            reports: Mutex::new(HashMap::new()),
        });
        // Jobs from before a restart: load all, resume the unfinished.
        let saved = this.store.jobs().await.unwrap_or_default();
        for raw in saved {
            if let Ok(job) = serde_json::from_slice::<Job>(&raw) {
                let resume = matches!(job.state, JobState::Pending | JobState::Running);
                let (id, platforms) = (job.id.clone(), job.platforms.clone());
                if let Ok(mut j) = this.jobs.lock() {
                    j.insert(id.clone(), job);
                }
                if resume {
                    tracing::info!(job = %id, "resuming prefetch job after restart");
                    this.clone().spawn(id, platforms);
                }
            }
        }
        this.update_gauges();
        this
    }

    fn update_gauges(&self) {
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        if let Ok(j) = self.jobs.lock() {
            for job in j.values() {
                *counts.entry(job.state.as_str()).or_default() += 1;
            }
        }
        for s in ["pending", "running", "done", "failed"] {
            self.metrics
                .prefetch_jobs
                .get_or_create(&crate::metrics::JobState { state: s.into() })
                .set(*counts.get(s).unwrap_or(&0));
        }
    }

    /// Every job this edge knows, newest first.
    pub fn jobs_newest_first(&self) -> Vec<Job> {
        let mut v: Vec<Job> = self
            .jobs
            .lock()
            .map(|j| j.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|j| std::cmp::Reverse(j.created));
        v
    }

    pub fn job(&self, id: &str) -> Option<Job> {
        self.jobs.lock().ok()?.get(id).cloned()
    }

    async fn save(&self, job: &Job) {
        if let Ok(bytes) = serde_json::to_vec(job) {
            if let Err(e) = self.store.put_job(&job.id, &bytes).await {
                tracing::error!(error = %e, "cannot persist prefetch job");
            }
        }
        if let Ok(mut j) = self.jobs.lock() {
            j.insert(job.id.clone(), job.clone());
        }
        self.update_gauges();
    }

    pub async fn submit(self: &Arc<Self>, req: PrefetchRequest) -> Result<Job, PrefetchError> {
        if req.images.is_empty() {
            return Err(PrefetchError(
                StatusCode::BAD_REQUEST,
                "images is empty: name at least one image, e.g. \"proj/app:1.2\"".into(),
            ));
        }
        for i in &req.images {
            i.parse::<ImageRef>()
                .map_err(|e| PrefetchError(StatusCode::BAD_REQUEST, format!("image {i:?}: {e}")))?;
        }
        let report = req.report.clone().filter(|t| {
            let ok = self.reporter.as_ref().is_some_and(|r| r.accepts(&t.url));
            if !ok {
                tracing::warn!(url = %t.url, "not reporting a prefetch job to a URL outside the upstream");
            }
            ok
        });
        let now = now_ms() / 1000;
        let job = Job {
            id: uuid::Uuid::new_v4().to_string(),
            state: JobState::Pending,
            pin: req.pin,
            bytes_done: 0,
            bytes_total: 0,
            error: None,
            images: req
                .images
                .iter()
                .map(|i| ImageProgress {
                    image: i.clone(),
                    digest: None,
                    state: JobState::Pending,
                    bytes_done: 0,
                    bytes_total: 0,
                    error: None,
                    layers: vec![],
                    external_layers: vec![],
                })
                .collect(),
            platforms: req.platforms.clone(),
            created: now,
            updated: now,
            report: report.is_some(),
        };
        if let (Some(t), Ok(mut r)) = (report, self.reports.lock()) {
            r.insert(job.id.clone(), t);
        }
        self.save(&job).await;
        self.clone().spawn(job.id.clone(), req.platforms);
        Ok(job)
    }

    fn spawn(self: Arc<Self>, id: String, platforms: Option<Vec<String>>) {
        tokio::spawn(async move {
            let _permit = self.limit.clone().acquire_owned().await;
            self.run(&id, platforms.unwrap_or_else(|| self.platforms.clone()))
                .await;
        });
    }

    /// Descriptors of every blob an image needs on this node (all of them,
    /// including the non-distributable layers `prefetch_image` leaves out).
    async fn plan(
        &self,
        image: &str,
        platforms: &[String],
    ) -> Result<(Digest, Vec<Descriptor>, Vec<Digest>), String> {
        let r: ImageRef = image.parse().map_err(|e| format!("{e}"))?;
        let ns = &self.pt;
        let top = ns
            .manifest(&r.repo, &r.reference)
            .await
            .map_err(|e| format!("cannot resolve {image}: {e}"))?;
        let summary = |bytes: &[u8], mt: &str| -> Result<ManifestSummary, String> {
            media::manifest_kind(mt)
                .ok_or_else(|| format!("{image} has unsupported media type {mt}"))?;
            berth_registry::oci::manifest::decode(mt, bytes).map_err(|e| e.to_string())
        };
        let s = summary(&top.bytes, &top.media_type)?;
        let mut manifests = vec![top.digest.clone()];
        let mut blobs = Vec::new();
        if s.manifests.is_empty() {
            blobs.extend(s.blobs);
        } else {
            let chosen: Vec<&Descriptor> = s
                .manifests
                .iter()
                .filter(|d| platform_matches(d, platforms))
                .collect();
            if chosen.is_empty() {
                return Err(format!(
                    "{image} has no manifest for platform(s) {}",
                    platforms.join(", ")
                ));
            }
            for child in chosen {
                let m = ns
                    .manifest(&r.repo, &Reference::Digest(child.digest.clone()))
                    .await
                    .map_err(|e| format!("cannot fetch {image} child {}: {e}", child.digest))?;
                manifests.push(m.digest.clone());
                blobs.extend(summary(&m.bytes, &m.media_type)?.blobs);
            }
        }
        let mut seen = std::collections::HashSet::new();
        blobs.retain(|b| seen.insert(b.digest.clone()));
        Ok((top.digest, blobs, manifests))
    }

    async fn run(self: &Arc<Self>, id: &str, platforms: Vec<String>) {
        let Some(mut job) = self.job(id) else { return };
        job.state = JobState::Running;
        self.save(&job).await;
        let mut failures = Vec::new();
        for idx in 0..job.images.len() {
            let image = job.images[idx].image.clone();
            match self.prefetch_image(&mut job, idx, &platforms).await {
                Ok(()) => job.images[idx].state = JobState::Done,
                Err(e) => {
                    job.images[idx].state = JobState::Failed;
                    job.images[idx].error = Some(e.clone());
                    failures.push(format!("{image}: {e}"));
                }
            }
            job.updated = now_ms() / 1000;
            self.save(&job).await;
        }
        job.state = if failures.is_empty() {
            JobState::Done
        } else {
            JobState::Failed
        };
        job.error = (!failures.is_empty()).then(|| failures.join("; "));
        job.updated = now_ms() / 1000;
        self.save(&job).await;
        tracing::info!(job = %id, state = job.state.as_str(), bytes = job.bytes_done, "prefetch job finished");
        self.report_end(&job).await;
    }

    /// Tells the controller the job ended, when it asked to be told.
    async fn report_end(&self, job: &Job) {
        let target = self.reports.lock().ok().and_then(|mut r| r.remove(&job.id));
        let (Some(target), Some(reporter)) = (target, &self.reporter) else {
            return;
        };
        let Ok(body) = serde_json::to_value(job) else {
            return;
        };
        let reporter = reporter.clone();
        let id = job.id.clone();
        tokio::spawn(async move { reporter.send(&id, &target, &body).await });
    }

    async fn prefetch_image(
        self: &Arc<Self>,
        job: &mut Job,
        idx: usize,
        platforms: &[String],
    ) -> Result<(), String> {
        let image = job.images[idx].image.clone();
        let (digest, mut blobs, _manifests) = self.plan(&image, platforms).await?;
        // Layers fetched from their URLs never come through the registry:
        // "done" means every layer the node pulls from here is here.
        let external: Vec<String> = blobs
            .iter()
            .filter(|b| b.fetched_from_urls())
            .map(|b| b.digest.to_string())
            .collect();
        blobs.retain(|b| !b.fetched_from_urls());
        let r: ImageRef = image.parse().map_err(|e| format!("{e}"))?;
        if job.pin {
            let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
            self.store
                .pin(&image, &digests)
                .await
                .map_err(|e| e.to_string())?;
        }
        {
            let ip = &mut job.images[idx];
            ip.digest = Some(digest.to_string());
            ip.state = JobState::Running;
            ip.bytes_total = blobs.iter().map(|b| b.size).sum();
            ip.layers = plan_layers(&ip.layers, &blobs);
            ip.external_layers = external;
        }
        job.bytes_total = job.images.iter().map(|i| i.bytes_total).sum();
        recount(job, idx);
        self.save(job).await;
        for (li, b) in blobs.iter().enumerate() {
            self.prefetch_layer(job, idx, li, &r, b).await?;
        }
        Ok(())
    }

    /// Brings one layer of the image into the cache, unless it is here
    /// already, following the fill's progress into the job.
    async fn prefetch_layer(
        &self,
        job: &mut Job,
        idx: usize,
        li: usize,
        r: &ImageRef,
        b: &Descriptor,
    ) -> Result<(), String> {
        // Cached for this repository, or for another one and upstream
        // confirms this repository has it too: nothing to download.
        if self.pt.holds(&r.repo, &b.digest).await {
            self.layer_done(job, idx, li, b.size).await;
            return Ok(());
        }
        // Not here (whatever an earlier run reported, e.g. since evicted).
        job.images[idx].layers[li].bytes_done = 0;
        job.images[idx].layers[li].state = JobState::Running;
        recount(job, idx);
        self.save(job).await;
        let fill = self.pt.fill(&r.repo, &b.digest);
        let mut rx = fill.state.subscribe();
        let mut last_save = std::time::Instant::now();
        loop {
            let (written, outcome) = {
                let s = rx.borrow_and_update();
                (s.written, s.outcome.clone())
            };
            self.set_layer_bytes(job, idx, li, written.min(b.size));
            match outcome {
                Some(Ok(())) => break,
                Some(Err(e)) => {
                    job.images[idx].layers[li].state = JobState::Failed;
                    return Err(format!("layer {}: {e}", b.digest));
                }
                None => {}
            }
            if last_save.elapsed() > Duration::from_millis(500) {
                if let Ok(mut j) = self.jobs.lock() {
                    j.insert(job.id.clone(), job.clone());
                }
                last_save = std::time::Instant::now();
            }
            if rx.changed().await.is_err() {
                // The fill ended; its outcome is whatever the cache now holds.
                if self.pt.local.blob_stat(&r.repo, &b.digest).await.is_ok() {
                    break;
                }
                return Err(format!(
                    "layer {}: transfer ended without a result",
                    b.digest
                ));
            }
        }
        self.layer_done(job, idx, li, b.size).await;
        Ok(())
    }

    fn set_layer_bytes(&self, job: &mut Job, idx: usize, li: usize, bytes: u64) {
        let l = &mut job.images[idx].layers[li];
        l.bytes_done = l.bytes_done.max(bytes);
        recount(job, idx);
    }

    async fn layer_done(&self, job: &mut Job, idx: usize, li: usize, size: u64) {
        self.set_layer_bytes(job, idx, li, size);
        job.images[idx].layers[li].state = JobState::Done;
        job.updated = now_ms() / 1000;
        self.save(job).await;
    }
}

/// The per-layer entries for a (re)planned image. Layers an earlier run of
/// the job finished keep their bytes until checked, so a job resumed after a
/// restart does not report less progress while it re-checks them.
fn plan_layers(previous: &[LayerProgress], blobs: &[Descriptor]) -> Vec<LayerProgress> {
    blobs
        .iter()
        .map(|b| {
            let digest = b.digest.to_string();
            let finished = previous
                .iter()
                .any(|p| p.digest == digest && p.state == JobState::Done);
            LayerProgress {
                digest,
                size: b.size,
                bytes_done: if finished { b.size } else { 0 },
                state: JobState::Pending,
            }
        })
        .collect()
}

/// Recomputes an image's and the job's byte counts from the layers.
fn recount(job: &mut Job, idx: usize) {
    let ip = &mut job.images[idx];
    ip.bytes_done = ip.layers.iter().map(|l| l.bytes_done).sum();
    job.bytes_done = job.images.iter().map(|i| i.bytes_done).sum();
}

#[cfg(test)]
mod tests;
