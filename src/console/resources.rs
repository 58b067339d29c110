//! Access and storage: a project's load balancers, EIPs, routes, config
//! maps, secrets and volumes. Each kind's list shows where each one is
//! published (per node, with its state), what uses it, a volume's bindings
//! and an EIP's addresses; and creates, changes (`resource_edit`),
//! publishes and unpublishes per node, deletes, and releases and unbinds
//! volumes. What destroys a volume's data
//! asks for its name typed again, as the API does (`confirm`). Every refusal
//! is shown as the API words it: its rules name themselves.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::layout::{self, alert};
use super::projects::{fetch_project, holds, project_page, refused, with_status, Tab};
use super::resource_edit;
use super::resource_forms::{self, kind, Kind, KINDS};
use super::{done, urlencode, Console, CsrfForm, Ctx, Signed};
use berth_registry::auth::policy::Role;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/projects/{p}/resources/{k}", get(list).post(create))
        .route(
            "/ui/projects/{p}/resources/{k}/{n}/edit",
            get(resource_edit::page).post(resource_edit::save),
        )
        .route("/ui/projects/{p}/resources/{k}/{n}/{action}", post(act))
}

pub(super) fn api(p: &str, k: Kind) -> String {
    format!("/api/v1/projects/{}/{}", urlencode(p), k.slug)
}

pub(super) fn ui(p: &str, k: Kind) -> String {
    format!("/ui/projects/{}/resources/{}", urlencode(p), k.slug)
}

async fn list(
    State(console): State<Console>,
    Path((p, k)): Path<(String, String)>,
    signed: Signed,
) -> Response {
    show(&console, &signed, &p, &k, None).await
}

/// The list of kind `k`, with a message (the API's words) above it.
async fn show(
    console: &Console,
    signed: &Signed,
    p: &str,
    k: &str,
    msg: Option<(bool, String)>,
) -> Response {
    let ctx = &signed.ctx;
    let Some(kind) = kind(k) else {
        let not_found = axum::http::StatusCode::NOT_FOUND;
        return layout::error_page(ctx, not_found, ctx.t("Not found"));
    };
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let a = console
        .call_as(signed, Method::GET, &api(p, kind), None)
        .await;
    if !a.ok() {
        return refused(ctx, &a);
    }
    // Each one as GET /{name} shows it: what uses it, bindings, addresses.
    let mut items = Vec::new();
    for r in a.json.as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("");
        let path = format!("{}/{}", api(p, kind), urlencode(name));
        let one = console.call_as(signed, Method::GET, &path, None).await;
        items.push(if one.ok() { one.json } else { r.clone() });
    }
    let nodes = console
        .call_as(signed, Method::GET, "/api/v1/nodes", None)
        .await;
    let nodes: Vec<String> = nodes
        .json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    let t = |s| ctx.t(s);
    let roles = Roles {
        write: holds(console, ctx, p, Role::Developer),
        data: holds(console, ctx, p, Role::Maintainer),
    };
    let body = html! {
        nav.tabs.subtabs {
            @for x in KINDS { a class=(if x == kind { "current" } else { "" }) href=(ui(p, x)) { (t(x.title)) } }
        }
        @if let Some((ok, m)) = &msg { (alert(*ok, m)) }
        section.card {
            @if items.is_empty() { p.empty { (t("None yet.")) } } @else {
                table.responsive #resources {
                    thead { tr { th { (t("Name")) } th { (t("Spec")) } th { (t("On nodes")) } th { (t("Used by")) } th {} } }
                    tbody { @for r in &items { (row(ctx, p, kind, r, &nodes, roles)) } }
                }
            }
        }
        @if roles.write { section.card {
            h2 { (t("Create")) }
            form.stack #create method="post" action=(ui(p, kind)) {
                (layout::csrf(ctx))
                label { span { (t("Name")) } input type="text" name="name" required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="63" autocapitalize="none"; }
                label { span { (t("Description")) } input type="text" name="description"; }
                (resource_forms::fields(ctx, kind, &Default::default()))
                button type="submit" { (t("Create")) }
            }
        } }
    };
    let crumbs = html! { (p) " / " (t(kind.title)) };
    project_page(ctx, &project, Tab::Resources, crumbs, body)
}

/// A field asking for the volume's name typed again, where data would go.
fn confirm_field(ctx: &Ctx, kind: Kind, name: &str) -> Markup {
    html! {
        @if kind.slug == "volumes" {
            input.confirm type="text" name="confirm" required pattern=(regex_quote(name)) autocomplete="off" autocapitalize="none"
                placeholder=(ctx.t("type the volume's name")) aria-label=(ctx.t("type the volume's name"));
        }
    }
}

/// `s` as a pattern matching only itself (browsers compile `pattern` with
/// the `v` flag, which refuses escapes of anything but syntax characters).
fn regex_quote(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\^$.|?*+()[]{}/".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// What the caller may do here: change resources (developer role and
/// above), destroy a volume's data (maintainer role and above).
#[derive(Clone, Copy)]
struct Roles {
    write: bool,
    data: bool,
}

fn row(ctx: &Ctx, p: &str, kind: Kind, r: &Value, nodes: &[String], roles: Roles) -> Markup {
    let t = |s| ctx.t(s);
    let name = r["name"].as_str().unwrap_or("");
    let base = format!("{}/{}", ui(p, kind), urlencode(name));
    let volume = kind.slug == "volumes";
    // Unpublishing or deleting a volume takes its data.
    let may_remove = if volume { roles.data } else { roles.write };
    let data_loss =
        t("This destroys the volume's data on that node, which cannot be recovered. Go ahead?");
    html! {
        tr data-name=(name) {
            td data-label=(t("Name")) { b { (name) } @if let Some(d) = r["description"].as_str().filter(|d| !d.is_empty()) { br; span.muted { (d) } } }
            td data-label=(t("Spec")) { code { (resource_forms::summary(kind, &r["spec"])) } }
            td data-label=(t("On nodes")) {
                @for pb in r["publications"].as_array().into_iter().flatten() {
                    @let node = pb["node"].as_str().unwrap_or("");
                    @let state = pb["state"].as_str().unwrap_or("");
                    div.on-node data-node=(node) data-state=(state) {
                        span class={"pill " (match state { "applied" => "good", "failed" => "bad", _ => "busy" })} { (node) ": " (t(state_word(state))) }
                        @if let Some(addr) = r["addresses"][node].as_str() { " " code { (addr) } }
                        @if let Some(e) = pb["last_error"].as_str() { " " span.reason { (e) } }
                        @if may_remove && pb["desired"] != "unpublished" {
                            form.inline.unpublish method="post" action={(base) "/unpublish"} data-confirm=(if volume { data_loss } else { t("Take it off this node?") }) {
                                (layout::csrf(ctx))
                                input type="hidden" name="node" value=(node);
                                (confirm_field(ctx, kind, name))
                                " " button.danger.small type="submit" { (t("Unpublish")) }
                            }
                        }
                    }
                }
                @for b in r["bindings"].as_array().into_iter().flatten() {
                    @let node = b["node"].as_str().unwrap_or("");
                    @let state = b["state"].as_str().unwrap_or("");
                    div.binding data-node=(node) data-binding=(state) {
                        span.pill.claim { (node) ": " (t(state_word(state))) }
                        @if state == "bound" && roles.data {
                            form.inline.release method="post" action={(base) "/release"} data-confirm=(data_loss) {
                                (layout::csrf(ctx))
                                input type="hidden" name="node" value=(node);
                                (confirm_field(ctx, kind, name))
                                " " button.danger.small type="submit" { (t("Release")) }
                            }
                        } @else if state == "released" && roles.write {
                            form.inline.unbind method="post" action={(base) "/unbind"} {
                                (layout::csrf(ctx))
                                input type="hidden" name="node" value=(node);
                                " " button.secondary.small type="submit" { (t("Unbind")) }
                            }
                        }
                    }
                }
                @if roles.write { form.inline.publish method="post" action={(base) "/publish"} {
                    (layout::csrf(ctx))
                    select name="node" aria-label=(t("Publish to")) {
                        option value="" { (t("where its apps run")) }
                        @for n in nodes { option value=(n) { (n) } }
                    }
                    " " button.secondary.small type="submit" { (t("Publish")) }
                } }
            }
            td data-label=(t("Used by")) {
                @for u in r["used_by"].as_array().into_iter().flatten() { span.pill { (u.as_str().unwrap_or("")) } }
            }
            td {
                @if roles.write { a.button.secondary.small.edit href={(base) "/edit"} { (t("Edit")) } " " }
                @if may_remove {
                    form.inline.delete method="post" action={(base) "/delete"} data-confirm=(if volume { data_loss } else { t("Delete it?") }) {
                        (layout::csrf(ctx))
                        (confirm_field(ctx, kind, name))
                        " " button.danger.small type="submit" { (t("Delete")) }
                    }
                }
            }
        }
    }
}

/// A resource publication's or a binding's state, as a word to translate.
fn state_word(state: &str) -> &'static str {
    match state {
        "pending" => "pending",
        "waiting" => "waiting",
        "applied" => "applied",
        "failed" => "failed",
        "removing" => "removing",
        "bound" => "bound",
        "released" => "released",
        _ => "unknown",
    }
}

async fn create(
    State(console): State<Console>,
    Path((p, k)): Path<(String, String)>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let Some(kind) = kind(&k) else {
        return show(&console, &signed, &p, &k, None).await;
    };
    let body = match resource_forms::body(kind, &form) {
        Ok(b) => b,
        Err(m) => return show(&console, &signed, &p, &k, Some((false, m))).await,
    };
    let a = console
        .call_as(&signed, Method::POST, &api(&p, kind), Some(body))
        .await;
    if a.ok() {
        return done(&ui(&p, kind));
    }
    with_status(
        show(&console, &signed, &p, &k, Some((false, a.error()))).await,
        a.status,
    )
}

/// Publish, unpublish, delete, release, unbind: one API call each.
async fn act(
    State(console): State<Console>,
    Path((p, k, n, action)): Path<(String, String, String, String)>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let Some(kind) = kind(&k) else {
        return show(&console, &signed, &p, &k, None).await;
    };
    let one = format!("{}/{}", api(&p, kind), urlencode(&n));
    let node = form
        .get("node")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let confirm = form.get("confirm").map(|s| s.trim().to_string());
    let mut target = json!({});
    if !node.is_empty() {
        target["nodes"] = json!([node]);
    }
    if let Some(c) = &confirm {
        target["confirm"] = json!(c);
    }
    let (method, path, body) = match action.as_str() {
        "publish" => (Method::POST, format!("{one}/publish"), Some(target)),
        "unpublish" => (Method::POST, format!("{one}/unpublish"), Some(target)),
        "release" => (
            Method::POST,
            format!("{one}/release"),
            Some(json!({ "node": node, "confirm": confirm })),
        ),
        "unbind" => (
            Method::POST,
            format!("{one}/unbind"),
            Some(json!({ "node": node })),
        ),
        "delete" => {
            let q = confirm
                .map(|c| format!("?confirm={}", urlencode(&c)))
                .unwrap_or_default();
            (Method::DELETE, format!("{one}{q}"), None)
        }
        _ => {
            let not_found = axum::http::StatusCode::NOT_FOUND;
            return layout::error_page(&signed.ctx, not_found, signed.ctx.t("Not found"));
        }
    };
    let a = console.call_as(&signed, method, &path, body).await;
    if a.ok() {
        return done(&ui(&p, kind));
    }
    with_status(
        show(&console, &signed, &p, &k, Some((false, a.error()))).await,
        a.status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_pattern_matches_the_name_only() {
        assert_eq!(regex_quote("data"), "data");
        assert_eq!(
            regex_quote("pg-data"),
            "pg-data",
            "no escape the v flag refuses"
        );
        assert_eq!(regex_quote("a.b"), "a\\.b");
    }
}
