//! The live publish view: an app's publications, one row per node (state,
//! version, prefetch bytes, the failure's reason, unpublish), and the
//! server-sent events stream (`.../apps/{a}/live`) that replaces a row when
//! its publication changes and, with the list of nodes, takes it away once
//! it is gone.
//!
//! The stream is fed by the controller's own signal of publication writes
//! (every reconcile step and every byte count it stores): on each, it reads
//! the publications once through the API, as the signed-in account, and
//! sends only the rows that differ from what it sent. Nothing polls from
//! the browser; the stream ends with the session and when the server begins
//! to shut down. The page's script
//! (`assets/live.js`) only swaps rows.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{self, size, time};
use super::projects::{holds, refused};
use super::{urlencode, Console, Ctx, Signed};
use berth_registry::auth::policy::Role;

pub fn routes() -> Router<Console> {
    Router::new().route("/ui/projects/{p}/apps/{a}/live", get(stream))
}

/// How often an idle stream checks that its session is still live.
const SESSION_CHECK: Duration = Duration::from_secs(20);

/// `/api/v1/projects/{p}/apps/{a}`.
pub fn app_api(p: &str, a: &str) -> String {
    format!("/api/v1/projects/{}/apps/{}", urlencode(p), urlencode(a))
}

/// `/ui/projects/{p}/apps/{a}`.
pub fn app_ui(p: &str, a: &str) -> String {
    format!("/ui/projects/{}/apps/{}", urlencode(p), urlencode(a))
}

/// The publications of an answer of `GET .../publications`.
fn publications(answer: &Value) -> Vec<Value> {
    answer["publications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The live table of `pubs`, streaming from `.../live` once the page's script runs.
/// `write`: the caller may unpublish (developer role or above).
pub fn table(ctx: &Ctx, project: &str, app: &str, pubs: &[Value], write: bool) -> Markup {
    let t = |s| ctx.t(s);
    let base = app_ui(project, app);
    html! {
        table.responsive #publications data-live={(base) "/live"} {
            thead { tr {
                th { (t("Node")) } th { (t("Version")) } th { (t("State")) }
                th { (t("Progress")) } th { (t("Updated")) } th {}
            } }
            tbody {
                tr.live-empty hidden[!pubs.is_empty()] { td colspan="6" { span.muted { (t("Not published on any node.")) } } }
                @for p in pubs { (row(ctx, project, app, p, write)) }
            }
        }
    }
}

/// One node's row; the stream sends the same markup.
pub fn row(ctx: &Ctx, project: &str, app: &str, p: &Value, write: bool) -> Markup {
    let t = |s| ctx.t(s);
    let node = p["node"].as_str().unwrap_or("");
    let removing = p["desired"]["desired"] == "unpublished";
    let state = if removing {
        "removing"
    } else {
        p["state"].as_str().unwrap_or("")
    };
    let (done, total) = (
        p["bytes_done"].as_u64().unwrap_or(0),
        p["bytes_total"].as_u64().unwrap_or(0),
    );
    let detail = p["history"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|h| h["detail"].as_str())
        .unwrap_or("");
    html! {
        tr data-node=(node) data-state=(state) data-version=(p["version"]) {
            td data-label=(t("Node")) { b { (node) } }
            td data-label=(t("Version")) { (p["version"]) }
            td data-label=(t("State")) { span class={"pill state " (state_class(state))} { (state_text(ctx, state)) } }
            td data-label=(t("Progress")) {
                @match state {
                    "prefetching" => {
                        progress value=(done) max=(total.max(1)) {}
                        " " span.nowrap.bytes { (size(done)) " / " (size(total)) }
                    }
                    "failed" => { span.reason { (p["reason"].as_str().unwrap_or("")) } }
                    _ => { span.muted { (detail) } }
                }
            }
            td data-label=(t("Updated")) { span.nowrap { (p["updated_at"].as_u64().map(time).unwrap_or_default()) } }
            td {
                @if write && !removing {
                    form.inline.unpublish method="post" action={(app_ui(project, app)) "/unpublish"} data-confirm=(t("Take the app off this node?")) {
                        (layout::csrf(ctx))
                        input type="hidden" name="node" value=(node);
                        label.check { input type="checkbox" name="cascade" value="true"; span { (t("with its resources")) } }
                        " " button.danger.small type="submit" { (t("Unpublish")) }
                    }
                }
            }
        }
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "running" => "good",
        "failed" => "bad",
        _ => "busy",
    }
}

/// A publication state in the page's language.
pub fn state_text(ctx: &Ctx, state: &str) -> &'static str {
    match state {
        "resolving" => ctx.t("resolving"),
        "prefetching" => ctx.t("prefetching"),
        "deploying" => ctx.t("deploying"),
        "running" => ctx.t("running"),
        "failed" => ctx.t("failed"),
        "removing" => ctx.t("removing"),
        _ => ctx.t("unknown"),
    }
}

/// What one stream holds between two reads.
struct Feed {
    console: Console,
    signed: Signed,
    project: String,
    app: String,
    changes: tokio::sync::watch::Receiver<u64>,
    /// Whether rows offer unpublish (the role when the stream began).
    write: bool,
    /// The row markup last sent, per node.
    sent: BTreeMap<String, String>,
    queue: VecDeque<Event>,
    /// Whether the first read was made (it waits for no change, and
    /// sends the node list whatever it is).
    started: bool,
    /// A read was refused: the stream ends once that is sent.
    ended: bool,
}

impl Feed {
    /// Reads the publications and queues the rows that changed and the nodes gone.
    async fn read(&mut self) -> bool {
        let path = format!("{}/publications", app_api(&self.project, &self.app));
        let a = self
            .console
            .call_as(&self.signed, Method::GET, &path, None)
            .await;
        if !a.ok() {
            // The app is gone or access was taken away: say so and end.
            self.queue
                .push_back(Event::default().event("refused").data(a.error()));
            return false;
        }
        let mut now = BTreeMap::new();
        for p in publications(&a.json) {
            let node = p["node"].as_str().unwrap_or("").to_string();
            let html =
                row(&self.signed.ctx, &self.project, &self.app, &p, self.write).into_string();
            now.insert(node, html);
        }
        for (node, html) in &now {
            if self.sent.get(node) != Some(html) {
                let data = serde_json::json!({ "node": node, "html": html }).to_string();
                self.queue
                    .push_back(Event::default().event("row").data(data));
            }
        }
        // The nodes there are, whenever they change and first of all: the page
        // may show a row whose publication was gone before the stream began.
        if !self.started || !now.keys().eq(self.sent.keys()) {
            let nodes: Vec<&String> = now.keys().collect();
            let data = serde_json::json!(nodes).to_string();
            self.queue
                .push_back(Event::default().event("nodes").data(data));
        }
        self.sent = now;
        true
    }

    /// The next event, or None to end the stream.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Feed)> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some((Ok(e), self));
            }
            if self.ended || !self.console.sessions().alive(&self.signed.session.id).await {
                return None;
            }
            if self.started {
                let stop = self.console.stopping().clone();
                tokio::select! {
                    r = self.changes.changed() => if r.is_err() { return None },
                    _ = tokio::time::sleep(SESSION_CHECK) => continue,
                    // A server shutting down waits for no open stream.
                    _ = stop.cancelled() => return None,
                }
            }
            self.ended = !self.read().await;
            self.started = true;
        }
    }
}

async fn stream(
    State(console): State<Console>,
    Path((project, app)): Path<(String, String)>,
    signed: Signed,
) -> Response {
    let Some(mut changes) = console.publication_changes() else {
        return layout::error_page(
            &signed.ctx,
            StatusCode::NOT_FOUND,
            signed
                .ctx
                .t("The controller is not enabled on this registry."),
        );
    };
    // A refusal answers as a status, which the browser's EventSource gives up on.
    let path = format!("{}/publications", app_api(&project, &app));
    let first = console.call_as(&signed, Method::GET, &path, None).await;
    if !first.ok() {
        return refused(&signed.ctx, &first);
    }
    changes.mark_unchanged();
    let write = holds(&console, &signed.ctx, &project, Role::Developer);
    let feed = Feed {
        write,
        console,
        signed,
        project,
        app,
        changes,
        sent: BTreeMap::new(),
        queue: VecDeque::new(),
        started: false,
        ended: false,
    };
    Sse::new(futures::stream::unfold(feed, Feed::next))
        .keep_alive(KeepAlive::default())
        .into_response()
}
