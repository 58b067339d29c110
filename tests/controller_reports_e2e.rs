//! Edges report finished prefetch jobs: `berth serve` (controller, directory
//! deployer) with its poll interval set to a minute, and a real `berth edge`
//! as the node. A publish reaches running well before the first poll could
//! have seen the job done: only the edge's report can have woken it. The
//! report endpoint takes the token given with the job and nothing else.

mod controller_support;

use std::time::Duration;

use berth_testkit::fixtures::ImageBuilder;
use controller_support::*;
use serde_json::json;

#[test]
fn a_publish_runs_when_the_edge_reports_the_job_not_at_the_next_poll() {
    if !tools_present() {
        return;
    }
    // Polls (and the fallback for edges that report) a minute apart: waiting
    // 30 s below succeeds only through the report.
    let mut site = Site::start_with(&[("BERTH_CONTROLLER_POLL_INTERVAL", "60s")]);
    let url = site.registry_url();
    site.add_edge("n1", &url, json!({"tier": "edge"}));
    site.push("web", "1", ImageBuilder::new().layer_random(64 * 1024));
    site.create_app(
        json!({"name": "web", "spec": {"kind": "Deployment", "replicas": 1,
        "containers": [{"name": "web", "image": "acme/web:1"}]}}),
    );
    site.publish("web", json!({"nodes": ["n1"]}));

    let p = site.wait_state("web", "n1", "running", Duration::from_secs(30));
    let details: Vec<&str> = p["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["detail"].as_str())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.ends_with("submitted; the edge reports its end")),
        "the edge was asked to report and said it would: {details:?}"
    );
    let jobs = site.edge("n1").jobs();
    assert_eq!(jobs.len(), 1, "one prefetch job: {jobs:#?}");
    assert_eq!(jobs[0]["report"], true, "{jobs:#?}");
    assert!(
        !jobs[0].to_string().contains("token"),
        "the job list does not show the report token: {jobs:#?}"
    );
}

#[test]
fn the_report_endpoint_takes_only_the_token_of_its_publication() {
    if !tools_present() {
        return;
    }
    let site = Site::start();
    let url = format!(
        "{}/api/v1/projects/{PROJECT}/apps/web/publications/n1/prefetch-report",
        site.registry_url()
    );
    let job = json!({"id": "j1", "state": "done", "bytes_done": 1, "bytes_total": 1, "images": []});
    let http = reqwest::blocking::Client::new();
    let send = |auth: Option<&str>, body: String| {
        let mut rb = http.post(&url).body(body);
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        let res = rb.send().expect("registry reachable");
        let status = res.status().as_u16();
        let v: serde_json::Value = res.json().unwrap_or_default();
        (status, v)
    };
    let (s, v) = send(None, job.to_string());
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("token")),
        "{v}"
    );
    let (s, v) = send(
        Some(&format!("Bearer {}", "ab".repeat(32))),
        job.to_string(),
    );
    assert_eq!(s, 401, "{v}");
    // An account is not a report token either.
    let (s, v) = send(Some("Basic YWRtaW46YWRtaW4xMjM0NQ=="), job.to_string());
    assert_eq!(s, 401, "{v}");
}
