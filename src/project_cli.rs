//! `berth project ...`: projects (create, list, show, visibility, signature
//! policy, delete) and their members, over the admin API.
//!
//! Owns: the commands' arguments and the admin API paths they call. Must not
//! touch: who may do what (the server decides and says why).

use anyhow::{anyhow, Context};
use berth_config::Config;
use reqwest::Method;

use crate::cli::{print_json, send, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create a project (private unless --public).
    #[command(
        after_help = "Examples:\n  berth project create team-a\n  berth project create shared --public"
    )]
    Create {
        name: String,
        #[arg(long)]
        public: bool,
        /// The default; accepted so that `--private` can be said explicitly.
        #[arg(long, conflicts_with = "public")]
        private: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the projects you can see.
    #[command(after_help = "Example:\n  berth project list")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a project: access level, repositories, members, storage usage and limit.
    #[command(after_help = "Example:\n  berth project show team-a")]
    Show {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Make a project public or private.
    #[command(after_help = "Example:\n  berth project set team-a --public")]
    Set {
        name: String,
        #[arg(long, conflicts_with = "private", required_unless_present = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Require pulls (and publications) of the project's images to carry a
    /// cosign/sigstore signature one of these public keys verifies; --off removes it.
    RequireSignature {
        name: String,
        /// A PEM public key file (ECDSA P-256, as cosign and skopeo write them); repeatable.
        #[arg(long = "key", value_name = "FILE", required_unless_present = "off")]
        keys: Vec<std::path::PathBuf>,
        #[arg(long, conflicts_with = "keys")]
        off: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a project's storage limit (system administrators): a size, `none`
    /// (no limit, whatever the default), or `default` (quota.default_project).
    #[command(after_help = "Examples:\n  \
        berth project quota team-a 50GiB\n  \
        berth project quota team-a none\n  \
        berth project quota team-a default\n\n\
        Usage counts each blob and manifest once per project; it goes down when the\n\
        project's last link to a blob goes (GC, or deleting the repository), not when a tag is deleted.")]
    Quota {
        name: String,
        /// e.g. 50GiB, 500MB, a number of bytes, `none` or `default`.
        limit: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Count a project's usage again from what its repositories hold (system administrators).
    #[command(after_help = "Example:\n  berth project recount team-a")]
    Recount {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a project (with --force, also its repositories, apps and resources, taken off every node).
    #[command(after_help = "Example:\n  berth project delete team-a --force")]
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Give an account a role in a project: guest, developer, maintainer or project-admin.
    #[command(after_help = "Example:\n  berth project add-member team-a alice --role developer")]
    AddMember {
        project: String,
        /// The account. (Not named `user`: that id is taken by --user, the account acting.)
        #[arg(value_name = "USER")]
        member: String,
        #[arg(long, default_value = "developer")]
        role: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove an account from a project.
    #[command(after_help = "Example:\n  berth project remove-member team-a alice")]
    RemoveMember {
        project: String,
        #[arg(value_name = "USER")]
        member: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn project(cfg: &Config, cmd: ProjectCmd) -> anyhow::Result<()> {
    match cmd {
        ProjectCmd::Create {
            name, public, conn, ..
        } => create(cfg, name, public, conn).await?,
        ProjectCmd::List { conn } => print_json(
            &send(conn.request(cfg, Method::GET, "/api/v1/projects"))
                .await
                .context("cannot list projects")?,
        ),
        ProjectCmd::Show { name, conn } => print_json(
            &send(conn.request(cfg, Method::GET, &format!("/api/v1/projects/{name}")))
                .await
                .with_context(|| format!("cannot show project {name}"))?,
        ),
        ProjectCmd::Set {
            name, public, conn, ..
        } => set(cfg, name, public, conn).await?,
        ProjectCmd::RequireSignature {
            name,
            keys,
            off,
            conn,
        } => require_signature(cfg, name, keys, off, conn).await?,
        ProjectCmd::Quota { name, limit, conn } => {
            crate::storage_cli::set_quota(cfg, &name, &limit, &conn).await?
        }
        ProjectCmd::Recount { name, conn } => {
            crate::storage_cli::recount(cfg, &name, &conn).await?
        }
        ProjectCmd::Delete { name, force, conn } => delete(cfg, name, force, conn).await?,
        ProjectCmd::AddMember {
            project,
            member: user,
            role,
            conn,
        } => add_member(cfg, project, user, role, conn).await?,
        ProjectCmd::RemoveMember {
            project,
            member: user,
            conn,
        } => remove_member(cfg, project, user, conn).await?,
    }
    Ok(())
}

/// `berth project create`.
async fn create(cfg: &Config, name: String, public: bool, conn: Conn) -> anyhow::Result<()> {
    let v = send(
        conn.request(cfg, Method::POST, "/api/v1/projects")
            .json(&serde_json::json!({"name": name, "public": public})),
    )
    .await
    .with_context(|| format!("cannot create project {name}"))?;
    println!(
        "created {} project {}",
        if public { "public" } else { "private" },
        v["name"].as_str().unwrap_or(&name)
    );
    Ok(())
}

/// `berth project set`: public or private.
async fn set(cfg: &Config, name: String, public: bool, conn: Conn) -> anyhow::Result<()> {
    send(
        conn.request(cfg, Method::PATCH, &format!("/api/v1/projects/{name}"))
            .json(&serde_json::json!({ "public": public })),
    )
    .await
    .with_context(|| format!("cannot change project {name}"))?;
    println!(
        "project {name} is now {}",
        if public { "public" } else { "private" }
    );
    Ok(())
}

/// `berth project require-signature`: the public keys (PEM files) a pulled
/// image must be signed with, or (`--off`) none.
async fn require_signature(
    cfg: &Config,
    name: String,
    keys: Vec<std::path::PathBuf>,
    off: bool,
    conn: Conn,
) -> anyhow::Result<()> {
    let policy = if off {
        serde_json::Value::Null
    } else {
        let mut pems = Vec::new();
        for k in &keys {
            pems.push(
                std::fs::read_to_string(k).map_err(|e| anyhow!("reading {}: {e}", k.display()))?,
            );
        }
        serde_json::json!({ "public_keys": pems })
    };
    send(
        conn.request(cfg, Method::PATCH, &format!("/api/v1/projects/{name}"))
            .json(&serde_json::json!({ "require_signature": policy })),
    )
    .await?;
    if off {
        println!("project {name} no longer requires signatures");
    } else {
        println!(
            "project {name} now requires images signed by one of {} key(s)",
            keys.len()
        );
    }
    Ok(())
}

/// `berth project delete`.
async fn delete(cfg: &Config, name: String, force: bool, conn: Conn) -> anyhow::Result<()> {
    send(conn.request(
        cfg,
        Method::DELETE,
        &format!("/api/v1/projects/{name}?force={force}"),
    ))
    .await
    .with_context(|| format!("cannot delete project {name}"))?;
    println!("deleted project {name}");
    Ok(())
}

/// `berth project add-member`: an account's role in the project.
async fn add_member(
    cfg: &Config,
    project: String,
    user: String,
    role: String,
    conn: Conn,
) -> anyhow::Result<()> {
    send(
        conn.request(
            cfg,
            Method::PUT,
            &format!("/api/v1/projects/{project}/members/{user}"),
        )
        .json(&serde_json::json!({ "role": role })),
    )
    .await
    .with_context(|| format!("cannot make {user} {role} in {project}"))?;
    println!("{user} is now {role} in {project}");
    Ok(())
}

/// `berth project remove-member`.
async fn remove_member(
    cfg: &Config,
    project: String,
    user: String,
    conn: Conn,
) -> anyhow::Result<()> {
    send(conn.request(
        cfg,
        Method::DELETE,
        &format!("/api/v1/projects/{project}/members/{user}"),
    ))
    .await
    .with_context(|| format!("cannot remove {user} from {project}"))?;
    println!("removed {user} from {project}");
    Ok(())
}
