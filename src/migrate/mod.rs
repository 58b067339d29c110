//! `berth migrate`: moves a stopped registry's data onto other engines
//! (typically redb + a local directory onto PostgreSQL + S3), and
//! `berth backup` / `berth restore` (`backup.rs`). All three copy through
//! one engine: the registry's `berth_registry::transfer` and the
//! controller's `export_records` / `import_records`, from whatever backend
//! a configuration names into an empty one, then recount both sides.
//!
//! Owns: opening each side from a configuration (the source's lock held
//! for the whole copy), the refusal of a non-empty target, and the recount
//! table. Must not touch: the records themselves (the engines do).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_config::{Config, MetaBackend, StorageBackend};
use berth_controller::ControllerStore;
use berth_registry::content::ContentStore;
use berth_registry::meta::{pg, BlobRecord, RedbMeta};
use berth_registry::transfer::{self, Counts, Stores};
use clap::{Args, ValueEnum};

mod backup;

pub use backup::{backup, restore, BackupArgs, RestoreArgs};

/// Where `--blobs-to` copies the blobs' bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BlobsTo {
    /// The S3 bucket of the target configuration's `[storage]` section.
    S3,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The PostgreSQL database to move the metadata into, e.g.
    /// postgres://berth:secret@db:5432/berth (overrides --target-config's
    /// meta.url). It must be empty: berth creates its tables there.
    #[arg(long)]
    pub to: Option<String>,
    /// Also copy the blobs' bytes, streamed and verified digest by digest,
    /// into the bucket of --target-config's [storage] section; blobs the
    /// bucket has already are skipped, so an interrupted run can be repeated
    /// into a fresh database.
    #[arg(long, value_enum, requires = "target_config")]
    pub blobs_to: Option<BlobsTo>,
    /// The configuration the registry will run with afterwards: its [meta]
    /// (backend = "postgres", url) and [storage] sections name the target.
    /// Without it, the target is the source's configuration with --to as
    /// its database and the same blob storage.
    #[arg(long)]
    pub target_config: Option<PathBuf>,
    /// The source's data directory [default: from --config].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// One side of a copy: its metadata stores, controller records and blobs.
pub(crate) struct Side {
    pub(crate) stores: Stores,
    pub(crate) controller: Arc<dyn ControllerStore>,
    /// Its blob storage; None for a backup's directory (no bytes there).
    pub(crate) content: Option<ContentStore>,
    pub(crate) label: String,
}

/// The embedded side over the redb file at `path` (which must exist when
/// `must_exist`); its lock is held while the side lives.
pub(crate) fn redb_side(
    path: &std::path::Path,
    content: Option<ContentStore>,
    must_exist: bool,
) -> anyhow::Result<Side> {
    if must_exist && !path.exists() {
        bail!("no registry data at {}", path.display());
    }
    let meta = RedbMeta::open(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let accounts = meta.accounts().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Records travel sealed as they are: no key is needed to copy them.
    let controller = berth_controller::open_embedded_store(meta.database(), None)
        .map_err(|e| anyhow::anyhow!("controller records: {e}"))?;
    Ok(Side {
        stores: Stores {
            accounts: Arc::new(accounts),
            cache: Arc::new(meta.clone()),
            meta: Arc::new(meta),
        },
        controller,
        content,
        label: path.display().to_string(),
    })
}

/// The side `cfg` names: its metadata backend and its blob storage.
pub(crate) async fn open_side(cfg: &Config, must_exist: bool) -> anyhow::Result<Side> {
    let content = berth_registry::app::open_content(cfg, &cfg.server.data_dir)
        .with_context(|| "opening the blob storage")?;
    match cfg.meta.backend {
        MetaBackend::Redb => redb_side(
            &cfg.server.data_dir.join("berth.redb"),
            Some(content),
            must_exist,
        ),
        MetaBackend::Postgres => {
            let pool = pg::connect(&cfg.meta.url, cfg.meta.max_connections as usize)?;
            let ctl = berth_controller::store::pg::MIGRATIONS;
            let controller = pg::Migrations {
                component: ctl.component,
                steps: ctl.steps,
            };
            pg::migrate(&pool, &[pg::MIGRATIONS, pg::ACCOUNT_MIGRATIONS, controller]).await?;
            let meta = pg::PgMeta::new(pool.clone());
            let controller = berth_controller::open_postgres_store(pool.clone(), None)
                .await
                .map_err(|e| anyhow::anyhow!("controller records: {e}"))?;
            Ok(Side {
                stores: Stores {
                    accounts: Arc::new(pg::PgAccounts::new(pool)),
                    cache: Arc::new(meta.clone()),
                    meta: Arc::new(meta),
                },
                controller,
                content: Some(content),
                label: redact(&cfg.meta.url),
            })
        }
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Refuses a target holding anything, registry or controller records.
pub(crate) async fn ensure_empty(target: &Side) -> anyhow::Result<()> {
    transfer::ensure_empty(&target.stores, &target.label).await?;
    let held: u64 = target
        .controller
        .export_records()
        .await?
        .counts()
        .values()
        .sum();
    if held > 0 {
        bail!(
            "{} is not empty (it holds {held} controller records); berth copies only into an \
             empty target",
            target.label
        );
    }
    Ok(())
}

/// Copies every record of `from` into `to` (checked empty first).
pub(crate) async fn copy_records(from: &Side, to: &Side) -> anyhow::Result<()> {
    let progress = |what: &str| eprintln!("  {what}");
    transfer::copy(&from.stores, &to.stores, &progress).await?;
    eprintln!("  controller records");
    let records = from.controller.export_records().await?;
    to.controller.import_records(&records).await?;
    Ok(())
}

/// The recount of one side: the registry's kinds, then the controller's tables.
pub(crate) async fn recount(side: &Side) -> anyhow::Result<Counts> {
    let mut counts = transfer::count(&side.stores).await?;
    for (table, n) in side.controller.export_records().await?.counts() {
        counts.insert(format!("controller: {table}"), n);
    }
    Ok(counts)
}

/// Prints the recount, kind by kind; false when any kind differs.
pub(crate) fn print_recount(source: &Counts, target: &Counts) -> bool {
    let kinds: std::collections::BTreeSet<&String> = source.keys().chain(target.keys()).collect();
    println!("{:<40} {:>10} {:>10}  CHECK", "KIND", "SOURCE", "TARGET");
    let mut ok = true;
    for kind in kinds {
        let (s, t) = (source.get(kind), target.get(kind));
        let check = if s == t { "OK" } else { "MISMATCH" };
        ok &= s == t;
        let n = |v: Option<&u64>| v.map_or("-".to_string(), u64::to_string);
        println!("{kind:<40} {:>10} {:>10}  {check}", n(s), n(t));
    }
    ok
}

/// The blobs the copied metadata needs: those some repository links.
pub(crate) async fn needed_blobs(side: &Side) -> anyhow::Result<Vec<BlobRecord>> {
    Ok(transfer::linked_blobs(side.stores.meta.as_ref()).await?)
}

/// `berth migrate`.
pub async fn migrate(source_cfg: Config, args: MigrateArgs) -> anyhow::Result<()> {
    let mut target_cfg = match &args.target_config {
        Some(path) => Config::load(Some(path))?,
        None => source_cfg.clone(),
    };
    if let Some(url) = &args.to {
        target_cfg.meta.backend = MetaBackend::Postgres;
        target_cfg.meta.url = url.clone();
    }
    if target_cfg.meta.backend == source_cfg.meta.backend
        && (source_cfg.meta.backend == MetaBackend::Redb
            || target_cfg.meta.url == source_cfg.meta.url)
    {
        bail!(
            "the target is the source's own metadata: name the database to move to with --to \
             postgres://... (or a --target-config with meta.backend = \"postgres\")"
        );
    }
    if args.blobs_to == Some(BlobsTo::S3) && target_cfg.storage.backend != StorageBackend::S3 {
        bail!(
            "--blobs-to s3 copies into the bucket of --target-config's [storage] section, \
             which must say backend = \"s3\""
        );
    }
    eprintln!(
        "opening the source (its database stays locked until the copy is done; a running \
         registry must be stopped first)"
    );
    let source = open_side(&source_cfg, true).await?;
    let target = open_side(&target_cfg, false).await?;
    ensure_empty(&target).await?;
    eprintln!("copying metadata from {} to {}", source.label, target.label);
    copy_records(&source, &target).await?;
    let blobs = needed_blobs(&source).await?;
    if args.blobs_to.is_some() {
        eprintln!("copying {} blobs", blobs.len());
        let progress = |what: &str| eprintln!("  {what}");
        let done =
            transfer::copy_blobs(storage(&source)?, storage(&target)?, &blobs, &progress).await?;
        eprintln!(
            "  {} blobs copied ({} bytes), {} there already",
            done.copied, done.bytes, done.present
        );
    }
    eprintln!("recounting both sides");
    let mut want = recount(&source).await?;
    let mut got = recount(&target).await?;
    let missing = transfer::check_blobs(storage(&target)?, &blobs).await?;
    want.insert("blobs in the target's storage".into(), blobs.len() as u64);
    got.insert(
        "blobs in the target's storage".into(),
        (blobs.len() - missing.len()) as u64,
    );
    let ok = print_recount(&want, &got);
    report_missing(&missing);
    if !ok {
        bail!("the recount differs (MISMATCH above): do not start the registry on the target");
    }
    println!(
        "done: {} now holds the registry's metadata. Run berth serve with the target's \
         configuration; it needs controller.secret_key set to the sealing key this registry \
         used ({}), or no sealed secret or kubeconfig opens.",
        target.label,
        key_source(&source_cfg)
    );
    Ok(())
}

/// A side's blob storage.
pub(crate) fn storage(side: &Side) -> anyhow::Result<&ContentStore> {
    side.content
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{} has no blob storage", side.label))
}

/// Where the sealing key of `cfg` is, in words (never the key).
pub(crate) fn key_source(cfg: &Config) -> String {
    if cfg.controller.secret_key.is_empty() {
        format!(
            "the file {}",
            cfg.server.data_dir.join("controller-secret.key").display()
        )
    } else {
        "controller.secret_key of the source's configuration".into()
    }
}

pub(crate) fn report_missing(missing: &[BlobRecord]) {
    for b in missing.iter().take(20) {
        println!("missing blob: {} ({} bytes)", b.digest, b.size);
    }
    if missing.len() > 20 {
        println!("... and {} more missing blobs", missing.len() - 20);
    }
}
