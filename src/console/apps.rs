//! A project's apps: the list with each node's state and version, creating
//! one from pasted Kubernetes YAML, and an app's page: its latest template,
//! the live publish view (see `live`), publishing a version to nodes picked
//! from the list or by a label selector, unpublishing, and cloning (the
//! form for a new app and for a new version is `app_form_pages`). Every
//! change is a controller API call as the signed-in account; its refusals
//! are shown as the API words them.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::app_form_pages;
use super::layout::{self, alert, time};
use super::live::{self, app_api, app_ui};
use super::projects::{fetch_project, holds, project_page, refused, with_status, Tab};
use super::resource_forms::labels;
use super::{done, urlencode, Console, CsrfForm, Ctx, Signed};
use berth_registry::auth::policy::Role;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/projects/{p}/apps", get(list).post(create))
        .merge(app_form_pages::routes())
        .route("/ui/projects/{p}/apps/{a}", get(app_page))
        .route("/ui/projects/{p}/apps/{a}/publish", post(publish))
        .route("/ui/projects/{p}/apps/{a}/unpublish", post(unpublish))
        .route("/ui/projects/{p}/apps/{a}/clone", post(clone))
}

/// An example the YAML box starts with.
const YAML_HINT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: PROJECT/web:1.0\n";

fn apps_api(p: &str) -> String {
    format!("/api/v1/projects/{}/apps", urlencode(p))
}

async fn list(State(console): State<Console>, Path(p): Path<String>, signed: Signed) -> Response {
    list_page(&console, &signed, &p, None, "").await
}

async fn list_page(
    console: &Console,
    signed: &Signed,
    p: &str,
    msg: Option<String>,
    yaml: &str,
) -> Response {
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    let a = console
        .call_as(signed, Method::GET, &apps_api(p), None)
        .await;
    if !a.ok() {
        return refused(ctx, &a);
    }
    let apps = a.json.as_array().cloned().unwrap_or_default();
    // Each app's nodes, as its publications say.
    let mut nodes: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for app in &apps {
        let name = app["name"].as_str().unwrap_or("");
        let path = format!("{}/publications", app_api(p, name));
        let pubs = console.call_as(signed, Method::GET, &path, None).await;
        nodes.insert(
            name.to_string(),
            pubs.json["publications"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    let yaml = if yaml.is_empty() {
        YAML_HINT.replace("PROJECT", p)
    } else {
        yaml.to_string()
    };
    let body = html! {
        @if let Some(m) = &msg { (alert(false, m)) }
        section.card {
            @if apps.is_empty() { p.empty { (t("No apps yet.")) } } @else {
                table.responsive #apps {
                    thead { tr { th { (t("Name")) } th { (t("Kind")) } th { (t("Latest version")) } th { (t("Nodes")) } th { (t("Created")) } } }
                    tbody {
                        @for app in &apps {
                            @let name = app["name"].as_str().unwrap_or("");
                            tr data-app=(name) {
                                td data-label=(t("Name")) { a.app-link href=(app_ui(p, name)) { b { (name) } } }
                                td data-label=(t("Kind")) { (app["kind"].as_str().unwrap_or("")) }
                                td data-label=(t("Latest version")) { (app["latest_version"]) }
                                td data-label=(t("Nodes")) {
                                    @let pubs = nodes.get(name).map_or(&[][..], Vec::as_slice);
                                    @if pubs.is_empty() { span.muted { (t("not published")) } }
                                    @for pb in pubs { (node_pill(ctx, pb)) }
                                }
                                td data-label=(t("Created")) { (app["created_at"].as_u64().map(time).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
        @if holds(console, ctx, p, Role::Developer) { section.card {
            div.toolbar {
                h2 { (t("New app from Kubernetes YAML")) }
                a.button.secondary #new-app-form href={"/ui/projects/" (urlencode(p)) "/new-app"} { (t("Or from a form")) }
            }
            p.hint { (t("One workload (Deployment, StatefulSet or DaemonSet) and the Services, Ingresses, ConfigMaps, Secrets and PersistentVolumeClaims labelled app: <name>.")) }
            form.stack method="post" action={"/ui/projects/" (urlencode(p)) "/apps"} {
                (layout::csrf(ctx))
                label { span { (t("Manifest")) } textarea name="yaml" rows="16" spellcheck="false" required { (yaml) } }
                button type="submit" { (t("Create")) }
            }
        } }
    };
    project_page(ctx, &project, Tab::Apps, html! { (p) }, body)
}

/// `node: state vN`, coloured by state.
fn node_pill(ctx: &Ctx, p: &Value) -> Markup {
    let state = p["state"].as_str().unwrap_or("");
    let cls = match state {
        "running" => "pill good",
        "failed" => "pill bad",
        _ => "pill",
    };
    html! {
        span class=(cls) data-node=(p["node"].as_str().unwrap_or("")) {
            (p["node"].as_str().unwrap_or("")) ": " (live::state_text(ctx, state)) " v" (p["version"])
        }
    }
}

async fn create(
    State(console): State<Console>,
    Path(p): Path<String>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let yaml = form.get("yaml").cloned().unwrap_or_default();
    let a = console
        .call_with(
            &signed,
            Method::POST,
            &apps_api(&p),
            "application/yaml",
            yaml.clone().into_bytes(),
        )
        .await;
    if a.ok() {
        let name = a.json["name"].as_str().unwrap_or("");
        return done(&app_ui(&p, name));
    }
    with_status(
        list_page(&console, &signed, &p, Some(a.error()), &yaml).await,
        a.status,
    )
}

async fn app_page(
    State(console): State<Console>,
    Path((p, a)): Path<(String, String)>,
    signed: Signed,
) -> Response {
    show_app(&console, &signed, &p, &a, None).await
}

pub(super) async fn show_app(
    console: &Console,
    signed: &Signed,
    p: &str,
    a: &str,
    msg: Option<String>,
) -> Response {
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    let app = console
        .call_as(signed, Method::GET, &app_api(p, a), None)
        .await;
    if !app.ok() {
        return refused(ctx, &app);
    }
    let app = app.json;
    let path = format!("{}/publications", app_api(p, a));
    let pubs = console.call_as(signed, Method::GET, &path, None).await;
    let pubs = pubs.json["publications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Every node, for the publish form (an empty list for those who may not see them).
    let nodes = console
        .call_as(signed, Method::GET, "/api/v1/nodes", None)
        .await;
    let nodes = nodes.json.as_array().cloned().unwrap_or_default();
    let latest = app["latest_version"].as_u64().unwrap_or(1);
    let base = app_ui(p, a);
    let write = holds(console, ctx, p, Role::Developer);
    let images: Vec<String> = app["latest"]["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["image"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let crumbs = html! { a href={"/ui/projects/" (urlencode(p)) "/apps"} { (p) } " / " (a) };
    let body = html! {
        @if let Some(m) = &msg { (alert(false, m)) }
        section.card {
            div.toolbar {
                h2 { (a) " " span.pill { (app["kind"].as_str().unwrap_or("")) } " " span.pill #latest-version { "v" (latest) } }
                span {
                    @if write { a.button.secondary #edit-app-link href={(base) "/edit"} { (t("Edit")) } " " }
                    @if write { a.button.secondary href={(base) "/logs"} { (t("Logs")) } " " }
                    a.button.secondary href={(base) "/versions"} { (t("Version history")) }
                }
            }
            p { (t("Images")) ": " @for i in &images { code { (i) } " " } }
            p.muted { (app["latest"]["summary"].as_str().unwrap_or("")) }
        }
        section.card {
            h2 { (t("Publications")) }
            (live::table(ctx, p, a, &pubs, write))
        }
        @if write {
            (publish_form(ctx, &base, latest, &nodes))
            section.card {
                h2 { (t("Clone")) }
                form.row method="post" action={(base) "/clone"} {
                    (layout::csrf(ctx))
                    label { span { (t("New app name")) } input type="text" name="name" required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="63"; }
                    button.secondary type="submit" { (t("Clone")) }
                }
            }
        }
    };
    project_page(ctx, &project, Tab::Apps, crumbs, body)
}

fn publish_form(ctx: &Ctx, base: &str, latest: u64, nodes: &[Value]) -> Markup {
    let t = |s| ctx.t(s);
    html! {
        section.card {
            h2 { (t("Publish")) }
            form.stack #publish method="post" action={(base) "/publish"} {
                (layout::csrf(ctx))
                label { span { (t("Version")) }
                    select name="version" {
                        @for v in (1..=latest).rev() { option value=(v) selected[v == latest] { "v" (v) } }
                    }
                }
                fieldset {
                    legend { (t("Nodes")) }
                    @if nodes.is_empty() { p.muted { (t("No nodes registered.")) } }
                    @for n in nodes {
                        @let name = n["name"].as_str().unwrap_or("");
                        label.check.node {
                            input type="checkbox" name={"node:" (name)} value="true";
                            span { b { (name) } " " @for (k, v) in n["labels"].as_object().into_iter().flatten() { span.pill { (k) "=" (v.as_str().unwrap_or("")) } } }
                        }
                    }
                }
                label { span { (t("Or every node with the labels")) } input type="text" name="selector" placeholder="zone=east,tier=edge" autocapitalize="none"; }
                button type="submit" { (t("Publish")) }
            }
        }
    }
}

async fn publish(
    State(console): State<Console>,
    Path((p, a)): Path<(String, String)>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let mut nodes: Vec<String> = form
        .iter()
        .filter(|(k, v)| k.starts_with("node:") && v.as_str() == "true")
        .map(|(k, _)| k["node:".len()..].to_string())
        .collect();
    nodes.sort();
    let mut body = json!({});
    if !nodes.is_empty() {
        body["nodes"] = json!(nodes);
    }
    match labels(form.get("selector").map_or("", String::as_str)) {
        Ok(sel) if !sel.is_empty() => body["selector"] = json!(sel),
        Ok(_) => {}
        Err(bad) => return show_app(&console, &signed, &p, &a, Some(bad)).await,
    }
    if let Some(v) = form.get("version").and_then(|v| v.parse::<u32>().ok()) {
        body["version"] = json!(v);
    }
    app_action(
        &console,
        &signed,
        (&p, &a),
        "publish",
        body,
        &app_ui(&p, &a),
    )
    .await
}

async fn unpublish(
    State(console): State<Console>,
    Path((p, a)): Path<(String, String)>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let node = form.get("node").cloned().unwrap_or_default();
    let cascade = form.get("cascade").is_some_and(|v| v == "true");
    let body = json!({ "nodes": [node], "cascade": cascade });
    app_action(
        &console,
        &signed,
        (&p, &a),
        "unpublish",
        body,
        &app_ui(&p, &a),
    )
    .await
}

async fn clone(
    State(console): State<Console>,
    Path((p, a)): Path<(String, String)>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let name = form
        .get("name")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let body = json!({ "name": name });
    app_action(
        &console,
        &signed,
        (&p, &a),
        "clone",
        body,
        &app_ui(&p, &name),
    )
    .await
}

/// POSTs one of an app's actions (`publish`, `unpublish`, `clone`) as the
/// signed-in account: on success to `then`, else the app's page again with
/// the API's refusal, under its status.
async fn app_action(
    console: &Console,
    signed: &Signed,
    (p, a): (&str, &str),
    action: &str,
    body: Value,
    then: &str,
) -> Response {
    let path = format!("{}/{action}", app_api(p, a));
    let r = console
        .call_as(signed, Method::POST, &path, Some(body))
        .await;
    if r.ok() {
        return done(then);
    }
    with_status(
        show_app(console, signed, p, a, Some(r.error())).await,
        r.status,
    )
}
