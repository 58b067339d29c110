//! The project screens: the list (and creating one), a project's header and
//! tabs, its members and roles, and its settings (visibility, delete); the
//! robots tab is `robots`. Every change is an admin API call
//! as the signed-in account; buttons the API would refuse are not shown.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use berth_registry::auth::policy::{Manage, Role};
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{self, alert, button_form, page, time, Section};
use super::{done, urlencode, Console, CsrfForm, Ctx, Signed};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/projects", get(list).post(create))
        .route("/ui/projects/{p}/members", get(members).post(put_member))
        .route(
            "/ui/projects/{p}/members/{user}/delete",
            post(delete_member),
        )
        .route("/ui/projects/{p}/settings", get(settings))
        .route("/ui/projects/{p}/visibility", post(visibility))
        .route("/ui/projects/{p}/delete", post(delete_project))
}

/// The caller's role in `project` (None: not a member).
pub fn role(console: &Console, ctx: &Ctx, project: &str) -> Option<Role> {
    let s = ctx.session.as_ref()?;
    console.access().accounts.role(project, s.name())
}

/// Whether the API would let the caller do `what` in `project`.
pub fn may(console: &Console, ctx: &Ctx, project: &str, what: Manage) -> bool {
    ctx.session.as_ref().is_some_and(|s| s.subject.admin)
        || role(console, ctx, project).is_some_and(|r| r.may(what))
}

/// Whether the caller holds at least `least` in `project` (system
/// administrators hold every role): the controller lets developers change
/// apps and resources, and maintainers destroy a volume's data.
pub fn holds(console: &Console, ctx: &Ctx, project: &str, least: Role) -> bool {
    is_admin(ctx) || role(console, ctx, project).is_some_and(|r| r >= least)
}

fn is_admin(ctx: &Ctx) -> bool {
    ctx.session.as_ref().is_some_and(|s| s.subject.admin)
}

/// The API's refusal as a page with its status.
pub fn refused(ctx: &Ctx, a: &super::ApiAnswer) -> Response {
    layout::error_page(ctx, a.status, &a.error())
}

async fn list(State(console): State<Console>, Signed { ctx, session }: Signed) -> Response {
    let a = console
        .call(
            Some(&session),
            ctx.peer,
            Method::GET,
            "/api/v1/projects",
            None,
        )
        .await;
    if !a.ok() {
        return refused(&ctx, &a);
    }
    list_page(
        &console,
        &ctx,
        a.json.as_array().map_or(&[][..], Vec::as_slice),
        None,
    )
}

fn list_page(console: &Console, ctx: &Ctx, projects: &[Value], msg: Option<&str>) -> Response {
    let t = |s| ctx.t(s);
    let body = html! {
        div.toolbar { h1 { (t("Projects")) } }
        @if let Some(m) = msg { (alert(false, m)) }
        @if is_admin(ctx) {
            section.card {
                h2 { (t("New project")) }
                form.row method="post" action="/ui/projects" {
                    (layout::csrf(ctx))
                    label { span { (t("Name")) } input type="text" name="name" required pattern="[a-z0-9]+(-[a-z0-9]+)*" minlength="2" maxlength="63" placeholder="team-a"; }
                    label.check { input type="checkbox" name="public" value="true"; span { (t("Public")) } }
                    button type="submit" { (t("Create")) }
                }
            }
        }
        section.card {
            @if projects.is_empty() { p.empty { (t("No projects yet.")) } } @else {
                table.responsive {
                    thead { tr { th { (t("Name")) } th { (t("Access level")) } th { (t("Your role")) } th { (t("Created")) } } }
                    tbody {
                        @for p in projects {
                            @let name = p["name"].as_str().unwrap_or("");
                            tr {
                                td data-label=(t("Name")) { a.project-link href={"/ui/projects/" (urlencode(name))} { b { (name) } }
                                    @if p.get("proxy").is_some_and(|v| !v.is_null()) { " " span.pill { "proxy" } } }
                                td data-label=(t("Access level")) { (visibility_pill(ctx, p["public"].as_bool().unwrap_or(false))) }
                                td data-label=(t("Your role")) { (role_text(console, ctx, name)) }
                                td data-label=(t("Created")) { (p["created"].as_u64().map(time).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(ctx, t("Projects"), Section::Projects, body)
}

fn role_text(console: &Console, ctx: &Ctx, project: &str) -> String {
    match role(console, ctx, project) {
        Some(r) => r.title().to_string(),
        None if is_admin(ctx) => ctx.t("system administrator").to_string(),
        None => ctx.t("none").to_string(),
    }
}

pub fn visibility_pill(ctx: &Ctx, public: bool) -> Markup {
    html! {
        @if public { span.pill.public { (ctx.t("Public")) } } @else { span.pill.private { (ctx.t("Private")) } }
    }
}

async fn create(State(console): State<Console>, CsrfForm(signed, form): CsrfForm) -> Response {
    let name = form
        .get("name")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let public = form.get("public").is_some_and(|v| v == "true");
    let (ctx, s) = (&signed.ctx, &signed.session);
    let a = console
        .call(
            Some(s),
            ctx.peer,
            Method::POST,
            "/api/v1/projects",
            Some(serde_json::json!({ "name": name, "public": public })),
        )
        .await;
    if a.ok() {
        return done(&format!("/ui/projects/{}", urlencode(&name)));
    }
    let l = console
        .call(Some(s), ctx.peer, Method::GET, "/api/v1/projects", None)
        .await;
    let mut r = list_page(
        &console,
        ctx,
        l.json.as_array().map_or(&[][..], Vec::as_slice),
        Some(&a.error()),
    );
    *r.status_mut() = a.status;
    r
}

/// Which tab of a project page is open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Repositories,
    Apps,
    Resources,
    Members,
    Robots,
    Settings,
}

/// The project's header and tabs, over `body`; the project as the API shows it.
pub fn project_page(
    ctx: &Ctx,
    project: &Value,
    tab: Tab,
    crumbs: Markup,
    body: Markup,
) -> Response {
    let t = |s| ctx.t(s);
    let name = project["name"].as_str().unwrap_or("");
    let base = format!("/ui/projects/{}", urlencode(name));
    let cls = |x: Tab| if x == tab { "current" } else { "" };
    let body = html! {
        p.crumbs { a href="/ui/projects" { (t("Projects")) } " / " (crumbs) }
        div.toolbar { h1 { (name) " " (visibility_pill(ctx, project["public"].as_bool().unwrap_or(false))) } }
        nav.tabs {
            a class=(cls(Tab::Repositories)) href=(base) { (t("Repositories")) }
            a class=(cls(Tab::Apps)) href={(base) "/apps"} { (t("Apps")) }
            a class=(cls(Tab::Resources)) href={(base) "/resources/loadbalancers"} { (t("Access and storage")) }
            a class=(cls(Tab::Members)) href={(base) "/members"} { (t("Members")) }
            a class=(cls(Tab::Robots)) href={(base) "/robots"} { (t("Robot accounts")) }
            a class=(cls(Tab::Settings)) href={(base) "/settings"} { (t("Settings")) }
        }
        (body)
    };
    page(ctx, name, Section::Projects, body)
}

/// The project as the API shows the caller, or the API's refusal.
pub async fn fetch_project(console: &Console, signed: &Signed, p: &str) -> Result<Value, Response> {
    let a = console
        .call_as(
            signed,
            Method::GET,
            &format!("/api/v1/projects/{}", urlencode(p)),
            None,
        )
        .await;
    if a.ok() {
        Ok(a.json)
    } else {
        Err(refused(&signed.ctx, &a))
    }
}

async fn members(
    State(console): State<Console>,
    Path(p): Path<String>,
    signed: Signed,
) -> Response {
    members_page(&console, &signed, &p, None).await
}

async fn members_page(
    console: &Console,
    signed: &Signed,
    p: &str,
    msg: Option<(bool, String)>,
) -> Response {
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    let a = console
        .call(
            Some(&signed.session),
            ctx.peer,
            Method::GET,
            &format!("/api/v1/projects/{}/members", urlencode(p)),
            None,
        )
        .await;
    if !a.ok() {
        return refused(ctx, &a);
    }
    let list = a.json.as_array().cloned().unwrap_or_default();
    let manage = |r: Role| may(console, ctx, p, Manage::Member(r));
    let base = format!("/ui/projects/{}/members", urlencode(p));
    let body = html! {
        @if let Some((ok, m)) = &msg { (alert(*ok, m)) }
        @if manage(Role::Guest) {
            section.card {
                h2 { (t("Add member")) }
                form.row method="post" action=(base) {
                    (layout::csrf(ctx))
                    label { span { (t("User")) } input type="text" name="user" required autocapitalize="none"; }
                    label { span { (t("Role")) } (role_select(None)) }
                    button type="submit" { (t("Add or change")) }
                }
            }
        }
        section.card {
            table.responsive {
                thead { tr { th { (t("User")) } th { (t("Role")) } th {} } }
                tbody {
                    @for m in &list {
                        @let user = m["user"].as_str().unwrap_or("");
                        @let r = m["role"].as_str().and_then(|r| r.parse::<Role>().ok());
                        tr {
                            td data-label=(t("User")) { b { (user) } }
                            td data-label=(t("Role")) {
                                @if r.is_some_and(manage) {
                                    form.inline method="post" action=(base) {
                                        (layout::csrf(ctx))
                                        input type="hidden" name="user" value=(user);
                                        (role_select(r))
                                        " " button.secondary.small type="submit" { (t("Change role")) }
                                    }
                                } @else { (r.map_or("", Role::title)) }
                            }
                            td {
                                @if r.is_some_and(manage) {
                                    (button_form(ctx, &format!("{base}/{}/delete", urlencode(user)), t("Remove"), t("Remove this member?"), &[]))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    project_page(ctx, &project, Tab::Members, html! { (p) }, body)
}

fn role_select(current: Option<Role>) -> Markup {
    html! {
        select name="role" {
            @for r in Role::ALL { option value=(r.as_str()) selected[current == Some(r)] { (r.title()) } }
        }
    }
}

async fn put_member(
    State(console): State<Console>,
    Path(p): Path<String>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let user = form
        .get("user")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let role = form.get("role").cloned().unwrap_or_default();
    let path = format!(
        "/api/v1/projects/{}/members/{}",
        urlencode(&p),
        urlencode(&user)
    );
    let a = console
        .call_as(
            &signed,
            Method::PUT,
            &path,
            Some(serde_json::json!({ "role": role })),
        )
        .await;
    if a.ok() {
        return done(&format!("/ui/projects/{}/members", urlencode(&p)));
    }
    with_status(
        members_page(&console, &signed, &p, Some((false, a.error()))).await,
        a.status,
    )
}

async fn delete_member(
    State(console): State<Console>,
    Path((p, user)): Path<(String, String)>,
    CsrfForm(signed, _): CsrfForm,
) -> Response {
    let path = format!(
        "/api/v1/projects/{}/members/{}",
        urlencode(&p),
        urlencode(&user)
    );
    let a = console.call_as(&signed, Method::DELETE, &path, None).await;
    if a.ok() {
        return done(&format!("/ui/projects/{}/members", urlencode(&p)));
    }
    with_status(
        members_page(&console, &signed, &p, Some((false, a.error()))).await,
        a.status,
    )
}

pub fn with_status(mut r: Response, status: StatusCode) -> Response {
    if r.status().is_success() {
        *r.status_mut() = status;
    }
    r
}

async fn settings(
    State(console): State<Console>,
    Path(p): Path<String>,
    signed: Signed,
) -> Response {
    settings_page(&console, &signed, &p, None).await
}

async fn settings_page(
    console: &Console,
    signed: &Signed,
    p: &str,
    msg: Option<String>,
) -> Response {
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    let public = project["public"].as_bool().unwrap_or(false);
    let base = format!("/ui/projects/{}", urlencode(p));
    let body = html! {
        @if let Some(m) = &msg { (alert(false, m)) }
        section.card {
            h2 { (t("Access level")) }
            p { (visibility_pill(ctx, public)) " " @if public { span.muted { (t("Anyone may pull")) } } }
            p { (t("Your role")) ": " (role_text(console, ctx, p)) }
            @if may(console, ctx, p, Manage::Settings) {
                form.inline method="post" action={(base) "/visibility"} {
                    (layout::csrf(ctx))
                    input type="hidden" name="public" value=(if public { "false" } else { "true" });
                    button.secondary type="submit" { (if public { t("Make private") } else { t("Make public") }) }
                }
            }
        }
        @if is_admin(ctx) {
            section.card {
                h2 { (t("Delete this project")) }
                (button_form(ctx, &format!("{base}/delete"), t("Delete"), t("Delete this project? It must be empty."), &[]))
            }
        }
    };
    project_page(ctx, &project, Tab::Settings, html! { (p) }, body)
}

async fn visibility(
    State(console): State<Console>,
    Path(p): Path<String>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let public = form.get("public").is_some_and(|v| v == "true");
    let path = format!("/api/v1/projects/{}", urlencode(&p));
    let a = console
        .call_as(
            &signed,
            Method::PATCH,
            &path,
            Some(serde_json::json!({ "public": public })),
        )
        .await;
    if a.ok() {
        return done(&format!("/ui/projects/{}/settings", urlencode(&p)));
    }
    with_status(
        settings_page(&console, &signed, &p, Some(a.error())).await,
        a.status,
    )
}

async fn delete_project(
    State(console): State<Console>,
    Path(p): Path<String>,
    CsrfForm(signed, _): CsrfForm,
) -> Response {
    let path = format!("/api/v1/projects/{}", urlencode(&p));
    let a = console.call_as(&signed, Method::DELETE, &path, None).await;
    if a.ok() {
        return done("/ui/projects");
    }
    with_status(
        settings_page(&console, &signed, &p, Some(a.error())).await,
        a.status,
    )
}
