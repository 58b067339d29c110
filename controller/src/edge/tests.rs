use super::*;

fn node(url: &str) -> Node {
    Node {
        name: "n1".into(),
        cluster: "c".into(),
        k8s_node_name: "n1".into(),
        labels: Default::default(),
        edge_url: url.into(),
        edge_credentials: None,
        edge_controller_token: None,
        created_at: 0,
    }
}

#[test]
fn urls_keep_base_path_and_escape_ids() {
    let u = HttpEdgeClient::url(&node("http://h:1/edge/"), &["api", "v1", "prefetch", "a/b"])
        .expect("url");
    assert_eq!(u.as_str(), "http://h:1/edge/api/v1/prefetch/a%2Fb");
    let u = HttpEdgeClient::url(&node("http://h:1"), &["api", "v1", "unpin"]).expect("url");
    assert_eq!(u.as_str(), "http://h:1/api/v1/unpin");
}

#[test]
fn error_messages() {
    assert_eq!(error_message(r#"{"error":"disk full"}"#), "disk full");
    assert_eq!(
        error_message(r#"{"errors":[{"code":"DENIED","message":"no"}]}"#),
        "no"
    );
    assert_eq!(error_message(""), "no details");
}

#[test]
fn matching_jobs_pin_exactly_the_images_and_have_not_failed() {
    let list = serde_json::json!([
        {"id": "new", "state": "running", "pin": true, "created": 30,
         "images": [{"image": "p/b@sha256:2"}, {"image": "p/a@sha256:1"}]},
        {"id": "old", "state": "done", "pin": true, "created": 10,
         "images": [{"image": "p/a@sha256:1"}, {"image": "p/b@sha256:2"}]},
        {"id": "failed", "state": "failed", "pin": true, "created": 20,
         "images": [{"image": "p/a@sha256:1"}, {"image": "p/b@sha256:2"}]},
        {"id": "unpinned", "state": "done", "pin": false, "created": 20,
         "images": [{"image": "p/a@sha256:1"}, {"image": "p/b@sha256:2"}]},
        {"id": "fewer", "state": "done", "pin": true, "created": 20,
         "images": [{"image": "p/a@sha256:1"}]},
        {"id": "more", "state": "done", "pin": true, "created": 20,
         "images": [{"image": "p/a@sha256:1"}, {"image": "p/b@sha256:2"},
                    {"image": "p/c@sha256:3"}]}
    ]);
    let jobs: Vec<ListedJob> = serde_json::from_value(list).expect("jobs");
    let images = vec!["p/a@sha256:1".to_string(), "p/b@sha256:2".to_string()];
    assert_eq!(matching(jobs, &images), vec!["old", "new"]);
}

#[tokio::test]
async fn unreachable_edge_says_so() {
    // Bind then drop a listener to get a port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let c = HttpEdgeClient::new(Duration::from_secs(2)).expect("client");
    let err = c
        .prefetch(&node(&format!("http://127.0.0.1:{port}")), vec![], true)
        .await
        .expect_err("must be refused");
    assert!(matches!(err, EdgeError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

/// A bare HTTP/1.1 edge on a loopback port: answers every request with
/// `answer`, keeps connections open unless asked to close; counts the
/// connections it accepted and the requests that asked to close.
async fn counting_edge(answer: &'static str) -> (String, Arc<std::sync::Mutex<(u32, u32)>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let seen = Arc::new(std::sync::Mutex::new((0u32, 0u32)));
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counts.lock().expect("counts").0 += 1;
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + len);
                    let close = head.contains("connection: close");
                    if close {
                        counts.lock().expect("counts").1 += 1;
                    }
                    let reply = format!(
                        "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
                        answer.len(),
                        if close { "connection: close\r\n" } else { "" }
                    );
                    if s.write_all(reply.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_reporting_submit_leaves_no_connection_open() {
    // A fleet's nodes each get a submit and then nothing until their
    // job's report: a connection kept in the pool after it is one
    // socket and its buffers per node of the fleet, held for nothing.
    let (url, seen) = counting_edge(r#"{"id":"j1","report":true}"#).await;
    let n = node(&url);
    let c = HttpEdgeClient::new(Duration::from_secs(5)).expect("client");
    let images = vec!["p/a@sha256:1".to_string()];
    let target = ReportTarget {
        url: "http://controller/report".into(),
        token: "t".into(),
    };
    c.prefetch(&n, images.clone(), true).await.expect("submit");
    c.prefetch(&n, images.clone(), true).await.expect("submit");
    assert_eq!(
        *seen.lock().expect("counts"),
        (1, 0),
        "kept alive without a report"
    );
    let s = c
        .prefetch_reporting(&n, images.clone(), true, &target)
        .await
        .expect("submit");
    assert!(s.report);
    assert_eq!(*seen.lock().expect("counts"), (1, 1), "asked to close");
    c.prefetch(&n, images, true).await.expect("submit");
    assert_eq!(
        seen.lock().expect("counts").0,
        2,
        "the reporting submit's connection was not reused"
    );
}
