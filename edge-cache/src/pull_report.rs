//! Reports the manifest pulls this edge serves to its registry, in batches
//! (`POST /api/v1/pulls` with the upstream account), so that the registry's
//! image list counts pulls served here. Counting is the registry's
//! `PullCounter`; a report that fails is kept for the next.
//!
//! Owns: the report loop. Must not touch: the pull path (it only counts).

use std::sync::Arc;
use std::time::Duration;

use berth_registry::pulls::{PullCount, PullCounter};

pub struct PullReporter {
    pub counter: Arc<PullCounter>,
    /// `/api/v1/pulls` at each upstream URL, tried in order (registry
    /// replicas share their metadata, so any one of them counts).
    urls: Vec<String>,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
}

impl PullReporter {
    pub fn new(
        upstream: &str,
        credentials: Option<(String, String)>,
        insecure: bool,
    ) -> Result<Arc<Self>, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|e| format!("pull reports: {e}"))?;
        Ok(Arc::new(PullReporter {
            counter: PullCounter::new(),
            urls: upstream
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| format!("{}/api/v1/pulls", u.trim_end_matches('/')))
                .collect(),
            credentials,
            http,
        }))
    }

    /// Reports every `every` until the process ends.
    pub fn spawn(self: &Arc<Self>, every: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.counter.due(every).await;
                me.report().await;
            }
        });
    }

    /// Sends what was counted; keeps it for the next report if that fails.
    pub async fn report(&self) {
        let pulls = self.counter.take();
        if pulls.is_empty() {
            return;
        }
        if let Err(e) = self.send(&pulls).await {
            tracing::warn!(error = %e, manifests = pulls.len(), "cannot report pulls to the registry; kept for the next report");
            self.counter.restore(pulls);
        }
    }

    /// Sends to the first upstream that takes the report.
    async fn send(&self, pulls: &[PullCount]) -> Result<(), String> {
        let mut last = "no upstream URL".to_string();
        for url in &self.urls {
            match self.send_to(url, pulls).await {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(last)
    }

    async fn send_to(&self, url: &str, pulls: &[PullCount]) -> Result<(), String> {
        let mut rb = self
            .http
            .post(url)
            .json(&serde_json::json!({ "pulls": pulls }));
        if let Some((u, p)) = &self.credentials {
            rb = rb.basic_auth(u, Some(p));
        }
        let res = rb.send().await.map_err(|e| e.to_string())?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        if let Some(skipped) = body["skipped"].as_array().filter(|s| !s.is_empty()) {
            tracing::warn!(
                ?skipped,
                "the registry did not count pulls of repositories this edge's account may not pull"
            );
        }
        Ok(())
    }
}
