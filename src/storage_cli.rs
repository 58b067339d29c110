//! `berth project quota|recount` and `berth immutable ...`: a project's
//! storage limit and usage, and its immutable-tag rules, over the admin API.
//!
//! Owns: the commands' arguments and the admin API paths they call. Must
//! not touch: who may do what, or how sizes and patterns are checked (the
//! server decides and says why).

use anyhow::Context;
use berth_config::Config;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{print_json, send, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum ImmutableCmd {
    /// Protect tags matching a pattern in every repository of a project
    /// (project admins): they cannot be moved to another manifest or deleted.
    #[command(after_help = "Examples:\n  \
        berth immutable add team-a 'v*'\n  \
        berth immutable add team-a 'release-*'")]
    Add {
        project: String,
        /// `*` matches any run of characters, `?` any one.
        pattern: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a project's immutable-tag rules.
    #[command(after_help = "Example:\n  berth immutable list team-a")]
    List {
        project: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove an immutable-tag rule (project admins).
    #[command(after_help = "Example:\n  berth immutable delete team-a 'v*'")]
    Delete {
        project: String,
        pattern: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn immutable(cfg: &Config, cmd: ImmutableCmd) -> anyhow::Result<()> {
    match cmd {
        ImmutableCmd::Add {
            project,
            pattern,
            conn,
        } => {
            let path = format!("/api/v1/projects/{project}/immutable-tags");
            send(
                conn.request(cfg, Method::POST, &path)
                    .json(&json!({"pattern": pattern})),
            )
            .await
            .with_context(|| format!("cannot add immutable-tag rule {pattern:?} to {project}"))?;
            println!("tags matching {pattern:?} in project {project} are now immutable");
        }
        ImmutableCmd::List { project, conn } => print_json(
            &send(conn.request(
                cfg,
                Method::GET,
                &format!("/api/v1/projects/{project}/immutable-tags"),
            ))
            .await
            .with_context(|| format!("cannot list the immutable-tag rules of {project}"))?,
        ),
        ImmutableCmd::Delete {
            project,
            pattern,
            conn,
        } => {
            // `?` is a wildcard here, not the start of a query.
            let path = format!(
                "/api/v1/projects/{project}/immutable-tags/{}",
                pattern.replace('%', "%25").replace('?', "%3F")
            );
            send(conn.request(cfg, Method::DELETE, &path))
                .await
                .with_context(|| {
                    format!("cannot remove immutable-tag rule {pattern:?} from {project}")
                })?;
            println!("removed immutable-tag rule {pattern:?} from project {project}");
        }
    }
    Ok(())
}

/// `berth project quota NAME LIMIT`: a size, `none`, or `default`.
pub async fn set_quota(cfg: &Config, name: &str, limit: &str, conn: &Conn) -> anyhow::Result<()> {
    let quota = match limit.trim() {
        "default" => Value::Null,
        other => Value::String(other.to_string()),
    };
    let v = send(
        conn.request(cfg, Method::PATCH, &format!("/api/v1/projects/{name}"))
            .json(&json!({ "quota": quota })),
    )
    .await
    .with_context(|| format!("cannot set the quota of project {name}"))?;
    let storage = &v["storage"];
    let limit = match storage["limit_from"].as_str() {
        Some("default") => " (the registry default)",
        _ => "",
    };
    println!(
        "project {name}: {}{limit}",
        storage["summary"].as_str().unwrap_or("quota set")
    );
    Ok(())
}

/// `berth project recount NAME`: the usage counted again from what the project holds.
pub async fn recount(cfg: &Config, name: &str, conn: &Conn) -> anyhow::Result<()> {
    let v = send(conn.request(
        cfg,
        Method::POST,
        &format!("/api/v1/projects/{name}/usage/recount"),
    ))
    .await
    .with_context(|| format!("cannot recount the usage of project {name}"))?;
    print_json(&v);
    Ok(())
}
