//! The Kubernetes deployer against a scripted API server on 127.0.0.1 that
//! checks every request (path, verb, content type, apply body, field manager,
//! token) and answers as a real API server would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_controller::deploy::{DeployTarget, Deployer, KubeDeployer, OwnerSelector, Rollout};
use berth_controller::model::{Cluster, Node, PinnedImage, WorkloadKind};
use berth_controller::render::{self, RenderOptions, WorkloadInput};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Option<Value>,
}

#[derive(Default)]
struct ApiServer {
    /// (collection path, name) -> object
    objects: BTreeMap<(String, String), Value>,
    seen: Vec<Seen>,
    /// Checks that failed, in words (the test asserts this stays empty).
    problems: Vec<String>,
    /// readyReplicas the server reports for workloads.
    ready: u64,
}

type Shared = Arc<Mutex<ApiServer>>;

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code
        })),
    )
        .into_response()
}

/// Splits `/apis/apps/v1/namespaces/shop/deployments/web-n1` into
/// (collection path, Some(name)).
fn split(path: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let collection_len = if parts.first() == Some(&"api") {
        // api/v1/namespaces[/ns/plural] or api/v1/namespaces/<name>
        if parts.len() >= 5 {
            5
        } else {
            3
        }
    } else if parts.len() >= 6 {
        6
    } else {
        4
    };
    let collection = parts[..collection_len.min(parts.len())].join("/");
    let name = parts.get(collection_len).map(|s| s.to_string());
    (format!("/{collection}"), name)
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        v.replace("%2F", "/")
                            .replace("%3D", "=")
                            .replace("%2C", ","),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes: Bytes = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(_) => return status(400, "BadRequest", "body too large"),
    };
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let mut s = match state.lock() {
        Ok(s) => s,
        Err(_) => return status(500, "InternalError", "poisoned"),
    };
    s.seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: body.clone(),
    });
    if auth != "Bearer test-token" {
        s.problems
            .push(format!("{method} {path}: authorization {auth:?}"));
        return status(401, "Unauthorized", "Unauthorized");
    }
    let (collection, name) = split(&path);
    if collection.contains("elasticips") {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    match (method.as_str(), name) {
        ("POST", Some(name)) if path.ends_with("/token") => {
            // TokenRequest: only for a ServiceAccount that exists.
            if !s.objects.contains_key(&(collection, name.clone())) {
                return status(
                    404,
                    "NotFound",
                    &format!("serviceaccounts \"{name}\" not found"),
                );
            }
            let Some(req) = body else {
                s.problems.push(format!("POST {path}: body is not JSON"));
                return status(400, "BadRequest", "body");
            };
            if req["kind"] != "TokenRequest" || !req["spec"]["expirationSeconds"].is_u64() {
                s.problems.push(format!("POST {path}: {req}"));
            }
            let n = s.seen.len();
            Json(json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {}, "spec": req["spec"],
                "status": {"token": format!("sa-token-{n}"), "expirationTimestamp": "2030-01-01T00:00:00Z"}
            }))
            .into_response()
        }
        ("PATCH", Some(name)) => {
            if content_type != "application/apply-patch+yaml" {
                s.problems
                    .push(format!("PATCH {path}: content type {content_type:?}"));
                return status(415, "UnsupportedMediaType", "wrong content type");
            }
            if query.get("fieldManager").map(String::as_str) != Some("berth")
                || query.get("force").map(String::as_str) != Some("true")
            {
                s.problems.push(format!("PATCH {path}: query {query:?}"));
                return status(400, "BadRequest", "fieldManager and force required");
            }
            let Some(mut obj) = body else {
                s.problems.push(format!("PATCH {path}: body is not JSON"));
                return status(400, "BadRequest", "body");
            };
            if obj["metadata"]["name"].as_str() != Some(name.as_str()) {
                s.problems
                    .push(format!("PATCH {path}: name in body differs"));
                return status(400, "BadRequest", "name mismatch");
            }
            if obj.get("apiVersion").is_none() || obj.get("kind").is_none() {
                s.problems
                    .push(format!("PATCH {path}: apply body without apiVersion/kind"));
                return status(400, "BadRequest", "apiVersion and kind required");
            }
            let key = (collection, name);
            let generation = s
                .objects
                .get(&key)
                .and_then(|o| o["metadata"]["generation"].as_u64())
                .unwrap_or(0)
                + 1;
            obj["metadata"]["generation"] = json!(generation);
            obj["metadata"]["uid"] = json!(format!("uid-{}", key.1));
            obj["metadata"]["resourceVersion"] = json!(s.seen.len().to_string());
            let created = !s.objects.contains_key(&key);
            s.objects.insert(key, obj.clone());
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (code, Json(obj)).into_response()
        }
        ("GET", Some(name)) => {
            let ready = s.ready;
            match s.objects.get(&(collection, name.clone())) {
                Some(o) => {
                    let mut o = o.clone();
                    let gen = o["metadata"]["generation"].clone();
                    let replicas = o["spec"]["replicas"].as_u64().unwrap_or(1);
                    o["status"] = json!({
                        "observedGeneration": gen,
                        "replicas": replicas,
                        "readyReplicas": ready,
                        "updatedReplicas": ready,
                    });
                    Json(o).into_response()
                }
                None => status(404, "NotFound", &format!("\"{name}\" not found")),
            }
        }
        ("GET", None) => {
            let selector = query.get("labelSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|((c, _), o)| *c == collection && labels_match(o, &selector))
                .map(|(_, o)| o.clone())
                .collect();
            let kind = items
                .first()
                .and_then(|o| o["kind"].as_str())
                .map(|k| format!("{k}List"))
                .unwrap_or_else(|| "List".into());
            Json(json!({
                "apiVersion": "v1", "kind": kind,
                "metadata": {"resourceVersion": "1"}, "items": items
            }))
            .into_response()
        }
        ("DELETE", Some(name)) => {
            if !matches!(
                body.as_ref().and_then(|b| b["propagationPolicy"].as_str()),
                Some("Background")
            ) {
                s.problems
                    .push(format!("DELETE {path}: no background propagation"));
            }
            match s.objects.remove(&(collection, name.clone())) {
                Some(_) => Json(json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "details": {"name": name}
                }))
                .into_response(),
                None => status(404, "NotFound", &format!("\"{name}\" not found")),
            }
        }
        _ => {
            s.problems.push(format!("unexpected {method} {path}"));
            status(405, "MethodNotAllowed", "unexpected request")
        }
    }
}

async fn start() -> (Shared, String) {
    let shared: Shared = Arc::new(Mutex::new(ApiServer::default()));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (shared, format!("http://{addr}"))
}

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: edge\nclusters:\n- name: edge\n  cluster:\n    server: {server}\ncontexts:\n- name: edge\n  context:\n    cluster: edge\n    user: berth\nusers:\n- name: berth\n  user:\n    token: test-token\n"
    )
}

fn target(server: &str) -> DeployTarget {
    DeployTarget {
        node: Node {
            name: "n1".into(),
            cluster: "edge".into(),
            k8s_node_name: "edge-node-1".into(),
            labels: BTreeMap::new(),
            edge_url: "http://127.0.0.1:1".into(),
            edge_credentials: None,
            edge_controller_token: None,
            created_at: 0,
        },
        cluster: Cluster {
            name: "edge".into(),
            kubeconfig: kubeconfig(server),
            eip_pool: None,
            created_at: 0,
        },
    }
}

fn objects(kind: WorkloadKind, node: &Node) -> Vec<Value> {
    let spec: berth_controller::model::AppSpec = serde_json::from_value(json!({
        "kind": kind,
        "containers": [{"name": "web", "image": "shop/web:1.0",
                        "ports": [{"name": "http", "container_port": 8080}]}],
        "replicas": 2
    }))
    .expect("spec");
    let images = vec![PinnedImage {
        reference: "shop/web:1.0".into(),
        repository: "shop/web".into(),
        digest: format!("sha256:{}", "a".repeat(64)),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        upstream: None,
    }];
    render::render_workload(
        &WorkloadInput {
            project: "shop",
            app: "web",
            version: 1,
            spec: &spec,
            images: &images,
            node,
        },
        &RenderOptions::default(),
    )
    .expect("render")
}

#[tokio::test]
async fn server_side_apply_rollout_and_prune() {
    let (server, url) = start().await;
    let t = target(&url);
    let d = KubeDeployer::new();
    let objs = objects(WorkloadKind::StatefulSet, &t.node);
    d.apply(&t, &objs).await.expect("apply");

    {
        let s = server.lock().expect("lock");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let patches: Vec<&Seen> = s
            .seen
            .iter()
            .filter(|r| r.method == Method::PATCH)
            .collect();
        let paths: Vec<&str> = patches.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/api/v1/namespaces/shop",
                "/api/v1/namespaces/shop/services/web-n1",
                "/apis/apps/v1/namespaces/shop/statefulsets/web-n1",
            ]
        );
        for p in &patches {
            assert_eq!(p.content_type, "application/apply-patch+yaml");
            assert_eq!(
                p.query.get("fieldManager").map(String::as_str),
                Some("berth")
            );
            assert_eq!(p.query.get("force").map(String::as_str), Some("true"));
        }
        let sts = patches[2].body.as_ref().expect("body");
        assert_eq!(sts["kind"], "StatefulSet");
        assert_eq!(
            sts["spec"]["template"]["spec"]["containers"][0]["image"],
            format!("shop/web@sha256:{}", "a".repeat(64))
        );
        assert_eq!(
            sts["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"],
            "edge-node-1"
        );
        assert_eq!(patches[0].body.as_ref().expect("ns")["kind"], "Namespace");
    }

    // Rollout: read back from the workload's status.
    let wref = render::workload_ref("shop", "web", WorkloadKind::StatefulSet, "n1");
    server.lock().expect("lock").ready = 1;
    assert_eq!(
        d.rollout_status(&t, &wref).await.expect("status"),
        Rollout::Observed {
            ready: 1,
            desired: 2
        }
    );
    server.lock().expect("lock").ready = 2;
    assert_eq!(
        d.rollout_status(&t, &wref).await.expect("status"),
        Rollout::Observed {
            ready: 2,
            desired: 2
        }
    );
    let job = render::workload_ref("shop", "web", WorkloadKind::Job, "n1");
    assert_eq!(
        d.rollout_status(&t, &job).await.expect("job"),
        Rollout::NotObservable
    );

    // Re-applying is idempotent (same objects, generation bumps only server-side).
    d.apply(&t, &objs).await.expect("re-apply");

    // Another app's object in the same namespace must survive the prune.
    let mut other = objects(WorkloadKind::Deployment, &t.node);
    other[0]["metadata"]["name"] = json!("api-n1");
    other[0]["metadata"]["labels"]["berth.dev/app"] = json!("api");
    d.apply(&t, &other).await.expect("other app");

    let before = server.lock().expect("lock").seen.len();
    d.remove(&t, &OwnerSelector::app("shop", "web", "n1"))
        .await
        .expect("remove");
    let s = server.lock().expect("lock");
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let after: Vec<&Seen> = s.seen[before..].iter().collect();
    // Lists carry the ownership selector.
    for r in after.iter().filter(|r| r.method == Method::GET) {
        let sel = r.query.get("labelSelector").expect("selector");
        assert!(sel.contains("berth.dev/app=web"), "{sel}");
        assert!(sel.contains("berth.dev/node=n1"), "{sel}");
        assert!(sel.contains("app.kubernetes.io/managed-by=berth"), "{sel}");
    }
    let deleted: Vec<&str> = after
        .iter()
        .filter(|r| r.method == Method::DELETE)
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        deleted,
        vec![
            "/apis/apps/v1/namespaces/shop/statefulsets/web-n1",
            "/api/v1/namespaces/shop/services/web-n1",
        ]
    );
    let left: Vec<&String> = s.objects.keys().map(|(_, n)| n).collect();
    assert!(left.iter().any(|n| *n == "api-n1"), "{left:?}");
    assert!(!left.iter().any(|n| *n == "web-n1"), "{left:?}");
}

#[tokio::test]
async fn cluster_errors_are_reported_in_words() {
    let (server, url) = start().await;
    let mut t = target(&url);
    t.cluster.kubeconfig = t.cluster.kubeconfig.replace("test-token", "wrong");
    let d = KubeDeployer::new();
    let err = d
        .apply(&t, &objects(WorkloadKind::Deployment, &t.node))
        .await
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("cluster edge"), "{err}");
    assert!(err.contains("namespace shop"), "{err}");
    assert!(!server.lock().expect("lock").problems.is_empty());

    // Unreachable API server.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let t = target(&format!("http://127.0.0.1:{port}"));
    let err = d
        .apply(&t, &objects(WorkloadKind::Deployment, &t.node))
        .await
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("cluster edge"), "{err}");
}

#[tokio::test]
async fn resources_apply_and_a_missing_crd_is_named() {
    use berth_controller::resources::{EipSpec, LoadBalancerSpec, ServicePort};
    let (server, url) = start().await;
    let t = target(&url);
    let d = KubeDeployer::new();
    let lb = LoadBalancerSpec {
        app: Some("web".into()),
        selector: Default::default(),
        service_type: Default::default(),
        ports: vec![ServicePort {
            name: None,
            port: 80,
            target_port: None,
            protocol: Default::default(),
        }],
    };
    let objs = vec![
        render::render_config_map("shop", "settings", &BTreeMap::new(), &t.node),
        render::render_service("shop", "web-lb", &lb, &t.node),
    ];
    d.apply(&t, &objs).await.expect("apply");
    {
        let s = server.lock().expect("lock");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let paths: Vec<&str> = s
            .seen
            .iter()
            .filter(|r| r.method == Method::PATCH)
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(
            paths,
            vec![
                "/api/v1/namespaces/shop",
                "/api/v1/namespaces/shop/configmaps/settings-n1",
                "/api/v1/namespaces/shop/services/web-lb-n1",
            ]
        );
    }
    let eip = render::render_eip(
        "shop",
        "public",
        &EipSpec {
            address: Some("203.0.113.7".into()),
            load_balancer: Some("web-lb".into()),
            ..EipSpec::default()
        },
        "203.0.113.7",
        Some("web"),
        &t.node,
    );
    let err = d.apply(&t, &[eip]).await.expect_err("no CRD").to_string();
    assert!(err.contains("crds/eip.yaml"), "{err}");
}

#[tokio::test]
async fn a_project_kubeconfig_is_scoped_to_its_namespace_and_revocable() {
    let (server, url) = start().await;
    let t = target(&url);
    let d = KubeDeployer::new();
    let yaml = d
        .project_kubeconfig(&t, "shop", 1800)
        .await
        .expect("kubeconfig");
    {
        let s = server.lock().expect("lock");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let calls: Vec<String> = s
            .seen
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            calls,
            vec![
                "PATCH /api/v1/namespaces/shop",
                "PATCH /api/v1/namespaces/shop/serviceaccounts/berth-project",
                "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles/berth-project",
                "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings/berth-project",
                "POST /api/v1/namespaces/shop/serviceaccounts/berth-project/token",
            ]
        );
        let ns = s.seen[0].body.as_ref().expect("namespace");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/warn"],
            "restricted"
        );
        let role = s.seen[2].body.as_ref().expect("role");
        assert_eq!(role["kind"], "Role", "namespaced, never a ClusterRole");
        let rules = role["rules"].as_array().expect("rules");
        for r in rules {
            let verbs: Vec<&str> = r["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            let resources: Vec<&str> = r["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            for bad in ["*", "bind", "escalate", "impersonate"] {
                assert!(!verbs.contains(&bad), "{r}");
                assert!(!resources.contains(&bad), "{r}");
            }
            for bad in [
                "roles",
                "rolebindings",
                "serviceaccounts",
                "pods/exec",
                "namespaces",
                "nodes",
            ] {
                assert!(!resources.contains(&bad), "{r}");
            }
            if resources.contains(&"secrets") {
                for read in ["get", "list", "watch"] {
                    assert!(!verbs.contains(&read), "secret values stay unread: {r}");
                }
            }
        }
        let all: Vec<&str> = rules
            .iter()
            .flat_map(|r| r["resources"].as_array().expect("resources").iter())
            .filter_map(|v| v.as_str())
            .collect();
        for want in [
            "deployments",
            "statefulsets",
            "daemonsets",
            "jobs",
            "cronjobs",
            "services",
            "ingresses",
            "configmaps",
            "secrets",
            "persistentvolumeclaims",
            "pods",
            "pods/log",
            "events",
        ] {
            assert!(all.contains(&want), "{want} missing from {all:?}");
        }
        let binding = s.seen[3].body.as_ref().expect("binding");
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["subjects"][0]["name"], "berth-project");
        assert_eq!(
            s.seen[4].body.as_ref().expect("token")["spec"]["expirationSeconds"],
            1800
        );
    }
    let kc: Value = serde_yaml::from_str(&yaml).expect("yaml");
    assert!(
        !yaml.contains("test-token"),
        "the cluster's credential must not leak:\n{yaml}"
    );
    assert_eq!(kc["users"][0]["user"]["token"], "sa-token-5");
    assert_eq!(kc["contexts"][0]["context"]["namespace"], "shop");
    assert_eq!(kc["clusters"][0]["cluster"]["server"], url);
    assert_eq!(kc["current-context"], "shop@n1");

    // Revoking deletes the ServiceAccount (its tokens die with it) and makes a new one.
    let before = server.lock().expect("lock").seen.len();
    d.revoke_project_access(&t.cluster, "shop")
        .await
        .expect("revoke");
    {
        let s = server.lock().expect("lock");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let calls: Vec<String> = s.seen[before..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            calls,
            vec![
                "DELETE /api/v1/namespaces/shop/serviceaccounts/berth-project",
                "PATCH /api/v1/namespaces/shop/serviceaccounts/berth-project",
            ]
        );
    }
    // Nothing exported for another project: nothing to recreate.
    let before = server.lock().expect("lock").seen.len();
    d.revoke_project_access(&t.cluster, "other")
        .await
        .expect("revoke");
    let s = server.lock().expect("lock");
    assert_eq!(
        s.seen.len(),
        before + 1,
        "one DELETE answered 404, no PATCH"
    );
}

/// Drift: an object changed in the cluster or deleted is reported (by GET
/// only, nothing written); what the server adds (status, generation,
/// resourceVersion) is not drift; an apply repairs it.
#[tokio::test]
async fn drift_is_what_berth_set_and_the_cluster_no_longer_says() {
    let (server, url) = start().await;
    let t = target(&url);
    let d = KubeDeployer::new();
    let objs = objects(WorkloadKind::StatefulSet, &t.node);
    d.apply(&t, &objs).await.expect("apply");
    assert_eq!(
        d.drifted(&t, &objs).await.expect("drift"),
        Vec::<String>::new()
    );
    let writes_before = {
        let mut s = server.lock().expect("lock");
        let key = s
            .objects
            .keys()
            .find(|(c, _)| c.ends_with("/statefulsets"))
            .cloned()
            .expect("statefulset");
        s.objects.get_mut(&key).expect("obj")["spec"]["replicas"] = json!(5);
        let svc = s
            .objects
            .keys()
            .find(|(c, _)| c.ends_with("/services"))
            .cloned()
            .expect("service");
        s.objects.remove(&svc);
        s.seen.iter().filter(|r| r.method != Method::GET).count()
    };
    let mut drifted = d.drifted(&t, &objs).await.expect("drift");
    drifted.sort();
    assert_eq!(drifted, vec!["Service/web-n1", "StatefulSet/web-n1"]);
    {
        let s = server.lock().expect("lock");
        assert_eq!(
            s.seen.iter().filter(|r| r.method != Method::GET).count(),
            writes_before,
            "a drift check only reads"
        );
        assert!(s.problems.is_empty(), "{:?}", s.problems);
    }
    d.apply(&t, &objs).await.expect("repair");
    assert_eq!(
        d.drifted(&t, &objs).await.expect("drift"),
        Vec::<String>::new()
    );
}
