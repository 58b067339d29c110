//! What the admin API adds for proxy-cache projects: the upstream an
//! administrator gives at creation, checked (scheme, allowed addresses) and
//! with its password sealed before it is stored; and the words that go with
//! making such a project public.

use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{AResult, AdminError, AdminState};
use crate::auth::accounts::{proxy_password_place, Project, ProxyUpstream};

/// The upstream of a new proxy-cache project.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProxy {
    /// The registry to pull through, e.g. `https://registry-1.docker.io`.
    pub url: String,
    /// An account at the upstream (optional: anonymous pulls without).
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// What the project keeps at most (its storage usage), e.g. `20GiB`;
    /// least recently pulled images are evicted over it. Default: `[proxy] capacity`.
    #[serde(default)]
    pub capacity: Option<String>,
    /// Images nobody pulled for this long are evicted, e.g. `30d`; `0s`:
    /// never. Default: `[proxy] expire_after`.
    #[serde(default)]
    pub expire_after: Option<String>,
}

fn bad(message: impl Into<String>) -> AdminError {
    AdminError::new(StatusCode::BAD_REQUEST, message)
}

/// Checks the upstream and seals its password for `project`.
pub(super) async fn upstream(
    st: &AdminState,
    project: &str,
    p: NewProxy,
) -> AResult<ProxyUpstream> {
    let url = reqwest::Url::parse(p.url.trim())
        .map_err(|e| bad(format!("proxy.url {:?}: {e}", p.url)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(format!(
            "proxy.url {:?} must be http(s)://HOST[:PORT]",
            p.url
        )));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(bad(format!(
            "proxy.url {:?} must name the registry only (no path): its /v2/ API is used",
            p.url
        )));
    }
    if p.username.is_empty() != p.password.is_empty() {
        return Err(bad("proxy.username and proxy.password go together"));
    }
    let capacity = match &p.capacity {
        None => None,
        Some(c) => match c.parse::<berth_config::ByteSize>() {
            Ok(b) if b.0 > 0 => Some(b.0),
            Ok(_) => return Err(bad("proxy.capacity must be more than 0")),
            Err(e) => return Err(bad(format!("proxy.capacity: {e}"))),
        },
    };
    let expire_after_secs = match &p.expire_after {
        None => None,
        Some(d) => Some(
            humantime::parse_duration(d.trim())
                .map_err(|e| {
                    bad(format!(
                        "proxy.expire_after {d:?} is not a duration ({e}); write e.g. 30d, 12h"
                    ))
                })?
                .as_secs(),
        ),
    };
    if !st.proxy.allow_private_upstreams {
        crate::proxy::target::check_url(&url).map_err(|why| bad(format!("proxy.url: {why}")))?;
        check_resolves_public(&url).await?;
    }
    let password_sealed = if p.password.is_empty() {
        None
    } else {
        let sealer = st.sealer.get().ok_or_else(|| {
            AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this registry has no sealing key, so it cannot keep an upstream password",
            )
        })?;
        Some(
            sealer
                .seal(&proxy_password_place(project), p.password.as_bytes())
                .map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?,
        )
    };
    Ok(ProxyUpstream {
        url: url.as_str().trim_end_matches('/').to_string(),
        username: p.username,
        password_sealed,
        capacity,
        expire_after_secs,
    })
}

/// A name must resolve, and only to addresses an upstream may have.
async fn check_resolves_public(url: &reqwest::Url) -> AResult<()> {
    let host = url.host_str().unwrap_or_default();
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| bad(format!("proxy.url: cannot resolve {host}: {e}")))?;
    for a in addrs {
        if let Some(why) = crate::proxy::target::refused(a.ip()) {
            return Err(bad(format!(
                "proxy.url: {host} resolves to {}, {why}; upstreams must be public addresses \
                 unless proxy.allow_private_upstreams is set",
                a.ip()
            )));
        }
    }
    Ok(())
}

/// The answer for a project: never its sealed password; for a proxy
/// project, the capacity and expiry in force (its own or the configuration's);
/// for a public proxy project that pulls with an account, what that means.
pub(super) fn answer(st: &AdminState, p: &Project) -> serde_json::Value {
    let mut v = p.shown();
    if let (Some(up), Some(shown)) = (&p.proxy, v.get_mut("proxy")) {
        let limits = crate::proxy::retention::Limits::of(up, &st.proxy);
        shown["capacity"] = limits.capacity.into();
        shown["capacity_from"] = match (up.capacity, limits.capacity) {
            (Some(_), _) => "project",
            (None, Some(_)) => "default",
            (None, None) => "none",
        }
        .into();
        shown["expire_after"] = match limits.expire_after {
            Some(d) => humantime::format_duration(d).to_string().into(),
            None => serde_json::Value::Null,
        };
    }
    if let (true, Some(up)) = (p.public, &p.proxy) {
        if !up.username.is_empty() {
            v["warning"] = format!(
                "project {} is public and pulls from {} as {}: anonymous users read through \
                 that account (its rate limits and everything it may pull)",
                p.name, up.url, up.username
            )
            .into();
        }
    }
    v
}
