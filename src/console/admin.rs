//! The system administrator's screens: the audit log with its filters, and
//! garbage collection (status, a run now, and the place for earlier runs).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::html;
use serde_json::Value;

use super::layout::{self, alert, page, size, time, Section};
use super::projects::refused;
use super::{urlencode, Console, CsrfForm, Signed};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/audit", get(audit))
        .route("/ui/gc", get(gc).post(run_gc))
}

const FILTERS: [&str; 4] = ["actor", "project", "action", "outcome"];

async fn audit(
    State(console): State<Console>,
    Query(q): Query<HashMap<String, String>>,
    Signed { ctx, session }: Signed,
) -> Response {
    let t = |s| ctx.t(s);
    let mut query: Vec<String> = FILTERS
        .iter()
        .filter_map(|k| {
            q.get(*k)
                .filter(|v| !v.trim().is_empty())
                .map(|v| format!("{k}={}", urlencode(v.trim())))
        })
        .collect();
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    query.push(format!("limit={limit}"));
    let a = console
        .call(
            Some(&session),
            ctx.peer,
            Method::GET,
            &format!("/api/v1/audit?{}", query.join("&")),
            None,
        )
        .await;
    if !a.ok() {
        return refused(&ctx, &a);
    }
    let events = a.json.as_array().cloned().unwrap_or_default();
    let val = |k: &str| q.get(k).cloned().unwrap_or_default();
    let body = html! {
        div.toolbar { h1 { (t("Audit log")) } }
        div #audit {
            section.card {
                form.row method="get" action="/ui/audit" data-swap="#audit" {
                    label { span { (t("Actor")) } input type="text" name="actor" value=(val("actor")); }
                    label { span { (t("Project")) } input type="text" name="project" value=(val("project")); }
                    label { span { (t("Action")) } input type="text" name="action" value=(val("action")) placeholder="tag.delete"; }
                    label { span { (t("Outcome")) }
                        select name="outcome" {
                            option value="" { (t("Any")) }
                            @for o in ["ok", "refused", "failed"] { option value=(o) selected[val("outcome") == o] { (t(o)) } }
                        } }
                    label { span { (t("Limit")) } input type="number" name="limit" min="1" max="1000" value=(limit); }
                    button type="submit" { (t("Filter")) }
                }
            }
            section.card {
                @if events.is_empty() { p.empty { "—" } } @else {
                    div.table-wrap { table.responsive {
                        thead { tr { th { (t("Time")) } th { (t("Actor")) } th { (t("Action")) } th { (t("Project")) } th { (t("Target")) } th { (t("Outcome")) } th { (t("Client")) } } }
                        tbody {
                            @for e in &events {
                                @let outcome = e["outcome"].as_str().unwrap_or("");
                                tr {
                                    td data-label=(t("Time")) { (e["time"].as_u64().map(time).unwrap_or_default()) }
                                    td data-label=(t("Actor")) { (e["actor"].as_str().unwrap_or("")) }
                                    td.mono data-label=(t("Action")) { (e["action"].as_str().unwrap_or("")) }
                                    td data-label=(t("Project")) { (e["project"].as_str().unwrap_or("")) }
                                    td.mono data-label=(t("Target")) { (e["target"].as_str().unwrap_or("")) }
                                    td data-label=(t("Outcome")) {
                                        span class={"pill " (if outcome == "ok" { "good" } else { "bad" })} { (outcome) }
                                        @if let Some(d) = e["detail"].as_str() { br; span.muted { (d) } }
                                    }
                                    td data-label=(t("Client")) { (e["client"].as_str().unwrap_or("")) }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    page(&ctx, t("Audit log"), Section::Audit, body)
}

async fn gc(State(console): State<Console>, Signed { ctx, session }: Signed) -> Response {
    gc_page(&console, &ctx, &session, None).await
}

async fn gc_page(
    console: &Console,
    ctx: &super::Ctx,
    session: &super::session::Session,
    msg: Option<(bool, String)>,
) -> Response {
    let t = |s| ctx.t(s);
    let a = console
        .call(Some(session), ctx.peer, Method::GET, "/api/v1/gc", None)
        .await;
    if !a.ok() {
        return refused(ctx, &a);
    }
    // GC's history, where this registry keeps one (`GET /api/v1/gc/runs`).
    let runs = console
        .call(
            Some(session),
            ctx.peer,
            Method::GET,
            "/api/v1/gc/runs?limit=20",
            None,
        )
        .await;
    let runs = runs.ok().then_some(runs);
    let s = &a.json;
    let last = &s["last"];
    let body = html! {
        div.toolbar { h1 { (t("Garbage collection")) } }
        @if let Some((ok, m)) = &msg { (alert(*ok, m)) }
        section.card {
            div.stats {
                div.stat { span.muted { (t("Status")) } b { @if s["running"].as_bool() == Some(true) { (t("Running")) } @else { (t("Idle")) } } }
                @if last.is_object() {
                    div.stat { span.muted { (t("Blobs deleted")) } b { (last["blobs_deleted"].as_u64().unwrap_or(0)) } }
                    div.stat { span.muted { (t("Bytes freed")) } b { (size(last["bytes_freed"].as_u64().unwrap_or(0))) } }
                    div.stat { span.muted { (t("Manifests deleted")) } b { (last["manifests_deleted"].as_u64().unwrap_or(0)) } }
                } @else {
                    div.stat { span.muted { (t("Last run")) } b { (t("None yet")) } }
                }
            }
            @if let Some(e) = s["last_error"].as_str() { (alert(false, &format!("{}: {e}", t("Last error")))) }
            @if last.is_object() { details { summary { (t("Last run")) } pre.mono { (serde_json::to_string_pretty(last).unwrap_or_default()) } } }
            form.row method="post" action="/ui/gc" data-confirm=(t("Run garbage collection now?")) {
                (layout::csrf(ctx))
                label.check { input type="checkbox" name="dry_run" value="true"; span { (t("Dry run")) } }
                button type="submit" { (t("Run now")) }
            }
        }
        section.card #gc-runs {
            h2 { (t("Earlier runs")) }
            @match runs.as_ref().and_then(|r| r.json.as_array()) {
                Some(list) if !list.is_empty() => { div.table-wrap { table.responsive {
                    thead { tr { th { (t("Started")) } th { (t("Trigger")) } th { (t("Outcome")) } th { (t("Blobs deleted")) } th { (t("Bytes freed")) } th { (t("Duration")) } } }
                    tbody { @for r in list { tr {
                        td.nowrap data-label=(t("Started")) { (r["started_at"].as_u64().map(time).unwrap_or_default()) }
                        td data-label=(t("Trigger")) { (r["trigger"].as_str().unwrap_or(""))
                            @if let Some(a) = r["actor"].as_str() { " · " (a) }
                            @if r["dry_run"].as_bool() == Some(true) { " " span.pill { (t("Dry run")) } } }
                        td data-label=(t("Outcome")) { (r["outcome"].as_str().unwrap_or(""))
                            @if let Some(e) = r["error"].as_str() { br; span.muted { (e) } } }
                        td data-label=(t("Blobs deleted")) { (r["blobs_deleted"].as_u64().unwrap_or(0)) }
                        td data-label=(t("Bytes freed")) { (size(r["bytes_freed"].as_u64().unwrap_or(0))) }
                        td data-label=(t("Duration")) { (r["duration_ms"].as_u64().unwrap_or(0)) " ms" }
                    } } }
                } } }
                Some(_) => { p.empty { (t("None yet")) } }
                None => { p.muted { (t("The history of runs appears here once this registry keeps it.")) } }
            }
        }
    };
    page(ctx, t("Garbage collection"), Section::Gc, body)
}

async fn run_gc(State(console): State<Console>, CsrfForm(signed, form): CsrfForm) -> Response {
    let dry = form.get("dry_run").is_some_and(|v| v == "true");
    let (ctx, s) = (&signed.ctx, &signed.session);
    let a = console
        .call(
            Some(s),
            ctx.peer,
            Method::POST,
            &format!("/api/v1/gc?dry_run={dry}"),
            None,
        )
        .await;
    let msg = if a.ok() {
        let r: &Value = &a.json;
        let what = if dry {
            format!("{}: ", ctx.t("Dry run"))
        } else {
            String::new()
        };
        (
            true,
            format!(
                "{what}{} {} · {} {}",
                ctx.t("Blobs deleted"),
                r["blobs_deleted"].as_u64().unwrap_or(0),
                ctx.t("Bytes freed"),
                size(r["bytes_freed"].as_u64().unwrap_or(0))
            ),
        )
    } else {
        (false, a.error())
    };
    super::projects::with_status(gc_page(&console, ctx, s, Some(msg)).await, a.status)
}
