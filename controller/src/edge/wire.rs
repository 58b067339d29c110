//! The JSON bodies of the edge-cache API the client sends and reads, and the choice of listed
//! jobs that match a prefetch.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ports::{ImageProgress, JobState, JobStatus};

impl From<JobBody> for JobStatus {
    fn from(body: JobBody) -> Self {
        JobStatus::Known {
            state: body.state,
            bytes_done: body.bytes_done,
            bytes_total: body.bytes_total,
            error: body.error,
            images: body.images,
        }
    }
}

/// A job as an edge reports its end (the body of `GET /api/v1/prefetch/{id}`):
/// its id and status.
pub fn reported_job(body: &[u8]) -> Result<(String, JobStatus), String> {
    let job: JobBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if job.id.is_empty() {
        return Err("the job has no id".into());
    }
    Ok((job.id.clone(), job.into()))
}

#[derive(Serialize)]
pub(super) struct PrefetchRequest<'a> {
    pub(super) images: &'a [String],
    pub(super) pin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) report: Option<ReportBody<'a>>,
}

#[derive(Serialize)]
pub(super) struct ReportBody<'a> {
    pub(super) url: &'a str,
    pub(super) token: &'a str,
}

#[derive(Serialize)]
pub(super) struct UnpinRequest<'a> {
    pub(super) images: &'a [String],
}

#[derive(Deserialize)]
pub(super) struct JobCreated {
    pub(super) id: String,
    /// The edge will report the job's end (older edges never say so).
    #[serde(default)]
    pub(super) report: bool,
}

#[derive(Deserialize)]
pub(super) struct JobBody {
    #[serde(default)]
    pub(super) id: String,
    pub(super) state: JobState,
    #[serde(default)]
    pub(super) bytes_done: u64,
    #[serde(default)]
    pub(super) bytes_total: u64,
    #[serde(default)]
    pub(super) error: Option<String>,
    #[serde(default)]
    pub(super) images: Vec<ImageProgress>,
}

/// A job as the edge lists it.
#[derive(Deserialize)]
pub(super) struct ListedJob {
    pub(super) id: String,
    pub(super) state: JobState,
    #[serde(default)]
    pub(super) pin: bool,
    #[serde(default)]
    pub(super) created: u64,
    #[serde(default)]
    pub(super) images: Vec<ImageProgress>,
}

/// Ids of the listed jobs that pin exactly `images` and have not failed, oldest first.
pub(super) fn matching(mut jobs: Vec<ListedJob>, images: &[String]) -> Vec<String> {
    let wanted: BTreeSet<&str> = images.iter().map(String::as_str).collect();
    jobs.retain(|j| {
        j.pin
            && j.state != JobState::Failed
            && j.images
                .iter()
                .map(|i| i.image.as_str())
                .collect::<BTreeSet<_>>()
                == wanted
    });
    jobs.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    jobs.into_iter().map(|j| j.id).collect()
}
