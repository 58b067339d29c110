//! `berth node cache NODE`: a node's edge cache as the controller reads it
//! from the edge now (`GET /api/v1/nodes/{name}/cache`), as text a person
//! reads, or the answer itself with `--json`.
//!
//! Owns: that text. Must not touch: the answer's fields (the server's).

use anyhow::Context;
use berth_config::Config;
use reqwest::Method;
use serde_json::Value;

use crate::cli::{print_json, send_mapped, Conn};
use crate::repo_cli::human_size;

pub async fn show(cfg: &Config, name: &str, json: bool, conn: Conn) -> anyhow::Result<()> {
    let v = send_mapped(
        conn.request(cfg, Method::GET, &format!("/api/v1/nodes/{name}/cache")),
        &[],
    )
    .await
    .with_context(|| format!("cannot read node {name}'s edge cache"))?;
    if json {
        print_json(&v);
    } else {
        print!("{}", text(&v));
    }
    Ok(())
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The answer as lines of text.
fn text(v: &Value) -> String {
    let node = v["node"].as_str().unwrap_or("?");
    let edge = v["edge_url"].as_str().unwrap_or("?");
    if v["reachable"] != Value::Bool(true) {
        let why = v["error"].as_str().unwrap_or("no answer");
        return format!("node {node}: edge {edge} unreachable: {why}\n");
    }
    let c = &v["cache"];
    let (cap, used) = (n(&c["capacity_bytes"]), n(&c["used_bytes"]));
    let share = if cap > 0 {
        used as f64 * 100.0 / cap as f64
    } else {
        0.0
    };
    let mut out = format!("node {node}: edge {edge}\n");
    out += &format!(
        "used:       {} of {} ({share:.1}%)\n",
        human_size(used),
        human_size(cap)
    );
    let rate = match c["hit_rate"].as_f64() {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "no requests yet".into(),
    };
    out += &format!(
        "hit rate:   {rate} ({} hits, {} misses since the edge started)\n",
        n(&c["hits"]),
        n(&c["misses"])
    );
    let up = &c["upstream"];
    let up_url = up["url"].as_str().unwrap_or("?");
    out += &match (up["reachable"].as_bool(), up["error"].as_str()) {
        (Some(true), _) => format!("upstream:   {up_url} reachable\n"),
        (_, why) => format!(
            "upstream:   {up_url} UNREACHABLE: {}\n",
            why.unwrap_or("no answer")
        ),
    };
    let pinned = c["pinned_images"].as_array().cloned().unwrap_or_default();
    out += &format!("pinned:     {} image(s)\n", pinned.len());
    for p in &pinned {
        out += &format!(
            "  {} ({})\n",
            p["image"].as_str().unwrap_or("?"),
            human_size(n(&p["cached_bytes"]))
        );
    }
    let jobs = c["prefetch_jobs"].as_array().cloned().unwrap_or_default();
    out += &format!(
        "prefetch:   {} job(s), {} shown\n",
        n(&c["prefetch_jobs_total"]),
        jobs.len()
    );
    for j in &jobs {
        let images: Vec<&str> = j["images"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["image"].as_str()).collect())
            .unwrap_or_default();
        out += &format!(
            "  {} {} {}/{} {}{}\n",
            j["id"].as_str().unwrap_or("?"),
            j["state"].as_str().unwrap_or("?"),
            human_size(n(&j["bytes_done"])),
            human_size(n(&j["bytes_total"])),
            images.join(", "),
            j["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_edge_says_why() {
        let v = serde_json::json!({"node": "a", "edge_url": "http://e", "reachable": false,
            "error": "connection refused"});
        assert_eq!(
            text(&v),
            "node a: edge http://e unreachable: connection refused\n"
        );
    }

    #[test]
    fn a_cache_reads_as_lines() {
        let v = serde_json::json!({"node": "a", "edge_url": "http://e", "reachable": true,
            "cache": {"capacity_bytes": 4096, "used_bytes": 1024, "hits": 3, "misses": 1,
              "hit_rate": 0.75, "upstream": {"reachable": false, "url": "http://r", "error": "refused"},
              "pinned_images": [{"image": "p/x:1", "cached_bytes": 2048}],
              "prefetch_jobs": [{"id": "j1", "state": "running", "bytes_done": 1, "bytes_total": 2,
                "images": [{"image": "p/x:1"}]}], "prefetch_jobs_total": 1}});
        let t = text(&v);
        assert!(t.contains("1.0 KiB of 4.0 KiB (25.0%)"), "{t}");
        assert!(t.contains("75.0% (3 hits, 1 misses"), "{t}");
        assert!(t.contains("http://r UNREACHABLE: refused"), "{t}");
        assert!(t.contains("  p/x:1 (2.0 KiB)"), "{t}");
        assert!(t.contains("  j1 running 1 B/2 B p/x:1"), "{t}");
    }
}
