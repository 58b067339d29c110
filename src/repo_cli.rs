//! `berth repo ...`, `berth tag ...` and `berth audit`: repositories and tags of
//! a project, and the audit log, over the admin API.
//!
//! Owns: reading `project/repository[:tag]` the way `docker pull` names them
//! into the admin API's paths, and the audit log's time filters. Must not
//! touch: who may do what (the server decides).

use anyhow::{anyhow, Context};
use berth_config::Config;
use reqwest::Method;
use serde_json::Value;

use crate::cli::{print_json, send_mapped, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum RepoCmd {
    /// List a project's repositories.
    #[command(after_help = "Example:\n  berth repo list team-a")]
    List {
        project: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a repository: its tags and the digest each names.
    #[command(after_help = "Example:\n  berth repo show team-a/web")]
    Show {
        /// project/repository, as pulled (team-a/web, team-a/tools/cli).
        repository: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// The image list of a repository: each tag with its size, platforms,
    /// push time, pulls (also those served by edges) and last pull,
    /// referrers by artifact type, and the pull command.
    #[command(
        after_help = "Examples:\n  berth repo tags team-a/web\n  berth repo tags team-a/web --json"
    )]
    Tags {
        /// project/repository, as pulled (team-a/web, team-a/tools/cli).
        repository: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a repository with every tag and manifest in it (maintainers);
    /// `berth gc` then frees the blobs nothing else uses.
    #[command(after_help = "Example:\n  berth repo delete team-a/old-web")]
    Delete {
        repository: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TagCmd {
    /// List a repository's tags with their digests.
    #[command(after_help = "Example:\n  berth tag list team-a/web")]
    List {
        repository: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show the digest a tag names.
    #[command(after_help = "Example:\n  berth tag show team-a/web:1.0")]
    Show {
        /// project/repository:tag
        tag: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a tag (maintainers); the manifest stays reachable by digest until GC.
    #[command(after_help = "Example:\n  berth tag delete team-a/web:1.0-rc1")]
    Delete {
        tag: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth audit --since 1h\n  \
    berth audit --project team-a --action tag.delete --limit 20\n  \
    berth audit --actor alice --since 2026-01-01T00:00:00Z --until 2026-02-01T00:00:00Z")]
pub struct AuditArgs {
    /// Only what this account did.
    #[arg(long)]
    actor: Option<String>,
    /// Only what happened in this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this action, e.g. project.create, tag.delete, push, login.
    #[arg(long)]
    action: Option<String>,
    /// From then on: a duration back from now (1h, 7d), an RFC 3339 time or Unix seconds.
    #[arg(long)]
    since: Option<String>,
    /// Up to then, in the same forms as --since.
    #[arg(long)]
    until: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    conn: Conn,
}

/// `project/repository` into the admin API's path of the repository.
fn repo_path(full: &str) -> anyhow::Result<String> {
    let (project, repo) = full
        .split_once('/')
        .filter(|(p, r)| !p.is_empty() && !r.is_empty())
        .ok_or_else(|| {
            anyhow!("name the repository as <project>/<repository>, e.g. team-a/web (got {full:?})")
        })?;
    Ok(format!(
        "/api/v1/projects/{project}/repositories/{}",
        repo.replace('/', "%2F")
    ))
}

/// `project/repository:tag` into (repository, tag).
fn split_tag(full: &str) -> anyhow::Result<(&str, &str)> {
    full.rsplit_once(':')
        .filter(|(r, t)| !r.is_empty() && !t.is_empty() && !t.contains('/'))
        .ok_or_else(|| {
            anyhow!(
                "name the tag as <project>/<repository>:<tag>, e.g. team-a/web:1.0 (got {full:?})"
            )
        })
}

/// A time filter: seconds since the epoch from a duration ago, an RFC 3339
/// time, or the seconds themselves.
fn unix_time(flag: &str, s: &str, now: u64) -> anyhow::Result<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.saturating_sub(d.as_secs()));
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            anyhow!("{flag} {s:?}: write a duration back from now (1h, 7d), an RFC 3339 time (2026-01-31T12:00:00Z) or Unix seconds")
        })
}

async fn tags(cfg: &Config, conn: &Conn, repository: &str) -> anyhow::Result<Value> {
    send_mapped(
        conn.request(
            cfg,
            Method::GET,
            &format!("{}/tags", repo_path(repository)?),
        ),
        &[],
    )
    .await
    .with_context(|| format!("cannot list the tags of {repository}"))
}

pub async fn repo(cfg: &Config, cmd: RepoCmd) -> anyhow::Result<()> {
    match cmd {
        RepoCmd::List { project, conn } => print_json(
            &send_mapped(
                conn.request(
                    cfg,
                    Method::GET,
                    &format!("/api/v1/projects/{project}/repositories"),
                ),
                &[],
            )
            .await
            .with_context(|| format!("cannot list the repositories of {project}"))?,
        ),
        RepoCmd::Show { repository, conn } => {
            let tags = tags(cfg, &conn, &repository).await?;
            print_json(&serde_json::json!({ "name": repository, "tags": tags }));
        }
        RepoCmd::Tags {
            repository,
            json,
            conn,
        } => {
            let tags = tags(cfg, &conn, &repository).await?;
            if json {
                print_json(&tags);
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                print!("{}", tag_table(&tags, now));
            }
        }
        RepoCmd::Delete { repository, conn } => {
            send_mapped(
                conn.request(cfg, Method::DELETE, &repo_path(&repository)?),
                &[],
            )
            .await
            .with_context(|| format!("cannot delete repository {repository}"))?;
            println!("deleted repository {repository}");
        }
    }
    Ok(())
}

pub async fn tag(cfg: &Config, cmd: TagCmd) -> anyhow::Result<()> {
    match cmd {
        TagCmd::List { repository, conn } => print_json(&tags(cfg, &conn, &repository).await?),
        TagCmd::Show { tag, conn } => {
            let (repository, name) = split_tag(&tag)?;
            let all = tags(cfg, &conn, repository).await?;
            let found = all
                .as_array()
                .and_then(|a| a.iter().find(|t| t["name"] == name))
                .ok_or_else(|| anyhow!("cannot show tag {tag}: {repository} has no tag {name}"))?;
            print_json(found);
        }
        TagCmd::Delete { tag, conn } => {
            let (repository, name) = split_tag(&tag)?;
            send_mapped(
                conn.request(
                    cfg,
                    Method::DELETE,
                    &format!("{}/tags/{name}", repo_path(repository)?),
                ),
                &[],
            )
            .await
            .with_context(|| format!("cannot delete tag {tag}"))?;
            println!("deleted tag {tag}");
        }
    }
    Ok(())
}

pub async fn audit(cfg: &Config, a: AuditArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut query: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("actor", a.actor),
        ("project", a.project),
        ("action", a.action),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    if let Some(s) = &a.since {
        query.push(("since", unix_time("--since", s, now)?.to_string()));
    }
    if let Some(s) = &a.until {
        query.push(("until", unix_time("--until", s, now)?.to_string()));
    }
    if let Some(l) = a.limit {
        query.push(("limit", l.to_string()));
    }
    let flags = [
        ("since", "--since"),
        ("until", "--until"),
        ("limit", "--limit"),
    ];
    print_json(
        &send_mapped(
            a.conn
                .request(cfg, Method::GET, "/api/v1/audit")
                .query(&query),
            &flags,
        )
        .await
        .context("cannot read the audit log")?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_pulled() {
        assert_eq!(
            repo_path("team-a/tools/cli").expect("ok"),
            "/api/v1/projects/team-a/repositories/tools%2Fcli"
        );
        assert!(repo_path("web").is_err());
        assert_eq!(
            split_tag("team-a/web:1.0").expect("ok"),
            ("team-a/web", "1.0")
        );
        assert!(split_tag("team-a/web").is_err());
        assert!(split_tag("host:5000/web").is_err());
    }

    #[test]
    fn audit_times() {
        assert_eq!(unix_time("--since", "3600", 10_000).expect("secs"), 3600);
        assert_eq!(unix_time("--since", "1h", 10_000).expect("ago"), 6400);
        assert_eq!(
            unix_time("--since", "1970-01-01T01:00:00Z", 0).expect("rfc3339"),
            3600
        );
        let e = unix_time("--until", "yesterday", 0).expect_err("bad");
        assert!(e.to_string().contains("--until"), "{e}");
    }
}

/// The image list as a table, times as ages from `now` (unix seconds).
fn tag_table(tags: &Value, now: u64) -> String {
    let age = |v: &Value| match v.as_u64() {
        Some(t) => format!(
            "{} ago",
            humantime::format_duration(std::time::Duration::from_secs(now.saturating_sub(t)))
                .to_string()
                .split(' ')
                .next()
                .unwrap_or_default()
        ),
        None => "never".to_string(),
    };
    let mut rows = vec![[
        "TAG",
        "DIGEST",
        "SIZE",
        "PLATFORMS",
        "PUSHED",
        "PULLS",
        "LAST PULL",
        "REFERRERS",
        "PULL COMMAND",
    ]
    .map(String::from)];
    for t in tags.as_array().into_iter().flatten() {
        let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
        let digest = s("digest");
        let referrers = t["referrers"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let platforms = t["platforms"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        rows.push([
            s("name"),
            digest.get(..19).unwrap_or(&digest).to_string(),
            human_size(t["size"].as_u64().unwrap_or(0)),
            if platforms.is_empty() {
                "-".into()
            } else {
                platforms
            },
            age(&t["pushed_at"]),
            t["pull_count"].as_u64().unwrap_or(0).to_string(),
            age(&t["last_pulled_at"]),
            if referrers.is_empty() {
                "-".into()
            } else {
                referrers
            },
            s("pull_command"),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn the_image_list_reads_as_a_table() {
        let tags = serde_json::json!([{
            "name": "1.0", "digest": "sha256:0123456789abcdef0123", "size": 3_145_728,
            "platforms": ["linux/amd64", "linux/arm64"], "pushed_at": 1000, "pull_count": 7,
            "last_pulled_at": 3400, "referrers": {"application/vnd.dev.cosign.artifact.sig.v1+json": 1},
            "pull_command": "docker pull reg:5000/team-a/web:1.0"
        }, {
            "name": "dev", "digest": "sha256:ff", "size": 10, "platforms": [], "pushed_at": 3500,
            "pull_count": 0, "last_pulled_at": null, "referrers": {}, "pull_command": "docker pull x"
        }]);
        let t = tag_table(&tags, 3600);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("TAG "), "{t}");
        for want in [
            "1.0",
            "sha256:0123456789ab",
            "3.0 MiB",
            "linux/amd64,linux/arm64",
            "43m ago",
            "7",
            "3m ago",
            "cosign",
            "docker pull reg:5000/team-a/web:1.0",
        ] {
            assert!(lines[1].contains(want), "{want}: {t}");
        }
        assert!(
            lines[2].contains("never") && lines[2].contains("10 B"),
            "{t}"
        );
    }
}
