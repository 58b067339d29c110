//! `berth user ...`, `berth robot ...` and `berth passwd`: accounts, project
//! and system robots, and password changes, over the admin API.
//!
//! Owns: the commands' arguments, prompting for passwords, and the admin API
//! paths they call. Must not touch: password rules or who may do what (the
//! server decides and says why).

use anyhow::{anyhow, Context};
use berth_config::Config;

use crate::cli::{print_json, send, send_mapped, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum UserCmd {
    /// Create an account with an initial password the user must reset.
    #[command(
        after_help = "Examples:\n  berth user add alice             # asks for the initial password twice\n  berth user add ops --admin --initial-password start1234"
    )]
    Add {
        name: String,
        /// Initial password (8-20 characters, a letter and a digit); prompted if absent.
        #[arg(long, env = "BERTH_NEW_PASSWORD", hide_env_values = true)]
        initial_password: Option<String>,
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List accounts.
    #[command(after_help = "Example:\n  berth user list")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete an account.
    #[command(after_help = "Example:\n  berth user delete alice")]
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a new initial password for an account (administrators).
    #[command(
        after_help = "Example:\n  berth user reset-password alice  # asks twice; alice must change it before use"
    )]
    ResetPassword {
        name: String,
        #[arg(long, env = "BERTH_NEW_PASSWORD", hide_env_values = true)]
        initial_password: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum RobotCmd {
    /// Create a robot account; its secret is printed once. With --system, a
    /// system robot (system administrators) that pulls from the projects named.
    #[command(
        after_help = "Examples:\n  berth robot create team-a edge --access pull\n  berth robot create team-a ci --access push --expires-in 90d\n  berth robot create --system edge --projects team-a,team-b\n  berth robot create --system mirror --projects '*'"
    )]
    Create {
        /// The project (with --system: the robot's name).
        #[arg(value_name = "PROJECT")]
        project: String,
        /// The robot's name (not with --system).
        name: Option<String>,
        /// A system robot, logging in as robot$NAME, that pulls from --projects.
        #[arg(long)]
        system: bool,
        /// With --system: the projects it pulls from, comma-separated, or '*' for every one.
        #[arg(long, value_delimiter = ',', requires = "system")]
        projects: Vec<String>,
        /// pull, or push (push includes pull; project robots only).
        #[arg(long, default_value = "pull")]
        access: String,
        /// Lifetime, e.g. 30d, 12h; default: no expiry.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a project's robots, or (--system) the system robots.
    #[command(after_help = "Examples:\n  berth robot list team-a\n  berth robot list --system")]
    List {
        #[arg(required_unless_present = "system")]
        project: Option<String>,
        #[arg(long, conflicts_with = "project")]
        system: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a robot.
    #[command(
        after_help = "Examples:\n  berth robot revoke team-a ci\n  berth robot revoke --system edge"
    )]
    Revoke {
        /// The project (with --system: the robot's name).
        #[arg(value_name = "PROJECT")]
        project: String,
        /// The robot's name (not with --system).
        name: Option<String>,
        #[arg(long)]
        system: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth passwd alice     # asks for the current password, then the new one twice\n  \
    berth passwd admin --old-password \"$(cat berth-data/admin-password)\" --new-password 'S3cure-pass'")]
pub struct PasswdArgs {
    /// Account whose password to change [default: --user].
    pub name: Option<String>,
    /// Current (or initial) password; prompted if absent.
    #[arg(long, env = "BERTH_OLD_PASSWORD", hide_env_values = true)]
    pub old_password: Option<String>,
    /// New password; prompted if absent.
    #[arg(long, env = "BERTH_NEW_PASSWORD", hide_env_values = true)]
    pub new_password: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn user(cfg: &Config, cmd: UserCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        UserCmd::Add {
            name,
            initial_password,
            admin,
            conn,
        } => {
            let pw = match initial_password {
                Some(p) => p,
                None => crate::prompt::new_secret(&format!("initial password of {name}"))?,
            };
            send(
                conn.request(cfg, Method::POST, "/api/v1/users")
                    .json(&serde_json::json!({"name": name, "password": pw, "admin": admin})),
            )
            .await
            .with_context(|| format!("cannot create account {name}"))?;
            println!(
                "created account {name}; it must set its own password first: berth passwd {name}"
            );
        }
        UserCmd::List { conn } => print_json(
            &send(conn.request(cfg, Method::GET, "/api/v1/users"))
                .await
                .context("cannot list accounts")?,
        ),
        UserCmd::Delete { name, conn } => {
            send(conn.request(cfg, Method::DELETE, &format!("/api/v1/users/{name}")))
                .await
                .with_context(|| format!("cannot delete account {name}"))?;
            println!("deleted account {name}");
        }
        UserCmd::ResetPassword {
            name,
            initial_password,
            conn,
        } => {
            let pw = match initial_password {
                Some(p) => p,
                None => crate::prompt::new_secret(&format!("new initial password of {name}"))?,
            };
            send(
                conn.request(cfg, Method::PUT, &format!("/api/v1/users/{name}/password"))
                    .json(&serde_json::json!({ "new_password": pw })),
            )
            .await
            .with_context(|| format!("cannot reset the password of {name}"))?;
            println!("{name} has a new initial password and must reset it: berth passwd {name}");
        }
    }
    Ok(())
}

/// `(project, name)` of a project robot, or `(None, name)` of a system robot.
fn robot_names(
    first: String,
    second: Option<String>,
    system: bool,
) -> anyhow::Result<(Option<String>, String)> {
    match (system, second) {
        (true, None) => Ok((None, first)),
        (true, Some(extra)) => Err(anyhow!(
            "a system robot belongs to no project: give only its name ({extra:?} is one too many)"
        )),
        (false, Some(name)) => Ok((Some(first), name)),
        (false, None) => Err(anyhow!(
            "give the project and the robot's name, or --system and the name of a system robot"
        )),
    }
}

/// Where a robot is created, what it is called in messages, and the body
/// that creates it: in `project`, or (None) a system robot of `projects`.
fn new_robot(
    project: Option<&str>,
    name: &str,
    projects: &[String],
    access: &str,
    expires_in: Option<humantime::Duration>,
) -> anyhow::Result<(String, String, serde_json::Value)> {
    let mut body = serde_json::json!({"name": name, "access": access});
    if let Some(d) = expires_in {
        body["expires_in"] = serde_json::json!(d.as_secs());
    }
    let Some(p) = project else {
        if projects.is_empty() {
            return Err(anyhow!(
                "a system robot needs --projects a,b (or '*' for every project)"
            ));
        }
        body["projects"] = if projects.iter().any(|p| p == "*") {
            serde_json::json!("*")
        } else {
            serde_json::json!(projects)
        };
        return Ok((
            "/api/v1/robots".to_string(),
            format!("system robot {name}"),
            body,
        ));
    };
    Ok((
        format!("/api/v1/projects/{p}/robots"),
        format!("robot {name} in {p}"),
        body,
    ))
}

pub async fn robot(cfg: &Config, cmd: RobotCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        RobotCmd::Create {
            project,
            name,
            system,
            projects,
            access,
            expires_in,
            conn,
        } => {
            let (project, name) = robot_names(project, name, system)?;
            let (path, what, body) =
                new_robot(project.as_deref(), &name, &projects, &access, expires_in)?;
            let v = send_mapped(
                conn.request(cfg, Method::POST, &path).json(&body),
                &[
                    ("access", "--access"),
                    ("expires_in", "--expires-in"),
                    ("projects", "--projects"),
                ],
            )
            .await
            .with_context(|| format!("cannot create {what}"))?;
            println!("name:   {}", v["name"].as_str().unwrap_or(""));
            println!("secret: {}", v["secret"].as_str().unwrap_or(""));
            eprintln!("the secret is shown only now; store it (e.g. as the edge's BERTH_UPSTREAM_PASSWORD)");
        }
        RobotCmd::List {
            project,
            system,
            conn,
        } => {
            let (path, what) = match project.filter(|_| !system) {
                Some(p) => (
                    format!("/api/v1/projects/{p}/robots"),
                    format!("the robots of {p}"),
                ),
                None => ("/api/v1/robots".to_string(), "the system robots".into()),
            };
            print_json(
                &send(conn.request(cfg, Method::GET, &path))
                    .await
                    .with_context(|| format!("cannot list {what}"))?,
            )
        }
        RobotCmd::Revoke {
            project,
            name,
            system,
            conn,
        } => {
            let (project, name) = robot_names(project, name, system)?;
            let (path, what) = match &project {
                Some(p) => (
                    format!("/api/v1/projects/{p}/robots/{name}"),
                    format!("robot {name} of {p}"),
                ),
                None => (
                    format!("/api/v1/robots/{name}"),
                    format!("system robot {name}"),
                ),
            };
            send(conn.request(cfg, Method::DELETE, &path))
                .await
                .with_context(|| format!("cannot revoke {what}"))?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

pub async fn passwd(cfg: &Config, a: PasswdArgs) -> anyhow::Result<()> {
    let name = a.name.clone().unwrap_or_else(|| a.conn.user.clone());
    let old = match a.old_password {
        Some(p) => p,
        None => crate::prompt::secret(&format!("current password of {name}"))?,
    };
    let new = match a.new_password {
        Some(p) => p,
        None => crate::prompt::new_secret("new password (8-20 characters, a letter and a digit)")?,
    };
    // No credentials needed: the old password proves who we are, even an initial one.
    let conn = Conn {
        password: None,
        ..a.conn
    };
    send(
        conn.request(
            cfg,
            reqwest::Method::PUT,
            &format!("/api/v1/users/{name}/password"),
        )
        .json(&serde_json::json!({"old_password": old, "new_password": new})),
    )
    .await
    .with_context(|| format!("cannot change the password of {name}"))?;
    println!("password of {name} changed");
    Ok(())
}
