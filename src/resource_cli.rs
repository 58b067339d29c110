//! `berth lb|eip|route|configmap|secret|volume publish|unpublish ...`: a
//! resource on chosen nodes, over the controller's HTTP API; and `berth
//! volume release|unbind|delete` (what loses a volume's data takes
//! `--confirm NAME`).

use anyhow::anyhow;
use berth_config::Config;
use berth_controller::api::{ReleaseInput, ResourceTargetInput, UnbindInput};
use berth_controller::cli::CliClient;
use berth_controller::resources::{ResourceKind, ResourcePublication};

use crate::app_cli::{selector, split};
use crate::cli::Conn;

#[derive(clap::Subcommand, Debug)]
pub enum ResourceCmd {
    /// Publish it on nodes [default: every node where an app it serves is published].
    Publish(Target),
    /// Take it off nodes [default: every node it is published on]. A volume's
    /// claim goes with its data.
    Unpublish(Target),
}

#[derive(clap::Args, Debug)]
pub struct Target {
    /// project/name
    pub resource: String,
    /// Node names, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "selector")]
    pub nodes: Vec<String>,
    /// Node labels, e.g. zone=north,tier=edge.
    #[arg(long, value_delimiter = ',')]
    pub selector: Vec<String>,
    /// A volume's unpublish destroys its data: repeat the volume's name.
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `berth volume ...`: publish and unpublish, and the volume's own lifecycle.
#[derive(clap::Subcommand, Debug)]
pub enum VolumeCmd {
    #[command(flatten)]
    Nodes(ResourceCmd),
    /// Remove the claim from a node: its data is lost and cannot be recovered
    /// (maintainer role).
    Release {
        /// project/name
        volume: String,
        #[arg(long)]
        node: String,
        /// The volume's name, repeated.
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Drop a released volume's binding and take it out of the app templates
    /// that name it (a new version each), so another app can use it.
    Unbind {
        /// project/name
        volume: String,
        /// Only this node [default: every node it was released from].
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete the volume (after release; maintainer role).
    Delete {
        /// project/name
        volume: String,
        /// The volume's name, repeated.
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

fn client(cfg: &Config, conn: &Conn) -> anyhow::Result<CliClient> {
    CliClient::new(&conn.base(cfg), Some(&conn.user), conn.password.as_deref())
        .map_err(|e| anyhow!("{e}"))
}

pub async fn run_volume(cfg: &Config, cmd: VolumeCmd) -> anyhow::Result<()> {
    match cmd {
        VolumeCmd::Nodes(c) => run(cfg, ResourceKind::Volumes, c).await,
        VolumeCmd::Release {
            volume,
            node,
            confirm,
            conn,
        } => {
            let (project, name) = split(&volume)?;
            let input = ReleaseInput {
                node: node.clone(),
                confirm,
            };
            client(cfg, &conn)?
                .release_volume(project, name, &input)
                .await?;
            println!("volume {project}/{name}: released on {node}; its data is gone");
            Ok(())
        }
        VolumeCmd::Unbind { volume, node, conn } => {
            let (project, name) = split(&volume)?;
            let v = client(cfg, &conn)?
                .unbind_volume(project, name, &UnbindInput { node })
                .await?;
            println!("volume {project}/{name}: unbound");
            for av in &v.unbound_from {
                println!("  new template version without it: {av}");
            }
            Ok(())
        }
        VolumeCmd::Delete {
            volume,
            confirm,
            conn,
        } => {
            let (project, name) = split(&volume)?;
            client(cfg, &conn)?
                .delete_resource(project, ResourceKind::Volumes, name, confirm.as_deref())
                .await?;
            println!("volume {project}/{name}: deleted");
            Ok(())
        }
    }
}

/// One line per node the request changed.
fn format_changes(publish: bool, pubs: &[ResourcePublication]) -> String {
    let verb = if publish {
        "publishing on"
    } else {
        "taking off"
    };
    pubs.iter()
        .map(|p| {
            format!(
                "{} {}/{}: {verb} {}\n",
                p.kind.singular(),
                p.project,
                p.name,
                p.node
            )
        })
        .collect()
}

pub async fn run(cfg: &Config, kind: ResourceKind, cmd: ResourceCmd) -> anyhow::Result<()> {
    let (publish, t) = match cmd {
        ResourceCmd::Publish(t) => (true, t),
        ResourceCmd::Unpublish(t) => (false, t),
    };
    let (project, name) = split(&t.resource)?;
    let input = ResourceTargetInput {
        nodes: (!t.nodes.is_empty()).then(|| t.nodes.clone()),
        selector: selector(&t.selector)?,
        confirm: t.confirm.clone(),
    };
    let v = client(cfg, &t.conn)?
        .resource_publication(project, kind, name, publish, &input)
        .await?;
    print!("{}", format_changes(publish, &v.publications));
    Ok(())
}
