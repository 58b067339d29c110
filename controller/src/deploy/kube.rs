//! The Kubernetes deployer: server-side apply with field manager `berth`
//! (forced, so berth's fields win), prune by ownership labels, rollout status
//! read back from the workload's status.
//!
//! One kube-rs client per cluster, built from the kubeconfig stored with the
//! cluster (token, client certificate, CA data) and rebuilt when it changes. TLS
//! is rustls; the namespace (the project) is applied before the objects.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{DeployError, DeployTarget, Deployer, OwnerSelector, Rollout};
use crate::model::{Cluster, WorkloadKind, MANAGER};
use crate::render::{object_identity, WorkloadRef, LABEL_MANAGED_BY};

/// (apiVersion, kind, plural) of every namespaced kind berth creates; removal
/// lists each of them.
pub const MANAGED_KINDS: &[(&str, &str, &str)] = &[
    ("apps/v1", "Deployment", "deployments"),
    ("apps/v1", "StatefulSet", "statefulsets"),
    ("apps/v1", "DaemonSet", "daemonsets"),
    ("batch/v1", "CronJob", "cronjobs"),
    ("batch/v1", "Job", "jobs"),
    ("networking.k8s.io/v1", "Ingress", "ingresses"),
    ("berth.dev/v1", "ElasticIP", "elasticips"),
    ("v1", "Service", "services"),
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "Secret", "secrets"),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
];

fn api_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let plural = MANAGED_KINDS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
        .map(|(_, _, p)| *p)
        .or((api_version == "v1" && kind == "Namespace").then_some("namespaces"))?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

pub struct KubeDeployer {
    /// cluster name -> (hash of its kubeconfig, client)
    clients: Mutex<HashMap<String, (String, Client)>>,
}

impl Default for KubeDeployer {
    fn default() -> Self {
        Self::new()
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl KubeDeployer {
    pub fn new() -> Self {
        KubeDeployer {
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn cluster_err(target: &DeployTarget, what: &str, e: impl std::fmt::Display) -> DeployError {
        Self::err_on(&target.cluster, what, e)
    }

    pub(super) fn err_on(cluster: &Cluster, what: &str, e: impl std::fmt::Display) -> DeployError {
        DeployError::Cluster {
            cluster: cluster.name.clone(),
            message: format!("{what}: {e}"),
        }
    }

    async fn client(&self, target: &DeployTarget) -> Result<Client, DeployError> {
        self.client_for(&target.cluster).await
    }

    pub(super) async fn client_for(&self, cluster: &Cluster) -> Result<Client, DeployError> {
        let target = cluster;
        let hash = hex::encode(Sha256::digest(target.kubeconfig.as_bytes()));
        if let Ok(map) = self.clients.lock() {
            if let Some((h, c)) = map.get(&target.name) {
                if *h == hash {
                    return Ok(c.clone());
                }
            }
        }
        let kubeconfig = Kubeconfig::from_yaml(&target.kubeconfig)
            .map_err(|e| Self::err_on(target, "the stored kubeconfig cannot be read", e))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| Self::err_on(target, "the stored kubeconfig cannot be used", e))?;
        let client = Client::try_from(config)
            .map_err(|e| Self::err_on(target, "cannot build a client", e))?;
        if let Ok(mut map) = self.clients.lock() {
            map.insert(target.name.clone(), (hash, client.clone()));
        }
        Ok(client)
    }

    pub(super) fn params() -> PatchParams {
        PatchParams::apply(MANAGER).force()
    }

    pub(super) async fn ensure_namespace(
        &self,
        client: &Client,
        target: &DeployTarget,
        namespace: &str,
    ) -> Result<(), DeployError> {
        let ar = api_resource("v1", "Namespace")
            .ok_or_else(|| DeployError::Invalid("namespace kind missing".into()))?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let ns = namespace_object(namespace);
        match api
            .patch(namespace, &Self::params(), &Patch::Apply(&ns))
            .await
        {
            Ok(_) => Ok(()),
            // A kubeconfig limited to the namespace may not manage namespaces; it
            // exists then, or the apply below says so.
            Err(e) if status_code(&e) == Some(403) => {
                tracing::debug!(
                    namespace,
                    "not allowed to apply the namespace; assuming it exists"
                );
                Ok(())
            }
            Err(e) => Err(Self::cluster_err(
                target,
                &format!("cannot create namespace {namespace}"),
                e,
            )),
        }
    }

    async fn apply_one(
        &self,
        client: &Client,
        target: &DeployTarget,
        obj: &Value,
    ) -> Result<(), DeployError> {
        let (api_version, kind, namespace, name) = object_identity(obj)
            .ok_or_else(|| DeployError::Invalid("object without kind or name".into()))?;
        let ar = api_resource(&api_version, &kind).ok_or_else(|| {
            DeployError::Invalid(format!("berth does not apply {api_version} {kind}"))
        })?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ar);
        match api.patch(&name, &Self::params(), &Patch::Apply(obj)).await {
            Ok(_) => Ok(()),
            // A Job's pod template cannot change: replace the Job. Deletion takes a
            // moment, so report an error now and let the retry create the new one.
            Err(e) if kind == "Job" && status_code(&e) == Some(422) => {
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map_err(|e| {
                        Self::cluster_err(
                            target,
                            &format!("cannot replace Job {namespace}/{name}"),
                            e,
                        )
                    })?;
                Err(Self::cluster_err(
                    target,
                    &format!("Job {namespace}/{name}"),
                    "the previous Job is being replaced (its template cannot change); retrying",
                ))
            }
            Err(e) if kind == "ElasticIP" && status_code(&e) == Some(404) => {
                Err(Self::cluster_err(
                    target,
                    &format!("cannot apply ElasticIP {namespace}/{name}"),
                    "the cluster does not know the ElasticIP kind; install its CRD \
                 (kubectl apply -f controller/crds/eip.yaml)",
                ))
            }
            Err(e) => Err(Self::cluster_err(
                target,
                &format!("cannot apply {kind} {namespace}/{name}"),
                e,
            )),
        }
    }
}

/// A project's namespace: berth's, held to the `restricted` Pod Security
/// standard (one field manager applies it, so every apply says the same).
/// The pods berth renders comply (`render::pod_security`,
/// `render::container_security`); so must anything a user of the project's
/// kubeconfig creates there.
pub fn namespace_object(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": namespace, "labels": {
            LABEL_MANAGED_BY: MANAGER,
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
        } },
    })
}

fn u32_at(v: &Value, path: &[&str]) -> Option<u32> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_u64().map(|n| n.min(u32::MAX as u64) as u32)
}

/// Reads readiness from a workload object's status.
pub fn rollout_from_object(kind: WorkloadKind, obj: &Value) -> Rollout {
    let generation = obj["metadata"]["generation"].as_u64().unwrap_or(0);
    let observed = obj["status"]["observedGeneration"].as_u64().unwrap_or(0);
    let current = observed >= generation;
    let get = |path: &[&str]| u32_at(obj, path).unwrap_or(0);
    match kind {
        WorkloadKind::Deployment | WorkloadKind::StatefulSet => {
            let desired = u32_at(obj, &["spec", "replicas"]).unwrap_or(1);
            let ready = get(&["status", "readyReplicas"]).min(get(&["status", "updatedReplicas"]));
            Rollout::Observed {
                ready: if current { ready } else { 0 },
                desired,
            }
        }
        WorkloadKind::DaemonSet => {
            let desired = get(&["status", "desiredNumberScheduled"]);
            let ready =
                get(&["status", "numberReady"]).min(get(&["status", "updatedNumberScheduled"]));
            if !current {
                // Not looked at yet: at least the one pod on this node is wanted.
                return Rollout::Observed {
                    ready: 0,
                    desired: desired.max(1),
                };
            }
            Rollout::Observed { ready, desired }
        }
        WorkloadKind::Job | WorkloadKind::CronJob => Rollout::NotObservable,
    }
}

#[async_trait]
impl Deployer for KubeDeployer {
    async fn apply(&self, target: &DeployTarget, objects: &[Value]) -> Result<(), DeployError> {
        let client = self.client(target).await?;
        let mut namespaces: Vec<&str> = objects
            .iter()
            .filter_map(|o| o["metadata"]["namespace"].as_str())
            .collect();
        namespaces.dedup();
        for ns in namespaces {
            self.ensure_namespace(&client, target, ns).await?;
        }
        for obj in objects {
            self.apply_one(&client, target, obj).await?;
        }
        Ok(())
    }

    /// An object changed in the cluster, or deleted: compared with what
    /// berth applied (only the fields it set).
    async fn drifted(
        &self,
        target: &DeployTarget,
        objects: &[Value],
    ) -> Result<Vec<String>, DeployError> {
        let client = self.client(target).await?;
        let mut out = Vec::new();
        for obj in objects {
            let Some((api_version, kind, namespace, name)) = object_identity(obj) else {
                continue;
            };
            let Some(ar) = api_resource(&api_version, &kind) else {
                continue;
            };
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ar);
            let live = api.get_opt(&name).await.map_err(|e| {
                Self::cluster_err(target, &format!("cannot read {kind} {namespace}/{name}"), e)
            })?;
            let changed = match live {
                None => true,
                Some(l) => {
                    let l = serde_json::to_value(&l).unwrap_or(Value::Null);
                    super::drift::differs(obj, &l)
                }
            };
            if changed {
                out.push(format!("{kind}/{name}"));
            }
        }
        Ok(out)
    }

    async fn remove(
        &self,
        target: &DeployTarget,
        selector: &OwnerSelector,
    ) -> Result<(), DeployError> {
        let client = self.client(target).await?;
        let labels = selector.label_selector();
        for (api_version, kind, _) in MANAGED_KINDS {
            let Some(ar) = api_resource(api_version, kind) else {
                continue;
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &selector.namespace, &ar);
            let list = match api.list(&ListParams::default().labels(&labels)).await {
                Ok(l) => l,
                // The EIP CRD (or the namespace) may not exist there: nothing to remove.
                Err(e) if status_code(&e) == Some(404) => continue,
                Err(e) => {
                    return Err(Self::cluster_err(
                        target,
                        &format!("cannot list {kind}s in {}", selector.namespace),
                        e,
                    ))
                }
            };
            for item in list.items {
                let Some(name) = item.metadata.name.as_deref() else {
                    continue;
                };
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(e) if status_code(&e) == Some(404) => {}
                    Err(e) => {
                        return Err(Self::cluster_err(
                            target,
                            &format!("cannot delete {kind} {}/{name}", selector.namespace),
                            e,
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    async fn rollout_status(
        &self,
        target: &DeployTarget,
        workload: &WorkloadRef,
    ) -> Result<Rollout, DeployError> {
        if workload.kind.runs_to_completion() {
            return Ok(Rollout::NotObservable);
        }
        let client = self.client(target).await?;
        let ar = api_resource(&workload.api_version, workload.kind.as_str())
            .ok_or_else(|| DeployError::Invalid(format!("unknown kind {}", workload.kind)))?;
        let api: Api<DynamicObject> = Api::namespaced_with(client, &workload.namespace, &ar);
        let obj = api.get(&workload.name).await.map_err(|e| {
            Self::cluster_err(
                target,
                &format!(
                    "cannot read {} {}/{}",
                    workload.kind, workload.namespace, workload.name
                ),
                e,
            )
        })?;
        let value = serde_json::to_value(&obj)
            .map_err(|e| DeployError::Invalid(format!("unreadable {}: {e}", workload.kind)))?;
        Ok(rollout_from_object(workload.kind, &value))
    }

    fn scopes_kubeconfigs(&self) -> bool {
        true
    }

    async fn project_kubeconfig(
        &self,
        target: &DeployTarget,
        project: &str,
        ttl_secs: u64,
    ) -> Result<String, DeployError> {
        self.export_project_access(target, project, ttl_secs).await
    }

    async fn revoke_project_access(
        &self,
        cluster: &Cluster,
        project: &str,
    ) -> Result<(), DeployError> {
        self.revoke_access(cluster, project).await
    }

    async fn logs(
        &self,
        target: &DeployTarget,
        workload: &WorkloadRef,
        tail_lines: Option<i64>,
    ) -> Result<String, DeployError> {
        use k8s_openapi::api::core::v1::Pod;
        let client = self.client(target).await?;
        let pods: Api<Pod> = Api::namespaced(client, &workload.namespace);
        let selector = format!("{}={}", crate::render::LABEL_NODE, target.node.name);
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Self::cluster_err(target, "cannot list pods", e))?;
        let mut out = String::new();
        for pod in list.items {
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            if !name.starts_with(&workload.name) {
                continue;
            }
            let text = pods
                .logs(
                    &name,
                    &LogParams {
                        tail_lines,
                        ..LogParams::default()
                    },
                )
                .await
                .map_err(|e| {
                    Self::cluster_err(target, &format!("cannot read logs of {name}"), e)
                })?;
            out.push_str(&format!("==> {name} <==\n{text}"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_reading() {
        let dep = json!({
            "metadata": {"generation": 2},
            "spec": {"replicas": 3},
            "status": {"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2}
        });
        assert_eq!(
            rollout_from_object(WorkloadKind::Deployment, &dep),
            Rollout::Observed {
                ready: 2,
                desired: 3
            }
        );
        let stale = json!({
            "metadata": {"generation": 3},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1}
        });
        assert_eq!(
            rollout_from_object(WorkloadKind::StatefulSet, &stale),
            Rollout::Observed {
                ready: 0,
                desired: 1
            }
        );
        let ds = json!({
            "metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1}
        });
        assert_eq!(
            rollout_from_object(WorkloadKind::DaemonSet, &ds),
            Rollout::Observed {
                ready: 1,
                desired: 1
            }
        );
        assert_eq!(
            rollout_from_object(WorkloadKind::Job, &json!({})),
            Rollout::NotObservable
        );
    }

    #[test]
    fn plurals() {
        let ar = api_resource("networking.k8s.io/v1", "Ingress").expect("known");
        assert_eq!(ar.plural, "ingresses");
        assert_eq!(ar.group, "networking.k8s.io");
        assert!(api_resource("v1", "Pod").is_none());
    }
}
