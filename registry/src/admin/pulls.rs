//! `POST /api/v1/pulls`: an edge reports the manifest pulls it served, in
//! batches, so that the image list counts them (see `crate::pulls`). Any
//! account may report pulls of repositories it may pull (reporting a pull is
//! no more than making one); others in the batch are skipped and named.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AResult, AdminError, AdminState, Caller, ErrorBody, JsonBody};
use crate::auth::Access;
use crate::meta::{self, PullCount};
use crate::oci::{Digest, RepoName};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// Entries one report may carry.
const MAX_ENTRIES: usize = 10_000;

#[derive(Deserialize, ToSchema)]
pub struct PullReport {
    pub pulls: Vec<PullCount>,
}

#[derive(Serialize, ToSchema)]
pub struct PullReportAnswer {
    /// Entries counted.
    pub recorded: usize,
    /// Repositories whose entries were skipped: the caller may not pull them.
    pub skipped: Vec<String>,
}

/// Adds pulls served elsewhere (by an edge) to the pull counts the image
/// list shows; written to the metadata with the registry's own, in batches.
#[utoipa::path(post, path = "/api/v1/pulls", tag = "repositories", request_body = PullReport,
    responses((status = 200, body = PullReportAnswer), (status = 400, body = ErrorBody)))]
pub(super) async fn report(
    State(st): State<AdminState>,
    Reporter(c): Reporter,
    JsonBody(report): JsonBody<PullReport>,
) -> AResult<Json<PullReportAnswer>> {
    if report.pulls.len() > MAX_ENTRIES {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{} entries: send at most {MAX_ENTRIES} per report",
                report.pulls.len()
            ),
        ));
    }
    let now = meta::now();
    let mut answer = PullReportAnswer {
        recorded: 0,
        skipped: Vec::new(),
    };
    for p in &report.pulls {
        let repo: RepoName = p.repository.parse().map_err(|e: crate::oci::NameError| {
            AdminError::new(StatusCode::BAD_REQUEST, e.to_string())
        })?;
        let digest: Digest = p.digest.parse().map_err(|e: crate::oci::DigestError| {
            AdminError::new(StatusCode::BAD_REQUEST, e.to_string())
        })?;
        if !st.access.may_pull(&c.subject, repo.as_str()) {
            if !answer.skipped.contains(&p.repository) {
                answer.skipped.push(p.repository.clone());
            }
            continue;
        }
        let count = p.count.min(u64::from(u32::MAX));
        st.pulls
            .add(&repo, &digest, count, p.last_pulled_at.min(now));
        answer.recorded += 1;
    }
    Ok(Json(answer))
}

/// Who reports: any account with credentials, robots included (an edge's
/// credential is a robot), unlike the rest of the admin API.
pub(super) struct Reporter(Caller);

impl FromRequestParts<AdminState> for Reporter {
    type Rejection = AdminError;
    async fn from_request_parts(
        parts: &mut Parts,
        st: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let peer = crate::auth::client::client_addr(&parts.extensions);
        let info = crate::auth::RequestInfo {
            headers: &parts.headers,
            peer,
        };
        let subject = st.access.identify(&info).await?;
        if subject.name.is_none() {
            return Err(AdminError::new(
                StatusCode::UNAUTHORIZED,
                "reporting pulls needs credentials: HTTP Basic with an account or robot, or a bearer token from /v2/token",
            ));
        }
        Ok(Reporter(Caller { subject, peer }))
    }
}
