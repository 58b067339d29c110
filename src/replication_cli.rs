//! `berth replication ...`: replication policies over the admin API
//! (system administrators).
//!
//! Owns: the commands' flags and the admin API paths they call. Must not
//! touch: what a policy may be or which remotes are allowed (the server
//! decides).

use anyhow::{bail, Context};
use berth_config::Config;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cli::{print_json, send_mapped, Conn};

/// Flags naming the fields of the body the commands send.
const FIELDS: [(&str, &str); 8] = [
    ("remote.url", "--remote"),
    ("remote.username", "--remote-user"),
    ("remote.password", "--remote-password"),
    ("filters.repositories", "--repositories"),
    ("filters.tags", "--tags"),
    ("dest_project", "--dest-project"),
    ("trigger", "--trigger"),
    ("bandwidth", "--bandwidth"),
];

/// What a policy may be given on the command line; absent: the server's default.
#[derive(clap::Args, Debug)]
pub struct PolicyFlags {
    /// push (from here to the remote) or pull (from the remote to here).
    #[arg(long)]
    direction: Option<String>,
    /// The remote registry, http(s)://HOST[:PORT].
    #[arg(long)]
    remote: Option<String>,
    /// An account at the remote; its password comes from
    /// BERTH_REMOTE_PASSWORD or is asked for.
    #[arg(long)]
    remote_user: Option<String>,
    /// Glob over source repositories (`*` in a component, `**` across) [default: **].
    #[arg(long)]
    repositories: Option<String>,
    /// Glob over tags [default: *].
    #[arg(long)]
    tags: Option<String>,
    /// The destination project, in place of each repository's first component.
    #[arg(long)]
    dest_project: Option<String>,
    /// manual, on_push, or a five-field cron expression in UTC ("*/30 * * * *").
    #[arg(long)]
    trigger: Option<String>,
    /// e.g. 10MiB/s; "unlimited" for none.
    #[arg(long)]
    bandwidth: Option<String>,
    /// Propagate tag deletions (true/false) [default: false].
    #[arg(long)]
    deletes: Option<bool>,
}

#[derive(clap::Subcommand, Debug)]
pub enum ReplicationCmd {
    /// Create a policy (system administrators).
    #[command(after_help = "Examples:\n  \
        berth replication create to-dr --direction push --remote https://dr.example \\\n    \
        --remote-user robot --repositories 'team-a/**' --tags 'v*' --trigger on_push --bandwidth 10MiB/s\n  \
        berth replication create from-hub --direction pull --remote https://registry-1.docker.io \\\n    \
        --repositories 'library/alpine' --dest-project mirror --trigger '0 3 * * *'")]
    Create {
        name: String,
        #[command(flatten)]
        policy: PolicyFlags,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the policies.
    #[command(after_help = "Example:\n  berth replication list")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one policy.
    #[command(after_help = "Example:\n  berth replication show to-dr")]
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a policy; flags not given stay as they are.
    #[command(after_help = "Examples:\n  \
        berth replication update to-dr --bandwidth unlimited\n  \
        berth replication update to-dr --remote https://dr2.example --remote-user robot")]
    Update {
        name: String,
        #[command(flatten)]
        policy: PolicyFlags,
        #[command(flatten)]
        conn: Conn,
    },
    /// Start an execution now; with --wait, follow its progress to the end.
    #[command(
        after_help = "Examples:\n  berth replication run to-dr\n  berth replication run to-dr --wait"
    )]
    Run {
        name: String,
        /// Show progress until the execution ends; fail when it fails.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// A policy's executions, newest first; with an id, that one with
    /// per-image and per-blob progress (--follow: until it ends).
    #[command(after_help = "Examples:\n  berth replication executions to-dr\n  \
        berth replication executions to-dr 3 --follow")]
    Executions {
        name: String,
        id: Option<u64>,
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a policy.
    #[command(after_help = "Example:\n  berth replication delete to-dr")]
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

fn path(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("/api/v1/replications/{n}"),
        None => "/api/v1/replications".to_string(),
    }
}

/// The trigger as the API takes it.
fn trigger(t: &str) -> Value {
    match t.trim() {
        "manual" | "on_push" => json!(t.trim()),
        expr => json!({ "schedule": expr }),
    }
}

/// The body the flags make; `name` is given on creation only.
fn body(name: Option<&str>, f: PolicyFlags) -> anyhow::Result<Value> {
    let mut b = Map::new();
    if let Some(n) = name {
        b.insert("name".into(), json!(n));
    }
    if let Some(d) = f.direction {
        b.insert("direction".into(), json!(d));
    }
    match (f.remote, f.remote_user) {
        (Some(url), user) => {
            let mut r = json!({ "url": url });
            if let Some(u) = user {
                let pw = match std::env::var("BERTH_REMOTE_PASSWORD") {
                    Ok(p) if !p.is_empty() => p,
                    _ => crate::prompt::secret(&format!("password of {u} at the remote"))?,
                };
                r["username"] = json!(u);
                r["password"] = json!(pw);
            }
            b.insert("remote".into(), r);
        }
        (None, Some(_)) => bail!("--remote-user goes with --remote"),
        (None, None) => {}
    }
    let mut filters = Map::new();
    if let Some(r) = f.repositories {
        filters.insert("repositories".into(), json!(r));
    }
    if let Some(t) = f.tags {
        filters.insert("tags".into(), json!(t));
    }
    if !filters.is_empty() {
        b.insert("filters".into(), Value::Object(filters));
    }
    if let Some(d) = f.dest_project {
        b.insert("dest_project".into(), json!(d));
    }
    if let Some(t) = f.trigger {
        b.insert("trigger".into(), trigger(&t));
    }
    if let Some(bw) = f.bandwidth {
        b.insert("bandwidth".into(), json!(bw));
    }
    if let Some(d) = f.deletes {
        b.insert("deletes".into(), json!(d));
    }
    Ok(Value::Object(b))
}

pub async fn replication(cfg: &Config, cmd: ReplicationCmd) -> anyhow::Result<()> {
    match cmd {
        ReplicationCmd::Create { name, policy, conn } => {
            let b = body(Some(&name), policy)?;
            let v = send_mapped(
                conn.request(cfg, Method::POST, &path(None)).json(&b),
                &FIELDS,
            )
            .await
            .with_context(|| format!("cannot create replication policy {name}"))?;
            print_json(&v);
        }
        ReplicationCmd::List { conn } => print_json(
            &send_mapped(conn.request(cfg, Method::GET, &path(None)), &[])
                .await
                .context("cannot list the replication policies")?,
        ),
        ReplicationCmd::Show { name, conn } => print_json(
            &send_mapped(conn.request(cfg, Method::GET, &path(Some(&name))), &[])
                .await
                .with_context(|| format!("cannot show replication policy {name}"))?,
        ),
        ReplicationCmd::Update { name, policy, conn } => {
            let b = body(None, policy)?;
            let v = send_mapped(
                conn.request(cfg, Method::PATCH, &path(Some(&name)))
                    .json(&b),
                &FIELDS,
            )
            .await
            .with_context(|| format!("cannot update replication policy {name}"))?;
            print_json(&v);
        }
        ReplicationCmd::Run { name, wait, conn } => {
            let v = send_mapped(
                conn.request(
                    cfg,
                    Method::POST,
                    &format!("{}/executions", path(Some(&name))),
                ),
                &[],
            )
            .await
            .with_context(|| format!("cannot start replication policy {name}"))?;
            let id = v["id"].as_u64().unwrap_or_default();
            eprintln!("started execution {id} of {name}");
            if wait {
                follow(cfg, &conn, &name, id).await?;
            } else {
                print_json(&v);
            }
        }
        ReplicationCmd::Executions {
            name,
            id: Some(id),
            follow: true,
            conn,
        } => follow(cfg, &conn, &name, id).await?,
        ReplicationCmd::Executions { name, id, conn, .. } => {
            let p = match id {
                Some(id) => format!("{}/executions/{id}", path(Some(&name))),
                None => format!("{}/executions", path(Some(&name))),
            };
            print_json(
                &send_mapped(conn.request(cfg, Method::GET, &p), &[])
                    .await
                    .with_context(|| format!("cannot read the executions of {name}"))?,
            );
        }
        ReplicationCmd::Delete { name, conn } => {
            send_mapped(conn.request(cfg, Method::DELETE, &path(Some(&name))), &[])
                .await
                .with_context(|| format!("cannot delete replication policy {name}"))?;
            println!("deleted replication policy {name}");
        }
    }
    Ok(())
}

/// One line of progress: images done, bytes done of the blobs known so far.
fn progress_line(v: &Value) -> String {
    let images = v["images"].as_array().cloned().unwrap_or_default();
    let finished = images
        .iter()
        .filter(|i| !matches!(i["status"].as_str(), Some("pending")))
        .count();
    let mib = |k: &str| v[k].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
    format!(
        "{}: images {finished}/{}, {:.1} of {:.1} MiB",
        v["status"].as_str().unwrap_or("?"),
        images.len(),
        mib("bytes_done"),
        mib("bytes_total")
    )
}

/// Shows an execution's progress each second until it ends; fails when it failed.
async fn follow(cfg: &Config, conn: &Conn, name: &str, id: u64) -> anyhow::Result<()> {
    let p = format!("{}/executions/{id}", path(Some(name)));
    let mut last = String::new();
    loop {
        let v = send_mapped(conn.request(cfg, Method::GET, &p), &[])
            .await
            .with_context(|| format!("cannot follow execution {id} of {name}"))?;
        let line = progress_line(&v);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        match v["status"].as_str() {
            Some("running") => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
            Some("failed") => {
                print_json(&v);
                bail!(
                    "execution {id} of {name} failed: {}",
                    v["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => {
                print_json(&v);
                return Ok(());
            }
        }
    }
}
