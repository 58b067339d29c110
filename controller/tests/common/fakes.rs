//! The registry side of the controller's ports, faked: an in-memory image
//! resolver whose tags can move, an authorizer of fixed Basic accounts, an
//! audit log in memory, and the directory deployer wrapped to check that
//! nothing is applied before the edge reported its prefetch done.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use berth_controller::deploy::{
    DeployError, DeployTarget, Deployer, DirectoryDeployer, OwnerSelector, Rollout,
};
use berth_controller::model::ImageRef;
use berth_controller::ports::{
    Actor, AuditSink, AuthError, Authorizer, CtlAction, ImageResolver, ResolveError, ResolvedImage,
};
use berth_controller::render::WorkloadRef;
use serde_json::Value;

use super::{Edge, MANIFEST};

/// Tags of this "registry": `proj/repo:tag` -> digest. Tags can move.
#[derive(Default)]
pub struct FakeResolver {
    pub tags: Mutex<HashMap<String, String>>,
    pub calls: Mutex<Vec<String>>,
}

impl FakeResolver {
    pub fn tag(&self, reference: &str, digest: &str) {
        self.tags
            .lock()
            .expect("lock")
            .insert(reference.to_string(), digest.to_string());
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl ImageResolver for FakeResolver {
    async fn resolve(&self, image_ref: &str) -> Result<ResolvedImage, ResolveError> {
        self.calls.lock().expect("lock").push(image_ref.to_string());
        let r = ImageRef::parse(image_ref).map_err(ResolveError::InvalidReference)?;
        let digest = match &r.digest {
            Some(d) => d.clone(),
            None => self
                .tags
                .lock()
                .expect("lock")
                .get(image_ref)
                .cloned()
                .ok_or_else(|| {
                    ResolveError::NotFound(format!("{image_ref} is not in the registry"))
                })?,
        };
        Ok(ResolvedImage {
            repository: r.repository,
            upstream: None,
            digest,
            media_type: MANIFEST.into(),
        })
    }
}

/// admin:secret may do anything; viewer:view may only read.
pub struct BasicAuthorizer;

impl Authorizer for BasicAuthorizer {
    fn authorize(
        &self,
        headers: &HeaderMap,
        project: Option<&str>,
        action: CtlAction,
    ) -> Result<Actor, AuthError> {
        let enc = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        let got = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if got == enc("admin", "secret") {
            return Ok(Actor {
                name: "admin".into(),
                admin: true,
            });
        }
        // A developer of project shop, and of nothing else.
        if got == enc("dev", "dev") {
            return match project {
                Some("shop") if action != CtlAction::Admin => Ok(Actor {
                    name: "dev".into(),
                    admin: false,
                }),
                Some(p) => Err(AuthError {
                    status: StatusCode::FORBIDDEN,
                    message: format!("dev may not see project {p}"),
                }),
                None => Err(AuthError {
                    status: StatusCode::FORBIDDEN,
                    message: "dev may not manage clusters and nodes".into(),
                }),
            };
        }
        if got == enc("viewer", "view") {
            if action == CtlAction::Read {
                return Ok(Actor {
                    name: "viewer".into(),
                    admin: false,
                });
            }
            return Err(AuthError {
                status: StatusCode::FORBIDDEN,
                message: "viewer may not change anything here".into(),
            });
        }
        Err(AuthError {
            status: StatusCode::UNAUTHORIZED,
            message: "log in with a registry account".into(),
        })
    }
}

#[derive(Default)]
pub struct MemAudit {
    pub records: Mutex<Vec<[String; 5]>>,
}

impl MemAudit {
    pub fn has(&self, action: &str, outcome_prefix: &str) -> bool {
        self.records
            .lock()
            .expect("lock")
            .iter()
            .any(|r| r[2] == action && r[4].starts_with(outcome_prefix))
    }
}

impl AuditSink for MemAudit {
    fn record(&self, actor: &str, project: &str, action: &str, target: &str, outcome: &str) {
        self.records.lock().expect("lock").push([
            actor.into(),
            project.into(),
            action.into(),
            target.into(),
            outcome.into(),
        ]);
    }
}

/// The directory deployer, counting applies and checking that every image in
/// what is applied was reported prefetched by that node's edge first.
pub struct CheckedDeployer {
    pub inner: DirectoryDeployer,
    pub edges: Mutex<HashMap<String, Edge>>,
    pub applies: Mutex<Vec<(String, Vec<String>)>>,
    pub violations: Mutex<Vec<String>>,
}

impl CheckedDeployer {
    pub fn apply_count(&self, node: &str) -> usize {
        self.applies
            .lock()
            .expect("lock")
            .iter()
            .filter(|(n, _)| n == node)
            .count()
    }
}

fn images_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "image" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                }
                images_in(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| images_in(x, out)),
        _ => {}
    }
}

#[async_trait]
impl Deployer for CheckedDeployer {
    async fn apply(&self, target: &DeployTarget, objects: &[Value]) -> Result<(), DeployError> {
        let mut images = Vec::new();
        for o in objects {
            images_in(o, &mut images);
        }
        let edge = self
            .edges
            .lock()
            .expect("lock")
            .get(&target.node.name)
            .cloned();
        let done = edge
            .map(|e| e.lock().expect("lock").done_images.clone())
            .unwrap_or_default();
        for i in &images {
            if !done.contains(i) {
                self.violations.lock().expect("lock").push(format!(
                    "{} applied with {i} before its edge reported it prefetched",
                    target.node.name
                ));
            }
        }
        self.applies.lock().expect("lock").push((
            target.node.name.clone(),
            objects
                .iter()
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                .collect(),
        ));
        self.inner.apply(target, objects).await
    }

    async fn remove(
        &self,
        target: &DeployTarget,
        selector: &OwnerSelector,
    ) -> Result<(), DeployError> {
        self.inner.remove(target, selector).await
    }

    async fn rollout_status(
        &self,
        target: &DeployTarget,
        workload: &WorkloadRef,
    ) -> Result<Rollout, DeployError> {
        self.inner.rollout_status(target, workload).await
    }
}
