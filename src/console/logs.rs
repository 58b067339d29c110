//! An app's container log on a node, followed: the page names the node and
//! how many lines to start from; its stream (`.../logs/stream`, server-sent
//! events) relays the API's followed log (`GET .../logs?follow=true`, read
//! from the kubelet's files through the node's edge) a line per event, until
//! the log ends, the session does, or the server shuts down.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use maud::html;

use super::live::{app_api, app_ui};
use super::projects::{fetch_project, project_page, Tab};
use super::{urlencode, Console, Signed};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/projects/{p}/apps/{a}/logs", get(page))
        .route("/ui/projects/{p}/apps/{a}/logs/stream", get(stream))
}

/// Lines shown before following, unless asked otherwise.
const DEFAULT_TAIL: u32 = 200;

/// The node and tail a request names (the tail bounded).
fn query(q: &HashMap<String, String>) -> (String, u32) {
    let node = q.get("node").cloned().unwrap_or_default();
    let tail = q
        .get("tail")
        .and_then(|t| t.parse::<u32>().ok())
        .unwrap_or(DEFAULT_TAIL)
        .min(10_000);
    (node, tail)
}

async fn page(
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
    let (node, tail) = query(&q);
    // The nodes the app is published on, to pick from.
    let path = format!("{}/publications", app_api(&p, &a));
    let pubs = console
        .call_as(&signed, axum::http::Method::GET, &path, None)
        .await;
    let mut nodes: Vec<String> = pubs.json["publications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["node"].as_str().map(str::to_string))
        .collect();
    // A node asked for by name (the app was there once) stays choosable.
    if !node.is_empty() && !nodes.contains(&node) {
        nodes.push(node.clone());
    }
    let base = app_ui(&p, &a);
    let stream = format!("{base}/logs/stream?node={}&tail={tail}", urlencode(&node));
    let crumbs = html! {
        a href={"/ui/projects/" (urlencode(&p)) "/apps"} { (p) } " / " a href=(base) { (a) } " / " (t("Logs"))
    };
    let body = html! {
        section.card {
            h2 { (t("Logs")) }
            form.row method="get" action={(base) "/logs"} {
                label { span { (t("Node")) }
                    select name="node" {
                        @for n in &nodes { option value=(n) selected[*n == node] { (n) } }
                    }
                }
                label { span { (t("Lines before following")) } input type="number" name="tail" min="0" max="10000" value=(tail); }
                button.secondary type="submit" { (t("Follow")) }
            }
            @if !node.is_empty() {
                p.muted #log-status role="status" { (t("Following the log of node")) " " b { (node) } }
                pre.log #log data-log-stream=(stream) tabindex="0" {}
            }
        }
    };
    project_page(ctx, &project, Tab::Apps, crumbs, body)
}

/// Splits what arrived into whole lines; the rest waits in `partial`.
fn lines(partial: &mut String, chunk: &[u8], out: &mut VecDeque<String>) {
    partial.push_str(&String::from_utf8_lossy(chunk));
    while let Some(i) = partial.find('\n') {
        let line: String = partial.drain(..=i).collect();
        out.push_back(line.trim_end_matches(['\n', '\r']).to_string());
    }
}

struct Follow {
    console: Console,
    session: String,
    body: axum::body::BodyDataStream,
    partial: String,
    queue: VecDeque<String>,
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Follow)> {
        loop {
            if let Some(l) = self.queue.pop_front() {
                return Some((Ok(Event::default().event("line").data(l)), self));
            }
            if self.done || !self.console.sessions().alive(&self.session).await {
                return None;
            }
            let stop = self.console.stopping().clone();
            let chunk = tokio::select! {
                c = self.body.next() => c,
                _ = stop.cancelled() => return None,
            };
            match chunk {
                Some(Ok(bytes)) => lines(&mut self.partial, &bytes, &mut self.queue),
                _ => {
                    // The log ended (or the edge went away): the last line, then "end".
                    if !self.partial.is_empty() {
                        self.queue.push_back(std::mem::take(&mut self.partial));
                    }
                    self.done = true;
                    let end = Event::default().event("end").data("");
                    return Some((Ok(end), self));
                }
            }
        }
    }
}

async fn stream(
    State(console): State<Console>,
    Path((p, a)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let (node, tail) = query(&q);
    let path = format!(
        "{}/logs?node={}&tail={tail}&follow=true",
        app_api(&p, &a),
        urlencode(&node)
    );
    let body = match console.open_as(&signed, &path).await {
        Ok(res) => res.into_body().into_data_stream(),
        // Said once, as an event the page shows; the page then stops asking.
        Err(refusal) => {
            let said = Event::default().event("refused").data(refusal.error());
            let once = futures::stream::iter([Ok::<_, Infallible>(said)]);
            return Sse::new(once).into_response();
        }
    };
    let follow = Follow {
        console,
        session: signed.session.id.clone(),
        body,
        partial: String::new(),
        queue: VecDeque::new(),
        done: false,
    };
    Sse::new(futures::stream::unfold(follow, Follow::next))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_whole_lines() {
        let (mut partial, mut out) = (String::new(), VecDeque::new());
        lines(&mut partial, b"started\nlisten", &mut out);
        assert_eq!(out, ["started"]);
        lines(&mut partial, b"ing on :8080\r\n", &mut out);
        assert_eq!(out, ["started", "listening on :8080"]);
        assert!(partial.is_empty());
    }
}
