//! The `berth` command line: one binary, three roles (registry, edge cache,
//! workload controller) and the operator commands that talk to them.

// No unsafe code but two calls and a name: `arenas` sets a parameter of
// glibc's malloc and asks it to return free pages, and `pow` defines the C
// library's function of that name.
#![deny(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod app_cli;
mod resource_cli;

use berth_controller::resources::ResourceKind;
mod account_cli;
mod arenas;
mod cli;
mod compose;
mod console;
mod flags;
mod gc_cli;
mod image_source;
mod keys_cli;
mod migrate;
mod node_cache_cli;
mod node_cli;
mod pow;
mod project_cli;
mod prompt;
mod replication_cli;
mod repo_cli;
mod retention_cli;
mod serve_cli;
mod storage_cli;
mod webhook_cli;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "OCI registry and image distribution for edge computing",
    long_about = "berth is one binary with three roles:\n\
  serve  the central registry (OCI Distribution v1.1 / Docker Registry v2), with projects, accounts,\n\
         `docker login`, an admin API, audit log, GC and the workload controller;\n\
  edge   a pull-through cache for edge nodes (containerd hosts.toml mirror, Docker/podman mirror);\n\
  and operator commands (project, user, robot, passwd, repo, tag, audit, gc, cluster, node, app)\n\
  that call a running registry's API as --user (default admin) with --password or BERTH_PASSWORD.\n\n\
Every setting has a default; see berth.example.toml. Settings come from --config FILE, then\n\
BERTH_<SECTION>_<KEY> environment variables, then the flags given here.",
    after_help = "Examples:\n  berth serve                                 # 127.0.0.1:5000, data in ./berth-data\n  berth serve --listen 0.0.0.0:5000 --config /etc/berth.toml\n  berth edge --upstream http://registry:5000 --capacity 20GiB\n  berth project create team-a --private\n  berth gc --dry-run"
)]
struct Cli {
    /// TOML configuration file (see berth.example.toml).
    #[arg(long, short = 'c', global = true, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry (and the embedded workload controller).
    #[command(
        after_help = "Examples:\n  berth serve\n  berth serve --listen 0.0.0.0:5000 --data-dir /var/lib/berth"
    )]
    Serve(ServeArgs),
    /// Run a pull-through edge cache in front of a registry.
    #[command(
        after_help = "Example:\n  BERTH_UPSTREAM_USER='robot$team-a+edge' BERTH_UPSTREAM_PASSWORD=\"$(cat edge-secret)\" \\\n    berth edge --upstream http://registry.example:5000 --capacity 50GiB"
    )]
    Edge(EdgeArgs),
    /// Collect garbage: unreferenced manifests and blobs. Asks the running registry
    /// (POST /api/v1/gc); with --offline, works on the data directory of a stopped one.
    #[command(
        after_help = "Examples:\n  berth gc --dry-run\n  berth gc\n  berth gc --status\n  berth gc --runs --limit 10\n  berth gc --offline --data-dir /var/lib/berth   # the registry is stopped"
    )]
    Gc(GcArgs),
    /// Move a stopped registry's data onto PostgreSQL (and its blobs onto S3),
    /// verified by a recount of both sides.
    #[command(
        long_about = "Move a stopped registry's data onto PostgreSQL (and its blobs onto S3).\n\n\
The source is what --config (or --data-dir) names, usually the embedded redb file and the data\n\
directory's blobs; stop the registry first (its database is locked while it runs). Every record\n\
is copied into the target database, which must be empty: repositories, tags, manifests, blob\n\
records, accounts (password hashes as they are), projects, members, robots, the audit log,\n\
quotas, immutable-tag and retention rules, webhooks, replication policies and executions, GC\n\
history, pull counts, and the controller's clusters, nodes, apps, versions, publications and\n\
resources. Not copied: uploads in progress (clients restart them), the login throttle's counters\n\
(they expire in minutes), token signing keys (tokens live minutes), webhook events not yet\n\
delivered and delivery logs.\n\
Then both sides are recounted kind by kind; any MISMATCH exits non-zero.\n\n\
Sealed secrets and kubeconfigs are copied sealed: the target's controller.secret_key must be the\n\
key the source used (its data directory's controller-secret.key, unless configured).",
        after_help = "Examples:\n  berth migrate --to postgres://berth:secret@db:5432/berth\n  berth migrate --target-config /etc/berth/replica.toml --blobs-to s3   # [meta] and [storage] from replica.toml"
    )]
    Migrate(migrate::MigrateArgs),
    /// Write a backup of the metadata, the sealing key and the list of blobs
    /// (not the blobs' bytes: those are the object store's to back up).
    #[command(
        after_help = "Example:\n  berth backup --out /backup/berth-$(date +%F)\n\nThe directory gets metadata.redb (every record), sealing.key (0600; without it no sealed\nsecret or kubeconfig opens: keep it apart and safe) and\nblobs.txt (digest and size of every blob needed). An embedded registry must be stopped first."
    )]
    Backup(migrate::BackupArgs),
    /// Load a backup into the configured (empty) metadata backend and check
    /// that the configured storage has every blob it lists.
    #[command(
        after_help = "Example:\n  berth restore --from /backup/berth-2026-01-31 --data-dir /var/lib/berth\n\nThe target must be empty. Missing blobs are listed and the command fails: restore them from\nthe object store's backup."
    )]
    Restore(migrate::RestoreArgs),
    /// Manage projects on a running registry.
    #[command(subcommand)]
    Project(project_cli::ProjectCmd),
    /// Repositories of a project: list, show (tags), delete.
    #[command(subcommand)]
    Repo(repo_cli::RepoCmd),
    /// Tags of a repository: list, show, delete.
    #[command(subcommand)]
    Tag(repo_cli::TagCmd),
    /// Read the audit log: who did what, when, with what outcome (administrators).
    Audit(repo_cli::AuditArgs),
    /// A project's immutable-tag rules: tags that cannot be moved or deleted.
    #[command(subcommand)]
    Immutable(storage_cli::ImmutableCmd),
    /// A project's retention rules: which tags to keep; run them (or a dry run) now.
    #[command(subcommand)]
    Retention(retention_cli::RetentionCmd),
    /// A project's webhooks: signed CloudEvents for pushes, deletes and pulls.
    #[command(subcommand)]
    Webhook(webhook_cli::WebhookCmd),
    /// Replication policies: copy images to and from other registries (administrators).
    #[command(subcommand)]
    Replication(replication_cli::ReplicationCmd),
    /// Manage accounts on a running registry.
    #[command(subcommand)]
    User(account_cli::UserCmd),
    /// Manage robot accounts: a project's, or (--system) system robots that pull from several projects.
    #[command(subcommand)]
    Robot(account_cli::RobotCmd),
    /// Change an account's password (also the first, forced reset).
    Passwd(account_cli::PasswdArgs),
    /// Seal every sealed value (passwords, secrets, kubeconfigs) again with
    /// controller.secret_key, so that controller.previous_secret_keys can be
    /// removed (administrators; the registry keeps serving).
    #[command(after_help = "Example:\n  berth reseal")]
    Reseal(keys_cli::ResealArgs),
    /// The keys bearer tokens are signed with: list, rotate (administrators).
    #[command(subcommand)]
    TokenKeys(keys_cli::TokenKeysCmd),
    /// Kubernetes clusters edge nodes belong to (administrators).
    #[command(subcommand)]
    Cluster(node_cli::ClusterCmd),
    /// Edge nodes apps are published to (administrators register them).
    #[command(subcommand)]
    Node(node_cli::NodeCmd),
    /// Apps of the workload controller: create, list, show, update, history, publish,
    /// unpublish, status, logs, delete.
    #[command(subcommand)]
    App(app_cli::AppCmd),
    /// A load balancer on nodes: publish, unpublish.
    #[command(subcommand)]
    Lb(resource_cli::ResourceCmd),
    /// An EIP on nodes: publish, unpublish.
    #[command(subcommand)]
    Eip(resource_cli::ResourceCmd),
    /// A route on nodes: publish, unpublish.
    #[command(subcommand)]
    Route(resource_cli::ResourceCmd),
    /// A config map on nodes: publish, unpublish.
    #[command(subcommand)]
    Configmap(resource_cli::ResourceCmd),
    /// A secret on nodes: publish, unpublish.
    #[command(subcommand)]
    Secret(resource_cli::ResourceCmd),
    /// A local volume: publish, unpublish, release (its claim and data go;
    /// --confirm NAME), unbind, delete.
    #[command(subcommand)]
    Volume(resource_cli::VolumeCmd),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for metadata and blobs [default: ./berth-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct EdgeArgs {
    /// Registry to pull through, e.g. http://registry.example:5000; several
    /// (repeated or comma-separated) are tried in order: on a connection
    /// error, timeout or 5xx the next serves, and the first again once healthy.
    #[arg(long, value_delimiter = ',')]
    upstream: Vec<String>,
    /// Address to listen on [default: 127.0.0.1:5001].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Cache directory [default: ./berth-edge].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Cache capacity, e.g. 50GiB.
    #[arg(long)]
    capacity: Option<berth_config::ByteSize>,
}

#[derive(Args, Debug)]
struct GcArgs {
    /// Report what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Show whether a collection is running and the last one's report, start none.
    #[arg(long, conflicts_with_all = ["dry_run", "offline"])]
    status: bool,
    /// Show the history of collections (scheduled, asked for, offline),
    /// newest first: when, how long, what each freed. Starts none.
    #[arg(long, conflicts_with_all = ["dry_run", "offline", "status"])]
    runs: bool,
    /// With --runs: at most this many.
    #[arg(long, requires = "runs")]
    limit: Option<usize>,
    /// Work on the data directory directly (the registry must be stopped).
    #[arg(long)]
    offline: bool,
    /// Data directory for --offline [default: from config].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    conn: cli::Conn,
}

/// Logs go to stderr (stdout is for what commands print), coloured only
/// when stderr is a terminal: a log file or journal gets plain text.
fn init_logging(cfg: &berth_config::LogConfig) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cfg.format {
        berth_config::LogFormat::Json => builder.json().init(),
        berth_config::LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    arenas::limit();
    let cli = Cli::parse();
    let cfg = match berth_config::Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One format for every command: what failed, then the server's reason.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` with the configuration, its flags applied.
async fn run(command: Command, cfg: berth_config::Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(a) => serve(a, cfg).await,
        Command::Edge(a) => edge(a, cfg).await,
        Command::Gc(a) => gc(a, cfg).await,
        Command::Migrate(a) => migrate::migrate(in_data_dir(cfg, a.data_dir.clone()), a).await,
        Command::Backup(a) => migrate::backup(in_data_dir(cfg, a.data_dir.clone()), a).await,
        Command::Restore(a) => migrate::restore(in_data_dir(cfg, a.data_dir.clone()), a).await,
        Command::Project(c) => project_cli::project(&cfg, c).await,
        Command::Repo(c) => repo_cli::repo(&cfg, c).await,
        Command::Tag(c) => repo_cli::tag(&cfg, c).await,
        Command::Audit(a) => repo_cli::audit(&cfg, a).await,
        Command::Webhook(c) => webhook_cli::webhook(&cfg, c).await,
        Command::Immutable(c) => storage_cli::immutable(&cfg, c).await,
        Command::Retention(c) => retention_cli::retention(&cfg, c).await,
        Command::Replication(c) => replication_cli::replication(&cfg, c).await,
        Command::TokenKeys(c) => keys_cli::token_keys(&cfg, c).await,
        Command::Reseal(a) => keys_cli::reseal(&cfg, a).await,
        Command::Cluster(c) => node_cli::cluster(&cfg, c).await,
        Command::Node(c) => node_cli::node(&cfg, c).await,
        Command::User(c) => account_cli::user(&cfg, c).await,
        Command::Robot(c) => account_cli::robot(&cfg, c).await,
        Command::Passwd(a) => account_cli::passwd(&cfg, a).await,
        Command::App(c) => app_cli::run(&cfg, c).await,
        Command::Lb(c) => resource_cli::run(&cfg, ResourceKind::LoadBalancers, c).await,
        Command::Eip(c) => resource_cli::run(&cfg, ResourceKind::Eips, c).await,
        Command::Route(c) => resource_cli::run(&cfg, ResourceKind::Routes, c).await,
        Command::Configmap(c) => resource_cli::run(&cfg, ResourceKind::ConfigMaps, c).await,
        Command::Secret(c) => resource_cli::run(&cfg, ResourceKind::Secrets, c).await,
        Command::Volume(c) => resource_cli::run_volume(&cfg, c).await,
    }
}

/// `cfg` with its data directory replaced by `--data-dir`, when given.
fn in_data_dir(mut cfg: berth_config::Config, dir: Option<PathBuf>) -> berth_config::Config {
    if let Some(d) = dir {
        cfg.server.data_dir = d;
    }
    cfg
}

async fn serve(a: ServeArgs, cfg: berth_config::Config) -> anyhow::Result<()> {
    let mut cfg = in_data_dir(cfg, a.data_dir);
    if let Some(l) = a.listen {
        cfg.server.listen = l;
    }
    init_logging(&cfg.log);
    arenas::spawn_idle_trim();
    serve_cli::serve(cfg).await
}

async fn edge(a: EdgeArgs, mut cfg: berth_config::Config) -> anyhow::Result<()> {
    if !a.upstream.is_empty() {
        cfg.edge.upstream = a.upstream.join(",");
    }
    if let Some(l) = a.listen {
        cfg.edge.listen = l;
    }
    if let Some(d) = a.cache_dir {
        cfg.edge.cache_dir = d;
    }
    if let Some(c) = a.capacity {
        cfg.edge.capacity = c;
    }
    init_logging(&cfg.log);
    arenas::spawn_idle_trim();
    serve_cli::edge(cfg).await
}

async fn gc(a: GcArgs, cfg: berth_config::Config) -> anyhow::Result<()> {
    let cfg = in_data_dir(cfg, a.data_dir);
    if a.status {
        gc_cli::gc_status(&cfg, &a.conn).await
    } else if a.runs {
        gc_cli::gc_runs(&cfg, &a.conn, a.limit).await
    } else {
        gc_cli::gc(cfg, a.dry_run, a.offline, a.conn).await
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency check over every subcommand (clashing flags, bad defaults).
    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
