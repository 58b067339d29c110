//! `berth lb|eip|route|configmap|secret|volume publish|unpublish ...`: a
//! resource on chosen nodes, over the controller's HTTP API.

use anyhow::anyhow;
use berth_config::Config;
use berth_controller::api::ResourceTargetInput;
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
    #[command(flatten)]
    pub conn: Conn,
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
    };
    let client = CliClient::new(
        &t.conn.base(cfg),
        Some(&t.conn.user),
        t.conn.password.as_deref(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let v = client
        .resource_publication(project, kind, name, publish, &input)
        .await?;
    print!("{}", format_changes(publish, &v.publications));
    Ok(())
}
