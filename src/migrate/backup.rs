//! `berth backup` and `berth restore`.
//!
//! A backup is a directory: `metadata.redb`, every record (registry,
//! accounts, audit, controller) copied into a fresh embedded database by
//! the same engine `berth migrate` uses, whatever backend the registry
//! runs on; `sealing.key` (mode 0600), the key that opens every sealed
//! secret, kubeconfig and upstream password in it; and `blobs.txt`, the digest
//! and size of every blob the metadata needs. Blob bytes are not in it:
//! they are the object store's (or the data directory's `blobs/`) to back
//! up. A restore loads `metadata.redb` into the configured backend, which
//! must be empty, puts the keys where an embedded registry reads them, and
//! checks that the configured storage has every listed blob.
//!
//! The embedded source is locked for the whole copy, so its backup is one
//! moment; on PostgreSQL the engine reads table by table, so a backup is
//! consistent only while no replica writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berth_config::{Config, MetaBackend};
use berth_registry::meta::BlobRecord;
use berth_registry::transfer;
use clap::Args;

use super::{
    copy_records, ensure_empty, needed_blobs, open_side, print_recount, recount, redb_side,
};

const METADATA: &str = "metadata.redb";
const SEALING_KEY: &str = "sealing.key";
const BLOBS: &str = "blobs.txt";

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// A new (or empty) directory to write the backup into.
    #[arg(long)]
    pub out: PathBuf,
    /// The registry's data directory [default: from --config].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A directory `berth backup` wrote.
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to restore into [default: from --config].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Writes `bytes` to a new file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The sealing key `cfg` runs with, as hex: the configured one, or the
/// embedded registry's generated file. None when there is neither yet.
fn sealing_key(cfg: &Config) -> anyhow::Result<Option<String>> {
    if !cfg.controller.secret_key.is_empty() {
        return Ok(Some(cfg.controller.secret_key.trim().to_string()));
    }
    let path = cfg.server.data_dir.join("controller-secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `berth backup --out DIR`.
pub async fn backup(cfg: Config, args: BackupArgs) -> anyhow::Result<()> {
    let out = &args.out;
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} is not empty: a backup goes into a new directory",
            out.display()
        );
    }
    berth_registry::private::private_dir(out)
        .with_context(|| format!("creating {}", out.display()))?;
    eprintln!("opening the registry's metadata (an embedded registry must be stopped first)");
    if cfg.meta.backend == MetaBackend::Postgres {
        // The copy reads table by table, not from one snapshot.
        eprintln!(
            "note: on PostgreSQL the copy is consistent only while no replica writes; stop              them, or take pg_dump for a live copy beside this one"
        );
    }
    let source = open_side(&cfg, true).await?;
    let target = redb_side(&out.join(METADATA), None, false)?;
    ensure_empty(&target).await?;
    eprintln!("copying metadata from {} to {}", source.label, target.label);
    copy_records(&source, &target).await?;
    match sealing_key(&cfg)? {
        Some(key) => write_private(&out.join(SEALING_KEY), key.as_bytes())?,
        None => eprintln!("no sealing key yet (nothing was ever sealed): none written"),
    }
    let blobs = needed_blobs(&source).await?;
    let list: String = blobs
        .iter()
        .map(|b| format!("{} {}\n", b.digest, b.size))
        .collect();
    write_private(&out.join(BLOBS), list.as_bytes())?;
    eprintln!("recounting both sides");
    let ok = print_recount(&recount(&source).await?, &recount(&target).await?);
    if !ok {
        bail!("the recount differs (MISMATCH above): this backup is incomplete");
    }
    println!(
        "backup written to {}: metadata, the sealing key ({SEALING_KEY}: keep it apart and \
         safe; without it no sealed secret or kubeconfig opens) and the list of {} blobs. \
         Blob bytes are not in it: back up the object store (or the data directory's blobs/).",
        out.display(),
        blobs.len()
    );
    Ok(())
}

/// The blob list a backup wrote.
fn read_blob_list(path: &Path) -> anyhow::Result<Vec<BlobRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || {
            anyhow::anyhow!(
                "{} line {}: expected `<digest> <size>`",
                path.display(),
                i + 1
            )
        };
        let (digest, size) = line.split_once(' ').ok_or_else(bad)?;
        out.push(BlobRecord {
            digest: digest.parse().map_err(|_| bad())?,
            size: size.trim().parse().map_err(|_| bad())?,
            recorded_at: 0,
        });
    }
    Ok(out)
}

/// Puts the backup's keys where the restored registry reads them: the
/// embedded registry's files (never over a different key), or a check
/// that the configured `controller.secret_key` is the backup's.
fn restore_keys(cfg: &Config, from: &Path) -> anyhow::Result<()> {
    let backup_key = match std::fs::read_to_string(from.join(SEALING_KEY)) {
        Ok(k) => k.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context("reading the backup's sealing key"),
    };
    match sealing_key(cfg)? {
        Some(k) if k == backup_key => {}
        Some(_) => bail!(
            "the configured sealing key differs from the backup's {SEALING_KEY}: what the \
             backup sealed would not open. Set controller.secret_key to the backup's key"
        ),
        None if cfg.meta.backend == MetaBackend::Redb => write_private(
            &cfg.server.data_dir.join("controller-secret.key"),
            backup_key.as_bytes(),
        )?,
        None => bail!("set controller.secret_key to the backup's {SEALING_KEY} first"),
    }
    Ok(())
}

/// `berth restore --from DIR`.
pub async fn restore(cfg: Config, args: RestoreArgs) -> anyhow::Result<()> {
    let from = &args.from;
    let blobs = read_blob_list(&from.join(BLOBS))?;
    let source = redb_side(&from.join(METADATA), None, true)?;
    let target = open_side(&cfg, false).await?;
    ensure_empty(&target).await?;
    restore_keys(&cfg, from)?;
    eprintln!(
        "restoring metadata from {} into {}",
        source.label, target.label
    );
    copy_records(&source, &target).await?;
    eprintln!("recounting both sides, checking {} blobs", blobs.len());
    let mut want = recount(&source).await?;
    let mut got = recount(&target).await?;
    let missing = transfer::check_blobs(super::storage(&target)?, &blobs).await?;
    let kind = "blobs in the target's storage".to_string();
    want.insert(kind.clone(), blobs.len() as u64);
    got.insert(kind, (blobs.len() - missing.len()) as u64);
    let ok = print_recount(&want, &got);
    super::report_missing(&missing);
    if !missing.is_empty() {
        bail!(
            "metadata restored, but {} blobs it needs are not in the configured storage: \
             restore them from the object store's backup before serving",
            missing.len()
        );
    }
    if !ok {
        bail!("the recount differs (MISMATCH above)");
    }
    println!("restored into {}", target.label);
    Ok(())
}
