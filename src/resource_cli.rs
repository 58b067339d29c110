//! `berth lb|eip|route|configmap|secret|volume create|list|show|update|delete|
//! publish|unpublish ...`: the resource templates of a project and where they
//! are published, over the controller's HTTP API; and `berth volume
//! release|unbind` (what loses a volume's data takes `--confirm NAME`).

use anyhow::{anyhow, Context};
use berth_config::Config;
use berth_controller::api::{ReleaseInput, ResourceTargetInput, UnbindInput};
use berth_controller::cli::CliClient;
use berth_controller::resources::{ResourceKind, ResourcePublication};

use crate::app_cli::{selector, split};
use crate::cli::{print_json, send_mapped, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum ResourceCmd {
    /// Create it from a file (JSON or YAML) holding its fields, as the API
    /// takes them (`GET /api/v1/openapi.json` lists them per kind).
    #[command(after_help = "Example:\n  \
        printf 'data:\\n  web.toml: greeting = \"hi\"\\n' > settings.yaml\n  \
        berth configmap create shop/settings -f settings.yaml --description 'web settings'")]
    Create(Template),
    /// Replace its fields with a file's (JSON or YAML); apps running with it
    /// on nodes get the change.
    #[command(after_help = "Example:\n  berth configmap update shop/settings -f settings.yaml")]
    Update(Template),
    /// List the project's resources of this kind, with where each is published.
    #[command(after_help = "Example:\n  berth configmap list shop")]
    List {
        project: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one, with its state on each node.
    #[command(after_help = "Example:\n  berth configmap show shop/settings")]
    Show {
        /// project/name
        resource: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete it (only once it is published nowhere; a volume after its
    /// release, with the maintainer role and --confirm).
    #[command(after_help = "Examples:\n  berth configmap delete shop/settings\n  \
        berth volume delete shop/data --confirm data")]
    Delete {
        /// project/name
        resource: String,
        /// A volume's name, repeated: deleting a volume loses its data.
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Publish it on nodes [default: every node where an app it serves is published].
    Publish(Target),
    /// Take it off nodes [default: every node it is published on]. A volume's
    /// claim goes with its data.
    Unpublish(Target),
}

#[derive(clap::Args, Debug)]
pub struct Template {
    /// project/name
    pub resource: String,
    /// The fields, JSON or YAML (`name` may be left out).
    #[arg(long, short = 'f')]
    pub file: std::path::PathBuf,
    /// What it is for (the release description); overrides the file's.
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
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

/// The fields of a template file, with the name and description set.
fn template_body(t: &Template, name: &str) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(&t.file)
        .with_context(|| format!("cannot read -f {}", t.file.display()))?;
    // YAML is a superset of JSON: one parser reads both.
    let mut body: serde_json::Value = serde_yaml::from_str(&text)
        .map_err(|e| anyhow!("-f {}: neither JSON nor YAML: {e}", t.file.display()))?;
    let fields = body
        .as_object_mut()
        .ok_or_else(|| anyhow!("-f {}: give the fields as a mapping", t.file.display()))?;
    fields.insert("name".into(), name.into());
    if let Some(d) = &t.description {
        fields.insert("description".into(), d.clone().into());
    }
    Ok(body)
}

/// A template's fields the CLI filled from flags, by the server's names.
const TEMPLATE_FLAGS: &[(&str, &str)] = &[("description", "--description")];

async fn templates(cfg: &Config, kind: ResourceKind, cmd: ResourceCmd) -> anyhow::Result<()> {
    let what = kind.singular();
    let collection = |project: &str| format!("/api/v1/projects/{project}/{}", kind.as_str());
    match cmd {
        ResourceCmd::Create(t) => {
            let (project, name) = split(&t.resource)?;
            let body = template_body(&t, name)?;
            send_mapped(
                t.conn
                    .request(cfg, reqwest::Method::POST, &collection(project))
                    .json(&body),
                TEMPLATE_FLAGS,
            )
            .await
            .with_context(|| format!("cannot create {what} {}", t.resource))?;
            println!("created {what} {}", t.resource);
        }
        ResourceCmd::Update(t) => {
            let (project, name) = split(&t.resource)?;
            let body = template_body(&t, name)?;
            let path = format!("{}/{name}", collection(project));
            send_mapped(
                t.conn.request(cfg, reqwest::Method::PUT, &path).json(&body),
                TEMPLATE_FLAGS,
            )
            .await
            .with_context(|| format!("cannot update {what} {}", t.resource))?;
            println!("updated {what} {}", t.resource);
        }
        ResourceCmd::List { project, conn } => print_json(
            &send_mapped(
                conn.request(cfg, reqwest::Method::GET, &collection(&project)),
                &[],
            )
            .await
            .with_context(|| format!("cannot list the {what}s of {project}"))?,
        ),
        ResourceCmd::Show { resource, conn } => {
            let (project, name) = split(&resource)?;
            let path = format!("{}/{name}", collection(project));
            print_json(
                &send_mapped(conn.request(cfg, reqwest::Method::GET, &path), &[])
                    .await
                    .with_context(|| format!("cannot show {what} {resource}"))?,
            )
        }
        ResourceCmd::Delete {
            resource,
            confirm,
            conn,
        } => {
            let (project, name) = split(&resource)?;
            let path = format!("{}/{name}", collection(project));
            let mut rb = conn.request(cfg, reqwest::Method::DELETE, &path);
            if let Some(c) = &confirm {
                rb = rb.query(&[("confirm", c)]);
            }
            send_mapped(rb, &[("confirm", "--confirm")])
                .await
                .with_context(|| format!("cannot delete {what} {resource}"))?;
            println!("deleted {what} {resource}");
        }
        ResourceCmd::Publish(_) | ResourceCmd::Unpublish(_) => {
            unreachable!("publish and unpublish are handled by run")
        }
    }
    Ok(())
}

pub async fn run(cfg: &Config, kind: ResourceKind, cmd: ResourceCmd) -> anyhow::Result<()> {
    let (publish, t) = match cmd {
        ResourceCmd::Publish(t) => (true, t),
        ResourceCmd::Unpublish(t) => (false, t),
        other => return templates(cfg, kind, other).await,
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
