//! `berth retention show|set|run`: a project's retention rules and runs of
//! them over the admin API.
//!
//! Owns: the commands' arguments, the admin API paths they call and how a
//! run's answer is printed. Must not touch: what the rules mean or who may
//! set them (the server decides and says why).

use anyhow::Context;
use berth_config::Config;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{print_json, send, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum RetentionCmd {
    /// A project's retention rules, as JSON.
    #[command(after_help = "Example:\n  berth retention show team-a")]
    Show {
        project: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace a project's retention rules (project admins); `{"rules": []}` removes them.
    #[command(after_help = "Examples:\n  \
        berth retention set team-a '{\"rules\": [{\"tags\": \"*\", \"keep_last\": 10}, \
        {\"tags\": \"*\", \"pulled_within_days\": 30}]}'\n  \
        berth retention set team-a @rules.json\n\n\
        A rule: repositories (pattern on the path inside the project, default *), tags \
        (default *), keep_last, pulled_within_days, untagged_hours, include_immutable.")]
    Set {
        project: String,
        /// The rules as JSON, or @FILE to read them from a file.
        rules: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Apply a project's rules now (project admins), or with --dry-run only
    /// list what would go and why.
    #[command(after_help = "Examples:\n  \
        berth retention run team-a --dry-run\n  \
        berth retention run team-a")]
    Run {
        project: String,
        /// Delete nothing: list what would go and what stays, with reasons.
        #[arg(long)]
        dry_run: bool,
        /// Print the server's JSON answer instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn retention(cfg: &Config, cmd: RetentionCmd) -> anyhow::Result<()> {
    match cmd {
        RetentionCmd::Show { project, conn } => print_json(
            &send(conn.request(cfg, Method::GET, &path(&project)))
                .await
                .with_context(|| format!("cannot read the retention rules of {project}"))?,
        ),
        RetentionCmd::Set {
            project,
            rules,
            conn,
        } => {
            let text = match rules.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the rules from {file}"))?,
                None => rules,
            };
            let body: Value = serde_json::from_str(&text)
                .context("the rules are not JSON (e.g. {\"rules\": [{\"keep_last\": 10}]})")?;
            let v = send(conn.request(cfg, Method::PUT, &path(&project)).json(&body))
                .await
                .with_context(|| format!("cannot set the retention rules of {project}"))?;
            let n = v["rules"].as_array().map_or(0, Vec::len);
            println!("project {project}: {n} retention rule(s)");
        }
        RetentionCmd::Run {
            project,
            dry_run,
            json: as_json,
            conn,
        } => {
            let v = send(
                conn.request(cfg, Method::POST, &format!("{}/run", path(&project)))
                    .json(&json!({ "dry_run": dry_run })),
            )
            .await
            .with_context(|| format!("cannot run the retention rules of {project}"))?;
            if as_json {
                print_json(&v);
            } else {
                print_run(&v);
            }
        }
    }
    Ok(())
}

fn path(project: &str) -> String {
    format!("/api/v1/projects/{project}/retention")
}

fn print_run(v: &Value) {
    let line = |d: &Value| {
        format!(
            "{}:{}  {}",
            d["repository"].as_str().unwrap_or("?"),
            d["tag"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("")
        )
    };
    let empty = Vec::new();
    let delete = v["delete"].as_array().unwrap_or(&empty);
    let keep = v["keep"].as_array().unwrap_or(&empty);
    let dry = v["dry_run"].as_bool().unwrap_or(false);
    for d in delete {
        println!(
            "{} {}",
            if dry { "would delete" } else { "delete" },
            line(d)
        );
    }
    for d in keep {
        println!("keep {}", line(d));
    }
    if dry {
        println!(
            "dry run: {} tag(s) would go, {} kept",
            delete.len(),
            keep.len()
        );
    } else {
        println!(
            "{} tag(s) deleted, {} kept; GC removes the manifests nothing else reaches",
            v["deleted"].as_u64().unwrap_or(0),
            keep.len()
        );
    }
}
