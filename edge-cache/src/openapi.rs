//! The OpenAPI document `berth edge` answers at `/api/v1/openapi.json`: its
//! management routes (prefetch jobs, cached images and pins, the cache's
//! status, container logs),
//! health and metrics. The pull-through `/v2` API is the OCI Distribution API
//! (read-only here), described by its specification.
//!
//! Owns: that document, and [`route_paths`], the paths `EdgeApp::router`
//! registers, kept next to it so that a test can hold the two against each
//! other (axum cannot list its routes). Must not touch: routing.

use serde_json::{json, Value};

/// Routed paths the document leaves to the OCI Distribution specification.
pub const DESCRIBED_ELSEWHERE: &[&str] = &["/v2", "/v2/", "/v2/{*path}"];

/// Every path `EdgeApp::router` registers (`{param}` templates).
pub fn route_paths() -> Vec<String> {
    [
        "/api/v1/prefetch",
        "/api/v1/prefetch/{id}",
        "/api/v1/images",
        "/api/v1/unpin",
        "/api/v1/images/delete",
        "/api/v1/status",
        "/api/v1/logs/{namespace}",
        "/api/v1/logs/{namespace}/{pod}/{container}",
        "/api/v1/openapi.json",
        "/metrics",
        "/healthz",
        "/v2",
        "/v2/",
        "/v2/{*path}",
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}, "description": description})
}

fn answers(ok: u16, ok_type: &str) -> Value {
    let refused =
        json!({"description": "refused, with a message", "content": {"application/json": {}}});
    let mut r = json!({"400": refused, "401": refused, "403": refused, "404": refused});
    r[ok.to_string()] = json!({"description": "ok", "content": {ok_type: {}}});
    r
}

fn images_body() -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["images"],
        "properties": {"images": {"type": "array", "items": {"type": "string"}, "example": ["demo/hello:v1"]}}}}}})
}

/// The edge's document.
pub fn document() -> Value {
    let logs_query = json!([
        {"name": "tail", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "a duration (10m) or an RFC 3339 time"},
        {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
        {"name": "previous", "in": "query", "schema": {"type": "boolean"}},
        {"name": "timestamps", "in": "query", "schema": {"type": "boolean"}}
    ]);
    let mut logs_params = vec![
        path_param("namespace", "a namespace of berth's projects"),
        path_param("pod", "the pod's name"),
        path_param("container", "the container's name"),
    ];
    logs_params.extend(logs_query.as_array().cloned().unwrap_or_default());
    let open = json!([{}]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "berth edge API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Management routes of a berth edge cache: prefetch jobs, cached images and pins \
                (credentials of the upstream registry's pull clients, or the trusted network), and the \
                node's container logs (the controller's bearer token only). The pull-through /v2 API is \
                the OCI Distribution API, read-only."
        },
        "externalDocs": {
            "description": "OCI Distribution Specification (the /v2 routes)",
            "url": "https://github.com/opencontainers/distribution-spec/blob/v1.1.1/spec.md"
        },
        "components": {"securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer"}
        }},
        "security": [{}, {"basic": []}, {"bearer": []}],
        "paths": {
            "/api/v1/prefetch": {
                "get": {"tags": ["prefetch"], "summary": "List prefetch jobs and their progress", "responses": answers(200, "application/json")},
                "post": {"tags": ["prefetch"], "summary": "Start a prefetch job: fetch images (every layer) into the cache, optionally pinned",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["images"],
                        "properties": {"images": {"type": "array", "items": {"type": "string"}},
                            "pin": {"type": "boolean"},
                            "platforms": {"type": "array", "items": {"type": "string"}, "example": ["linux/arm64"]},
                            "report": {"type": "object", "required": ["url", "token"],
                                "description": "Post the finished job (as GET /api/v1/prefetch/{id} answers it) to url, a URL under the edge's upstream, with Authorization: Bearer token; the answer's report is true when the edge will",
                                "properties": {"url": {"type": "string"}, "token": {"type": "string"}}}}}}}},
                    "responses": answers(202, "application/json")}
            },
            "/api/v1/prefetch/{id}": {"get": {"tags": ["prefetch"], "summary": "A prefetch job's progress per image and layer",
                "parameters": [path_param("id", "the job id")], "responses": answers(200, "application/json")}},
            "/api/v1/images": {"get": {"tags": ["images"], "summary": "Cached images, with their pins", "responses": answers(200, "application/json")}},
            "/api/v1/unpin": {"post": {"tags": ["images"], "summary": "Unpin images (retention may evict them again)",
                "requestBody": images_body(), "responses": answers(200, "application/json")}},
            "/api/v1/images/delete": {"post": {"tags": ["images"], "summary": "Delete cached images now",
                "requestBody": images_body(), "responses": answers(200, "application/json")}},
            "/api/v1/status": {"get": {"tags": ["status"], "summary": "The cache's status: capacity, bytes used, hits, misses and hit rate since start, pinned images, whether upstream answers now, and prefetch jobs (unfinished ones and the 20 newest finished)",
                "responses": answers(200, "application/json")}},
            "/api/v1/logs/{namespace}": {"get": {"tags": ["logs"], "summary": "Pods with log files in a namespace",
                "security": [{"bearer": []}],
                "parameters": [path_param("namespace", "a namespace of berth's projects")], "responses": answers(200, "application/json")}},
            "/api/v1/logs/{namespace}/{pod}/{container}": {"get": {"tags": ["logs"], "summary": "A container's log (CRI files, rotated ones included)",
                "security": [{"bearer": []}],
                "parameters": logs_params, "responses": answers(200, "text/plain")}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "security": open, "responses": answers(200, "application/json")}},
            "/healthz": {"get": {"summary": "Liveness, and whether the cache directory works", "security": open, "responses": answers(200, "text/plain")}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": open, "responses": answers(200, "text/plain")}}
        }
    })
}
