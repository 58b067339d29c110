//! Changing a resource's spec: its kind's form filled from the resource as
//! the API shows it, saved with a PUT. A secret's values are never shown, so
//! its form asks for every value again (the data sent replaces the old).
//! The API's rules (a volume's capacity does not change, a load balancer's
//! ports must be valid) come back in its words above the form.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::html;

use super::layout::{self, alert};
use super::projects::{fetch_project, holds, project_page, refused, with_status, Tab};
use super::resource_forms::{self, kind};
use super::resources::{api, ui};
use super::{done, urlencode, Console, CsrfForm, Signed};
use berth_registry::auth::policy::Role;

pub async fn page(
    State(console): State<Console>,
    Path((p, k, n)): Path<(String, String, String)>,
    signed: Signed,
) -> Response {
    let ctx = &signed.ctx;
    let Some(kind) = kind(&k) else {
        return layout::error_page(ctx, StatusCode::NOT_FOUND, ctx.t("Not found"));
    };
    let path = format!("{}/{}", api(&p, kind), urlencode(&n));
    let r = console.call_as(&signed, Method::GET, &path, None).await;
    if !r.ok() {
        return refused(ctx, &r);
    }
    let values = resource_forms::values(kind, &r.json);
    form_page(&console, &signed, &p, &k, &n, &values, None).await
}

async fn form_page(
    console: &Console,
    signed: &Signed,
    p: &str,
    k: &str,
    n: &str,
    values: &HashMap<String, String>,
    msg: Option<String>,
) -> Response {
    let ctx = &signed.ctx;
    let Some(kind) = kind(k) else {
        return layout::error_page(ctx, StatusCode::NOT_FOUND, ctx.t("Not found"));
    };
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let t = |s| ctx.t(s);
    let write = holds(console, ctx, p, Role::Developer);
    let list = ui(p, kind);
    let description = values.get("description").map_or("", String::as_str);
    let body = html! {
        @if let Some(m) = &msg { (alert(false, m)) }
        section.card {
            h2 { (t("Edit")) " " (n) }
            @if !write { p.muted { (t("You may look at it but not change it.")) } }
            @if kind.slug == "secrets" { p.hint { (t("Give every value again: the data sent replaces the old, whose values are never shown.")) } }
            form.stack #edit method="post" action={(list) "/" (urlencode(n)) "/edit"} {
                (layout::csrf(ctx))
                label { span { (t("Description")) } input type="text" name="description" value=(description); }
                (resource_forms::fields(ctx, kind, values))
                @if write { button type="submit" { (t("Save")) } }
                " " a.button.secondary href=(list) { (t("Cancel")) }
            }
        }
    };
    let crumbs = html! { (p) " / " a href=(list) { (t(kind.title)) } " / " (n) };
    project_page(ctx, &project, Tab::Resources, crumbs, body)
}

pub async fn save(
    State(console): State<Console>,
    Path((p, k, n)): Path<(String, String, String)>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let Some(kind) = kind(&k) else {
        let ctx = &signed.ctx;
        return layout::error_page(ctx, StatusCode::NOT_FOUND, ctx.t("Not found"));
    };
    let mut named = form.clone();
    named.insert("name".into(), n.clone());
    let body = match resource_forms::body(kind, &named) {
        Ok(b) => b,
        Err(m) => {
            let page = form_page(&console, &signed, &p, &k, &n, &form, Some(m)).await;
            return with_status(page, StatusCode::BAD_REQUEST);
        }
    };
    let path = format!("{}/{}", api(&p, kind), urlencode(&n));
    let r = console
        .call_as(&signed, Method::PUT, &path, Some(body))
        .await;
    if r.ok() {
        return done(&ui(&p, kind));
    }
    let page = form_page(&console, &signed, &p, &k, &n, &form, Some(r.error())).await;
    with_status(page, r.status)
}
