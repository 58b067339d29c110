//! `berth webhook ...`: a project's webhook endpoints and their delivery
//! logs, over the admin API.
//!
//! Owns: the commands' flags and the admin API paths they call. Must not
//! touch: who may do what or which URLs are allowed (the server decides).

use anyhow::Context;
use berth_config::Config;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cli::{print_json, send_mapped, Conn};

#[derive(clap::Subcommand, Debug)]
pub enum WebhookCmd {
    /// Add an endpoint (project admins); prints its signing secret once.
    #[command(after_help = "Examples:\n  \
        berth webhook create team-a --endpoint https://ci.example/hooks/berth\n  \
        berth webhook create team-a --endpoint https://audit.example/in --events push,delete,pull\n\n\
        Deliveries are CloudEvents 1.0 (structured JSON), signed with\n  \
        X-Berth-Signature: sha256=<hex HMAC-SHA256 of the body keyed with the secret>")]
    Create {
        project: String,
        /// The URL that receives the events (`--url` is the registry's).
        #[arg(long)]
        endpoint: String,
        /// Comma-separated: push, delete, pull, publication [default: push,delete].
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// Create it disabled (events are not queued for it).
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a project's endpoints.
    #[command(after_help = "Example:\n  berth webhook list team-a")]
    List {
        project: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one endpoint.
    #[command(after_help = "Example:\n  berth webhook show team-a 4f0c...")]
    Show {
        project: String,
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change an endpoint's URL, events, or whether it is enabled.
    #[command(after_help = "Examples:\n  \
        berth webhook update team-a 4f0c... --events push\n  \
        berth webhook update team-a 4f0c... --disable")]
    Update {
        project: String,
        id: String,
        /// A new URL for the events.
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete an endpoint with its queue and delivery log.
    #[command(after_help = "Example:\n  berth webhook delete team-a 4f0c...")]
    Delete {
        project: String,
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Give an endpoint a new signing secret, printed once. Until the overlap
    /// ends, deliveries carry a second signature by the old secret.
    #[command(after_help = "Examples:\n  \
        berth webhook rotate-secret team-a 4f0c...\n  \
        berth webhook rotate-secret team-a 4f0c... --overlap 1h\n  \
        berth webhook rotate-secret team-a 4f0c... --overlap 0s   # the old secret stops at once\n\n\
        During the overlap each delivery carries\n  \
        X-Berth-Signature: sha256=<HMAC by the new secret>\n  \
        X-Berth-Signature-Previous: sha256=<HMAC by the old secret>\n\
        so a receiver holding either secret accepts it while the new one is rolled out.")]
    RotateSecret {
        project: String,
        id: String,
        /// How long the old secret keeps signing (e.g. 30m, 24h; at most 7d)
        /// [default: the server's webhooks.secret_overlap, 24h unless configured].
        #[arg(long, value_parser = humantime::parse_duration)]
        overlap: Option<std::time::Duration>,
        #[command(flatten)]
        conn: Conn,
    },
    /// An endpoint's delivery log, newest first: status, attempts, response code.
    #[command(after_help = "Example:\n  berth webhook deliveries team-a 4f0c... --limit 20")]
    Deliveries {
        project: String,
        id: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        conn: Conn,
    },
}

fn path(project: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("/api/v1/projects/{project}/webhooks/{id}"),
        None => format!("/api/v1/projects/{project}/webhooks"),
    }
}

pub async fn webhook(cfg: &Config, cmd: WebhookCmd) -> anyhow::Result<()> {
    match cmd {
        WebhookCmd::Create {
            project,
            endpoint,
            events,
            disabled,
            conn,
        } => create(cfg, &project, endpoint, events, disabled, &conn).await?,
        WebhookCmd::List { project, conn } => print_json(
            &send_mapped(conn.request(cfg, Method::GET, &path(&project, None)), &[])
                .await
                .with_context(|| format!("cannot list the webhooks of {project}"))?,
        ),
        WebhookCmd::Show { project, id, conn } => print_json(
            &send_mapped(
                conn.request(cfg, Method::GET, &path(&project, Some(&id))),
                &[],
            )
            .await
            .with_context(|| format!("cannot show webhook {id}"))?,
        ),
        WebhookCmd::Update {
            project,
            id,
            endpoint,
            events,
            enable,
            disable,
            conn,
        } => {
            let enabled = (enable || disable).then_some(enable);
            update(cfg, &project, &id, endpoint, events, enabled, &conn).await?
        }
        WebhookCmd::RotateSecret {
            project,
            id,
            overlap,
            conn,
        } => rotate_secret(cfg, &project, &id, overlap, &conn).await?,
        WebhookCmd::Delete { project, id, conn } => {
            send_mapped(
                conn.request(cfg, Method::DELETE, &path(&project, Some(&id))),
                &[],
            )
            .await
            .with_context(|| format!("cannot delete webhook {id}"))?;
            println!("deleted webhook {id} of {project}");
        }
        WebhookCmd::Deliveries {
            project,
            id,
            limit,
            conn,
        } => print_json(
            &send_mapped(
                conn.request(
                    cfg,
                    Method::GET,
                    &format!("{}/deliveries?limit={limit}", path(&project, Some(&id))),
                ),
                &[],
            )
            .await
            .with_context(|| format!("cannot read the deliveries of webhook {id}"))?,
        ),
    }
    Ok(())
}

/// The fields of a webhook's body, as the flags that set them.
const FIELDS: [(&str, &str); 2] = [("url", "--endpoint"), ("events", "--events")];

async fn create(
    cfg: &Config,
    project: &str,
    endpoint: String,
    events: Option<Vec<String>>,
    disabled: bool,
    conn: &Conn,
) -> anyhow::Result<()> {
    let mut body = json!({"url": endpoint, "enabled": !disabled});
    if let Some(e) = events {
        body["events"] = json!(e);
    }
    let v = send_mapped(
        conn.request(cfg, Method::POST, &path(project, None))
            .json(&body),
        &FIELDS,
    )
    .await
    .with_context(|| format!("cannot create a webhook in {project}"))?;
    print_json(&v);
    eprintln!("the secret is shown only now: keep it where the receiver checks signatures");
    Ok(())
}

async fn update(
    cfg: &Config,
    project: &str,
    id: &str,
    endpoint: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
    conn: &Conn,
) -> anyhow::Result<()> {
    let mut body = Map::new();
    if let Some(u) = endpoint {
        body.insert("url".into(), json!(u));
    }
    if let Some(e) = events {
        body.insert("events".into(), json!(e));
    }
    if let Some(on) = enabled {
        body.insert("enabled".into(), json!(on));
    }
    let v = send_mapped(
        conn.request(cfg, Method::PATCH, &path(project, Some(id)))
            .json(&Value::Object(body)),
        &FIELDS,
    )
    .await
    .with_context(|| format!("cannot update webhook {id}"))?;
    print_json(&v);
    Ok(())
}

async fn rotate_secret(
    cfg: &Config,
    project: &str,
    id: &str,
    overlap: Option<std::time::Duration>,
    conn: &Conn,
) -> anyhow::Result<()> {
    let mut body = Map::new();
    if let Some(o) = overlap {
        body.insert("overlap_seconds".into(), json!(o.as_secs()));
    }
    let v = send_mapped(
        conn.request(
            cfg,
            Method::POST,
            &format!("{}/rotate-secret", path(project, Some(id))),
        )
        .json(&Value::Object(body)),
        &[("overlap_seconds", "--overlap")],
    )
    .await
    .with_context(|| format!("cannot rotate the secret of webhook {id}"))?;
    print_json(&v);
    eprintln!("the new secret is shown only now: give it to the receiver before the overlap ends");
    Ok(())
}
