//! The prefetch step of a publish: submit the job to the node's edge cache (or
//! adopt one a crash left), follow it to its end, and say why it failed (naming
//! the projects the edge cannot read).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::clock::now_secs;
use crate::model::{Node, Publication, PublicationState};
use crate::ports::{ImageProgress, JobState, JobStatus, Submitted};

use super::{clear_failure, save, Action, Context, ReconcileError};

/// Asks the edge to prefetch and pin the images, or adopts the job a request
/// sent just before a crash created (its id never recorded here).
///
/// `unsaved`: `p` holds changes not stored yet (a resolve); they are stored
/// with the first write here, or before an error is returned.
pub(super) async fn submit_prefetch(
    ctx: &Context,
    p: &mut Publication,
    node: &Node,
    unsaved: bool,
) -> Result<Action, ReconcileError> {
    let images = p.images_by_digest();
    // A request sent before a crash may have created a job whose id
    // was never recorded: follow that job rather than start another.
    let mut adopted = None;
    let mut reporting = false;
    if let Some(before) = &p.prefetch_submitting {
        let now = ctx.edge.matching_jobs(node, &images).await?;
        adopted = now.into_iter().rev().find(|id| !before.contains(id));
    }
    let (id, detail) = match adopted {
        Some(id) => {
            let detail =
                format!("edge prefetch job {id} found on the edge (submitted before a restart)");
            (id, detail)
        }
        None => {
            let before = match ctx.edge.matching_jobs(node, &images).await {
                Ok(before) => before,
                Err(e) => {
                    if unsaved {
                        save(ctx, p).await?;
                    }
                    return Err(e.into());
                }
            };
            p.prefetch_submitting = Some(before);
            save(ctx, p).await?;
            let submitted = match ctx.reports.target(&p.key()) {
                Some(t) => {
                    ctx.edge
                        .prefetch_reporting(node, images.clone(), true, &t)
                        .await?
                }
                None => Submitted {
                    id: ctx.edge.prefetch(node, images.clone(), true).await?,
                    report: false,
                },
            };
            let id = submitted.id;
            reporting = submitted.report;
            let detail = if reporting {
                format!("edge prefetch job {id} submitted; the edge reports its end")
            } else {
                format!("edge prefetch job {id} submitted")
            };
            (id, detail)
        }
    };
    for i in images {
        if !p.pinned.contains(&i) {
            p.pinned.push(i);
        }
    }
    p.prefetch_job = Some(id);
    p.prefetch_submitting = None;
    clear_failure(p);
    p.record(
        PublicationState::Prefetching {
            bytes_done: 0,
            bytes_total: 0,
        },
        detail,
        now_secs(),
    );
    save(ctx, p).await?;
    Ok(Action::Requeue(poll_after(ctx, reporting)))
}

/// When to ask the edge about a job again: at the fallback interval when it
/// reports the job's end (a report wakes the reconcile sooner), otherwise at
/// the poll interval.
fn poll_after(ctx: &Context, reporting: bool) -> Duration {
    if reporting {
        ctx.settings.report_fallback.max(ctx.settings.poll_interval)
    } else {
        ctx.settings.poll_interval
    }
}

/// Whether the history says the edge reports this job's end (as recorded
/// when it was submitted).
fn edge_reports(p: &Publication, job: &str) -> bool {
    let said = format!("edge prefetch job {job} submitted; the edge reports its end");
    p.history.iter().rev().any(|h| h.detail == said)
}

/// Looks at the edge's prefetch job: `None` once it is done (go on to apply;
/// `p` says so but is not stored yet), otherwise when to look again.
pub(super) async fn follow_prefetch(
    ctx: &Context,
    p: &mut Publication,
    node: &Node,
    job: &str,
) -> Result<Option<Action>, ReconcileError> {
    // A report of the job's end, when the edge sent one, instead of asking.
    let status = match ctx.reports.take(&node.name, job) {
        Some(reported) => reported,
        None => ctx.edge.job(node, job).await?,
    };
    match status {
        JobStatus::Unknown => {
            // The edge restarted or forgot; prefetch is idempotent, so ask again.
            p.prefetch_job = None;
            p.record(
                PublicationState::Prefetching {
                    bytes_done: 0,
                    bytes_total: 0,
                },
                format!("edge does not know job {job}; submitting again"),
                now_secs(),
            );
            save(ctx, p).await?;
            Ok(Some(Action::Requeue(Duration::ZERO)))
        }
        JobStatus::Known {
            state: JobState::Failed,
            error,
            images,
            ..
        } => {
            p.prefetch_job = None;
            save(ctx, p).await?;
            let mut message = prefetch_failure(error, &images);
            for project in unreadable_projects(ctx, &images).await {
                message.push_str(&unreadable(&p.node, &project));
            }
            Err(ReconcileError::PrefetchFailed {
                node: p.node.clone(),
                message,
            })
        }
        JobStatus::Known {
            state: JobState::Pending | JobState::Running,
            bytes_done,
            bytes_total,
            ..
        } => {
            let next = PublicationState::Prefetching {
                bytes_done,
                bytes_total,
            };
            if p.state != next || p.attempts > 0 {
                clear_failure(p);
                p.set_state(
                    next,
                    format!("edge prefetch job {job} in progress"),
                    now_secs(),
                );
                save(ctx, p).await?;
            }
            Ok(Some(Action::Requeue(poll_after(ctx, edge_reports(p, job)))))
        }
        JobStatus::Known {
            state: JobState::Done,
            bytes_total,
            ..
        } => {
            // Stored by the apply that follows at once (or before its error).
            p.prefetched = true;
            clear_failure(p);
            p.set_state(
                PublicationState::Deploying,
                format!("edge cache holds every image ({bytes_total} bytes)"),
                now_secs(),
            );
            Ok(None)
        }
    }
}

/// Why a prefetch job failed: the job's error, and each failed image it does
/// not already name.
fn prefetch_failure(error: Option<String>, images: &[ImageProgress]) -> String {
    let mut message = error.unwrap_or_else(|| "no reason given".into());
    for i in images.iter().filter(|i| i.error.is_some()) {
        // berth edge already names each failed image in the job's error.
        let line = format!("{}: {}", i.image, i.error.as_deref().unwrap_or_default());
        if !message.contains(&line) {
            message.push_str(&format!("; {line}"));
        }
    }
    message
}

/// The projects of images the edge could not fetch although the registry
/// holds them (it resolved them for this publish and still does): the
/// registry hid them from the edge's upstream credential.
async fn unreadable_projects(ctx: &Context, images: &[ImageProgress]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for i in images {
        let Some(error) = &i.error else { continue };
        // Only what reads as "not there" or "refused"; an unreachable
        // registry or a full disk says nothing about access.
        let lower = error.to_ascii_lowercase();
        let hidden = [
            "not in repository",
            "refused access",
            "unknown",
            "404",
            "not found",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if !hidden || ctx.resolver.resolve(&i.image).await.is_err() {
            continue;
        }
        if let Some((project, _)) = i.image.split_once('/') {
            out.insert(project.to_string());
        }
    }
    out
}

/// Why the edge of `node` cannot fetch from `project`, and what to do.
fn unreadable(node: &str, project: &str) -> String {
    format!(
        "; the registry holds it, so the upstream credential of node {node}'s edge cannot read \
         project {project}: give that edge a robot that reads {project} (a system robot reads \
         several projects: POST /api/v1/robots {{\"name\": \"edge\", \"projects\": \
         [\"{project}\", ...], \"access\": \"pull\"}}, or berth robot create --system edge \
         --projects {project},...), or make {project} public"
    )
}
