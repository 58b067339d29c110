//! A project's robot accounts: the list, creating one (its secret shown
//! once, in the answer to the create), revoking one. Through the admin API
//! as the signed-in account, like every console change.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use berth_registry::auth::policy::Manage;
use maud::html;
use serde_json::Value;

use super::layout::{self, alert, button_form, time};
use super::projects::{fetch_project, may, project_page, with_status, Tab};
use super::{done, urlencode, Console, CsrfForm, Signed};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/projects/{p}/robots", get(robots).post(create_robot))
        .route("/ui/projects/{p}/robots/{robot}/revoke", post(revoke_robot))
}

async fn robots(State(console): State<Console>, Path(p): Path<String>, signed: Signed) -> Response {
    robots_page(&console, &signed, &p, None, None).await
}

async fn robots_page(
    console: &Console,
    signed: &Signed,
    p: &str,
    msg: Option<String>,
    created: Option<&Value>,
) -> Response {
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    let manage = may(console, ctx, p, Manage::Robots);
    let base = format!("/ui/projects/{}/robots", urlencode(p));
    let a = console
        .call(
            Some(&signed.session),
            ctx.peer,
            Method::GET,
            &format!("/api/v1/projects/{}/robots", urlencode(p)),
            None,
        )
        .await;
    let list = if a.ok() {
        a.json.as_array().cloned().unwrap_or_default()
    } else {
        Vec::new()
    };
    let body = html! {
        @if let Some(m) = &msg { (alert(false, m)) }
        @if let Some(c) = created {
            section.card.secret #robot-secret {
                p { b { (t("Copy the secret now: it is shown only once.")) } }
                p { (t("Robot name")) ": " code #robot-name { (c["name"].as_str().unwrap_or("")) } }
                div.cmd { code #secret-value { (c["secret"].as_str().unwrap_or("")) }
                    button.secondary.small type="button" data-copy="#secret-value" data-done=(t("Copied")) { (t("Copy")) } }
            }
        }
        @if manage {
            section.card {
                h2 { (t("New robot account")) }
                form.row method="post" action=(base) {
                    (layout::csrf(ctx))
                    label { span { (t("Name")) } input type="text" name="name" required autocapitalize="none" placeholder="ci"; }
                    label { span { (t("Permissions")) }
                        select name="access" { option value="pull" { (t("Pull only")) } option value="push" { (t("Pull and push")) } } }
                    button type="submit" { (t("Create")) }
                }
            }
        }
        section.card {
            @if !a.ok() { (alert(false, &a.error())) }
            @else if list.is_empty() { p.empty { "—" } }
            @else {
                table.responsive {
                    thead { tr { th { (t("Name")) } th { (t("Permissions")) } th { (t("Created")) } th { (t("Expires")) } th { (t("Status")) } th {} } }
                    tbody {
                        @for r in &list {
                            @let name = r["name"].as_str().unwrap_or("");
                            @let revoked = r["revoked"].as_bool().unwrap_or(false);
                            tr {
                                td data-label=(t("Name")) { code { (name) } }
                                td data-label=(t("Permissions")) { (r["access"].as_str().unwrap_or("")) }
                                td data-label=(t("Created")) { (r["created"].as_u64().map(time).unwrap_or_default()) }
                                td data-label=(t("Expires")) { (r["expires_at"].as_u64().map_or_else(|| t("Never").to_string(), time)) }
                                td data-label=(t("Status")) { @if revoked { span.pill.bad { (t("Revoked")) } } @else { span.pill.good { (t("Active")) } } }
                                td { @if manage && !revoked {
                                    (button_form(ctx, &format!("{base}/{}/revoke", urlencode(name)), t("Revoke"), t("Revoke this robot account?"), &[]))
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    project_page(ctx, &project, Tab::Robots, html! { (p) }, body)
}

async fn create_robot(
    State(console): State<Console>,
    Path(p): Path<String>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let name = form
        .get("name")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let access = form.get("access").cloned().unwrap_or_else(|| "pull".into());
    let path = format!("/api/v1/projects/{}/robots", urlencode(&p));
    let a = console
        .call_as(
            &signed,
            Method::POST,
            &path,
            Some(serde_json::json!({ "name": name, "access": access })),
        )
        .await;
    if a.ok() {
        // The secret is in this answer only: shown now, never again.
        return robots_page(&console, &signed, &p, None, Some(&a.json)).await;
    }
    with_status(
        robots_page(&console, &signed, &p, Some(a.error()), None).await,
        a.status,
    )
}

async fn revoke_robot(
    State(console): State<Console>,
    Path((p, robot)): Path<(String, String)>,
    CsrfForm(signed, _): CsrfForm,
) -> Response {
    let path = format!(
        "/api/v1/projects/{}/robots/{}",
        urlencode(&p),
        urlencode(&robot)
    );
    let a = console.call_as(&signed, Method::DELETE, &path, None).await;
    if a.ok() {
        return done(&format!("/ui/projects/{}/robots", urlencode(&p)));
    }
    with_status(
        robots_page(&console, &signed, &p, Some(a.error()), None).await,
        a.status,
    )
}
