//! An app's version history: every template version with its author, time
//! and change summary, a line diff between any two of them (their
//! templates written as YAML), and for a developer a link from each to the
//! app form filled from it (a new version that starts from an old one).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use super::diff::{self, Change};
use super::layout::time;
use super::live::{app_api, app_ui};
use super::projects::{fetch_project, holds, project_page, refused, Tab};
use super::{urlencode, Console, Ctx, Signed};
use berth_registry::auth::policy::Role;

pub fn routes() -> Router<Console> {
    Router::new().route("/ui/projects/{p}/apps/{a}/versions", get(history))
}

/// A version's template as YAML, for the diff.
fn spec_yaml(v: &Value) -> String {
    serde_yaml::to_string(&v["spec"]).unwrap_or_default()
}

async fn history(
    State(console): State<Console>,
    Path((p, a)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let project = match fetch_project(&console, &signed, &p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    let path = format!("{}/versions", app_api(&p, &a));
    let answer = console.call_as(&signed, Method::GET, &path, None).await;
    if !answer.ok() {
        return refused(ctx, &answer);
    }
    let mut versions = answer.json.as_array().cloned().unwrap_or_default();
    versions.sort_by_key(|v| std::cmp::Reverse(v["version"].as_u64()));
    let number = |key: &str, default: u64| {
        q.get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let latest = versions
        .first()
        .and_then(|v| v["version"].as_u64())
        .unwrap_or(1);
    let to = number("to", latest);
    let from = number("from", to.saturating_sub(1).max(1));
    let find = |n: u64| versions.iter().find(|v| v["version"].as_u64() == Some(n));
    let base = app_ui(&p, &a);
    let write = holds(&console, ctx, &p, Role::Developer);
    let crumbs = html! {
        a href={"/ui/projects/" (urlencode(&p)) "/apps"} { (p) } " / " a href=(base) { (a) } " / " (t("Version history"))
    };
    let body = html! {
        section.card {
            h2 { (t("Version history")) }
            table.responsive #versions {
                thead { tr { th { (t("Version")) } th { (t("Author")) } th { (t("Created")) } th { (t("What changed")) } @if write { th {} } } }
                tbody {
                    @for v in &versions {
                        tr data-version=(v["version"]) {
                            td data-label=(t("Version")) { b { "v" (v["version"]) } }
                            td data-label=(t("Author")) { (v["author"].as_str().unwrap_or("")) }
                            td data-label=(t("Created")) { span.nowrap { (v["created_at"].as_u64().map(time).unwrap_or_default()) } }
                            td data-label=(t("What changed")) { (v["summary"].as_str().unwrap_or("")) }
                            @if write { td { a.button.secondary.small.start-from href={(base) "/edit?from=" (v["version"])} { (t("New version from this one")) } } }
                        }
                    }
                }
            }
        }
        section.card #diff {
            h2 { (t("Compare versions")) }
            form.row method="get" action={(base) "/versions"} data-swap="#diff" {
                label { span { (t("From")) } (version_select(&versions, "from", from)) }
                label { span { (t("To")) } (version_select(&versions, "to", to)) }
                button.secondary type="submit" { (t("Compare")) }
            }
            @match (find(from), find(to)) {
                (Some(old), Some(new)) => { (diff_view(ctx, &spec_yaml(old), &spec_yaml(new))) }
                _ => { p.muted { (t("Pick two versions the app has.")) } }
            }
        }
    };
    project_page(ctx, &project, Tab::Apps, crumbs, body)
}

fn version_select(versions: &[Value], name: &str, current: u64) -> Markup {
    html! {
        select name=(name) {
            @for v in versions {
                @let n = v["version"].as_u64().unwrap_or(0);
                option value=(n) selected[n == current] { "v" (n) }
            }
        }
    }
}

fn diff_view(ctx: &Ctx, old: &str, new: &str) -> Markup {
    let lines = diff::lines(old, new);
    let same = lines.iter().all(|(c, _)| *c == Change::Same);
    html! {
        @if same { p.muted.no-changes { (ctx.t("The two templates are the same.")) } }
        pre.diff {
            @for (c, l) in &lines {
                @match c {
                    Change::Same => { span.same { "  " (l) "\n" } }
                    Change::Removed => { del { "- " (l) "\n" } }
                    Change::Added => { ins { "+ " (l) "\n" } }
                }
            }
        }
    }
}
