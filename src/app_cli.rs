//! `berth app ...`: operator commands for the workload controller, over its HTTP API.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use berth_config::Config;
use berth_controller::api::{PublishInput, UnpublishInput};
use berth_controller::cli::{
    format_history, format_status, parse_spec, CliClient, WatchOptions, WatchUntil,
};
use berth_controller::model::{Publication, PublicationState};

use crate::cli::Conn;

#[derive(clap::Subcommand, Debug)]
pub enum AppCmd {
    /// Create an app from a spec file (YAML or JSON: kind, containers, replicas, ...).
    Create {
        /// project/app
        app: String,
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
        /// What this version is about.
        #[arg(long, short = 'm')]
        message: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change an app's template: a new immutable version.
    Update {
        app: String,
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
        #[arg(long, short = 'm')]
        message: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List an app's template versions: who changed what, when.
    History {
        app: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Publish an app to nodes: prefetch its images into each node's edge cache, then deploy.
    Publish {
        app: String,
        /// Node names, comma-separated.
        #[arg(long, value_delimiter = ',', conflicts_with = "selector")]
        nodes: Vec<String>,
        /// Node labels, e.g. zone=north,tier=edge.
        #[arg(long, value_delimiter = ',')]
        selector: Vec<String>,
        /// Template version [default: the latest].
        #[arg(long)]
        version: Option<u32>,
        /// Return at once instead of following progress until every node runs or fails.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove an app from nodes and release its edge pins.
    Unpublish {
        app: String,
        #[arg(long, value_delimiter = ',', conflicts_with = "selector")]
        nodes: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        selector: Vec<String>,
        /// Also take off resources only this app uses on those nodes (volumes
        /// stay with their data until released).
        #[arg(long)]
        cascade: bool,
        /// The nodes are gone for good: drop the records and pins now without
        /// waiting for them (maintainer role; name the nodes).
        #[arg(long, requires = "nodes")]
        force: bool,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// An app's container log on a node, read through the node's edge (or the
    /// Kubernetes deployer); --follow streams new lines.
    Logs {
        /// project/app
        app: String,
        /// The node whose pods to read.
        #[arg(long)]
        node: String,
        /// A pod of the app [default: the newest on the node].
        #[arg(long)]
        pod: Option<String>,
        /// [default: the app's only container]
        #[arg(long)]
        container: Option<String>,
        /// The last N lines only.
        #[arg(long)]
        tail: Option<usize>,
        /// Lines from then on: a duration (10m) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Keep streaming new lines until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// The container instance before the current one.
        #[arg(long)]
        previous: bool,
        /// Start each line with the time the runtime recorded.
        #[arg(long)]
        timestamps: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Per-node state and prefetch progress; --watch follows it live.
    Status {
        app: String,
        #[arg(long, short = 'w')]
        watch: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub(crate) fn split(app: &str) -> anyhow::Result<(&str, &str)> {
    app.split_once('/')
        .filter(|(p, a)| !p.is_empty() && !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| anyhow!("name the app as <project>/<app>, e.g. shop/web (got {app:?})"))
}

pub(crate) fn selector(labels: &[String]) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    if labels.is_empty() {
        return Ok(None);
    }
    let mut m = BTreeMap::new();
    for l in labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("selector {l:?} is not key=value"))?;
        m.insert(k.to_string(), v.to_string());
    }
    Ok(Some(m))
}

/// Nodes whose publication ended a watch as failed.
fn failed_nodes(pubs: &[Publication]) -> Vec<String> {
    pubs.iter()
        .filter(|p| matches!(p.state, PublicationState::Failed { .. }))
        .map(|p| p.node.clone())
        .collect()
}

fn client(cfg: &Config, conn: &Conn) -> anyhow::Result<CliClient> {
    CliClient::new(&conn.base(cfg), Some(&conn.user), conn.password.as_deref())
        .map_err(|e| anyhow!("{e}"))
}

pub async fn run(cfg: &Config, cmd: AppCmd) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    match cmd {
        AppCmd::Create {
            app,
            file,
            message,
            conn,
        } => {
            let (project, name) = split(&app)?;
            let spec = parse_spec(
                &std::fs::read_to_string(&file).map_err(|e| anyhow!("{}: {e}", file.display()))?,
            )?;
            let v = client(cfg, &conn)?
                .create_app(project, name, spec, message)
                .await?;
            println!("created {project}/{name} version {}", v.app.latest_version);
        }
        AppCmd::Update {
            app,
            file,
            message,
            conn,
        } => {
            let (project, name) = split(&app)?;
            let spec = parse_spec(
                &std::fs::read_to_string(&file).map_err(|e| anyhow!("{}: {e}", file.display()))?,
            )?;
            let v = client(cfg, &conn)?
                .update_app(project, name, spec, message)
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        AppCmd::History { app, conn } => {
            let (project, name) = split(&app)?;
            print!(
                "{}",
                format_history(&client(cfg, &conn)?.history(project, name).await?)
            );
        }
        AppCmd::Publish {
            app,
            nodes,
            selector: sel,
            version,
            no_wait,
            conn,
        } => {
            let (project, name) = split(&app)?;
            if nodes.is_empty() && sel.is_empty() {
                bail!("name the target nodes with --nodes a,b or --selector key=value");
            }
            let input = PublishInput {
                nodes: (!nodes.is_empty()).then(|| nodes.clone()),
                selector: selector(&sel)?,
                version,
            };
            let c = client(cfg, &conn)?;
            let pubs = c.publish(project, name, &input).await?;
            if no_wait {
                print!("{}", format_status(&pubs));
            } else {
                let targets: Vec<String> = pubs.iter().map(|p| p.node.clone()).collect();
                let settled = c
                    .watch(
                        project,
                        name,
                        &targets,
                        WatchOptions::new(WatchUntil::Settled),
                        &mut out,
                    )
                    .await?;
                // Settled means running or failed; a script must be able to tell.
                let failed = failed_nodes(&settled);
                if !failed.is_empty() {
                    bail!(
                        "{project}/{name} is not running on {} (the controller keeps retrying; \
                         follow it with `berth app status -w {project}/{name}`)",
                        failed.join(", ")
                    );
                }
            }
        }
        AppCmd::Unpublish {
            app,
            nodes,
            selector: sel,
            cascade,
            force,
            no_wait,
            conn,
        } => {
            let (project, name) = split(&app)?;
            let input = UnpublishInput {
                nodes: (!nodes.is_empty()).then(|| nodes.clone()),
                selector: selector(&sel)?,
                cascade,
                force,
            };
            let c = client(cfg, &conn)?;
            let answer = c.unpublish(project, name, &input).await?;
            // What a cascade leaves on a node, and why (e.g. another app uses it).
            for kept in &answer.kept {
                println!("{kept}");
            }
            let pubs = answer.publications;
            if no_wait {
                print!("{}", format_status(&pubs));
            } else {
                let targets: Vec<String> = pubs.iter().map(|p| p.node.clone()).collect();
                c.watch(
                    project,
                    name,
                    &targets,
                    WatchOptions::new(WatchUntil::Removed),
                    &mut out,
                )
                .await?;
            }
        }
        AppCmd::Logs {
            app,
            node,
            pod,
            container,
            tail,
            since,
            follow,
            previous,
            timestamps,
            conn,
        } => {
            let (project, name) = split(&app)?;
            let mut query = vec![("node", node)];
            for (k, v) in [("pod", pod), ("container", container), ("since", since)] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            if let Some(t) = tail {
                query.push(("tail", t.to_string()));
            }
            for (k, on) in [
                ("follow", follow),
                ("previous", previous),
                ("timestamps", timestamps),
            ] {
                if on {
                    query.push((k, "true".to_string()));
                }
            }
            client(cfg, &conn)?
                .logs(project, name, &query, &mut out)
                .await?;
        }
        AppCmd::Status { app, watch, conn } => {
            let (project, name) = split(&app)?;
            let c = client(cfg, &conn)?;
            if watch {
                c.watch(
                    project,
                    name,
                    &[],
                    WatchOptions::new(WatchUntil::Settled),
                    &mut out,
                )
                .await?;
            } else {
                print!("{}", format_status(&c.status(project, name).await?));
            }
        }
    }
    Ok(())
}
