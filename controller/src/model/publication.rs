//! Publications: one app on one node, what is wanted there, how far it got,
//! and its history.
//!
//! Owns: the publication record and its state machine (which changes leave a
//! history entry). Must not touch: the steps that move it (see `reconcile`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How many history entries a publication keeps (oldest dropped first).
pub const HISTORY_LIMIT: usize = 100;

/// Identifies a publication: one app on one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicationKey {
    pub project: String,
    pub app: String,
    pub node: String,
}

impl fmt::Display for PublicationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.project, self.app, self.node)
    }
}

/// An image of the template resolved to a digest when the publish was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedImage {
    /// As written in the template, e.g. `shop/web:1.4`.
    pub reference: String,
    /// Repository in this registry, e.g. `shop/web` (for an image of another
    /// registry, in its proxy-cache project: `dockerhub/library/nginx`).
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    /// For an image of another registry, its name there
    /// (`docker.io/library/nginx`): the pod spec names it so, and the node's
    /// containerd fetches it through its edge as that registry's mirror.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

impl PinnedImage {
    /// `repository@digest`, the form the edge cache uses (and the pod spec,
    /// behind this registry's host, for this registry's images).
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

/// Where a publication is, as a person would read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PublicationState {
    /// Turning image tags into digests.
    Resolving,
    /// The node's edge cache is pulling and pinning the images.
    Prefetching {
        bytes_done: u64,
        bytes_total: u64,
    },
    /// Objects applied (or being applied); waiting for the rollout.
    Deploying,
    Running,
    /// Stuck; retried with backoff. The reason says what went wrong.
    Failed {
        reason: String,
    },
    /// Being taken off the node.
    Removing,
}

impl PublicationState {
    pub fn label(&self) -> &'static str {
        match self {
            PublicationState::Resolving => "resolving",
            PublicationState::Prefetching { .. } => "prefetching",
            PublicationState::Deploying => "deploying",
            PublicationState::Running => "running",
            PublicationState::Failed { .. } => "failed",
            PublicationState::Removing => "removing",
        }
    }
}

/// What the user asked for the publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "desired", rename_all = "snake_case")]
pub enum Desired {
    Published,
    /// Remove it from the node; with `cascade`, also the resources only it uses.
    Unpublished {
        cascade: bool,
    },
}

/// One state change, kept in the publication's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Unix seconds.
    pub at: u64,
    pub state: String,
    pub detail: String,
}

/// One app on one node: what is wanted, how far it got, and how it got there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    pub project: String,
    pub app: String,
    pub node: String,
    /// Template version wanted on the node.
    pub version: u32,
    pub desired: Desired,
    /// Bumped by every publish/unpublish request; steps done for an older
    /// generation are redone.
    pub generation: u64,
    /// Bumped by every write; guards against lost updates.
    pub revision: u64,
    /// Digests resolved once for this generation; `None` until resolved.
    pub images: Option<Vec<PinnedImage>>,
    /// Edge prefetch job for this generation's images.
    pub prefetch_job: Option<String>,
    /// Set while a prefetch request may have reached the edge without its job
    /// id being recorded here: the ids of the edge's jobs for the same images
    /// from before the request. After a crash, a matching job not in this list
    /// is the one that request created, and is followed instead of asking again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_submitting: Option<Vec<String>>,
    /// The edge reported the prefetch job done.
    pub prefetched: bool,
    /// The objects for this generation were applied.
    pub applied: bool,
    /// Images this publication pinned on the edge and has not unpinned yet.
    #[serde(default)]
    pub pinned: Vec<String>,
    /// Bumped each time something the running objects depend on changed (a
    /// config map's data, a secret's value, a resource added to the app):
    /// the change is applied again without a publish.
    #[serde(default)]
    pub resources_generation: u64,
    /// The `resources_generation` the objects on the node were applied at:
    /// the generation it runs.
    #[serde(default)]
    pub applied_resources_generation: u64,
    #[serde(flatten)]
    pub state: PublicationState,
    /// Consecutive failed attempts (reset on progress).
    pub attempts: u32,
    /// Unix milliseconds of the next retry after a failure.
    pub next_retry_at_ms: Option<u64>,
    pub last_error: Option<String>,
    pub history: Vec<Transition>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Publication {
    pub fn new(project: &str, app: &str, node: &str, version: u32, now: u64) -> Self {
        let mut p = Publication {
            project: project.into(),
            app: app.into(),
            node: node.into(),
            version,
            desired: Desired::Published,
            generation: 0,
            revision: 0,
            images: None,
            prefetch_job: None,
            prefetch_submitting: None,
            prefetched: false,
            applied: false,
            pinned: Vec::new(),
            resources_generation: 0,
            applied_resources_generation: 0,
            state: PublicationState::Resolving,
            attempts: 0,
            next_retry_at_ms: None,
            last_error: None,
            history: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        p.restart_publish(version, now);
        p
    }

    pub fn key(&self) -> PublicationKey {
        PublicationKey {
            project: self.project.clone(),
            app: self.app.clone(),
            node: self.node.clone(),
        }
    }

    /// A new publish request: start over from resolving, keeping what is pinned
    /// (it is unpinned once the new images run).
    pub fn restart_publish(&mut self, version: u32, now: u64) {
        self.version = version;
        self.desired = Desired::Published;
        self.generation += 1;
        self.images = None;
        self.prefetch_job = None;
        self.prefetch_submitting = None;
        self.prefetched = false;
        self.applied = false;
        self.attempts = 0;
        self.next_retry_at_ms = None;
        self.last_error = None;
        self.transition(
            PublicationState::Resolving,
            format!("publish of version {version} requested"),
            now,
            true,
        );
    }

    /// An unpublish request.
    pub fn request_removal(&mut self, cascade: bool, now: u64) {
        self.desired = Desired::Unpublished { cascade };
        self.generation += 1;
        self.attempts = 0;
        self.next_retry_at_ms = None;
        self.last_error = None;
        let detail = if cascade {
            "unpublish requested (cascade)"
        } else {
            "unpublish requested"
        };
        self.transition(PublicationState::Removing, detail.to_string(), now, true);
    }

    /// Moves to `state`, recording a history entry when the state (or a failure
    /// reason) changes; progress updates alone are not history.
    pub fn set_state(&mut self, state: PublicationState, detail: impl Into<String>, now: u64) {
        self.transition(state, detail.into(), now, false);
    }

    /// Like `set_state`, but always recorded in the history (notable events
    /// that do not change the state, such as a resubmitted prefetch).
    pub fn record(&mut self, state: PublicationState, detail: impl Into<String>, now: u64) {
        self.transition(state, detail.into(), now, true);
    }

    /// A new request always leaves a trace, even without a change of state.
    fn transition(&mut self, state: PublicationState, detail: String, now: u64, force: bool) {
        let changed = self.state.label() != state.label()
            || matches!(
                (&self.state, &state),
                (PublicationState::Failed { reason: a }, PublicationState::Failed { reason: b }) if a != b
            )
            || self.history.is_empty();
        self.state = state;
        self.updated_at = now;
        if changed || force {
            self.history.push(Transition {
                at: now,
                state: self.state.label().to_string(),
                detail,
            });
            if self.history.len() > HISTORY_LIMIT {
                let drop = self.history.len() - HISTORY_LIMIT;
                self.history.drain(..drop);
            }
        }
    }

    /// The images this generation runs, as `repository@digest`.
    pub fn images_by_digest(&self) -> Vec<String> {
        self.images
            .as_ref()
            .map(|v| v.iter().map(PinnedImage::by_digest).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_history() {
        let mut p = Publication::new("shop", "web", "n1", 1, 10);
        assert_eq!(p.history.len(), 1);
        p.set_state(
            PublicationState::Prefetching {
                bytes_done: 0,
                bytes_total: 10,
            },
            "prefetch",
            11,
        );
        p.set_state(
            PublicationState::Prefetching {
                bytes_done: 5,
                bytes_total: 10,
            },
            "progress",
            12,
        );
        assert_eq!(p.history.len(), 2);
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["state"], "prefetching");
        assert_eq!(json["bytes_done"], 5);
        let back: Publication = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, p);
    }
}
