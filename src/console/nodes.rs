//! Clusters and nodes: registering a cluster (its kubeconfig, an EIP pool)
//! and a node (its cluster, edge cache address, credentials and logs token,
//! labels), changing a node's labels, deleting either, and exporting a
//! node's kubeconfig for a project as a file. A node's own page, with its
//! edge cache, is `node_cache`. The forms that only system
//! administrators may use are shown only to them; the API decides anyway.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde_json::{json, Value};

use super::layout::{self, alert, button_form, page, time, Section};
use super::projects::{refused, with_status};
use super::resource_forms::labels;
use super::{done, urlencode, Console, CsrfForm, Signed};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/nodes", get(list).post(create_node))
        .route("/ui/clusters", post(create_cluster))
        .route("/ui/clusters/{c}/delete", post(delete_cluster))
        .route("/ui/nodes/{n}/labels", post(relabel))
        .route("/ui/nodes/{n}/delete", post(delete_node))
        .route("/ui/nodes/{n}/kubeconfig", get(kubeconfig))
}

fn list_of(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

async fn list(State(console): State<Console>, signed: Signed) -> Response {
    show(&console, &signed, None).await
}

async fn show(console: &Console, signed: &Signed, msg: Option<String>) -> Response {
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    let nodes = console
        .call_as(signed, Method::GET, "/api/v1/nodes", None)
        .await;
    if !nodes.ok() {
        return refused(ctx, &nodes);
    }
    let clusters = console
        .call_as(signed, Method::GET, "/api/v1/clusters", None)
        .await;
    let projects = console
        .call_as(signed, Method::GET, "/api/v1/projects", None)
        .await;
    let (nodes, clusters, projects) = (
        list_of(&nodes.json),
        list_of(&clusters.json),
        list_of(&projects.json),
    );
    let admin = signed.session.subject.admin;
    let body = html! {
        div.toolbar { h1 { (t("Clusters and nodes")) } }
        @if let Some(m) = &msg { (alert(false, m)) }
        (nodes_card(ctx, &nodes, &projects, admin))
        @if admin { (node_form(ctx, &clusters)) }
        (clusters_card(ctx, &clusters, admin))
    };
    page(ctx, t("Clusters and nodes"), Section::Nodes, body)
}

/// The nodes table: labels editable by administrators, a kubeconfig export per project.
fn nodes_card(ctx: &super::Ctx, nodes: &[Value], projects: &[Value], admin: bool) -> maud::Markup {
    let t = |s| ctx.t(s);
    html! {
        section.card {
            h2 { (t("Nodes")) }
            @if nodes.is_empty() { p.empty { (t("No nodes registered.")) } } @else {
                table.responsive #nodes {
                    thead { tr { th { (t("Name")) } th { (t("Cluster")) } th { (t("Labels")) } th { (t("Edge cache")) } th { (t("Kubeconfig")) } th {} } }
                    tbody {
                        @for n in nodes {
                            @let name = n["name"].as_str().unwrap_or("");
                            @let base = format!("/ui/nodes/{}", urlencode(name));
                            tr data-node=(name) {
                                td data-label=(t("Name")) { a href=(base) { b { (name) } } br; span.muted { (n["created_at"].as_u64().map(time).unwrap_or_default()) } }
                                td data-label=(t("Cluster")) { (n["cluster"].as_str().unwrap_or("")) }
                                td data-label=(t("Labels")) {
                                    @let current = label_text(&n["labels"]);
                                    @if admin {
                                        form.inline.labels method="post" action={(base) "/labels"} {
                                            (layout::csrf(ctx))
                                            input type="text" name="labels" value=(current) aria-label=(t("Labels")) placeholder="zone=east,tier=edge" autocapitalize="none";
                                            " " button.secondary.small type="submit" { (t("Save")) }
                                        }
                                    } @else {
                                        @for (k, v) in n["labels"].as_object().into_iter().flatten() { span.pill { (k) "=" (v.as_str().unwrap_or("")) } }
                                    }
                                }
                                td data-label=(t("Edge cache")) {
                                    code { (n["edge_url"].as_str().unwrap_or("")) }
                                    @if n["edge_logs"] == true { " " span.pill.good { (t("logs")) } }
                                }
                                td data-label=(t("Kubeconfig")) {
                                    form.inline.kubeconfig method="get" action={(base) "/kubeconfig"} {
                                        select name="project" aria-label=(t("Project")) {
                                            @for p in projects { @let pn = p["name"].as_str().unwrap_or(""); option value=(pn) { (pn) } }
                                        }
                                        " " button.secondary.small type="submit" { (t("Export")) }
                                    }
                                }
                                td { @if admin { (button_form(ctx, &format!("{base}/delete"), t("Delete"), t("Delete this node? Nothing may be published on it."), &[])) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The clusters table and, for administrators, the form registering one.
fn clusters_card(ctx: &super::Ctx, clusters: &[Value], admin: bool) -> maud::Markup {
    let t = |s| ctx.t(s);
    html! {
        section.card {
            h2 { (t("Clusters")) }
            table.responsive #clusters {
                thead { tr { th { (t("Name")) } th { (t("API server")) } th { (t("EIP pool")) } th {} } }
                tbody {
                    @for c in clusters {
                        @let name = c["name"].as_str().unwrap_or("");
                        tr data-cluster=(name) {
                            td data-label=(t("Name")) { b { (name) } }
                            td data-label=(t("API server")) { code { (c["server"].as_str().unwrap_or("")) } }
                            td data-label=(t("EIP pool")) { (c["eip_pool"].as_str().unwrap_or("")) }
                            td { @if admin { (button_form(ctx, &format!("/ui/clusters/{}/delete", urlencode(name)), t("Delete"), t("Delete this cluster? It must have no nodes."), &[])) } }
                        }
                    }
                }
            }
            @if admin {
                h2 { (t("Register a cluster")) }
                form.stack #new-cluster method="post" action="/ui/clusters" {
                    (layout::csrf(ctx))
                    label { span { (t("Name")) } input type="text" name="name" required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="63" autocapitalize="none"; }
                    label { span { (t("Kubeconfig")) } textarea name="kubeconfig" rows="8" spellcheck="false" required {} }
                    label { span { (t("EIP pool")) } input type="text" name="eip_pool" placeholder="192.0.2.0/28"; }
                    button type="submit" { (t("Register")) }
                }
            }
        }
    }
}

fn node_form(ctx: &super::Ctx, clusters: &[Value]) -> maud::Markup {
    let t = |s| ctx.t(s);
    html! {
        section.card {
            h2 { (t("Register a node")) }
            form.stack #new-node method="post" action="/ui/nodes" {
                (layout::csrf(ctx))
                label { span { (t("Name")) } input type="text" name="name" required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="63" autocapitalize="none"; }
                label { span { (t("Cluster")) } select name="cluster" required { @for c in clusters { @let n = c["name"].as_str().unwrap_or(""); option value=(n) { (n) } } } }
                label { span { (t("Edge cache URL")) } input type="text" name="edge_url" required placeholder="http://10.0.0.7:5001" autocapitalize="none"; }
                label { span { (t("Labels")) } input type="text" name="labels" placeholder="zone=east,tier=edge" autocapitalize="none"; }
                label { span { (t("Edge logs token")) } input type="password" name="edge_controller_token" autocomplete="off"; }
                p.hint { (t("The edge's edge.controller_token: lets the registry read the node's container logs.")) }
                button type="submit" { (t("Register")) }
            }
        }
    }
}

/// Labels as `k=v,k2=v2`.
fn label_text(labels: &Value) -> String {
    labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// After a change: back to the list, or the list with the API's refusal.
async fn after(console: &Console, signed: &Signed, a: super::ApiAnswer) -> Response {
    if a.ok() {
        return done("/ui/nodes");
    }
    with_status(show(console, signed, Some(a.error())).await, a.status)
}

fn field(form: &HashMap<String, String>, k: &str) -> String {
    form.get(k)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

async fn create_cluster(
    State(console): State<Console>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let mut body = json!({ "name": field(&form, "name"), "kubeconfig": form.get("kubeconfig").cloned().unwrap_or_default() });
    let pool = field(&form, "eip_pool");
    if !pool.is_empty() {
        body["eip_pool"] = json!(pool);
    }
    let a = console
        .call_as(&signed, Method::POST, "/api/v1/clusters", Some(body))
        .await;
    after(&console, &signed, a).await
}

async fn delete_cluster(
    State(console): State<Console>,
    Path(c): Path<String>,
    CsrfForm(signed, _): CsrfForm,
) -> Response {
    let path = format!("/api/v1/clusters/{}", urlencode(&c));
    let a = console.call_as(&signed, Method::DELETE, &path, None).await;
    after(&console, &signed, a).await
}

async fn create_node(State(console): State<Console>, CsrfForm(signed, form): CsrfForm) -> Response {
    let labels = match labels(&field(&form, "labels")) {
        Ok(l) => l,
        Err(m) => {
            return with_status(
                show(&console, &signed, Some(m)).await,
                axum::http::StatusCode::BAD_REQUEST,
            )
        }
    };
    let mut body = json!({
        "name": field(&form, "name"),
        "cluster": field(&form, "cluster"),
        "edge_url": field(&form, "edge_url"),
        "labels": labels,
    });
    let token = field(&form, "edge_controller_token");
    if !token.is_empty() {
        body["edge_controller_token"] = json!(token);
    }
    let a = console
        .call_as(&signed, Method::POST, "/api/v1/nodes", Some(body))
        .await;
    after(&console, &signed, a).await
}

/// Sets the labels to those given: new and changed ones set, missing ones removed.
async fn relabel(
    State(console): State<Console>,
    Path(n): Path<String>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let wanted = match labels(&field(&form, "labels")) {
        Ok(l) => l,
        Err(m) => {
            return with_status(
                show(&console, &signed, Some(m)).await,
                axum::http::StatusCode::BAD_REQUEST,
            )
        }
    };
    let path = format!("/api/v1/nodes/{}", urlencode(&n));
    let now = console.call_as(&signed, Method::GET, &path, None).await;
    let mut patch: BTreeMap<String, Option<String>> = now.json["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| (k.clone(), None))
        .collect();
    patch.extend(wanted.into_iter().map(|(k, v)| (k, Some(v))));
    let a = console
        .call_as(
            &signed,
            Method::PATCH,
            &path,
            Some(json!({ "labels": patch })),
        )
        .await;
    after(&console, &signed, a).await
}

async fn delete_node(
    State(console): State<Console>,
    Path(n): Path<String>,
    CsrfForm(signed, _): CsrfForm,
) -> Response {
    let path = format!("/api/v1/nodes/{}", urlencode(&n));
    let a = console.call_as(&signed, Method::DELETE, &path, None).await;
    after(&console, &signed, a).await
}

/// The node's kubeconfig for a project, as a file to save.
async fn kubeconfig(
    State(console): State<Console>,
    Path(n): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let project = q.get("project").cloned().unwrap_or_default();
    let path = format!(
        "/api/v1/nodes/{}/kubeconfig?project={}",
        urlencode(&n),
        urlencode(&project)
    );
    match console.open_as(&signed, &path).await {
        Ok(res) => {
            let body = res.into_body();
            let file = format!("attachment; filename=\"kubeconfig-{n}-{project}.yaml\"");
            let mut r = body.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/yaml"),
            );
            if let Ok(v) = HeaderValue::from_str(&file) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(a) => with_status(show(&console, &signed, Some(a.error())).await, a.status),
    }
}
