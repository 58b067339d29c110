//! `berth cluster ...` and `berth node ...`: the clusters edge nodes belong to
//! and the nodes themselves, over the controller's `/api/v1/clusters` and
//! `/api/v1/nodes` (system administrators).
//!
//! Owns: turning flags into those request bodies and the server's field names
//! in refusals back into flags. Must not touch: the records' rules (the server
//! checks them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use berth_config::Config;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{print_json, send_mapped, Conn};

/// The fields of a node body and the flags that fill them.
const NODE_FLAGS: &[(&str, &str)] = &[
    ("edge_credentials.user", "--edge-user"),
    ("edge_credentials.password", "--edge-password"),
    ("edge_credentials", "--edge-user/--edge-password"),
    ("edge_controller_token", "--edge-controller-token"),
    ("edge_url", "--edge-url"),
    ("k8s_node_name", "--k8s-node-name"),
    ("cluster", "--cluster"),
    ("labels.", "--label "),
];

const CLUSTER_FLAGS: &[(&str, &str)] = &[("kubeconfig", "--kubeconfig")];

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Register a Kubernetes cluster from its kubeconfig file (its current context
    /// is the one berth uses). The credential is sealed at rest and never shown.
    #[command(
        after_help = "Example:\n  berth cluster create edge-1 --kubeconfig ~/.kube/edge-1.yaml"
    )]
    Create {
        name: String,
        /// The cluster's kubeconfig file.
        #[arg(long, value_name = "FILE")]
        kubeconfig: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// List clusters: name, API server, context.
    #[command(after_help = "Example:\n  berth cluster list")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a cluster.
    #[command(after_help = "Example:\n  berth cluster show edge-1")]
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a cluster (refused while nodes belong to it).
    #[command(after_help = "Example:\n  berth cluster delete edge-1")]
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// What `berth node register` takes.
#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    pub name: String,
    /// The cluster the node is in (`berth cluster create`).
    #[arg(long)]
    pub cluster: String,
    /// Base URL of the node's `berth edge`, e.g. http://10.0.0.5:5001.
    #[arg(long)]
    pub edge_url: String,
    /// A label, key=value; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The node's kubernetes.io/hostname [default: NAME].
    #[arg(long)]
    pub k8s_node_name: Option<String>,
    /// Account of the edge's API (its edge.client_user), if it asks for one.
    #[arg(long)]
    pub edge_user: Option<String>,
    /// Its password; asked (twice, without echo) when --edge-user is given without it.
    #[arg(
        long,
        env = "BERTH_EDGE_PASSWORD",
        hide_env_values = true,
        requires = "edge_user"
    )]
    pub edge_password: Option<String>,
    /// The edge's edge.controller_token, so developers can read container logs.
    #[arg(long, env = "BERTH_EDGE_CONTROLLER_TOKEN", hide_env_values = true)]
    pub edge_controller_token: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Subcommand, Debug)]
pub enum NodeCmd {
    /// Register an edge node: the cluster it is in, its edge cache's URL, labels
    /// for `berth app publish --selector`, and the edge's credentials.
    #[command(after_help = "Examples:\n  \
        berth node register node-a --cluster edge-1 --edge-url http://10.0.0.5:5001 --label zone=north\n  \
        BERTH_EDGE_CONTROLLER_TOKEN=$(cat edge-token) berth node register node-b --cluster edge-1 \\\n      \
        --edge-url https://node-b:5001 --edge-user berth   # asks for the edge password twice")]
    Register(RegisterArgs),
    /// List nodes with their clusters, edges and labels.
    #[command(after_help = "Example:\n  berth node list")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a node (never its edge password or token).
    #[command(after_help = "Example:\n  berth node show node-a")]
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set labels (key=value) or remove them (key-), as kubectl label does.
    #[command(after_help = "Example:\n  berth node label node-a zone=south tier=edge old-")]
    Label {
        name: String,
        /// key=value to set, key- to remove.
        #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
        changes: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Export a kubeconfig for a project on the node's cluster. With the
    /// Kubernetes deployer: a token of the project's ServiceAccount, limited to
    /// the project's namespace, valid for --ttl (project maintainers and above;
    /// revoked when a member leaves). With the directory deployer: the
    /// cluster's own kubeconfig, for system administrators only.
    #[command(
        after_help = "Example:\n  berth node kubeconfig node-a --project team-a --ttl 7200 -o team-a.kubeconfig"
    )]
    Kubeconfig {
        name: String,
        /// The project whose namespace the kubeconfig works in.
        #[arg(long)]
        project: String,
        /// Token lifetime in seconds (default 3600; at least 600, at most
        /// controller.kubeconfig_max_ttl).
        #[arg(long)]
        ttl: Option<u64>,
        /// Write it to this file (mode 0600) instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// The node's edge cache, read from its edge now: capacity and use, hit
    /// rate, pinned images, whether its upstream answers, prefetch jobs.
    #[command(after_help = "Example:\n  berth node cache node-a")]
    Cache {
        name: String,
        /// Print the controller's answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a node (refused while apps are published or volumes bound on it).
    #[command(after_help = "Example:\n  berth node delete node-a")]
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `key=value` flags into a map, naming the flag when one is malformed.
fn labels(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("{flag} {l:?} is not key=value"))
        })
        .collect()
}

/// `key=value` sets, `key-` removes: a JSON merge patch of the labels.
fn label_changes(items: &[String]) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    items
        .iter()
        .map(|l| match (l.split_once('='), l.strip_suffix('-')) {
            (Some((k, v)), _) => Ok((k.to_string(), Some(v.to_string()))),
            (None, Some(k)) if !k.is_empty() => Ok((k.to_string(), None)),
            _ => Err(anyhow!("{l:?} is neither key=value nor key-")),
        })
        .collect()
}

pub async fn cluster(cfg: &Config, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Create {
            name,
            kubeconfig,
            conn,
        } => {
            let text = std::fs::read_to_string(&kubeconfig)
                .with_context(|| format!("cannot read --kubeconfig {}", kubeconfig.display()))?;
            let v = send_mapped(
                conn.request(cfg, Method::POST, "/api/v1/clusters")
                    .json(&json!({ "name": name, "kubeconfig": text })),
                CLUSTER_FLAGS,
            )
            .await
            .with_context(|| format!("cannot create cluster {name}"))?;
            println!(
                "created cluster {name} (API server {}, context {})",
                v["server"].as_str().unwrap_or("?"),
                v["current_context"].as_str().unwrap_or("?")
            );
        }
        ClusterCmd::List { conn } => print_json(
            &send_mapped(conn.request(cfg, Method::GET, "/api/v1/clusters"), &[])
                .await
                .context("cannot list clusters")?,
        ),
        ClusterCmd::Show { name, conn } => print_json(
            &send_mapped(
                conn.request(cfg, Method::GET, &format!("/api/v1/clusters/{name}")),
                &[],
            )
            .await
            .with_context(|| format!("cannot show cluster {name}"))?,
        ),
        ClusterCmd::Delete { name, conn } => {
            send_mapped(
                conn.request(cfg, Method::DELETE, &format!("/api/v1/clusters/{name}")),
                &[],
            )
            .await
            .with_context(|| format!("cannot delete cluster {name}"))?;
            println!("deleted cluster {name}");
        }
    }
    Ok(())
}

pub async fn node(cfg: &Config, cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Register(args) => register(cfg, args).await?,
        NodeCmd::Kubeconfig {
            name,
            project,
            ttl,
            output,
            conn,
        } => kubeconfig(cfg, &name, &project, ttl, output, &conn).await?,
        NodeCmd::List { conn } => print_json(
            &send_mapped(conn.request(cfg, Method::GET, "/api/v1/nodes"), &[])
                .await
                .context("cannot list nodes")?,
        ),
        NodeCmd::Show { name, conn } => print_json(
            &send_mapped(
                conn.request(cfg, Method::GET, &format!("/api/v1/nodes/{name}")),
                &[],
            )
            .await
            .with_context(|| format!("cannot show node {name}"))?,
        ),
        NodeCmd::Label {
            name,
            changes,
            conn,
        } => {
            let v: Value = send_mapped(
                conn.request(cfg, Method::PATCH, &format!("/api/v1/nodes/{name}"))
                    .json(&json!({ "labels": label_changes(&changes)? })),
                &[("labels.", "")],
            )
            .await
            .with_context(|| format!("cannot label node {name}"))?;
            print_json(&v["labels"]);
        }
        NodeCmd::Cache { name, json, conn } => {
            crate::node_cache_cli::show(cfg, &name, json, conn).await?
        }
        NodeCmd::Delete { name, conn } => {
            send_mapped(
                conn.request(cfg, Method::DELETE, &format!("/api/v1/nodes/{name}")),
                &[],
            )
            .await
            .with_context(|| format!("cannot delete node {name}"))?;
            println!("deleted node {name}");
        }
    }
    Ok(())
}

async fn register(cfg: &Config, args: RegisterArgs) -> anyhow::Result<()> {
    let RegisterArgs {
        name,
        cluster,
        edge_url,
        labels: items,
        k8s_node_name,
        edge_user,
        edge_password,
        edge_controller_token,
        conn,
    } = args;
    let mut body = json!({
        "name": name,
        "cluster": cluster,
        "edge_url": edge_url,
        "labels": labels("--label", &items)?,
    });
    if let Some(k) = k8s_node_name {
        body["k8s_node_name"] = json!(k);
    }
    if let Some(user) = edge_user {
        let password = match edge_password {
            Some(p) => p,
            None => crate::prompt::new_secret(&format!("password of {user} on the edge"))?,
        };
        body["edge_credentials"] = json!({ "user": user, "password": password });
    }
    if let Some(t) = edge_controller_token {
        body["edge_controller_token"] = json!(t);
    }
    send_mapped(
        conn.request(cfg, Method::POST, "/api/v1/nodes").json(&body),
        NODE_FLAGS,
    )
    .await
    .with_context(|| format!("cannot register node {name}"))?;
    println!("registered node {name} in cluster {cluster}");
    Ok(())
}

async fn kubeconfig(
    cfg: &Config,
    name: &str,
    project: &str,
    ttl: Option<u64>,
    output: Option<PathBuf>,
    conn: &Conn,
) -> anyhow::Result<()> {
    let mut rb = conn
        .request(
            cfg,
            Method::GET,
            &format!("/api/v1/nodes/{name}/kubeconfig"),
        )
        .query(&[("project", project)]);
    if let Some(t) = ttl {
        rb = rb.query(&[("ttl", t)]);
    }
    let v = send_mapped(rb, &[("project", "--project"), ("ttl", "--ttl")])
        .await
        .with_context(|| format!("cannot export a kubeconfig of node {name}"))?;
    let yaml = v.as_str().unwrap_or_default();
    match output {
        Some(path) => {
            write_private(&path, yaml)
                .with_context(|| format!("cannot write -o {}", path.display()))?;
            eprintln!("wrote {} (mode 0600)", path.display());
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

/// Writes a credential file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_changes_read_like_kubectl() {
        let c =
            label_changes(&["zone=north".into(), "old-".into(), "empty=".into()]).expect("valid");
        assert_eq!(c["zone"], Some("north".to_string()));
        assert_eq!(c["old"], None);
        assert_eq!(c["empty"], Some(String::new()));
        assert!(label_changes(&["zone".into()]).is_err());
        assert!(label_changes(&["-".into()]).is_err());
    }
}
