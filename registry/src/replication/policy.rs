//! A replication policy as the admin API takes it, checked into what the
//! metadata keeps: its name, the remote (scheme, host, no path, an address
//! the outbound policy allows; the password sealed), the filters, the
//! destination project, the trigger and the bandwidth. Every refusal says
//! which field is wrong and how to write it.

use berth_config::ByteSize;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{glob, schedule::Schedule};
use crate::meta::{Direction, RemoteRegistry, ReplicationPolicy, ReplicationTrigger};

/// The remote registry of a policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteInput {
    /// `http(s)://HOST[:PORT]` of any OCI registry (berth, distribution, Harbor).
    pub url: String,
    /// An account at the remote; empty: anonymous.
    #[serde(default)]
    pub username: String,
    /// Sealed at rest; never shown again.
    #[serde(default)]
    pub password: String,
}

/// Which repositories and tags a policy copies.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Glob over repository names at the source: `*` within a path
    /// component, `**` across them. Default `**`.
    pub repositories: Option<String>,
    /// Glob over tags. Default `*`.
    pub tags: Option<String>,
}

/// A new policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReplication {
    /// `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
    pub name: String,
    /// `push` (from here to the remote) or `pull` (from the remote to here).
    pub direction: String,
    pub remote: RemoteInput,
    #[serde(default)]
    pub filters: Filters,
    /// The destination project, in place of each source repository's first
    /// path component. Default: the same names.
    #[serde(default)]
    pub dest_project: String,
    /// `"manual"` (default), `"on_push"` or `{"schedule": "*/30 * * * *"}` (UTC).
    #[serde(default = "manual")]
    #[schema(value_type = Object)]
    pub trigger: ReplicationTrigger,
    /// e.g. `10MiB/s`; absent or empty: unlimited.
    #[serde(default)]
    pub bandwidth: String,
    /// Tags deleted at the source are deleted at the destination. Default false.
    #[serde(default)]
    pub deletes: bool,
}

fn manual() -> ReplicationTrigger {
    ReplicationTrigger::Manual
}

/// A change to a policy; absent fields stay. A remote given replaces the
/// remote (with its credentials).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicationPatch {
    /// `push` or `pull`.
    pub direction: Option<String>,
    pub remote: Option<RemoteInput>,
    pub filters: Option<Filters>,
    pub dest_project: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub trigger: Option<ReplicationTrigger>,
    pub bandwidth: Option<String>,
    pub deletes: Option<bool>,
}

/// A checked remote, before its password is sealed.
pub struct CheckedRemote {
    pub url: String,
    pub username: String,
    pub password: String,
}

/// `push` or `pull`.
pub fn parse_direction(d: &str) -> Result<Direction, String> {
    match d {
        "push" => Ok(Direction::Push),
        "pull" => Ok(Direction::Pull),
        other => Err(format!(
            "direction {other:?} must be push (from here to the remote) or pull (from the \
             remote to here)"
        )),
    }
}

/// Checks a policy name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with \
             a letter or digit"
        ))
    }
}

/// Checks the remote's URL form and credentials (its address is checked by
/// the caller, which knows whether private targets are allowed).
pub fn check_remote(r: RemoteInput) -> Result<CheckedRemote, String> {
    let url =
        reqwest::Url::parse(r.url.trim()).map_err(|e| format!("remote.url {:?}: {e}", r.url))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "remote.url {:?} must be http(s)://HOST[:PORT]",
            r.url
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "remote.url must not carry credentials: give remote.username and \
                    remote.password"
                .into(),
        );
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "remote.url {:?} must name the registry only (no path): its /v2/ API is used",
            r.url
        ));
    }
    if r.password.is_empty() && !r.username.is_empty() {
        return Err("remote.username needs remote.password".into());
    }
    if r.username.is_empty() && !r.password.is_empty() {
        return Err("remote.password needs remote.username".into());
    }
    Ok(CheckedRemote {
        url: url.as_str().trim_end_matches('/').to_string(),
        username: r.username,
        password: r.password,
    })
}

/// `10MiB/s` → bytes per second; empty or `unlimited` → None.
pub fn parse_bandwidth(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let Some(size) = t.strip_suffix("/s") else {
        return Err(format!(
            "bandwidth {text:?} must be a rate such as 10MiB/s or 500KB/s"
        ));
    };
    let bytes = size
        .parse::<ByteSize>()
        .map_err(|e| format!("bandwidth {text:?}: {e}"))?
        .0;
    if bytes < 1024 {
        return Err(format!(
            "bandwidth {text:?} is below 1KiB/s; leave it empty for no limit"
        ));
    }
    Ok(Some(bytes))
}

/// Checks the filters, the destination project and the trigger of `p`.
pub fn check_rules(p: &ReplicationPolicy) -> Result<(), String> {
    if let Some(why) = glob::invalid(&p.repositories) {
        return Err(format!("filters.repositories: {why}"));
    }
    if let Some(why) = glob::invalid(&p.tags) {
        return Err(format!("filters.tags: {why}"));
    }
    if !p.dest_project.is_empty() {
        let ok =
            p.dest_project.parse::<crate::oci::RepoName>().is_ok() && !p.dest_project.contains('/');
        if !ok {
            return Err(format!(
                "dest_project {:?} must be one lowercase path component, e.g. team-a",
                p.dest_project
            ));
        }
    }
    if let ReplicationTrigger::Schedule(expr) = &p.trigger {
        Schedule::parse(expr).map_err(|e| format!("trigger: {e}"))?;
    }
    Ok(())
}

/// A policy as the admin API shows it: never the password.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicationView {
    pub name: String,
    #[schema(value_type = String)]
    pub direction: Direction,
    pub remote: RemoteView,
    pub filters: Filters,
    pub dest_project: String,
    #[schema(value_type = Object)]
    pub trigger: ReplicationTrigger,
    /// As written; empty: unlimited.
    pub bandwidth: String,
    pub deletes: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemoteView {
    pub url: String,
    pub username: String,
    /// A password is kept (sealed).
    pub has_password: bool,
}

impl From<&ReplicationPolicy> for ReplicationView {
    fn from(p: &ReplicationPolicy) -> Self {
        ReplicationView {
            name: p.name.clone(),
            direction: p.direction,
            remote: remote_view(&p.remote),
            filters: Filters {
                repositories: Some(p.repositories.clone()),
                tags: Some(p.tags.clone()),
            },
            dest_project: p.dest_project.clone(),
            trigger: p.trigger.clone(),
            bandwidth: p.bandwidth_text.clone(),
            deletes: p.deletes,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

fn remote_view(r: &RemoteRegistry) -> RemoteView {
    RemoteView {
        url: r.url.clone(),
        username: r.username.clone(),
        has_password: r.password_sealed.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(url: &str, user: &str, pw: &str) -> RemoteInput {
        RemoteInput {
            url: url.into(),
            username: user.into(),
            password: pw.into(),
        }
    }

    #[test]
    fn bandwidths() {
        assert_eq!(parse_bandwidth("10MiB/s"), Ok(Some(10 << 20)));
        assert_eq!(parse_bandwidth("500KB/s"), Ok(Some(500_000)));
        assert_eq!(parse_bandwidth(""), Ok(None));
        assert_eq!(parse_bandwidth("unlimited"), Ok(None));
        assert!(parse_bandwidth("10MiB").is_err());
        assert!(parse_bandwidth("10 furlongs/s").is_err());
        assert!(parse_bandwidth("10B/s").is_err());
    }

    #[test]
    fn names_and_remotes() {
        assert!(check_name("to-dr.1").is_ok());
        for bad in ["", "To-DR", "-x", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let ok = check_remote(remote("https://dr.example:5000/", "u", "p")).expect("ok");
        assert_eq!(ok.url, "https://dr.example:5000");
        for (r, words) in [
            (remote("ftp://x", "", ""), "http(s)"),
            (remote("https://x/v2/", "", ""), "no path"),
            (remote("https://u:p@x", "", ""), "credentials"),
            (remote("https://x", "u", ""), "needs remote.password"),
            (remote("https://x", "", "p"), "needs remote.username"),
        ] {
            let err = check_remote(r).err().expect("refused");
            assert!(err.contains(words), "{err}");
        }
    }

    #[test]
    fn triggers_take_the_api_forms() {
        let t: ReplicationTrigger = serde_json::from_str("\"on_push\"").expect("on_push");
        assert_eq!(t, ReplicationTrigger::OnPush);
        let t: ReplicationTrigger =
            serde_json::from_str(r#"{"schedule":"*/30 * * * *"}"#).expect("schedule");
        assert_eq!(t, ReplicationTrigger::Schedule("*/30 * * * *".into()));
        assert!(serde_json::from_str::<ReplicationTrigger>("\"hourly\"").is_err());
    }
}
