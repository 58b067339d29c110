//! The objects of resources that travel with apps, one copy per node:
//! config maps, secrets, volume claims, services (load balancers), EIPs and
//! ingresses (routes).
//!
//! Owns: their shapes and labels (an app-owned one carries the app's labels,
//! so it goes when the app goes). Must not touch: the workload (see `workload`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::model::{Node, MANAGER};
use crate::resources::{
    EipSpec, EipTarget, LoadBalancerSpec, ResourceKind, RouteSpec, ServiceType, VolumeSpec,
};

use super::{
    labels_value, metadata, resource_object_name, volume_claim_name, LABEL_APP, LABEL_BERTH_APP,
    LABEL_MANAGED_BY, LABEL_NODE, LABEL_PROJECT, LABEL_RESOURCE,
};

pub const LABEL_RESOURCE_KIND: &str = "berth.dev/resource-kind";

/// Labels of a resource's object on a node; `app` for the app-owned ones
/// (load balancers, EIPs, routes), which go when the app goes.
fn resource_labels(
    project: &str,
    node: &str,
    kind: ResourceKind,
    name: &str,
    app: Option<&str>,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_RESOURCE_KIND.to_string(), kind.as_str().to_string()),
        (LABEL_RESOURCE.to_string(), name.to_string()),
    ]);
    if let Some(app) = app {
        l.insert(LABEL_APP.into(), app.into());
        l.insert(LABEL_BERTH_APP.into(), app.into());
    }
    l
}

/// Labels selecting one resource's objects on a node (for removal).
pub fn resource_selector_labels(
    project: &str,
    node: &str,
    kind: ResourceKind,
    name: &str,
) -> BTreeMap<String, String> {
    resource_labels(project, node, kind, name, None)
}

pub fn render_config_map(
    project: &str,
    name: &str,
    data: &BTreeMap<String, String>,
    node: &Node,
) -> Value {
    let labels = resource_labels(project, &node.name, ResourceKind::ConfigMaps, name, None);
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "data": data,
    })
}

/// A Secret with its values (already decrypted) base64-encoded as Kubernetes wants.
pub fn render_secret(
    project: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    node: &Node,
) -> Value {
    use base64::Engine as _;
    let labels = resource_labels(project, &node.name, ResourceKind::Secrets, name, None);
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(b64.encode(v))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "data": data,
    })
}

pub fn render_volume_claim(project: &str, name: &str, spec: &VolumeSpec, node: &Node) -> Value {
    let labels = resource_labels(project, &node.name, ResourceKind::Volumes, name, None);
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(&volume_claim_name(name, &node.name), project, &labels),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": spec.storage_class,
            "resources": { "requests": { "storage": spec.capacity } },
        },
    })
}

pub fn render_service(project: &str, name: &str, lb: &LoadBalancerSpec, node: &Node) -> Value {
    let labels = resource_labels(
        project,
        &node.name,
        ResourceKind::LoadBalancers,
        name,
        lb.owner_app(),
    );
    let ports: Vec<Value> = lb
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({
                "port": p.port,
                "targetPort": p.target_port.unwrap_or(p.port),
                "protocol": p.protocol.as_str(),
            });
            if let Some(n) = &p.name {
                v["name"] = n.clone().into();
            }
            v
        })
        .collect();
    let service_type = match lb.service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    let mut spec = json!({
        "type": service_type,
        "selector": labels_value(&service_selector(lb, &node.name)),
        "ports": ports,
    });
    if lb.service_type == ServiceType::LoadBalancer {
        // Traffic for this node's pods stays on this node.
        spec["externalTrafficPolicy"] = "Local".into();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "spec": spec,
    })
}

/// The pods a load balancer sends traffic to on a node: those of the apps its
/// selector binds (pods carry their app's labels and `app`), on that node.
fn service_selector(lb: &LoadBalancerSpec, node: &str) -> BTreeMap<String, String> {
    let mut s = lb.app_selector();
    s.insert(LABEL_NODE.to_string(), node.to_string());
    s
}

/// The `ElasticIP` custom resource (CRD in `controller/crds/eip.yaml`).
/// `app`: the one app its load balancer binds by name, if any (the EIP goes
/// with that app).
/// The ElasticIP of an EIP on a node: `address` (static, or what the pool
/// gave this node), and where the traffic goes: a load balancer's Service
/// (`serviceName`), a static `containerIP`, or the pod a label `selector`
/// picks (one replica).
pub fn render_eip(
    project: &str,
    name: &str,
    eip: &EipSpec,
    address: &str,
    app: Option<&str>,
    node: &Node,
) -> Value {
    let labels = resource_labels(project, &node.name, ResourceKind::Eips, name, app);
    let mut spec = Map::new();
    spec.insert("address".into(), json!(address));
    match eip.target() {
        Some(EipTarget::LoadBalancer(lb)) => {
            spec.insert(
                "serviceName".into(),
                json!(resource_object_name(lb, &node.name)),
            );
        }
        Some(EipTarget::ContainerIp(ip)) => {
            spec.insert("containerIP".into(), json!(ip));
        }
        Some(EipTarget::Selector(sel)) => {
            // The app label of a pod berth renders carries the app's name.
            let text: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
            spec.insert("selector".into(), json!(text.join(",")));
        }
        None => {}
    }
    spec.insert("nodeName".into(), json!(node.k8s_node_name));
    json!({
        "apiVersion": "berth.dev/v1",
        "kind": "ElasticIP",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "spec": spec,
    })
}

pub fn render_route(
    project: &str,
    name: &str,
    route: &RouteSpec,
    app: Option<&str>,
    node: &Node,
) -> Value {
    let labels = resource_labels(project, &node.name, ResourceKind::Routes, name, app);
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(&resource_object_name(name, &node.name), project, &labels),
        "spec": {
            "rules": [{
                "host": route.host,
                "http": { "paths": [{
                    "path": route.path,
                    "pathType": "Prefix",
                    "backend": { "service": {
                        "name": resource_object_name(&route.load_balancer, &node.name),
                        "port": { "number": route.port },
                    }},
                }]},
            }],
        },
    })
}
