//! Tells the controller that a prefetch job finished, so it need not poll.
//!
//! Owns: where a finished job may be reported and the one POST that reports
//! it. A prefetch request may carry `"report": {"url", "token"}`; when the job
//! ends (done or failed) the edge posts the job, as `GET /api/v1/prefetch/{id}`
//! answers it, to `url` with `Authorization: Bearer <token>`, trying three
//! times. Only URLs under the edge's own upstream are taken (the edge talks to
//! nothing else; a request naming another host is served without a report and
//! answers `"report": false`). The target is kept in memory: a job resumed
//! after a restart is not reported, and the controller's fallback poll finds
//! it. Must not touch: the jobs themselves (see `prefetch`).

use std::time::Duration;

use serde::Deserialize;

/// Where the controller wants the end of a job reported.
#[derive(Clone, Deserialize)]
pub struct ReportTarget {
    pub url: String,
    pub token: String,
}

impl std::fmt::Debug for ReportTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never in a log line.
        f.debug_struct("ReportTarget")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Posts finished jobs to the registry the edge pulls from.
pub struct JobReporter {
    /// Each upstream URL with a trailing `/`: a report URL must start with one.
    allowed: Vec<String>,
    http: reqwest::Client,
}

const ATTEMPTS: u32 = 3;

impl JobReporter {
    pub fn new(upstream: &str, insecure: bool) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(insecure)
            // One report per job: nothing to keep a connection open for.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("job reports: {e}"))?;
        Ok(JobReporter {
            allowed: upstream
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| format!("{}/", u.trim_end_matches('/')))
                .collect(),
            http,
        })
    }

    /// Whether the edge reports to `url` (under one of its upstreams).
    pub fn accepts(&self, url: &str) -> bool {
        self.allowed.iter().any(|a| url.starts_with(a.as_str()))
    }

    /// Posts `job` (its JSON) to `target`; a few tries, then gives up (the
    /// controller polls as a fallback).
    pub async fn send(&self, job_id: &str, target: &ReportTarget, job: &serde_json::Value) {
        for attempt in 1..=ATTEMPTS {
            let res = self
                .http
                .post(&target.url)
                .bearer_auth(&target.token)
                .json(job)
                .send()
                .await;
            let error = match res {
                Ok(r) if r.status().is_success() => return,
                // The controller refused it: trying again changes nothing.
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(job = %job_id, url = %target.url, status = %r.status(), "the controller refused the job report");
                    return;
                }
                Ok(r) => r.status().to_string(),
                Err(e) => e.to_string(),
            };
            tracing::debug!(job = %job_id, url = %target.url, attempt, error = %error, "job report failed");
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            } else {
                tracing::warn!(job = %job_id, url = %target.url, error = %error, "cannot report the finished job; the controller will ask");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_go_only_under_an_upstream() {
        let r = JobReporter::new("http://reg:5000, https://b.example/", false).expect("reporter");
        assert!(
            r.accepts("http://reg:5000/api/v1/projects/p/apps/a/publications/n/prefetch-report")
        );
        assert!(r.accepts("https://b.example/api/v1/x"));
        assert!(!r.accepts("http://reg:50001/api/v1/x"));
        assert!(!r.accepts("http://elsewhere/api/v1/x"));
        assert!(!r.accepts("http://reg:5000"));
        let t = ReportTarget {
            url: "http://reg:5000/x".into(),
            token: "s3cret".into(),
        };
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
