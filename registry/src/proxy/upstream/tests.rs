use super::reads::content_range;
use super::*;

#[test]
fn a_refused_target_names_the_setting_of_its_caller() {
    for (setting, url) in [
        ("replication.allow_private_remotes", "http://127.0.0.1:5000"),
        ("proxy.allow_private_upstreams", "http://localhost:5000"),
    ] {
        let err = Upstream::for_project(ProjectUpstream {
            project: "",
            url,
            creds: None,
            connect_timeout: Duration::from_secs(1),
            allow_private: false,
            private_setting: setting,
        })
        .err()
        .expect("a private target is refused");
        assert!(err.contains(setting), "{err}");
    }
}

#[test]
fn content_ranges() {
    assert_eq!(content_range("bytes 100-199/200"), Some((100, Some(200))));
    assert_eq!(content_range("bytes 5-9/*"), Some((5, None)));
    assert_eq!(content_range("items 1-2/3"), None);
}

#[test]
fn challenges() {
    let m = parse_challenge(
        r#"Bearer realm="http://h:5000/v2/token",service="berth",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(
        m.get("realm").map(String::as_str),
        Some("http://h:5000/v2/token")
    );
    assert_eq!(m.get("service").map(String::as_str), Some("berth"));
    assert_eq!(
        m.get("scope").map(String::as_str),
        Some("repository:a/b:pull,push")
    );
}
