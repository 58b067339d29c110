//! One resource on one node: what is wanted there, whether it is applied,
//! and what happened last.
//!
//! Owns: the record and its transitions. Must not touch: the rules that allow
//! a publish or unpublish (see `store`) or the steps that move it (see
//! `reconcile`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ResourceKind;
use crate::model::PublicationKey;

/// What one reconcile works on: an app on a node, or a resource on a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PublicationRef {
    App(PublicationKey),
    Resource(ResourcePublicationKey),
}

impl From<PublicationKey> for PublicationRef {
    fn from(k: PublicationKey) -> Self {
        PublicationRef::App(k)
    }
}

impl From<ResourcePublicationKey> for PublicationRef {
    fn from(k: ResourcePublicationKey) -> Self {
        PublicationRef::Resource(k)
    }
}

impl fmt::Display for PublicationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicationRef::App(k) => k.fmt(f),
            PublicationRef::Resource(k) => k.fmt(f),
        }
    }
}

/// Identifies a resource publication: one resource on one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourcePublicationKey {
    pub project: String,
    pub kind: ResourceKind,
    pub name: String,
    pub node: String,
}

impl fmt::Display for ResourcePublicationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}@{}",
            self.project, self.kind, self.name, self.node
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceDesired {
    Published,
    /// Take it off the node (a volume's claim, and its data, go with it).
    Unpublished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Recorded; not on the node yet.
    Pending,
    /// Waiting for what it needs on the node (the detail says what).
    Waiting,
    /// On the node.
    Applied,
    /// Stuck; retried with backoff. `last_error` says why.
    Failed,
    /// Being taken off the node.
    Removing,
}

/// A resource on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcePublication {
    pub project: String,
    pub kind: ResourceKind,
    pub name: String,
    pub node: String,
    pub desired: ResourceDesired,
    /// Bumped by every publish or unpublish request.
    pub generation: u64,
    /// Bumped by every write; the reconciler writes with compare-and-swap on it.
    pub revision: u64,
    /// The object is on the node as the resource's current spec renders it.
    pub applied: bool,
    pub state: ResourceState,
    /// The last thing that happened, in words.
    pub detail: String,
    pub attempts: u32,
    pub next_retry_at_ms: Option<u64>,
    pub last_error: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// On the node only because an app carried it there (an app publish or a
    /// follow): it goes when no published app there uses it any more. An
    /// explicit publish, or an app unpublish without cascade leaving it
    /// behind, clears it. Records from before it read as explicit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub with_apps: bool,
    /// Why the controller takes it off the node on its own (no app published
    /// there uses it any more); `None` for a removal asked through the API.
    /// The removal's audit entry says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_down_because: Option<String>,
}

impl ResourcePublication {
    pub fn new(key: &ResourcePublicationKey, detail: impl Into<String>, now: u64) -> Self {
        ResourcePublication {
            project: key.project.clone(),
            kind: key.kind,
            name: key.name.clone(),
            node: key.node.clone(),
            desired: ResourceDesired::Published,
            generation: 1,
            revision: 0,
            applied: false,
            state: ResourceState::Pending,
            detail: detail.into(),
            attempts: 0,
            next_retry_at_ms: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            with_apps: false,
            taken_down_because: None,
        }
    }

    /// A record an app carries to its node.
    pub fn with_app(key: &ResourcePublicationKey, detail: impl Into<String>, now: u64) -> Self {
        ResourcePublication {
            with_apps: true,
            ..ResourcePublication::new(key, detail, now)
        }
    }

    pub fn key(&self) -> ResourcePublicationKey {
        ResourcePublicationKey {
            project: self.project.clone(),
            kind: self.kind,
            name: self.name.clone(),
            node: self.node.clone(),
        }
    }

    /// A publish request: apply again (idempotent on the node).
    pub fn request_publish(&mut self, detail: impl Into<String>, now: u64) {
        self.desired = ResourceDesired::Published;
        self.generation += 1;
        self.revision += 1;
        self.applied = false;
        self.taken_down_because = None;
        self.set(ResourceState::Pending, detail, now);
        self.clear_failure();
    }

    pub fn request_removal(&mut self, detail: impl Into<String>, now: u64) {
        self.desired = ResourceDesired::Unpublished;
        self.generation += 1;
        self.revision += 1;
        self.taken_down_because = None;
        self.set(ResourceState::Removing, detail, now);
        self.clear_failure();
    }

    /// The controller takes it off the node because `why` (nothing there
    /// uses it any more): a removal like an unpublish request's, written
    /// with compare-and-swap (`update_resource_publication` bumps the
    /// revision, so this does not).
    pub fn request_takedown(&mut self, why: impl Into<String>, now: u64) {
        let why = why.into();
        self.desired = ResourceDesired::Unpublished;
        self.generation += 1;
        self.set(ResourceState::Removing, why.clone(), now);
        self.clear_failure();
        self.taken_down_because = Some(why);
    }

    pub fn set(&mut self, state: ResourceState, detail: impl Into<String>, now: u64) {
        self.state = state;
        self.detail = detail.into();
        self.updated_at = now;
    }

    pub fn clear_failure(&mut self) {
        self.attempts = 0;
        self.next_retry_at_ms = None;
        self.last_error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_bump_generation_and_revision() {
        let key = ResourcePublicationKey {
            project: "shop".into(),
            kind: ResourceKind::LoadBalancers,
            name: "web-lb".into(),
            node: "n1".into(),
        };
        let mut p = ResourcePublication::new(&key, "published with web", 5);
        assert_eq!(p.key(), key);
        assert_eq!(key.to_string(), "shop/loadbalancers/web-lb@n1");
        p.applied = true;
        p.attempts = 3;
        p.request_removal("unpublish requested", 6);
        assert_eq!(
            (p.desired, p.generation, p.revision, p.attempts),
            (ResourceDesired::Unpublished, 2, 1, 0)
        );
        p.request_takedown("no longer used by web version 2", 7);
        assert_eq!(
            p.taken_down_because.as_deref(),
            Some("no longer used by web version 2")
        );
        assert_eq!(
            (p.desired, p.generation, p.revision),
            (ResourceDesired::Unpublished, 3, 1)
        );
        p.request_publish("publish requested", 7);
        assert_eq!(p.taken_down_because, None);
        assert!(!p.applied);
        assert_eq!(p.state, ResourceState::Pending);
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["state"], "pending");
        assert_eq!(json["kind"], "loadbalancers");
        let back: ResourcePublication = serde_json::from_value(json).expect("back");
        assert_eq!(back, p);
    }
}
