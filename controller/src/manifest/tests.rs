//! Manifests in and out: lossless round trips, `kubectl get -o yaml` of what
//! berth rendered, and refusals that name the field.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::model::{EnvFrom, Volume, VolumeMount, WorkloadKind};
use crate::render::fixtures::{full_spec, node, render_kind};
use crate::resources::{Resource, ResourceSpec, SealedValue, SecretSpec, ServicePort, ServiceType};

fn resource(name: &str, spec: ResourceSpec) -> Resource {
    let kind = match &spec {
        ResourceSpec::ConfigMap(_) => ResourceKind::ConfigMaps,
        ResourceSpec::Secret(_) => ResourceKind::Secrets,
        ResourceSpec::Volume(_) => ResourceKind::Volumes,
        ResourceSpec::LoadBalancer(_) => ResourceKind::LoadBalancers,
        ResourceSpec::Route(_) => ResourceKind::Routes,
        ResourceSpec::Eip(_) => ResourceKind::Eips,
    };
    Resource {
        project: "shop".into(),
        name: name.into(),
        kind,
        spec,
        description: String::new(),
        created_at: 0,
        updated_at: 0,
    }
}

/// `full_spec` using a config map, a secret and a volume, with a load
/// balancer and a route in front.
fn app_with_resources(kind: WorkloadKind) -> (AppSpec, Vec<Resource>) {
    let mut spec = full_spec(kind);
    spec.run_as_user = Some(1000);
    spec.run_as_group = Some(2000);
    spec.volumes.push(Volume {
        name: "settings".into(),
        config_map: Some("settings".into()),
        ..Volume::default()
    });
    spec.volumes.push(Volume {
        name: "data".into(),
        persistent_volume_claim: Some("data".into()),
        ..Volume::default()
    });
    spec.containers[0].volume_mounts.push(VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        read_only: true,
        sub_path: Some("web".into()),
    });
    spec.containers[1].env_from.push(EnvFrom {
        config_map: None,
        secret: Some("keys".into()),
    });
    let sealed = SealedValue {
        nonce: "n".into(),
        ciphertext: "c".into(),
        key_id: None,
    };
    let resources = vec![
        resource(
            "settings",
            ResourceSpec::ConfigMap(ConfigMapSpec {
                data: BTreeMap::from([("mode".into(), "edge".into())]),
            }),
        ),
        resource(
            "keys",
            ResourceSpec::Secret(SecretSpec {
                data: BTreeMap::from([("token".into(), sealed)]),
            }),
        ),
        resource(
            "data",
            ResourceSpec::Volume(VolumeSpec {
                capacity: "1Gi".into(),
                storage_class: "local-storage".into(),
            }),
        ),
        resource(
            "web-lb",
            ResourceSpec::LoadBalancer(LoadBalancerSpec {
                app: Some("web".into()),
                selector: Default::default(),
                service_type: ServiceType::ClusterIP,
                ports: vec![ServicePort {
                    name: None,
                    port: 80,
                    target_port: Some(8080),
                    protocol: Protocol::TCP,
                }],
            }),
        ),
        resource(
            "web",
            ResourceSpec::Route(RouteSpec {
                host: "shop.example".into(),
                path: "/".into(),
                load_balancer: "web-lb".into(),
                port: 80,
            }),
        ),
    ];
    (spec, resources)
}

use crate::model::Protocol;

fn problems(yaml: &str) -> String {
    match parse_manifest(yaml, &ImportOptions::default()) {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(e) => e.problems.join("\n"),
    }
}

#[test]
fn export_then_import_is_lossless() {
    for kind in [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
        WorkloadKind::DaemonSet,
    ] {
        let (spec, resources) = app_with_resources(kind);
        let yaml = export_manifest("web", &spec, &resources);
        let m = parse_manifest(&yaml, &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{kind}: {e}\n{yaml}"));
        assert_eq!(m.name, "web");
        assert_eq!(m.spec, spec, "{kind}\n{yaml}");
        let mut got: Vec<(ResourceKind, String)> = m
            .resources
            .iter()
            .map(|r| (r.draft.kind(), r.name.clone()))
            .collect();
        got.sort();
        let mut want: Vec<(ResourceKind, String)> =
            resources.iter().map(|r| (r.kind, r.name.clone())).collect();
        want.sort();
        assert_eq!(got, want);
        for r in &m.resources {
            let original = resources
                .iter()
                .find(|o| o.name == r.name && o.kind == r.draft.kind())
                .expect("exported");
            let same = match (&r.draft, &original.spec) {
                (Draft::LoadBalancer(a), ResourceSpec::LoadBalancer(b)) => a == b,
                (Draft::Route(a), ResourceSpec::Route(b)) => a == b,
                (Draft::ConfigMap(a), ResourceSpec::ConfigMap(b)) => a == b,
                (Draft::Volume(a), ResourceSpec::Volume(b)) => a == b,
                // The values stay in berth: the export stands for the project's secret.
                (Draft::Secret(None), ResourceSpec::Secret(_)) => true,
                _ => false,
            };
            assert!(same, "{kind} {}: {:?}", r.name, r.draft);
        }
    }
}

/// What the API server adds to a rendered object, as `kubectl get -o yaml`
/// shows it.
fn as_the_server_shows_it(mut obj: Value) -> Value {
    let meta = &mut obj["metadata"];
    meta["uid"] = json!("0c3a2b1e-1111-2222-3333-444455556666");
    meta["resourceVersion"] = json!("4711");
    meta["generation"] = json!(2);
    meta["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
    meta["managedFields"] = json!([{"manager": "berth", "operation": "Apply"}]);
    meta["annotations"] = json!({"deployment.kubernetes.io/revision": "2"});
    obj["status"] = json!({"observedGeneration": 2, "replicas": 2});
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let spec = &mut obj["spec"];
    match kind.as_str() {
        "Deployment" => {
            spec["progressDeadlineSeconds"] = json!(600);
            spec["revisionHistoryLimit"] = json!(10);
            spec["strategy"] = json!({"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
        }
        "Service" => {
            spec["clusterIP"] = json!("10.43.0.10");
            spec["clusterIPs"] = json!(["10.43.0.10"]);
            spec["ipFamilies"] = json!(["IPv4"]);
            spec["ipFamilyPolicy"] = json!("SingleStack");
            spec["sessionAffinity"] = json!("None");
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
        _ => {}
    }
    if let Some(tpl) = obj["spec"].get_mut("template") {
        tpl["metadata"]["creationTimestamp"] = Value::Null;
        let pod = &mut tpl["spec"];
        pod["dnsPolicy"] = json!("ClusterFirst");
        pod["schedulerName"] = json!("default-scheduler");
        pod["terminationGracePeriodSeconds"] = json!(30);
        if let Some(cs) = pod["containers"].as_array_mut() {
            for c in cs {
                c["terminationMessagePath"] = json!("/dev/termination-log");
                c["terminationMessagePolicy"] = json!("File");
                if let Some(p) = c.get_mut("livenessProbe") {
                    p["successThreshold"] = json!(1);
                    p["failureThreshold"] = json!(3);
                    p["httpGet"]["scheme"] = json!("HTTP");
                }
            }
        }
    }
    obj
}

#[test]
fn kubectl_get_of_what_berth_rendered_is_accepted() {
    let mut items: Vec<Value> = render_kind(WorkloadKind::Deployment)
        .into_iter()
        .map(as_the_server_shows_it)
        .collect();
    let lb = LoadBalancerSpec {
        app: Some("web".into()),
        selector: Default::default(),
        service_type: ServiceType::ClusterIP,
        ports: vec![ServicePort {
            name: None,
            port: 80,
            target_port: None,
            protocol: Protocol::TCP,
        }],
    };
    items.push(as_the_server_shows_it(crate::render::render_service(
        "shop",
        "web-lb",
        &lb,
        &node(),
    )));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items,
                      "metadata": {"resourceVersion": ""}});
    let yaml = serde_yaml::to_string(&list).expect("yaml");
    let m = parse_manifest(&yaml, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.name, "web");
    let want = full_spec(WorkloadKind::Deployment);
    assert_eq!(m.spec.kind, want.kind);
    assert_eq!(m.spec.replicas, want.replicas);
    assert_eq!(m.spec.labels, want.labels);
    assert_eq!(m.spec.volumes, want.volumes);
    let c = &m.spec.containers[0];
    assert_eq!(
        c.image,
        format!("shop/web@{}", crate::render::fixtures::digest('a'))
    );
    assert_eq!(c.command, want.containers[0].command);
    assert_eq!(c.env, want.containers[0].env);
    assert_eq!(c.ports, want.containers[0].ports);
    assert_eq!(c.resources, want.containers[0].resources);
    assert_eq!(m.resources.len(), 1);
    assert_eq!(m.resources[0].name, "web-lb");
    assert_eq!(
        m.resources[0].draft,
        Draft::LoadBalancer(LoadBalancerSpec {
            ports: vec![ServicePort {
                target_port: Some(80),
                ..lb.ports[0].clone()
            }],
            ..lb
        })
    );

    // A StatefulSet's headless Service is berth's own.
    let sts: Vec<Value> = render_kind(WorkloadKind::StatefulSet);
    let yaml = sts
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n");
    let m = parse_manifest(&yaml, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(m.resources.is_empty());

    // The registry host of rendered images is this registry's.
    let mut dep = render_kind(WorkloadKind::Deployment).remove(0);
    dep["spec"]["template"]["spec"]["containers"][1]["image"] = json!(format!(
        "reg.example:5000/shop/tools@{}",
        crate::render::fixtures::digest('b')
    ));
    let opts = ImportOptions {
        image_host: Some("reg.example:5000".into()),
    };
    let m = parse_manifest(&serde_yaml::to_string(&dep).expect("yaml"), &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(m.spec.containers[1].image.starts_with("shop/tools@sha256:"));
}

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: shop/web:1.0
";

#[test]
fn pods_never_run_as_root() {
    let p = problems(&format!(
        "{DEPLOYMENT}      securityContext: {{runAsNonRoot: false, runAsUser: 0}}\n"
    ));
    assert!(
        p.contains("spec.template.spec.securityContext.runAsNonRoot: pods never run as root"),
        "{p}"
    );
    assert!(
        p.contains("run_as_user: pods never run as root") || p.contains("runAsUser"),
        "{p}"
    );
    let p = problems(&format!(
        "{DEPLOYMENT}      securityContext: {{runAsUser: 1000, privileged: true, seccompProfile: {{type: Unconfined}}}}\n"
    ));
    assert!(p.contains("securityContext.privileged"), "{p}");
    assert!(
        p.contains("securityContext.seccompProfile: berth always uses"),
        "{p}"
    );
    let m = parse_manifest(
        &format!("{DEPLOYMENT}      securityContext: {{runAsUser: 1000, runAsGroup: 3000}}\n"),
        &ImportOptions::default(),
    )
    .expect("a user and group are modelled");
    assert_eq!(
        (m.spec.run_as_user, m.spec.run_as_group),
        (Some(1000), Some(3000))
    );
}

#[test]
fn fields_berth_does_not_model_are_refused_with_their_path() {
    let yaml = format!(
        "{DEPLOYMENT}        securityContext: {{privileged: true}}\n      hostNetwork: true\n      dnsPolicy: Default\n"
    );
    let p = problems(&yaml);
    assert!(
        p.contains("Deployment/web: spec.template.spec.containers[0].securityContext: berth runs every container with"),
        "{p}"
    );
    assert!(
        p.contains("Deployment/web: spec.template.spec.hostNetwork:"),
        "{p}"
    );
    assert!(
        p.contains("spec.template.spec.dnsPolicy: berth always uses \"ClusterFirst\""),
        "{p}"
    );

    let p = problems(&DEPLOYMENT.replace("labels: {app: web}}", "labels: {app: api}}"));
    assert!(p.contains("spec.template.metadata.labels.app"), "{p}");

    let p = problems(&format!(
        "{DEPLOYMENT}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{a: b}}\n"
    ));
    assert!(
        p.contains("ConfigMap/settings: metadata.labels.app: label it app: web"),
        "{p}"
    );

    let p = problems(&format!(
        "{DEPLOYMENT}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, labels: {{app: web}}}}\ndata: {{a: 'not base64!'}}\n"
    ));
    assert!(p.contains("Secret/s: data.a: is not base64"), "{p}");
    assert!(
        !p.contains("not base64!"),
        "the value must not be repeated: {p}"
    );

    let p = problems(&format!("{DEPLOYMENT}---\n{DEPLOYMENT}"));
    assert!(p.contains("has 2 workloads"), "{p}");
    let p = problems("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n");
    assert!(p.contains("Pod/x: kind: berth does not manage Pod"), "{p}");
    let p = problems(&DEPLOYMENT.replace("image: shop/web:1.0", "image: web"));
    assert!(p.contains("the app's template: containers[0].image"), "{p}");
    let p = problems(&DEPLOYMENT.replace(
        "  labels: {app: web}\nspec:",
        "  labels: {app: web}\n  annotations: {note: hi}\nspec:",
    ));
    assert!(p.contains("metadata.annotations.note"), "{p}");
}
