//! A project's access to its namespace on a cluster, for the kubeconfigs
//! people export: a ServiceAccount, a namespaced Role, a RoleBinding, the
//! namespace held to the `restricted` Pod Security standard, and tokens from
//! the TokenRequest API with a bounded lifetime.
//!
//! The Role grants what a project maintainer needs to look after what berth
//! deploys, and nothing that reaches past the namespace or past itself:
//! - the kinds berth deploys (Deployments, StatefulSets, DaemonSets, Jobs,
//!   CronJobs, Services, Ingresses, ConfigMaps, PersistentVolumeClaims,
//!   ElasticIPs): read and write;
//! - Secrets: write only (create, update, patch, delete), never get, list or
//!   watch: berth never shows a secret's values, neither does this;
//! - pods: get, list, watch, delete (a restart); pods/log: get; events: read.
//!
//! No ClusterRole, no cluster-scoped kind, no wildcard, no pods/exec, attach
//! or port-forward, no roles, bindings or service accounts (so no `bind`,
//! `escalate`, `impersonate`, or minting further tokens).
//!
//! Revoking deletes the ServiceAccount, which invalidates every token bound to
//! it, and creates it again for the next export.
//!
//! Must not touch: berth's own credential (the stored kubeconfig is used to
//! make these objects; only its server and CA go into an export) — and tokens
//! are never logged.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PostParams,
};
use serde_json::{json, Value};

use super::kube::KubeDeployer;
use super::{DeployError, DeployTarget};
use crate::model::{scoped_kubeconfig, Cluster, MANAGER};
use crate::render::LABEL_MANAGED_BY;

/// Name of the ServiceAccount, Role and RoleBinding in each project's namespace.
pub const ACCESS_NAME: &str = "berth-project";

const WRITE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// The Role's rules (see the module documentation).
pub fn access_rules() -> Value {
    json!([
        { "apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": WRITE },
        { "apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": WRITE },
        { "apiGroups": [""], "resources": ["services", "configmaps", "persistentvolumeclaims"], "verbs": WRITE },
        { "apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": WRITE },
        { "apiGroups": ["berth.dev"], "resources": ["elasticips"], "verbs": WRITE },
        { "apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "update", "patch", "delete"] },
        { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"] },
        { "apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"] },
        { "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["get", "list", "watch"] },
    ])
}

fn labels() -> Value {
    json!({ LABEL_MANAGED_BY: MANAGER })
}

fn service_account(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": ACCESS_NAME, "namespace": namespace, "labels": labels() },
        // Its token is asked for; pods never mount it.
        "automountServiceAccountToken": false,
    })
}

fn role(namespace: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": ACCESS_NAME, "namespace": namespace, "labels": labels() },
        "rules": access_rules(),
    })
}

fn role_binding(namespace: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": ACCESS_NAME, "namespace": namespace, "labels": labels() },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCESS_NAME },
        "subjects": [{ "kind": "ServiceAccount", "name": ACCESS_NAME, "namespace": namespace }],
    })
}

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

impl KubeDeployer {
    async fn apply_access(
        &self,
        client: &kube::Client,
        cluster: &Cluster,
        namespace: &str,
        objects: &[(ApiResource, Value)],
    ) -> Result<(), DeployError> {
        for (ar, obj) in objects {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
            api.patch(ACCESS_NAME, &Self::params(), &Patch::Apply(obj))
                .await
                .map_err(|e| {
                    Self::err_on(
                        cluster,
                        &format!("cannot apply {} {namespace}/{ACCESS_NAME}", ar.kind),
                        e,
                    )
                })?;
        }
        Ok(())
    }

    /// Applies the project's namespace, ServiceAccount, Role and RoleBinding,
    /// asks for a token of `ttl_secs`, and writes the kubeconfig.
    pub(super) async fn export_project_access(
        &self,
        target: &DeployTarget,
        project: &str,
        ttl_secs: u64,
    ) -> Result<String, DeployError> {
        let cluster = &target.cluster;
        let client = self.client_for(cluster).await?;
        self.ensure_namespace(&client, target, project).await?;
        let objects = [
            (
                resource("", "ServiceAccount", "serviceaccounts"),
                service_account(project),
            ),
            (
                resource("rbac.authorization.k8s.io", "Role", "roles"),
                role(project),
            ),
            (
                resource("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
                role_binding(project),
            ),
        ];
        self.apply_access(&client, cluster, project, &objects)
            .await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, project);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        let answer = accounts
            .create_token_request(ACCESS_NAME, &PostParams::default(), &request)
            .await
            .map_err(|e| Self::err_on(cluster, "cannot request a token", e))?;
        let token = answer
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Self::err_on(cluster, "cannot request a token", "the answer has none")
            })?;
        let context = format!("{project}@{}", target.node.name);
        let user = format!("{ACCESS_NAME}-{project}");
        scoped_kubeconfig(&cluster.kubeconfig, &context, project, &user, &token)
            .map_err(|m| Self::err_on(cluster, "cannot write the kubeconfig", m))
    }

    /// Deletes the project's ServiceAccount (its tokens die with it) and, if
    /// there was one, creates it again.
    pub(super) async fn revoke_access(
        &self,
        cluster: &Cluster,
        project: &str,
    ) -> Result<(), DeployError> {
        let client = self.client_for(cluster).await?;
        let ar = resource("", "ServiceAccount", "serviceaccounts");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), project, &ar);
        match api.delete(ACCESS_NAME, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => {
                return Err(Self::err_on(
                    cluster,
                    &format!("cannot delete ServiceAccount {project}/{ACCESS_NAME}"),
                    e,
                ))
            }
        }
        self.apply_access(&client, cluster, project, &[(ar, service_account(project))])
            .await
    }
}
