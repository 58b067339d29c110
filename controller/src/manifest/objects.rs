//! The documents of the resources that travel with an app: Service (load
//! balancer), Ingress (route), ConfigMap, Secret, PersistentVolumeClaim
//! (local volume).
//!
//! Owns: which of their fields map to a resource's spec, and which are
//! berth's or the API server's. Must not touch: the workload (see `workload`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::model::Protocol;
use crate::render::{LABEL_APP, LABEL_NODE};
use crate::resources::{
    default_storage_class, ConfigMapSpec, LoadBalancerSpec, RouteSpec, ServicePort, ServiceType,
    VolumeSpec,
};

use super::fields::{join, Fields, Problems};
use super::{read_meta, Document, Draft, ManifestResource, Meta, Owner};

/// Reads a resource's document (`kind` is one of the five, with its apiVersion).
pub(super) fn read(p: &mut Problems, doc: &Value, kind: &str) -> Option<Document> {
    let mut top = Fields::new(p, "", doc)?;
    top.ignore(&["apiVersion", "kind", "status"]);
    let meta = read_meta(p, top.take("metadata"), "metadata");
    let draft = match kind {
        "Service" => {
            let spec = top.take("spec");
            if is_headless(spec) && meta.rendered {
                // The governing Service berth renders beside a StatefulSet.
                top.ignore(&["spec"]);
                top.finish(p);
                return Some(Document::Generated);
            }
            service(p, spec, &meta)?
        }
        "Ingress" => ingress(p, top.take("spec"), &meta)?,
        "ConfigMap" => {
            top.fixed(p, "immutable", json!(false));
            Draft::ConfigMap(ConfigMapSpec {
                data: top.string_map(p, "data"),
            })
        }
        "Secret" => secret(p, &mut top),
        _ => volume(p, top.take("spec"))?,
    };
    top.finish(p);
    let name = meta.resource.clone().unwrap_or_else(|| meta.name.clone());
    Some(Document::Resource(
        ManifestResource { name, draft },
        Owner::of(&meta),
    ))
}

fn is_headless(spec: Option<&Value>) -> bool {
    spec.is_some_and(|s| s["clusterIP"] == "None")
}

fn service(p: &mut Problems, spec: Option<&Value>, meta: &Meta) -> Option<Draft> {
    let empty = Value::Null;
    let mut f = Fields::new(p, "spec", spec.unwrap_or(&empty))?;
    // Assigned by the API server.
    f.ignore(&[
        "clusterIP",
        "clusterIPs",
        "ipFamilies",
        "healthCheckNodePort",
    ]);
    if is_headless(spec) {
        p.fail(
            "spec.clusterIP",
            "berth generates the headless Service of a StatefulSet itself; remove this one",
        );
    }
    f.fixed(p, "ipFamilyPolicy", json!("SingleStack"));
    f.fixed(p, "sessionAffinity", json!("None"));
    f.fixed(p, "internalTrafficPolicy", json!("Cluster"));
    let service_type = match f.string(p, "type").as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIP,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some(other) => {
            p.fail(
                "spec.type",
                format!("{other:?}: use ClusterIP or LoadBalancer"),
            );
            ServiceType::ClusterIP
        }
    };
    if service_type == ServiceType::LoadBalancer {
        // berth keeps the client's address and sends traffic to this node only.
        f.fixed(p, "externalTrafficPolicy", json!("Local"));
        f.fixed(p, "allocateLoadBalancerNodePorts", json!(true));
    }
    let mut app = meta.labels.get(LABEL_APP).cloned().unwrap_or_default();
    let at = f.at("selector");
    for (k, v) in f.string_map(p, "selector") {
        match k.as_str() {
            LABEL_APP => app = v,
            LABEL_NODE => {}
            _ => p.fail(
                &join(&at, &k),
                "berth selects the app's pods by their app label only",
            ),
        }
    }
    let mut ports = Vec::new();
    for (at, v) in f.list(p, "ports") {
        if let Some(port) = service_port(p, &at, v) {
            ports.push(port);
        }
    }
    f.finish(p);
    Some(Draft::LoadBalancer(LoadBalancerSpec {
        app: Some(app),
        selector: Default::default(),
        service_type,
        ports,
    }))
}

fn service_port(p: &mut Problems, path: &str, v: &Value) -> Option<ServicePort> {
    let mut f = Fields::new(p, path, v)?;
    // Assigned by the API server to LoadBalancer Services.
    f.ignore(&["nodePort"]);
    let protocol = match f.string(p, "protocol").as_deref() {
        None | Some("TCP") => Protocol::TCP,
        Some("UDP") => Protocol::UDP,
        Some("SCTP") => Protocol::SCTP,
        Some(other) => {
            p.fail(
                &f.at("protocol"),
                format!("{other:?} is not TCP, UDP or SCTP"),
            );
            Protocol::TCP
        }
    };
    let port = f.u32(p, "port").unwrap_or(0);
    let target_port = match f.take("targetPort") {
        None => None,
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(_) => {
            p.fail(
                &f.at("targetPort"),
                "give the container port's number (berth does not resolve port names here)",
            );
            None
        }
    };
    let out = ServicePort {
        name: f.string(p, "name"),
        port,
        target_port,
        protocol,
    };
    f.finish(p);
    Some(out)
}

/// One rule with one HTTP path to a Service's port number.
fn ingress(p: &mut Problems, spec: Option<&Value>, meta: &Meta) -> Option<Draft> {
    let empty = Value::Null;
    let mut f = Fields::new(p, "spec", spec.unwrap_or(&empty))?;
    let rules = f.list(p, "rules");
    f.finish(p);
    let [(at, rule)] = rules.as_slice() else {
        p.fail(
            "spec.rules",
            "berth routes one host and path; give exactly one rule",
        );
        return None;
    };
    let mut rf = Fields::new(p, at, rule)?;
    let host = rf.string(p, "host").unwrap_or_default();
    let mut hf = Fields::new(p, &rf.at("http"), rf.take("http").unwrap_or(&empty))?;
    rf.finish(p);
    let paths = hf.list(p, "paths");
    let paths_at = hf.at("paths");
    hf.finish(p);
    let [(at, path)] = paths.as_slice() else {
        p.fail(&paths_at, "berth routes one path; give exactly one");
        return None;
    };
    let mut pf = Fields::new(p, at, path)?;
    pf.fixed(p, "pathType", json!("Prefix"));
    let route_path = pf.string(p, "path").unwrap_or_else(|| "/".into());
    let mut bf = Fields::new(p, &pf.at("backend"), pf.take("backend").unwrap_or(&empty))?;
    pf.finish(p);
    let mut sf = Fields::new(p, &bf.at("service"), bf.take("service").unwrap_or(&empty))?;
    bf.finish(p);
    let service = sf.string(p, "name").unwrap_or_default();
    let mut portf = Fields::new(p, &sf.at("port"), sf.take("port").unwrap_or(&empty))?;
    sf.finish(p);
    let port = portf.u32(p, "number").unwrap_or(0);
    portf.finish(p);
    Some(Draft::Route(RouteSpec {
        host,
        path: route_path,
        load_balancer: meta.unrender(&service),
        port,
    }))
}

/// `data` (base64) and `stringData`; neither means the project's secret.
fn secret(p: &mut Problems, f: &mut Fields<'_>) -> Draft {
    f.fixed(p, "type", json!("Opaque"));
    f.fixed(p, "immutable", json!(false));
    let given = f.take("data").is_some() || f.take("stringData").is_some();
    if !given {
        return Draft::Secret(None);
    }
    let mut values: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let at = f.at("data");
    for (k, v) in f.string_map(p, "data") {
        match b64.decode(v.trim()) {
            Ok(bytes) => {
                values.insert(k, bytes);
            }
            // Never repeat the value: it is a secret.
            Err(_) => p.fail(
                &join(&at, &k),
                "is not base64; use stringData for plain text",
            ),
        }
    }
    for (k, v) in f.string_map(p, "stringData") {
        values.insert(k, v.into_bytes());
    }
    Draft::Secret(Some(values))
}

fn volume(p: &mut Problems, spec: Option<&Value>) -> Option<Draft> {
    let empty = Value::Null;
    let mut f = Fields::new(p, "spec", spec.unwrap_or(&empty))?;
    f.fixed(p, "accessModes", json!(["ReadWriteOnce"]));
    f.fixed(p, "volumeMode", json!("Filesystem"));
    // Bound by the cluster.
    f.ignore(&["volumeName"]);
    let storage_class = f
        .string(p, "storageClassName")
        .unwrap_or_else(default_storage_class);
    let mut rf = Fields::new(p, &f.at("resources"), f.take("resources").unwrap_or(&empty))?;
    let mut requests = rf.string_map(p, "requests");
    rf.finish(p);
    let capacity = requests.remove("storage").unwrap_or_else(|| {
        p.fail(
            "spec.resources.requests.storage",
            "give the volume's size, e.g. 10Gi",
        );
        String::new()
    });
    for k in requests.keys() {
        p.fail(
            &format!("spec.resources.requests.{k}"),
            "a volume requests storage only",
        );
    }
    f.finish(p);
    Some(Draft::Volume(VolumeSpec {
        capacity,
        storage_class,
    }))
}
