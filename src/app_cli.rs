//! `berth app ...`: operator commands for the workload controller, over its HTTP API.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};
use berth_config::Config;
use berth_controller::api::{PublishInput, UnpublishInput};
use berth_controller::cli::{
    format_history, format_status, is_manifest, parse_spec, CliClient, WatchOptions, WatchUntil,
};
use berth_controller::model::{Publication, PublicationState};

use crate::cli::{print_json, send, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum AppCmd {
    /// Create an app from a Kubernetes manifest (one workload plus the
    /// Services, Ingresses, ConfigMaps, Secrets and PersistentVolumeClaims
    /// labelled app: <name>; see examples/app.yaml) or from a berth spec file
    /// (YAML or JSON: kind, containers, replicas, ...; see examples/web-app.json).
    #[command(after_help = "Examples (examples/ in berth's sources):\n  \
        berth app create team-a -f app.yaml -m 'first version'\n  \
        berth app create team-a/web -f web-app.json -m 'first version'")]
    Create {
        /// project (a manifest names the app) or project/app
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
    #[command(
        after_help = "Example:\n  berth app update team-a/web -f web-app.json -m 'two replicas'"
    )]
    Update {
        app: String,
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
        #[arg(long, short = 'm')]
        message: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Write an app and the resources it uses as a Kubernetes manifest.
    Export {
        /// project/app
        app: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a new app with an app's latest template, mounting volumes of the project.
    Clone {
        /// project/app to copy
        app: String,
        /// Name of the new app.
        #[arg(long)]
        name: String,
        /// A volume to mount: VOLUME:PATH or CONTAINER:VOLUME:PATH (repeatable).
        #[arg(long = "add-volume")]
        add_volume: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List an app's template versions: who changed what, when.
    #[command(after_help = "Example:\n  berth app history team-a/web")]
    History {
        app: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Publish an app to nodes: prefetch its images into each node's edge cache, then deploy.
    #[command(
        after_help = "Examples:\n  berth app publish team-a/web --selector zone=north\n  \
        berth app publish team-a/web --nodes node-a,node-b --version 3 --no-wait"
    )]
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
    #[command(after_help = "Example:\n  berth app unpublish team-a/web --nodes node-a --cascade")]
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
    #[command(
        after_help = "Example:\n  berth app logs team-a/web --node node-a --tail 100 --follow"
    )]
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
    /// List a project's apps with their latest versions.
    #[command(after_help = "Example:\n  berth app list team-a")]
    List {
        project: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show an app and its latest template (or the one --version names).
    #[command(
        after_help = "Examples:\n  berth app show team-a/web\n  berth app show team-a/web --version 2"
    )]
    Show {
        app: String,
        /// A template version [default: the latest].
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete an app and its versions (refused while it is published somewhere).
    #[command(
        after_help = "Example:\n  berth app unpublish team-a/web --nodes node-a && berth app delete team-a/web"
    )]
    Delete {
        app: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Per-node state and prefetch progress; --watch follows it live.
    #[command(after_help = "Example:\n  berth app status -w team-a/web")]
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
    match cmd {
        AppCmd::Create {
            app,
            file,
            message,
            conn,
        } => create(cfg, app, file, message, conn).await?,
        AppCmd::Export { app, conn } => {
            let (project, name) = split(&app)?;
            print!("{}", client(cfg, &conn)?.export_app(project, name).await?);
        }
        AppCmd::Clone {
            app,
            name,
            add_volume,
            conn,
        } => clone(cfg, app, name, add_volume, conn).await?,
        AppCmd::Update {
            app,
            file,
            message,
            conn,
        } => update(cfg, app, file, message, conn).await?,
        AppCmd::History { app, conn } => history(cfg, app, conn).await?,
        AppCmd::Publish {
            app,
            nodes,
            selector: sel,
            version,
            no_wait,
            conn,
        } => publish(cfg, app, nodes, sel, version, no_wait, conn).await?,
        AppCmd::Unpublish {
            app,
            nodes,
            selector: sel,
            cascade,
            force,
            no_wait,
            conn,
        } => unpublish(cfg, app, nodes, sel, cascade, force, no_wait, conn).await?,
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
            logs(
                cfg, app, node, pod, container, tail, since, follow, previous, timestamps, conn,
            )
            .await?
        }
        AppCmd::List { project, conn } => print_json(
            &send(conn.request(
                cfg,
                reqwest::Method::GET,
                &format!("/api/v1/projects/{project}/apps"),
            ))
            .await
            .with_context(|| format!("cannot list the apps of {project}"))?,
        ),
        AppCmd::Show { app, version, conn } => show(cfg, app, version, conn).await?,
        AppCmd::Delete { app, conn } => delete(cfg, app, conn).await?,
        AppCmd::Status { app, watch, conn } => status(cfg, app, watch, conn).await?,
    }
    Ok(())
}

/// `berth app create`: from a Kubernetes manifest (the project named) or a
/// berth spec file (project/app).
async fn create(
    cfg: &Config,
    app: String,
    file: std::path::PathBuf,
    message: Option<String>,
    conn: Conn,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow!("cannot read -f {}: {e}", file.display()))?;
    if is_manifest(&text) {
        let project = app.split('/').next().unwrap_or_default();
        if project.is_empty() || app.split('/').count() > 2 {
            bail!("name the project (or <project>/<app>), e.g. shop (got {app:?})");
        }
        if message.is_some() {
            bail!("--message is for berth spec files; a manifest's first version is summarised by berth");
        }
        let v = client(cfg, &conn)?
            .create_app_manifest(project, text)
            .await?;
        if let Some((_, name)) = app.split_once('/') {
            if name != v.app.name {
                eprintln!(
                    "note: the manifest names the app {:?}, not {name:?}",
                    v.app.name
                );
            }
        }
        println!(
            "created {project}/{} version {}",
            v.app.name, v.app.latest_version
        );
        return Ok(());
    }
    let (project, name) = split(&app)?;
    let spec = parse_spec(&text)?;
    let v = client(cfg, &conn)?
        .create_app(project, name, spec, message)
        .await
        .with_context(|| format!("cannot create app {app}"))?;
    println!("created {project}/{name} version {}", v.app.latest_version);
    Ok(())
}

/// `berth app clone`: the app's latest template under a new name, with the
/// volumes of `--add-volume` mounted.
async fn clone(
    cfg: &Config,
    app: String,
    name: String,
    add_volume: Vec<String>,
    conn: Conn,
) -> anyhow::Result<()> {
    let (project, source) = split(&app)?;
    let mut volumes = Vec::new();
    for v in &add_volume {
        let parts: Vec<&str> = v.split(':').collect();
        let (container, volume, path) = match parts.as_slice() {
            [volume, path] => (None, *volume, *path),
            [container, volume, path] => (Some(*container), *volume, *path),
            _ => bail!("--add-volume {v:?}: use VOLUME:PATH or CONTAINER:VOLUME:PATH"),
        };
        volumes.push(serde_json::json!({
            "volume": volume, "mount_path": path, "container": container,
        }));
    }
    let v = client(cfg, &conn)?
        .clone_app(project, source, &name, volumes)
        .await?;
    println!(
        "created {project}/{} version {} from {app}",
        v.app.name, v.app.latest_version
    );
    Ok(())
}

/// `berth app update`: a new version from a spec file.
async fn update(
    cfg: &Config,
    app: String,
    file: std::path::PathBuf,
    message: Option<String>,
    conn: Conn,
) -> anyhow::Result<()> {
    let (project, name) = split(&app)?;
    let spec = parse_spec(
        &std::fs::read_to_string(&file)
            .map_err(|e| anyhow!("cannot read -f {}: {e}", file.display()))?,
    )?;
    let v = client(cfg, &conn)?
        .update_app(project, name, spec, message)
        .await
        .with_context(|| format!("cannot update app {app}"))?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// `berth app history`: the app's versions.
async fn history(cfg: &Config, app: String, conn: Conn) -> anyhow::Result<()> {
    let (project, name) = split(&app)?;
    print!(
        "{}",
        format_history(
            &client(cfg, &conn)?
                .history(project, name)
                .await
                .with_context(|| format!("cannot read the history of {app}"))?
        )
    );
    Ok(())
}

/// `berth app publish`: publish on the nodes named or selected, then watch
/// until every one is running or failed (unless `--no-wait`); a failed node
/// fails the command.
async fn publish(
    cfg: &Config,
    app: String,
    nodes: Vec<String>,
    sel: Vec<String>,
    version: Option<u32>,
    no_wait: bool,
    conn: Conn,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
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
    let pubs = c
        .publish(project, name, &input)
        .await
        .with_context(|| format!("cannot publish {app}"))?;
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
    Ok(())
}

/// `berth app unpublish`: unpublish from the nodes named or selected (with
/// `--cascade`, the resources it brought), then watch until they are gone
/// (unless `--no-wait`).
#[allow(clippy::too_many_arguments)]
async fn unpublish(
    cfg: &Config,
    app: String,
    nodes: Vec<String>,
    sel: Vec<String>,
    cascade: bool,
    force: bool,
    no_wait: bool,
    conn: Conn,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let (project, name) = split(&app)?;
    let input = UnpublishInput {
        nodes: (!nodes.is_empty()).then(|| nodes.clone()),
        selector: selector(&sel)?,
        cascade,
        force,
    };
    let c = client(cfg, &conn)?;
    let answer = c
        .unpublish(project, name, &input)
        .await
        .with_context(|| format!("cannot unpublish {app}"))?;
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
    Ok(())
}

/// `berth app logs`: a container's logs on a node, through its edge.
#[allow(clippy::too_many_arguments)]
async fn logs(
    cfg: &Config,
    app: String,
    node: String,
    pod: Option<String>,
    container: Option<String>,
    tail: Option<usize>,
    since: Option<String>,
    follow: bool,
    previous: bool,
    timestamps: bool,
    conn: Conn,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
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
        .await
        .with_context(|| format!("cannot read the logs of {app}"))?;
    Ok(())
}

/// `berth app show`: the app, or one of its versions.
async fn show(cfg: &Config, app: String, version: Option<u32>, conn: Conn) -> anyhow::Result<()> {
    let (project, name) = split(&app)?;
    let path = match version {
        Some(v) => format!("/api/v1/projects/{project}/apps/{name}/versions/{v}"),
        None => format!("/api/v1/projects/{project}/apps/{name}"),
    };
    print_json(
        &send(conn.request(cfg, reqwest::Method::GET, &path))
            .await
            .with_context(|| format!("cannot show app {app}"))?,
    );
    Ok(())
}

/// `berth app delete`.
async fn delete(cfg: &Config, app: String, conn: Conn) -> anyhow::Result<()> {
    let (project, name) = split(&app)?;
    send(conn.request(
        cfg,
        reqwest::Method::DELETE,
        &format!("/api/v1/projects/{project}/apps/{name}"),
    ))
    .await
    .with_context(|| format!("cannot delete app {app}"))?;
    println!("deleted app {app}");
    Ok(())
}

/// `berth app status`: the app's publications, or (`-w`) watched until
/// settled.
async fn status(cfg: &Config, app: String, watch: bool, conn: Conn) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
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
        let pubs = c
            .status(project, name)
            .await
            .with_context(|| format!("cannot read the status of {app}"))?;
        print!("{}", format_status(&pubs));
    }
    Ok(())
}
