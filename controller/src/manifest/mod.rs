//! Kubernetes YAML in and out: a standard multi-document manifest (one
//! workload plus the Services, Ingresses, ConfigMaps, Secrets and
//! PersistentVolumeClaims labelled `app: <name>`) read into an app's template
//! and its resources, and the same written back.
//!
//! Owns: which Kubernetes fields berth reads, which it owns or ignores
//! (`status`, `metadata.namespace`, `managedFields`, `uid`, `resourceVersion`,
//! `creationTimestamp`, `generation`, the last-applied annotation, the labels
//! and selectors it generates...), and the refusal, with its path, of every
//! other field: nothing is dropped silently. A `kubectl get -o yaml` of an
//! object berth rendered reads back as what it was rendered from.
//!
//! Must not touch: storage or HTTP (see `api`), how objects are rendered for a
//! node (see `render`, whose names and labels this module recognises).
//!
//! - `fields`: reading a mapping field by field;
//! - `workload`: the workload document and its pod template;
//! - `objects`: the documents of the resources;
//! - `export`: the app and its resources as YAML.

use std::collections::BTreeMap;

use serde::Deserialize as _;
use serde_json::Value;

use crate::model::{AppSpec, ValidationError, WorkloadKind};
use crate::render::{LABEL_APP, LABEL_BERTH_APP, LABEL_MANAGED_BY, LABEL_NODE, LABEL_RESOURCE};
use crate::resources::{
    spec_uses, ConfigMapSpec, LoadBalancerSpec, ResourceKind, RouteSpec, VolumeSpec,
};

mod export;
mod fields;
mod objects;
mod workload;

#[cfg(test)]
mod tests;

pub use export::export_manifest;

use fields::{Fields, Problems};

/// How the manifest was written for this registry.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The registry host rendered objects name their images with (stripped).
    pub image_host: Option<String>,
}

/// An app's template and the resources that travel with it, as a manifest says.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub spec: AppSpec,
    pub resources: Vec<ManifestResource>,
}

/// A resource of the manifest, before it is stored (secret values in clear).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestResource {
    pub name: String,
    pub draft: Draft,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Draft {
    LoadBalancer(LoadBalancerSpec),
    Route(RouteSpec),
    ConfigMap(ConfigMapSpec),
    /// The values, or `None` for the project's existing secret of that name
    /// (an export never carries secret values).
    Secret(Option<BTreeMap<String, Vec<u8>>>),
    Volume(VolumeSpec),
}

impl Draft {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Draft::LoadBalancer(_) => ResourceKind::LoadBalancers,
            Draft::Route(_) => ResourceKind::Routes,
            Draft::ConfigMap(_) => ResourceKind::ConfigMaps,
            Draft::Secret(_) => ResourceKind::Secrets,
            Draft::Volume(_) => ResourceKind::Volumes,
        }
    }
}

/// The MIME types a manifest may be sent or asked for with.
pub fn is_yaml_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    matches!(
        essence.to_ascii_lowercase().as_str(),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
    )
}

/// Labels berth puts on what it renders; read back, they are ignored.
const OWNED_LABELS: &[&str] = &[
    LABEL_MANAGED_BY,
    LABEL_BERTH_APP,
    crate::render::LABEL_PROJECT,
    crate::render::LABEL_VERSION,
    LABEL_NODE,
    LABEL_RESOURCE,
    crate::render::LABEL_RESOURCE_KIND,
];

/// Annotations the API server or kubectl write; read back, they are ignored.
fn ignored_annotation(key: &str) -> bool {
    key == "kubectl.kubernetes.io/last-applied-configuration"
        || key == "deployment.kubernetes.io/revision"
        || key.starts_with("pv.kubernetes.io/")
        || key.starts_with("volume.kubernetes.io/")
        || key.starts_with("volume.beta.kubernetes.io/")
}

/// What an object's metadata says.
#[derive(Debug, Clone, Default)]
struct Meta {
    name: String,
    /// Labels berth does not own (`app` included).
    labels: BTreeMap<String, String>,
    /// `berth.dev/node`: the object was rendered for that node.
    node: Option<String>,
    /// `berth.dev/resource`: the resource a rendered object came from.
    resource: Option<String>,
    /// Rendered by berth (`app.kubernetes.io/managed-by: berth`).
    rendered: bool,
}

impl Meta {
    /// The name a reference to `object` (a rendered object's name) stands for.
    fn unrender(&self, object: &str) -> String {
        match &self.node {
            Some(node) => object
                .strip_suffix(&format!("-{node}"))
                .unwrap_or(object)
                .to_string(),
            None => object.to_string(),
        }
    }
}

/// Reads `metadata`: a name, labels, annotations berth accepts; the fields
/// the API server owns are ignored.
fn read_meta(p: &mut Problems, v: Option<&Value>, path: &str) -> Meta {
    let mut meta = Meta::default();
    let empty = Value::Null;
    let Some(mut f) = Fields::new(p, path, v.unwrap_or(&empty)) else {
        return meta;
    };
    f.ignore(&[
        "namespace",
        "managedFields",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "selfLink",
        "finalizers",
    ]);
    meta.name = f.string(p, "name").unwrap_or_default();
    for (k, v) in f.string_map(p, "labels") {
        if k == LABEL_NODE {
            meta.node = Some(v);
        } else if k == LABEL_RESOURCE {
            meta.resource = Some(v);
        } else if k == LABEL_MANAGED_BY {
            meta.rendered = v == crate::model::MANAGER;
        } else if !OWNED_LABELS.contains(&k.as_str()) {
            meta.labels.insert(k, v);
        }
    }
    let at = f.at("annotations");
    for k in f.string_map(p, "annotations").keys() {
        if !ignored_annotation(k) {
            p.fail(
                &fields::join(&at, k),
                "berth does not keep annotations; remove it",
            );
        }
    }
    f.finish(p);
    meta
}

/// Which app a resource's document says it belongs to.
enum Owner {
    /// Labelled `app: <name>`.
    App(String),
    /// Rendered by berth from a resource of the project (config maps, secrets
    /// and volumes are rendered without an app label: apps share them).
    Rendered,
    Unlabelled,
}

impl Owner {
    fn of(meta: &Meta) -> Owner {
        match meta.labels.get(LABEL_APP) {
            Some(app) => Owner::App(app.clone()),
            None if meta.rendered && meta.resource.is_some() => Owner::Rendered,
            None => Owner::Unlabelled,
        }
    }
}

/// One document of the manifest, as read.
enum Document {
    Workload(String, AppSpec, Meta),
    Resource(ManifestResource, Owner),
    /// An object berth generates itself (a StatefulSet's headless Service).
    Generated,
}

/// Reads a multi-document manifest (a `kind: List`, as `kubectl get -o yaml`
/// writes it, counts as its items).
pub fn parse_manifest(text: &str, options: &ImportOptions) -> Result<Manifest, ValidationError> {
    let mut p = Problems::default();
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(v) if v["kind"] == "List" => match v["items"].as_array() {
                Some(items) => docs.extend(items.iter().cloned()),
                None => p.fail(&format!("document {}", i + 1), "a List needs items"),
            },
            Ok(v) => docs.push(v),
            Err(e) => p.fail(
                &format!("document {}", i + 1),
                format!("not valid YAML: {e}"),
            ),
        }
    }
    let mut workloads = Vec::new();
    let mut resources = Vec::new();
    for doc in &docs {
        p.document = format!(
            "{}/{}",
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        match read_document(&mut p, doc, options) {
            Some(Document::Workload(name, spec, meta)) => workloads.push((name, spec, meta)),
            Some(Document::Resource(r, app)) => resources.push((p.document.clone(), r, app)),
            Some(Document::Generated) | None => {}
        }
    }
    p.document.clear();
    if workloads.len() != 1 {
        p.fail(
            "",
            format!(
                "the manifest has {} workloads; an app has exactly one (Deployment, \
                 StatefulSet, Job, CronJob or DaemonSet)",
                workloads.len()
            ),
        );
        return Err(ValidationError { problems: p.list });
    }
    let (name, spec, _) = workloads.remove(0);
    let resources = associate(&mut p, &name, &spec, resources);
    if let Err(e) = spec.validate() {
        for problem in e.problems {
            p.fail("", format!("the app's template: {problem}"));
        }
    }
    if p.list.is_empty() {
        Ok(Manifest {
            name,
            spec,
            resources,
        })
    } else {
        Err(ValidationError { problems: p.list })
    }
}

fn read_document(p: &mut Problems, doc: &Value, options: &ImportOptions) -> Option<Document> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let expected = match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "Ingress" => "networking.k8s.io/v1",
        "Service" | "ConfigMap" | "Secret" | "PersistentVolumeClaim" => "v1",
        "" => {
            p.fail("kind", "every document needs a kind");
            return None;
        }
        other => {
            p.fail(
                "kind",
                format!(
                    "berth does not manage {other} objects in an app: give one Deployment, \
                     StatefulSet, Job, CronJob or DaemonSet, and Services, Ingresses, \
                     ConfigMaps, Secrets and PersistentVolumeClaims"
                ),
            );
            return None;
        }
    };
    if api_version != expected {
        p.fail(
            "apiVersion",
            format!("{kind} is read as {expected}, not {api_version:?}"),
        );
        return None;
    }
    let workload_kind = match kind {
        "Deployment" => Some(WorkloadKind::Deployment),
        "StatefulSet" => Some(WorkloadKind::StatefulSet),
        "DaemonSet" => Some(WorkloadKind::DaemonSet),
        "Job" => Some(WorkloadKind::Job),
        "CronJob" => Some(WorkloadKind::CronJob),
        _ => None,
    };
    match workload_kind {
        Some(k) => workload::read(p, doc, k, options).map(|(n, s, m)| Document::Workload(n, s, m)),
        None => objects::read(p, doc, kind),
    }
}

/// Keeps the resources that belong to the app: labelled `app: <name>` (or
/// rendered by berth from a resource), used by the template where that is
/// how an app uses them, each named once.
fn associate(
    p: &mut Problems,
    app: &str,
    spec: &AppSpec,
    resources: Vec<(String, ManifestResource, Owner)>,
) -> Vec<ManifestResource> {
    let mut out: Vec<ManifestResource> = Vec::new();
    for (document, r, label) in resources {
        p.document = document;
        let kind = r.draft.kind();
        match label {
            Owner::App(l) if l == app => {}
            Owner::Rendered => {}
            Owner::App(l) => {
                p.fail(
                    "metadata.labels.app",
                    format!("belongs to app {l:?}, not to {app:?}"),
                );
                continue;
            }
            Owner::Unlabelled => {
                p.fail(
                    "metadata.labels.app",
                    format!("label it app: {app} to make it part of the app"),
                );
                continue;
            }
        }
        let used = match &r.draft {
            Draft::LoadBalancer(lb) => lb.owner_app() == Some(app),
            Draft::Route(_) => true,
            _ => spec_uses(spec, kind, &r.name),
        };
        if !used {
            let how = match kind {
                ResourceKind::LoadBalancers => "its selector must be app: <the app>".to_string(),
                _ => format!(
                    "the app's pods do not use {} {:?}; mount it or use it in envFrom",
                    kind.singular(),
                    r.name
                ),
            };
            p.fail("", how);
            continue;
        }
        if out
            .iter()
            .any(|o| o.name == r.name && o.draft.kind() == kind)
        {
            p.fail("metadata.name", "given twice in the manifest");
            continue;
        }
        out.push(r);
    }
    p.document.clear();
    out
}
