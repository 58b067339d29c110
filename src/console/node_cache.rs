//! A node's page: its cluster, edge and labels, and its edge cache as the
//! controller reads it from the edge now (`GET /api/v1/nodes/{n}/cache`):
//! capacity and bytes used with a bar, the hit rate, whether the edge's
//! upstream answers, the pinned images, and the prefetch jobs with their
//! progress. An edge that does not answer is shown as such, with the reason.
//!
//! Owns: that page. Must not touch: what the numbers mean (the edge's).

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{page, size, Section};
use super::projects::refused;
use super::{urlencode, Console, Ctx, Signed};

pub fn routes() -> Router<Console> {
    Router::new().route("/ui/nodes/{n}", get(show))
}

async fn show(State(console): State<Console>, Path(n): Path<String>, signed: Signed) -> Response {
    let ctx = &signed.ctx;
    let t = |s| ctx.t(s);
    let path = format!("/api/v1/nodes/{}", urlencode(&n));
    let node = console.call_as(&signed, Method::GET, &path, None).await;
    if !node.ok() {
        return refused(ctx, &node);
    }
    let cache = console
        .call_as(&signed, Method::GET, &format!("{path}/cache"), None)
        .await;
    if !cache.ok() {
        return refused(ctx, &cache);
    }
    let node = node.json;
    let body = html! {
        div.toolbar {
            h1 { (t("Node")) " " (n) }
            a.button.secondary href="/ui/nodes" { (t("Clusters and nodes")) }
        }
        section.card #node {
            dl.facts {
                dt { (t("Cluster")) } dd { (node["cluster"].as_str().unwrap_or("")) }
                dt { (t("Edge cache URL")) } dd { code { (node["edge_url"].as_str().unwrap_or("")) } }
                dt { (t("Labels")) } dd {
                    @for (k, v) in node["labels"].as_object().into_iter().flatten() { span.pill { (k) "=" (v.as_str().unwrap_or("")) } " " }
                }
            }
        }
        (cache_card(ctx, &cache.json))
    };
    page(ctx, &n, Section::Nodes, body)
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The edge cache: figures, pinned images and prefetch jobs, or why the
/// edge did not answer.
fn cache_card(ctx: &Ctx, v: &Value) -> Markup {
    let t = |s| ctx.t(s);
    if v["reachable"] != Value::Bool(true) {
        return html! {
            section.card #cache data-reachable="false" {
                h2 { (t("Edge cache")) }
                p.alert.bad role="status" {
                    (t("The node's edge cache does not answer:")) " " span.reason { (v["error"].as_str().unwrap_or("")) }
                }
            }
        };
    }
    let c = &v["cache"];
    let (cap, used) = (n(&c["capacity_bytes"]), n(&c["used_bytes"]));
    let share = if cap > 0 {
        used as f64 * 100.0 / cap as f64
    } else {
        0.0
    };
    let up = &c["upstream"];
    let up_ok = up["reachable"] == Value::Bool(true);
    html! {
        section.card #cache data-reachable="true" {
            h2 { (t("Edge cache")) }
            dl.facts {
                dt { (t("Capacity")) } dd #capacity { (size(cap)) }
                dt { (t("Used")) } dd #used {
                    meter min="0" max=(cap.max(1)) value=(used) {}
                    " " span.nowrap { (size(used)) " (" (format!("{share:.1}")) "%)" }
                }
                dt { (t("Hit rate")) } dd #hit-rate {
                    @match c["hit_rate"].as_f64() {
                        Some(r) => { b { (format!("{:.1}%", r * 100.0)) } }
                        None => { span.muted { (t("no requests yet")) } }
                    }
                    " " span.muted { "(" (t("hits")) " " (n(&c["hits"])) ", " (t("misses")) " " (n(&c["misses"])) ")" }
                }
                dt { (t("Upstream")) } dd #upstream data-reachable=(up_ok) {
                    code { (up["url"].as_str().unwrap_or("")) } " "
                    @if up_ok { span.pill.good { (t("reachable")) } } @else {
                        span.pill.bad { (t("unreachable")) } " " span.reason { (up["error"].as_str().unwrap_or("")) }
                    }
                }
            }
            h3 { (t("Pinned images")) }
            (pinned(ctx, c))
            h3 { (t("Prefetch jobs")) }
            (jobs(ctx, c))
        }
    }
}

fn pinned(ctx: &Ctx, c: &Value) -> Markup {
    let t = |s| ctx.t(s);
    let list = c["pinned_images"].as_array().cloned().unwrap_or_default();
    html! {
        @if list.is_empty() { p.empty { (t("No pinned images.")) } } @else {
            table.responsive #pinned {
                thead { tr { th { (t("Image")) } th { (t("Digest")) } th { (t("Cached")) } } }
                tbody {
                    @for p in &list {
                        tr data-image=(p["image"].as_str().unwrap_or("")) {
                            td data-label=(t("Image")) { code { (p["image"].as_str().unwrap_or("")) } }
                            td data-label=(t("Digest")) { code.digest { (p["digest"].as_str().unwrap_or("")) } }
                            td data-label=(t("Cached")) { (size(n(&p["cached_bytes"]))) }
                        }
                    }
                }
            }
        }
    }
}

fn jobs(ctx: &Ctx, c: &Value) -> Markup {
    let t = |s| ctx.t(s);
    let list = c["prefetch_jobs"].as_array().cloned().unwrap_or_default();
    html! {
        @if list.is_empty() { p.empty { (t("No prefetch jobs.")) } } @else {
            table.responsive #jobs {
                thead { tr { th { (t("Job")) } th { (t("State")) } th { (t("Images")) } th { (t("Progress")) } } }
                tbody {
                    @for j in &list {
                        @let state = j["state"].as_str().unwrap_or("");
                        @let (done, total) = (n(&j["bytes_done"]), n(&j["bytes_total"]));
                        tr data-job=(j["id"].as_str().unwrap_or("")) data-state=(state) {
                            td data-label=(t("Job")) { code { (j["id"].as_str().unwrap_or("")) } @if j["pin"] == true { " " span.pill { (t("pinned")) } } }
                            td data-label=(t("State")) { (state) }
                            td data-label=(t("Images")) {
                                @for i in j["images"].as_array().into_iter().flatten() { code { (i["image"].as_str().unwrap_or("")) } br; }
                            }
                            td data-label=(t("Progress")) {
                                progress value=(done) max=(total.max(1)) {}
                                " " span.nowrap.bytes { (size(done)) " / " (size(total)) }
                                @if let Some(e) = j["error"].as_str() { br; span.reason { (e) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
