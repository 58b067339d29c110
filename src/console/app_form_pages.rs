//! The pages of the app form: a new app (with the load balancer and EIP
//! created along), and editing an app into a new template version, the form
//! filled from the latest one or from an older one (`?from=N`, to go back to
//! it with changes). A form posted with `op` (add or remove a
//! container row, from a browser without script) comes back with the row
//! added or removed and nothing saved. The calls are the controller API's,
//! as the signed-in account; refusals are shown in its words.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::html;
use serde_json::{json, Value};

use super::app_form::Draft;
use super::app_form_view::{self, Target, Usable};
use super::apps::show_app;
use super::layout::alert;
use super::live::{app_api, app_ui};
use super::projects::{fetch_project, project_page, refused, with_status, Tab};
use super::{done, urlencode, Console, CsrfForm, Signed};

pub fn routes() -> Router<Console> {
    Router::new()
        .route(
            "/ui/projects/{p}/new-app",
            get(new_app).post(create_from_form),
        )
        .route(
            "/ui/projects/{p}/apps/{a}/edit",
            get(edit_app).post(save_version),
        )
}

/// Which page the form is on.
#[derive(Clone, Copy)]
enum Page<'a> {
    New,
    /// Editing the app of this name, starting from this version (None: the latest).
    Edit(&'a str, Option<u64>),
}

async fn new_app(
    State(console): State<Console>,
    Path(p): Path<String>,
    signed: Signed,
) -> Response {
    form_page(&console, &signed, &p, Page::New, &Draft::new_app(), None).await
}

async fn edit_app(
    State(console): State<Console>,
    Path((p, a)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let from = q.get("from").and_then(|v| v.parse().ok());
    let spec = match base_spec(&console, &signed, &p, &a, from).await {
        Ok(spec) => spec,
        Err(r) => return r,
    };
    let draft = Draft::from_spec(&a, &spec);
    form_page(&console, &signed, &p, Page::Edit(&a, from), &draft, None).await
}

/// The template an edit starts from: version `from`, else the latest.
async fn base_spec(
    console: &Console,
    signed: &Signed,
    p: &str,
    a: &str,
    from: Option<u64>,
) -> Result<Value, Response> {
    let path = match from {
        Some(v) => format!("{}/versions/{v}", app_api(p, a)),
        None => app_api(p, a),
    };
    let r = console.call_as(signed, Method::GET, &path, None).await;
    if !r.ok() {
        return Err(refused(&signed.ctx, &r));
    }
    // A version is `{version, spec, ...}`; an app holds its latest as `latest`.
    let version = if from.is_some() {
        &r.json
    } else {
        &r.json["latest"]
    };
    Ok(version["spec"].clone())
}

async fn form_page(
    console: &Console,
    signed: &Signed,
    p: &str,
    page: Page<'_>,
    draft: &Draft,
    msg: Option<String>,
) -> Response {
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let images = image_suggestions(console, signed, p).await;
    let mut usable: Usable = Vec::new();
    for kind in ["configmaps", "secrets", "volumes"] {
        let path = format!("/api/v1/projects/{}/{kind}", urlencode(p));
        let a = console.call_as(signed, Method::GET, &path, None).await;
        let names = a.json.as_array().into_iter().flatten();
        usable.push((
            kind,
            names
                .filter_map(|r| r["name"].as_str().map(str::to_string))
                .collect(),
        ));
    }
    let apps = html! { a href={"/ui/projects/" (urlencode(p)) "/apps"} { (p) } };
    let (crumbs, title, action) = match page {
        Page::New => (
            html! { (apps) " / " (ctx.t("New app")) },
            ctx.t("New app").to_string(),
            format!("/ui/projects/{}/new-app", urlencode(p)),
        ),
        Page::Edit(a, from) => (
            html! { (apps) " / " a href=(app_ui(p, a)) { (a) } " / " (ctx.t("Edit")) },
            match from {
                Some(v) => format!("{} {a} ({} v{v})", ctx.t("A new version of"), ctx.t("from")),
                None => format!("{} {a}", ctx.t("A new version of")),
            },
            match from {
                Some(v) => format!("{}/edit?from={v}", app_ui(p, a)),
                None => format!("{}/edit", app_ui(p, a)),
            },
        ),
    };
    let target = match page {
        Page::New => Target::New { action: &action },
        Page::Edit(..) => Target::Edit { action: &action },
    };
    let body = html! {
        @if let Some(m) = &msg { (alert(false, m)) }
        section.card {
            h2 { (title) }
            (app_form_view::form(ctx, target, draft, &images, &usable))
        }
    };
    project_page(ctx, &project, Tab::Apps, crumbs, body)
}

/// A row added to or removed from `draft` (a browser without script asks
/// so): true when the form is to be shown again rather than saved.
fn row_op(form: &HashMap<String, String>, draft: &mut Draft) -> bool {
    match form.get("op").map(String::as_str) {
        Some("add") => draft.add_container(),
        Some(op) => match op.strip_prefix("remove:").and_then(|i| i.parse().ok()) {
            Some(row) => draft.remove_row(form, row),
            None => return false,
        },
        None => return false,
    }
    true
}

/// Most suggestions offered for the image field.
const SUGGESTIONS: usize = 200;

/// `repo:tag` of the images in this project and in the proxy projects the
/// caller can see (public images pulled through them), newest API order.
async fn image_suggestions(console: &Console, signed: &Signed, p: &str) -> Vec<String> {
    let all = console
        .call_as(signed, Method::GET, "/api/v1/projects", None)
        .await;
    let sources: Vec<String> = all
        .json
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["name"] == p || x.get("proxy").is_some_and(|v| !v.is_null()))
        .filter_map(|x| x["name"].as_str().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for source in sources {
        let Ok(project) = fetch_project(console, signed, &source).await else {
            continue;
        };
        for repo in project["repositories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if out.len() >= SUGGESTIONS {
                return out;
            }
            let path = format!(
                "/api/v1/projects/{}/repositories/{}/tags",
                urlencode(&source),
                urlencode(repo)
            );
            let tags = console.call_as(signed, Method::GET, &path, None).await;
            for tag in tags
                .json
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str())
            {
                out.push(format!("{repo}:{tag}"));
            }
        }
    }
    out.truncate(SUGGESTIONS);
    out
}

/// The app, then the load balancer and the EIP asked for with it; what the
/// API refuses is said where it happened (the app page once the app exists).
async fn create_from_form(
    State(console): State<Console>,
    Path(p): Path<String>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let mut draft = Draft::from_form(&form);
    if row_op(&form, &mut draft) {
        return form_page(&console, &signed, &p, Page::New, &draft, None).await;
    }
    let plan = match draft.plan() {
        Ok(plan) => plan,
        Err(m) => {
            let page = form_page(&console, &signed, &p, Page::New, &draft, Some(m)).await;
            return with_status(page, StatusCode::BAD_REQUEST);
        }
    };
    let name = draft.name.clone();
    let api = format!("/api/v1/projects/{}/apps", urlencode(&p));
    let a = console
        .call_as(&signed, Method::POST, &api, Some(plan.app))
        .await;
    if !a.ok() {
        let page = form_page(&console, &signed, &p, Page::New, &draft, Some(a.error())).await;
        return with_status(page, a.status);
    }
    let extra = [("loadbalancers", plan.load_balancer), ("eips", plan.eip)];
    for (kind, body) in extra {
        let Some(body) = body else { continue };
        let path = format!("/api/v1/projects/{}/{kind}", urlencode(&p));
        let r = console
            .call_as(&signed, Method::POST, &path, Some(body))
            .await;
        if !r.ok() {
            let msg = format!(
                "{} {}",
                signed.ctx.t("The app was created; this was not:"),
                r.error()
            );
            return with_status(
                show_app(&console, &signed, &p, &name, Some(msg)).await,
                r.status,
            );
        }
    }
    done(&app_ui(&p, &name))
}

/// The edited form as the app's next template version, starting from the
/// latest one for what the form does not show.
async fn save_version(
    State(console): State<Console>,
    Path((p, a)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let from = q.get("from").and_then(|v| v.parse().ok());
    let page = Page::Edit(&a, from);
    let mut draft = Draft::from_form(&form);
    draft.name.clone_from(&a);
    if row_op(&form, &mut draft) {
        return form_page(&console, &signed, &p, page, &draft, None).await;
    }
    let base = match base_spec(&console, &signed, &p, &a, from).await {
        Ok(spec) => spec,
        Err(r) => return r,
    };
    let spec = match draft.spec(Some(&base)) {
        Ok(spec) => spec,
        Err(m) => {
            let shown = form_page(&console, &signed, &p, page, &draft, Some(m)).await;
            return with_status(shown, StatusCode::BAD_REQUEST);
        }
    };
    let mut body = json!({ "spec": spec });
    if let Some(m) = form
        .get("message")
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
    {
        body["message"] = json!(m);
    }
    let r = console
        .call_as(&signed, Method::PUT, &app_api(&p, &a), Some(body))
        .await;
    if r.ok() {
        return done(&app_ui(&p, &a));
    }
    let shown = form_page(&console, &signed, &p, page, &draft, Some(r.error())).await;
    with_status(shown, r.status)
}
