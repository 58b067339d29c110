//! Docker's name normalisation for mirror requests: containerd, mirroring
//! `docker.io` through this registry (hosts.toml), asks for
//! `/v2/library/nginx/manifests/1.25?ns=docker.io`. With
//! `proxy.hosts = {"docker.io" = "dockerhub"}` that is
//! `/v2/dockerhub/library/nginx/manifests/1.25`, the proxy project's.
//! A request whose `ns` maps to no project is left as it is.

use std::collections::BTreeMap;

use axum::extract::Request;
use axum::http::Uri;

/// The request, its path moved into the project `?ns=` maps to.
pub fn to_project(hosts: &BTreeMap<String, String>, mut req: Request) -> Request {
    if hosts.is_empty() {
        return req;
    }
    if let Some(uri) = rewrite(hosts, req.uri()) {
        *req.uri_mut() = uri;
    }
    req
}

fn rewrite(hosts: &BTreeMap<String, String>, uri: &Uri) -> Option<Uri> {
    let rest = uri.path().strip_prefix("/v2/")?;
    let query = uri.query()?;
    let ns =
        unescape(query.split('&').find_map(|kv| kv.strip_prefix("ns="))?)?.to_ascii_lowercase();
    let project = hosts.get(&ns)?;
    if rest.is_empty() || rest.starts_with(&format!("{project}/")) {
        return None;
    }
    format!("/v2/{project}/{rest}?{query}").parse().ok()
}

/// The query value with its `%XX` escapes decoded: containerd (Go's
/// `url.Values`) sends `ns=registry.local%3A5000` for a host with a port.
fn unescape(v: &str) -> Option<String> {
    let mut out = Vec::with_capacity(v.len());
    let mut bytes = v.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_moves_the_name_into_its_project() {
        let hosts: BTreeMap<String, String> =
            [("docker.io".to_string(), "dockerhub".to_string())].into();
        let r = |s: &str| rewrite(&hosts, &s.parse::<Uri>().expect("uri")).map(|u| u.to_string());
        assert_eq!(
            r("/v2/library/nginx/manifests/1.25?ns=docker.io").as_deref(),
            Some("/v2/dockerhub/library/nginx/manifests/1.25?ns=docker.io")
        );
        assert_eq!(r("/v2/library/nginx/manifests/1.25?ns=ghcr.io"), None);
        assert_eq!(r("/v2/library/nginx/manifests/1.25"), None);
        assert_eq!(
            r("/v2/dockerhub/library/nginx/tags/list?ns=docker.io"),
            None
        );
        assert_eq!(r("/v2/?ns=docker.io"), None);
    }

    #[test]
    fn a_host_with_a_port_arrives_escaped() {
        let hosts: BTreeMap<String, String> =
            [("registry.local:5000".to_string(), "local".to_string())].into();
        let r = |s: &str| rewrite(&hosts, &s.parse::<Uri>().expect("uri")).map(|u| u.to_string());
        assert_eq!(
            r("/v2/x/app/manifests/1?ns=registry.local%3A5000").as_deref(),
            Some("/v2/local/x/app/manifests/1?ns=registry.local%3A5000")
        );
        assert_eq!(
            r("/v2/x/app/manifests/1?ns=registry.local:5000").as_deref(),
            Some("/v2/local/x/app/manifests/1?ns=registry.local:5000")
        );
        assert_eq!(r("/v2/x/app/manifests/1?ns=registry.local%3"), None);
    }
}
