//! A project's repositories (paged, filtered) and a repository's tags: size,
//! platforms, push time, signatures and other referrers, the pull command
//! with a copy button, and deletes for the roles the API lets delete.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use berth_registry::auth::policy::Manage;
use berth_registry::oci::RepoName;
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{self, alert, button_form, short_digest, size, time};
use super::projects::{fetch_project, may, project_page, refused, with_status, Tab};
use super::{details, done, urlencode, Console, CsrfForm, Ctx, Signed};

/// Rows per page, for repositories and for tags.
pub const PAGE: usize = 50;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/projects/{p}", get(repositories))
        .route("/ui/projects/{p}/repository", get(repository))
        .route(
            "/ui/projects/{p}/repository/delete",
            post(delete_repository),
        )
        .route("/ui/projects/{p}/repository/tags/delete", post(delete_tag))
}

fn page_of(q: &HashMap<String, String>) -> usize {
    q.get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1)
}

/// Previous / next links for page `page` of `total` rows.
fn pager(ctx: &Ctx, base: &str, page: usize, total: usize, extra: &str) -> Markup {
    let pages = total.div_ceil(PAGE).max(1);
    html! {
        @if pages > 1 {
            nav.pager {
                @if page > 1 { a href={(base) "page=" (page - 1) (extra)} { "← " (ctx.t("Previous")) } }
                span.muted { (ctx.t("Page")) " " (page) " / " (pages) }
                @if page < pages { a href={(base) "page=" (page + 1) (extra)} { (ctx.t("Next")) " →" } }
            }
        }
    }
}

async fn repositories(
    State(console): State<Console>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let project = match fetch_project(&console, &signed, &p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    // The project's answer lists its repositories (GET /api/v1/projects/{p}).
    let filter = q.get("q").map(|s| s.trim().to_string()).unwrap_or_default();
    let all: Vec<&str> = project["repositories"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .filter(|n| n.contains(filter.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let page = page_of(&q);
    let shown = all.iter().skip((page - 1) * PAGE).take(PAGE);
    let base = format!("/ui/projects/{}", urlencode(&p));
    let host = console.registry_host();
    let body = html! {
        div #repos data-swap="#repos" {
            form.row.filter method="get" action=(base) data-swap="#repos" {
                label { span { (t("Filter")) } input type="text" name="q" value=(filter); }
                button.secondary type="submit" { (t("Filter")) }
            }
            section.card {
                @if all.is_empty() {
                    p.empty { (t("No repositories yet. Push one with:")) }
                    div.cmd { code { "docker push " (host) "/" (p) "/IMAGE:TAG" } }
                } @else {
                    table.responsive {
                        thead { tr { th { (t("Repository")) } th { (t("Pull command")) } } }
                        tbody {
                            @for name in shown {
                                tr {
                                    td data-label=(t("Repository")) {
                                        a href={(base) "/repository?name=" (urlencode(name))} { b { (name) } } }
                                    td.mono data-label=(t("Pull command")) { "docker pull " (host) "/" (name) }
                                }
                            }
                        }
                    }
                    (pager(ctx, &format!("{base}?"), page, all.len(), &format!("&q={}", urlencode(&filter))))
                }
            }
        }
    };
    project_page(ctx, &project, Tab::Repositories, html! { (p) }, body)
}

async fn repository(
    State(console): State<Console>,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let name = q.get("name").cloned().unwrap_or_default();
    repository_page(&console, &signed, &p, &name, page_of(&q), None).await
}

async fn repository_page(
    console: &Console,
    signed: &Signed,
    p: &str,
    repo: &str,
    page: usize,
    msg: Option<String>,
) -> Response {
    let project = match fetch_project(console, signed, p).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ctx = &signed.ctx;
    let path = format!(
        "/api/v1/projects/{}/repositories/{}/tags",
        urlencode(p),
        urlencode(repo)
    );
    let a = console
        .call(Some(&signed.session), ctx.peer, Method::GET, &path, None)
        .await;
    if !a.ok() {
        return refused(ctx, &a);
    }
    let tags = a.json.as_array().cloned().unwrap_or_default();
    let Ok(repo_name) = repo.parse::<RepoName>() else {
        return layout::error_page(
            ctx,
            axum::http::StatusCode::BAD_REQUEST,
            "invalid repository name",
        );
    };
    let shown: Vec<&Value> = tags.iter().skip((page - 1) * PAGE).take(PAGE).collect();
    let pushed = details::push_times(console.registry(), &repo_name).await;
    let mut rows = Vec::with_capacity(shown.len());
    for tag in shown {
        let digest = tag["digest"].as_str().unwrap_or("");
        let d = details::image(
            console.registry(),
            &repo_name,
            digest,
            pushed.get(digest).copied(),
        )
        .await;
        rows.push((tag, d));
    }
    let body = tags_body(console, ctx, p, repo, &rows, page, tags.len(), msg);
    let crumbs = html! { a href={"/ui/projects/" (urlencode(p))} { (p) } " / " (repo) };
    project_page(ctx, &project, Tab::Repositories, crumbs, body)
}

#[allow(clippy::too_many_arguments)]
fn tags_body(
    console: &Console,
    ctx: &Ctx,
    p: &str,
    repo: &str,
    rows: &[(&Value, details::ImageDetails)],
    page: usize,
    total: usize,
    msg: Option<String>,
) -> Markup {
    let t = |s| ctx.t(s);
    let deletes = may(console, ctx, p, Manage::Repositories);
    let host = console.registry_host();
    // Shown only where the API gives it (a tag's last pull time).
    let pull_time = |tag: &Value| {
        tag.get("last_pull")
            .or_else(|| tag.get("last_pulled"))
            .and_then(Value::as_u64)
    };
    let has_pulls = rows.iter().any(|(tag, _)| pull_time(tag).is_some());
    let base = format!("/ui/projects/{}/repository", urlencode(p));
    html! {
        div.toolbar {
            h2 { (repo) }
            @if deletes {
                (button_form(ctx, &format!("{base}/delete"), t("Delete this repository"), t("Delete this repository and all its tags?"), &[("name", repo)]))
            }
        }
        @if let Some(m) = &msg { (alert(false, m)) }
        section.card #tags {
            @if rows.is_empty() { p.empty { (t("No tags.")) } } @else {
                div.table-wrap { table.responsive {
                    thead { tr {
                        th { (t("Tag")) } th { (t("Size")) } th { (t("Platforms")) } th { (t("Pushed")) }
                        @if has_pulls { th { (t("Last pull")) } }
                        th { (t("Signatures and referrers")) } th { (t("Pull command")) } th {}
                    } }
                    tbody {
                        @for (i, (tag, d)) in rows.iter().enumerate() {
                            @let name = tag["name"].as_str().unwrap_or("");
                            @let digest = tag["digest"].as_str().unwrap_or("");
                            tr.tag-row data-tag=(name) {
                                td data-label=(t("Tag")) { b { (name) } br; span.mono.muted title=(digest) { (short_digest(digest)) } }
                                td.nowrap data-label=(t("Size")) { (size(d.size)) }
                                td data-label=(t("Platforms")) { @for pl in &d.platforms { span.pill { (pl) } } }
                                td data-label=(t("Pushed")) { (d.pushed.map(time).unwrap_or_default()) }
                                @if has_pulls { td data-label=(t("Last pull")) { (pull_time(tag).map(time).unwrap_or_else(|| "—".into())) } }
                                td data-label=(t("Signatures and referrers")) { (signatures(ctx, tag, d)) }
                                td data-label=(t("Pull command")) {
                                    div.cmd {
                                        code id={"pull-" (i)} { "docker pull " (host) "/" (repo) ":" (name) }
                                        button.secondary.small.copy type="button" data-copy={"#pull-" (i)} data-done=(t("Copied")) { (t("Copy")) }
                                    }
                                }
                                td { @if deletes {
                                    (button_form(ctx, &format!("{base}/tags/delete"), t("Delete"), t("Delete this tag?"), &[("name", repo), ("tag", name)]))
                                } }
                            }
                        }
                    }
                } }
                (pager(ctx, &format!("{base}?name={}&", urlencode(repo)), page, total, ""))
            }
        }
    }
}

fn signatures(ctx: &Ctx, tag: &Value, d: &details::ImageDetails) -> Markup {
    let sigs = tag["signatures"].as_array().cloned().unwrap_or_default();
    let policy = &tag["signature_policy"];
    html! {
        @if sigs.is_empty() { span.pill { (ctx.t("Not signed")) } }
        @for s in &sigs {
            span.pill.good title=(s["manifest"].as_str().unwrap_or("")) {
                (ctx.t("Signed")) " · " (s["format"].as_str().unwrap_or(""))
                @if let Some(c) = s["creator"].as_str() { " · " (c) }
            }
        }
        @if policy["pull_allowed"].as_bool() == Some(false) {
            br; span.pill.bad title=(policy["reason"].as_str().unwrap_or("")) { "policy: pull refused" }
        }
        @for (kind, digest) in &d.referrers {
            @if !sigs.iter().any(|s| s["manifest"].as_str() == Some(digest.as_str())) {
                br; span.pill.ref title=(digest) { (kind) }
            }
        }
    }
}

async fn delete_repository(
    State(console): State<Console>,
    Path(p): Path<String>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let repo = form.get("name").cloned().unwrap_or_default();
    let path = format!(
        "/api/v1/projects/{}/repositories/{}",
        urlencode(&p),
        urlencode(&repo)
    );
    let a = console.call_as(&signed, Method::DELETE, &path, None).await;
    if a.ok() {
        return done(&format!("/ui/projects/{}", urlencode(&p)));
    }
    with_status(
        repository_page(&console, &signed, &p, &repo, 1, Some(a.error())).await,
        a.status,
    )
}

async fn delete_tag(
    State(console): State<Console>,
    Path(p): Path<String>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let repo = form.get("name").cloned().unwrap_or_default();
    let tag = form.get("tag").cloned().unwrap_or_default();
    let path = format!(
        "/api/v1/projects/{}/repositories/{}/tags/{}",
        urlencode(&p),
        urlencode(&repo),
        urlencode(&tag)
    );
    let a = console.call_as(&signed, Method::DELETE, &path, None).await;
    if a.ok() {
        return done(&format!(
            "/ui/projects/{}/repository?name={}",
            urlencode(&p),
            urlencode(&repo)
        ));
    }
    with_status(
        repository_page(&console, &signed, &p, &repo, 1, Some(a.error())).await,
        a.status,
    )
}
