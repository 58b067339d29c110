//! The OpenAPI description of the controller's routes (`paths` of an OpenAPI
//! 3.1 document), which `berth serve` merges into `/api/v1/openapi.json`.
//!
//! Owns: one line per operation (method, path, summary, query parameters,
//! request body, success status) and the examples of path parameters (the
//! names a fresh instance's fixtures use, so that a client generated from the
//! document, or schemathesis, can reach real objects). Error answers refer to
//! `#/components/schemas/ErrorBody`, which the registry's document defines.
//! Must not touch: routing (`Routes` in the parent module; a test checks the
//! two agree).

use serde_json::{json, Map, Value};

use crate::resources::ResourceKind;

/// One operation.
struct Op {
    method: &'static str,
    path: String,
    tag: &'static str,
    summary: String,
    /// (name, JSON type, description)
    query: &'static [(&'static str, &'static str, &'static str)],
    body: Option<Value>,
    ok: u16,
    /// The success answer is not JSON (a kubeconfig, a log stream).
    ok_type: &'static str,
}

impl Op {
    fn new(method: &'static str, path: &str, tag: &'static str, summary: &str) -> Op {
        Op {
            method,
            path: path.to_string(),
            tag,
            summary: summary.to_string(),
            query: &[],
            body: None,
            ok: if method == "post" { 201 } else { 200 },
            ok_type: "application/json",
        }
    }
    fn body(mut self, schema: Value) -> Op {
        self.body = Some(schema);
        self
    }
    fn ok(mut self, status: u16) -> Op {
        self.ok = status;
        self
    }
    fn query(mut self, q: &'static [(&'static str, &'static str, &'static str)]) -> Op {
        self.query = q;
        self
    }
    fn ok_type(mut self, t: &'static str) -> Op {
        self.ok_type = t;
        self
    }
}

/// The example a path parameter carries: the name of a fixture.
fn example(path: &str, param: &str) -> Value {
    match param {
        "project" => json!("demo"),
        "app" => json!("web"),
        "node" => json!("n1"),
        "version" => json!(1),
        _ if path.starts_with("/api/v1/clusters") => json!("c1"),
        _ if path.starts_with("/api/v1/nodes") => json!("n1"),
        _ => ResourceKind::ALL
            .into_iter()
            .find(|k| path.contains(&format!("/{}/", k.as_str())))
            .map_or(json!("x"), |k| json!(resource_example(k))),
    }
}

fn resource_example(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::ConfigMaps => "settings",
        ResourceKind::Secrets => "creds",
        ResourceKind::Volumes => "data",
        ResourceKind::LoadBalancers => "web-lb",
        ResourceKind::Eips => "ip1",
        ResourceKind::Routes => "www",
    }
}

fn object(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "required": required, "properties": props, "additionalProperties": false})
}

fn resource_schema(kind: ResourceKind) -> Value {
    let name = json!({"type": "string"});
    let description = json!({"type": "string", "description": "What the template is for (the release description)"});
    let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    match kind {
        ResourceKind::ConfigMaps | ResourceKind::Secrets => object(
            &["name"],
            json!({"name": name, "description": description, "data": map}),
        ),
        ResourceKind::Volumes => object(
            &["name", "capacity"],
            json!({"name": name, "description": description, "capacity": {"type": "string", "example": "1Gi"}, "storage_class": {"type": "string"}}),
        ),
        ResourceKind::LoadBalancers => object(
            &["name", "ports"],
            json!({"name": name, "description": description,
                   "selector": {"description": "Labels an app must carry to be served; binds apps by label", "type": "object", "additionalProperties": {"type": "string"}},
                   "app": {"type": "string", "description": "Shorthand for selector {\"app\": <name>}"},
                   "type": {"type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                   "ports": {"type": "array", "items": {"type": "object"}}}),
        ),
        ResourceKind::Eips => object(
            &["name"],
            json!({"name": name, "description": description,
                   "address": {"type": "string", "description": "A static address (one node at a time)"},
                   "pool": {"type": "boolean", "description": "One address per node from the cluster's eip_pool"},
                   "load_balancer": {"type": "string"},
                   "container_ip": {"type": "string"},
                   "selector": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Binds one app (of one replica)"}}),
        ),
        ResourceKind::Routes => object(
            &["name", "host", "load_balancer", "port"],
            json!({"name": name, "description": description, "host": {"type": "string"}, "path": {"type": "string"},
                   "load_balancer": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535}}),
        ),
    }
}

fn operations() -> Vec<Op> {
    let labels = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let names = json!({"type": "array", "items": {"type": "string"}});
    let confirm =
        json!({"type": "string", "description": "The volume's name, repeated: its data is lost"});
    let mut ops = clusters_and_nodes(&labels);
    ops.extend(apps_and_publications(&labels, &names, &confirm));
    for kind in ResourceKind::ALL {
        ops.extend(resource_ops(kind, &labels, &names, &confirm));
    }
    ops
}

/// Clusters and nodes, with the node's kubeconfig and cache.
fn clusters_and_nodes(labels: &Value) -> Vec<Op> {
    vec![
        Op::new("get", "/api/v1/clusters", "clusters", "List clusters"),
        Op::new("post", "/api/v1/clusters", "clusters", "Add a cluster (system administrators)").body(object(
            &["name", "kubeconfig"],
            json!({"name": {"type": "string"}, "kubeconfig": {"type": "string", "description": "kubeconfig YAML"},
                   "eip_pool": {"type": "string", "description": "Addresses for pool EIPs: a CIDR or first-last range"}}),
        )),
        Op::new("get", "/api/v1/clusters/{name}", "clusters", "Show a cluster"),
        Op::new("patch", "/api/v1/clusters/{name}", "clusters", "Change a cluster's EIP pool (\"\" removes it)").body(object(
            &[],
            json!({"eip_pool": {"type": "string", "description": "A CIDR or first-last range; \"\" removes the pool"}}),
        )),
        Op::new("delete", "/api/v1/clusters/{name}", "clusters", "Remove a cluster").ok(204),
        Op::new("get", "/api/v1/nodes", "nodes", "List nodes"),
        Op::new("post", "/api/v1/nodes", "nodes", "Add a node (system administrators)").body(object(
            &["name", "cluster", "edge_url"],
            json!({"name": {"type": "string"}, "cluster": {"type": "string"}, "k8s_node_name": {"type": "string"},
                   "labels": labels, "edge_url": {"type": "string"},
                   "edge_credentials": {"type": "object", "properties": {"username": {"type": "string"}, "password": {"type": "string"}}},
                   "edge_controller_token": {"type": "string"}}),
        )),
        Op::new("get", "/api/v1/nodes/{name}", "nodes", "Show a node"),
        Op::new("patch", "/api/v1/nodes/{name}", "nodes", "Set or remove a node's labels (null removes one)").body(object(
            &["labels"],
            json!({"labels": {"type": "object", "additionalProperties": {"type": ["string", "null"]}}}),
        )),
        Op::new("delete", "/api/v1/nodes/{name}", "nodes", "Remove a node").ok(204),
        Op::new("get", "/api/v1/nodes/{name}/kubeconfig", "nodes", "Export the node's kubeconfig for a project")
            .query(&[
                ("project", "string", "The project whose namespace the kubeconfig is for"),
                ("ttl", "integer", "Token lifetime in seconds (Kubernetes deployer; default 3600, at least 600)"),
            ])
            .ok_type("application/yaml"),
        Op::new("get", "/api/v1/nodes/{name}/cache", "nodes", "The node's edge cache now, read from its edge: capacity, bytes used, hit rate, pinned images, whether its upstream answers, prefetch jobs with their progress; an edge that does not answer shows as reachable: false with the reason"),
    ]
}

/// Apps, their versions, publications and logs, and the steps of a volume's release.
fn apps_and_publications(labels: &Value, names: &Value, confirm: &Value) -> Vec<Op> {
    let app_spec = json!({"type": "object", "description": "The app's template: containers, images, ports, volumes (see README)."});
    let release = object(
        &["node", "confirm"],
        json!({"node": {"type": "string"}, "confirm": confirm}),
    );
    let unbind = object(
        &[],
        json!({"node": {"type": "string", "description": "Default: every node it was released from"}}),
    );
    vec![
        Op::new("get", "/api/v1/projects/{project}/apps", "apps", "List a project's apps"),
        Op::new("post", "/api/v1/projects/{project}/apps", "apps", "Create an app").body(object(
            &["name", "spec"],
            json!({"name": {"type": "string"}, "spec": app_spec, "message": {"type": "string"}}),
        )),
        Op::new("get", "/api/v1/projects/{project}/apps/{app}", "apps", "Show an app and its latest version"),
        Op::new("put", "/api/v1/projects/{project}/apps/{app}", "apps", "Add a template version")
            .body(object(&["spec"], json!({"spec": app_spec, "message": {"type": "string"}}))),
        Op::new("delete", "/api/v1/projects/{project}/apps/{app}", "apps", "Delete an app (unpublished everywhere)").ok(204),
        Op::new("post", "/api/v1/projects/{project}/apps/{app}/clone", "apps", "Clone an app, attaching volumes of the project").body(object(
            &["name"],
            json!({"name": {"type": "string"}, "message": {"type": "string"},
                   "add_volumes": {"type": "array", "items": object(
                       &["volume", "mount_path"],
                       json!({"volume": {"type": "string"}, "mount_path": {"type": "string"},
                              "container": {"type": "string"}, "read_only": {"type": "boolean"}}))}}),
        )),
        Op::new("get", "/api/v1/projects/{project}/apps/{app}/versions", "apps", "List an app's template versions"),
        Op::new("get", "/api/v1/projects/{project}/apps/{app}/versions/{version}", "apps", "Show a template version"),
        Op::new("post", "/api/v1/projects/{project}/apps/{app}/publish", "publications", "Publish an app on nodes")
            .ok(202)
            .body(object(&[], json!({"nodes": names, "selector": labels, "version": {"type": "integer", "minimum": 1}}))),
        Op::new("post", "/api/v1/projects/{project}/apps/{app}/unpublish", "publications", "Unpublish an app from nodes")
            .ok(202)
            .body(object(&[], json!({"nodes": names, "selector": labels, "cascade": {"type": "boolean"},
                "force": {"type": "boolean", "description": "The nodes are gone for good: drop records and pins now (maintainer; nodes named)"}}))),
        Op::new("get", "/api/v1/projects/{project}/apps/{app}/publications", "publications", "Where the app is published, per node"),
        Op::new("post", "/api/v1/projects/{project}/apps/{app}/publications/{node}/prefetch-report", "publications",
            "An edge reports the end of the publication's prefetch job (Authorization: Bearer, the token given with the job; no account)")
            .ok(202)
            .body(object(&["id", "state"], json!({"id": {"type": "string"},
                "state": {"type": "string", "enum": ["pending", "running", "done", "failed"]},
                "bytes_done": {"type": "integer"}, "bytes_total": {"type": "integer"},
                "error": {"type": ["string", "null"]}, "images": {"type": "array"}}))),
        Op::new("get", "/api/v1/projects/{project}/apps/{app}/logs", "publications", "Logs of the app's container on a node, from the node's edge")
            .query(&[
                ("node", "string", "The node (required)"),
                ("pod", "string", "A pod of the app on the node; default the newest"),
                ("container", "string", "Default: the app's only container"),
                ("tail", "integer", "Last lines only"),
                ("since", "string", "A duration (10m) or an RFC 3339 time"),
                ("follow", "boolean", "Keep streaming"),
                ("previous", "boolean", "The previous container's logs"),
                ("timestamps", "boolean", "Prefix each line with its time"),
            ])
            .ok_type("text/plain"),
        Op::new("post", "/api/v1/projects/{project}/volumes/{name}/release", "resources", "Release a volume's claim on a node: its data is lost (maintainer)")
            .ok(200)
            .body(release),
        Op::new("post", "/api/v1/projects/{project}/volumes/{name}/unbind", "resources", "Unbind a released volume: new template versions without it")
            .ok(200)
            .body(unbind),
    ]
}

/// One resource kind's routes: its collection, one resource, publish and unpublish.
fn resource_ops(kind: ResourceKind, labels: &Value, names: &Value, confirm: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    let collection = format!("/api/v1/projects/{{project}}/{}", kind.as_str());
    let one = format!("{collection}/{{name}}");
    let what = kind.singular();
    ops.push(Op::new(
        "get",
        &collection,
        "resources",
        &format!("List {what}s"),
    ));
    ops.push(
        Op::new(
            "post",
            &collection,
            "resources",
            &format!("Create a {what}"),
        )
        .body(resource_schema(kind)),
    );
    ops.push(Op::new("get", &one, "resources", &format!("Show a {what}")));
    ops.push(
        Op::new("put", &one, "resources", &format!("Replace a {what}")).body(resource_schema(kind)),
    );
    let delete = Op::new("delete", &one, "resources", &format!("Delete a {what}")).ok(204);
    ops.push(if kind == ResourceKind::Volumes {
        delete.query(&[(
            "confirm",
            "string",
            "The volume's name, repeated: its data is lost (maintainer)",
        )])
    } else {
        delete
    });
    let target = if kind == ResourceKind::Volumes {
        object(
            &[],
            json!({"nodes": names, "selector": labels, "confirm": confirm}),
        )
    } else {
        object(&[], json!({"nodes": names, "selector": labels}))
    };
    ops.push(
        Op::new(
            "post",
            &format!("{one}/publish"),
            "resources",
            &format!("Publish a {what} on nodes (default: where an app it serves runs)"),
        )
        .ok(202)
        .body(target.clone()),
    );
    ops.push(
        Op::new(
            "post",
            &format!("{one}/unpublish"),
            "resources",
            &format!("Take a {what} off nodes (default: everywhere it is published)"),
        )
        .ok(202)
        .body(target),
    );
    ops
}

fn operation(op: &Op) -> Value {
    let mut params: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|p| {
            let ex = example(&op.path, p);
            let ty = if ex.is_number() { "integer" } else { "string" };
            json!({"name": p, "in": "path", "required": true, "schema": {"type": ty}, "example": ex})
        })
        .collect();
    for (name, ty, desc) in op.query {
        // Required query parameters carry the example fixture, as path parameters do.
        let required = op.path.ends_with("/kubeconfig") && *name == "project"
            || op.path.ends_with("/logs") && *name == "node";
        let mut p = json!({"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": ty}});
        if *name == "ttl" {
            // The Kubernetes minimum; the maximum is the configuration's.
            p["schema"]["minimum"] = json!(600);
        }
        if required {
            p["example"] = example(&op.path, name);
        }
        params.push(p);
    }
    let error = json!({"description": "refused, with a message", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    let mut responses = Map::new();
    let ok = if op.ok == 204 {
        json!({"description": "done"})
    } else {
        json!({"description": "done", "content": {op.ok_type: {}}})
    };
    responses.insert(op.ok.to_string(), ok);
    for s in ["400", "401", "403", "404", "409"] {
        responses.insert(s.to_string(), error.clone());
    }
    let mut o = json!({
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": format!("{}_{}", op.method, op.path.trim_start_matches("/api/v1/").replace(['/', '{', '}'], "_")),
        "parameters": params,
        "responses": responses,
    });
    if let Some(schema) = &op.body {
        o["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    o
}

/// The `paths` object describing every controller route.
pub fn openapi_paths() -> Value {
    let mut paths = Map::new();
    for op in operations() {
        let item = paths
            .entry(op.path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = operation(&op);
    }
    Value::Object(paths)
}
