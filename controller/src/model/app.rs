//! Apps and their immutable numbered template versions, and the words that
//! say what changed from one version to the next.
//!
//! Owns: the app and version records. Must not touch: how versions are
//! numbered and stored (see `store`).

use serde::{Deserialize, Serialize};

use super::spec::{AppSpec, WorkloadKind};

/// A workload a project runs on edge nodes. Its template lives in numbered versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub project: String,
    pub name: String,
    pub kind: WorkloadKind,
    pub latest_version: u32,
    pub created_at: u64,
    pub created_by: String,
}

/// One immutable version of an app's template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub version: u32,
    pub spec: AppSpec,
    pub author: String,
    pub created_at: u64,
    /// What changed from the previous version, in words (the author's message if given).
    pub summary: String,
}

/// Describes in words what changed between two template versions.
pub fn summarize_change(old: Option<&AppSpec>, new: &AppSpec) -> String {
    let Some(old) = old else {
        return format!(
            "first version: {} with {}",
            new.kind,
            new.containers
                .iter()
                .map(|c| format!("{} ({})", c.name, c.image))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut changes = container_changes(old, new);
    if old.replicas != new.replicas {
        changes.push(format!(
            "replicas {} -> {}",
            old.replicas.map_or("default".into(), |r| r.to_string()),
            new.replicas.map_or("default".into(), |r| r.to_string())
        ));
    }
    if old.schedule != new.schedule {
        changes.push(format!(
            "schedule {:?} -> {:?}",
            old.schedule.as_deref().unwrap_or(""),
            new.schedule.as_deref().unwrap_or("")
        ));
    }
    if old.restart_policy != new.restart_policy {
        changes.push("restart policy changed".into());
    }
    if old.volumes != new.volumes {
        changes.push("volumes changed".into());
    }
    if old.labels != new.labels {
        changes.push("labels changed".into());
    }
    if changes.is_empty() {
        "no change".into()
    } else {
        changes.join("; ")
    }
}

/// Containers added, removed, or changed (image, and which other parts).
fn container_changes(old: &AppSpec, new: &AppSpec) -> Vec<String> {
    let mut changes = Vec::new();
    for c in &new.containers {
        match old.containers.iter().find(|o| o.name == c.name) {
            None => changes.push(format!("container {} added ({})", c.name, c.image)),
            Some(o) => {
                if o.image != c.image {
                    changes.push(format!(
                        "container {} image {} -> {}",
                        c.name, o.image, c.image
                    ));
                }
                let mut parts = Vec::new();
                if o.command != c.command || o.args != c.args {
                    parts.push("command");
                }
                if o.env != c.env {
                    parts.push("env");
                }
                if o.ports != c.ports {
                    parts.push("ports");
                }
                if o.resources != c.resources {
                    parts.push("resources");
                }
                if o.liveness_probe != c.liveness_probe || o.readiness_probe != c.readiness_probe {
                    parts.push("probes");
                }
                if o.volume_mounts != c.volume_mounts {
                    parts.push("volume mounts");
                }
                if !parts.is_empty() {
                    changes.push(format!("container {} {} changed", c.name, parts.join(", ")));
                }
            }
        }
    }
    for o in &old.containers {
        if !new.containers.iter().any(|c| c.name == o.name) {
            changes.push(format!("container {} removed", o.name));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::spec;

    #[test]
    fn change_summary() {
        let a = spec(WorkloadKind::Deployment);
        let mut b = a.clone();
        b.containers[0].image = "shop/web:2.0".into();
        b.replicas = Some(3);
        let s = summarize_change(Some(&a), &b);
        assert!(s.contains("image shop/web:1.0 -> shop/web:2.0"), "{s}");
        assert!(s.contains("replicas default -> 3"), "{s}");
        assert!(summarize_change(None, &a).starts_with("first version"));
        assert_eq!(summarize_change(Some(&a), &a), "no change");
    }
}
