//! An app's container logs through the controller: `berth serve` asks the
//! node's `berth edge` (which reads the kubelet's CRI files) with the node's
//! controller token, for developers and above, following as lines arrive.

use berth_testkit::logs::{append, cri, Lines};
use berth_testkit::{berth, berth_bin};
use serde_json::json;

const TOKEN: &str = "ctl-token-Rq55";

fn cri_line(second: u32, text: &str) -> String {
    cri(&format!("{second:02}.0"), "stdout", "F", text)
}

#[test]
fn developers_read_and_follow_an_apps_log_through_the_nodes_edge() {
    let bin = berth_bin!();
    let tmp = tempfile::tempdir().expect("tmp");
    let pods = tmp.path().join("pods");
    // The app's pod on node n1 (workload web-n1), and another app's pod.
    let dir = pods.join("shop_web-n1-7d9f-abc12_uid-1/web");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let live = dir.join("0.log");
    append(
        &live,
        &(cri_line(1, "started") + &cri_line(2, "listening on :8080")),
    );
    let other = pods.join("shop_api-n1-55c8-zz9_uid-2/api");
    std::fs::create_dir_all(&other).expect("mkdir");
    append(&other.join("0.log"), &cri_line(1, "api secret"));

    let reg = berth::registry(bin);
    let admin = reg.admin();
    admin.create_project("shop", false);
    admin.create_user("dev", "dev2024ok");
    admin.add_member("shop", "dev", "developer");
    admin.create_user("viewer", "view2024ok");
    admin.add_member("shop", "viewer", "guest");
    let edge = berth::edge(
        bin,
        &reg.url(),
        &tmp.path().join("cache"),
        None,
        &[
            ("BERTH_EDGE_POD_LOGS_DIR", pods.to_str().expect("path")),
            ("BERTH_EDGE_CONTROLLER_TOKEN", TOKEN),
        ],
    );
    let (s, v) = admin.call(
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "edge", "kubeconfig": berth::kubeconfig("t")})),
    );
    assert_eq!(s, 201, "{v}");
    for (node, token) in [("n1", Some(TOKEN)), ("n2", None)] {
        let mut body = json!({"name": node, "cluster": "edge", "edge_url": edge.base_url()});
        if let Some(t) = token {
            body["edge_controller_token"] = t.into();
        }
        let (s, v) = admin.call("POST", "/api/v1/nodes", Some(body));
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["edge_logs"], token.is_some(), "{v}");
        assert!(
            !v.to_string().contains(TOKEN),
            "the token is never shown: {v}"
        );
    }
    let (s, v) = admin.call(
        "POST",
        "/api/v1/projects/shop/apps",
        Some(json!({"name": "web", "spec": {"kind": "Deployment",
            "containers": [{"name": "web", "image": "shop/web:1"}]}})),
    );
    assert_eq!(s, 201, "{v}");

    let dev = admin.as_user("dev", "dev2024ok");
    let logs = "/api/v1/projects/shop/apps/web/logs";
    let get = |who: &berth::Admin, query: &str| -> (u16, String) {
        let res = who
            .http
            .get(format!("{}{logs}{query}", reg.url()))
            .basic_auth(&who.user, Some(&who.password))
            .send()
            .expect("reachable");
        (res.status().as_u16(), res.text().unwrap_or_default())
    };

    // The newest pod of the app, its only container.
    let (s, body) = get(&dev, "?node=n1");
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, "started\nlistening on :8080\n");
    let (s, body) = get(&dev, "?node=n1&tail=1&timestamps=true");
    assert_eq!(
        (s, body.as_str()),
        (200, "2026-01-02T03:04:02.0Z listening on :8080\n")
    );

    // Refusals, each saying why.
    let viewer = admin.as_user("viewer", "view2024ok");
    let (s, body) = get(&viewer, "?node=n1");
    assert_eq!(s, 403, "guests do not read logs: {body}");
    let (s, body) = get(&dev, "?node=n1&pod=api-n1-55c8-zz9");
    assert_eq!(s, 400, "{body}");
    assert!(!body.contains("api secret"), "{body}");
    assert!(body.contains("web-n1-"), "{body}");
    let (s, body) = get(&dev, "?node=n2");
    assert_eq!(s, 501, "{body}");
    assert!(body.contains("edge_controller_token"), "{body}");
    let (s, body) = get(&dev, "?node=n1&lines=3");
    assert_eq!(s, 400, "{body}");

    // The same through the CLI, as the developer; a refusal is the server's words.
    let cli = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(["app", "logs"])
            .args(args)
            .env("BERTH_URL", reg.url())
            .env("BERTH_USER", "dev")
            .env("BERTH_PASSWORD", "dev2024ok")
            .output()
            .expect("berth app logs")
    };
    let out = cli(&["shop/web", "--node", "n1", "--tail", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "listening on :8080\n");
    let out = cli(&["shop/web", "--node", "n2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("edge_controller_token"), "{err}");

    // Follow: new lines arrive on the open response.
    let res = dev
        .http
        .get(format!("{}{logs}?node=n1&follow=true&tail=1", reg.url()))
        .basic_auth("dev", Some("dev2024ok"))
        .send()
        .expect("follow");
    assert_eq!(res.status().as_u16(), 200);
    let lines = Lines::of(res);
    lines.expect("listening on :8080");
    append(&live, &cri_line(3, "GET / 200"));
    lines.expect("GET / 200");
    drop(edge);
}
