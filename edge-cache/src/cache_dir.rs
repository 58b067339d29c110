//! The cache directory under a running edge: noticing that it was removed
//! (an operator clearing a full disk, a node clean-up job) and recreating
//! what the edge needs, so that it refills from upstream instead of
//! answering 404 until restarted.
//!
//! Owns only the check and the recreation; the local registry, the edge's
//! bookkeeping and the retention count stay with their modules. Blob and
//! upload directories are recreated by the content store when it next
//! writes; the database, whose file is gone but still open (so nothing
//! written to it would survive a restart), is opened anew with the
//! directory (`LocalRegistry::reopen_database`). What the removal took is
//! gone: the cache starts empty and pins are lost with it.
//!
//! The check is a `stat` of the database file compared with the one opened;
//! it runs before each fill, every few seconds, and on `/healthz`, which
//! answers 503 with the reason while the directory cannot be recreated.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_registry::service::LocalRegistry;

use crate::retention::Retention;
use crate::store::EdgeStore;

/// Which file a path named when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(path: &std::path::Path) -> std::io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// The cache directory and the database file the edge has open in it, with
/// what must start over when they are recreated.
pub struct CacheDir {
    dir: PathBuf,
    db: PathBuf,
    /// The database file as opened; the lock also keeps two recreations apart.
    opened: Mutex<Option<FileId>>,
    local: Arc<LocalRegistry>,
    store: Arc<EdgeStore>,
    retention: Arc<Retention>,
}

impl CacheDir {
    /// Call right after opening the database at `db`.
    pub fn new(
        dir: PathBuf,
        db: PathBuf,
        local: Arc<LocalRegistry>,
        store: Arc<EdgeStore>,
        retention: Arc<Retention>,
    ) -> Self {
        let opened = file_id(&db).ok();
        Self {
            dir,
            db,
            opened: Mutex::new(opened),
            local,
            store,
            retention,
        }
    }

    /// Recreates the cache directory and a fresh database if the directory
    /// was removed (or its database replaced) since it was opened. Blocking:
    /// call from a blocking context. The error says why the cache cannot work.
    pub fn ensure(&self) -> Result<(), String> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        let now = file_id(&self.db).ok();
        if now.is_some() && now == *opened {
            return Ok(());
        }
        tracing::warn!(
            dir = %self.dir.display(),
            "the cache directory or its database was removed while the edge ran; recreating it empty"
        );
        // Opening the database recreates its directory (private, like the first time).
        self.local.reopen_database().map_err(|e| {
            format!(
                "cache database {} cannot be recreated: {e}",
                self.db.display()
            )
        })?;
        // A blocking context (see above), so waiting on the runtime is fine.
        tokio::runtime::Handle::current()
            .block_on(self.store.reset())
            .map_err(|e| e.to_string())?;
        self.retention.reset();
        *opened = file_id(&self.db).ok();
        if opened.is_none() {
            return Err(format!(
                "cache database {} vanished as it was recreated",
                self.db.display()
            ));
        }
        Ok(())
    }

    /// `ensure` from async code.
    pub async fn ensure_async(self: &Arc<Self>) -> Result<(), String> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.ensure())
            .await
            .map_err(|e| e.to_string())?
    }
}
