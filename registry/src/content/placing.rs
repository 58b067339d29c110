//! What a placement leaves for start-up to find: on the local backend,
//! placing moves an ingest's data file into the store, so before that the
//! ingest's state notes which blob it becomes (`mark_placing`). If the
//! process dies after the rename and before the caller recorded the blob
//! and removed the ingest, `placed_ingests` finds the blob by that note.
//! `remove_local_blobs_now` deletes the blob files a caller's records do
//! not count, while nothing else can be placing them (at start-up).

use std::path::Path;

use object_store::path::Path as ObjPath;

use serde::{Deserialize, Serialize};

use super::{blob_path, blocking, ContentStore, FinishedIngest, IngestState, Kept, Result};
use crate::oci::Digest;

/// The blob a finished ingest becomes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placing {
    pub digest: String,
    pub size: u64,
}

/// An ingest found at start-up whose data is already the stored blob
/// `digest`; see `ContentStore::placed_ingests`.
#[derive(Debug, Clone)]
pub struct PlacedIngest {
    pub id: String,
    /// What `begin_ingest` was given (the repository).
    pub owner: String,
    pub digest: Digest,
    pub size: u64,
}

fn entry_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Entries of a directory; none when it does not exist.
fn entries(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl ContentStore {
    /// Notes in the ingest's state that it is about to become `done.digest`,
    /// before `place_now` moves its data away. Durable when the session had
    /// acknowledged bytes (a client may come back for it); a session that
    /// never acknowledged a byte was never promised to survive a crash.
    pub async fn mark_placing(&self, done: &FinishedIngest) -> Result<()> {
        // In the bucket, placing copies: the staged data stays until the
        // ingest is removed, so there is nothing to note.
        let Kept::Spool { dir, state } = &done.kept else {
            return Ok(());
        };
        let mut state = state.clone();
        state.placing = Some(Placing {
            digest: done.digest.to_string(),
            size: done.size,
        });
        let dir = dir.clone();
        blocking(move || {
            let durable = state.offset > 0;
            state.write(&dir, durable).map_err(Into::into)
        })
        .await
    }

    /// At start-up, on the local backend: ingests whose data was moved into
    /// the store by a placement that the process did not live to record or
    /// clean up. Each is returned if its blob is in the store with the size
    /// noted; an ingest whose data and blob are both gone is removed here.
    pub fn placed_ingests(&self) -> Result<Vec<PlacedIngest>> {
        let Some(local) = &self.local else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(&self.ingest_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let Ok(state) = IngestState::read(&path) else {
                continue;
            };
            let Some(placing) = state.placing else {
                continue;
            };
            if path.join("data").exists() {
                continue; // never moved: a session to resume
            }
            let Ok(digest) = placing.digest.parse::<Digest>() else {
                continue;
            };
            let stored = local.path_to_filesystem(&blob_path(&digest))?;
            match std::fs::metadata(&stored) {
                Ok(m) if m.len() == placing.size => out.push(PlacedIngest {
                    id: entry_name(&path),
                    owner: state.owner,
                    digest,
                    size: placing.size,
                }),
                _ => {
                    tracing::warn!(ingest = %entry_name(&path), %digest, "an upload's data was moved into the store and is gone from there; discarding the upload");
                    std::fs::remove_dir_all(&path)?;
                }
            }
        }
        Ok(out)
    }

    /// On the local backend, at start-up (nothing may be placing blobs):
    /// deletes every blob file for which `doomed` says so. Files that do not
    /// name a blob are left alone. Returns how many were deleted; on other
    /// backends none (GC sweeps those, with its grace window).
    pub fn remove_local_blobs_now(&self, doomed: impl Fn(&Digest) -> bool) -> Result<usize> {
        let Some(local) = &self.local else {
            return Ok(0);
        };
        let root = local.path_to_filesystem(&ObjPath::from("blobs"))?;
        let mut n = 0;
        for alg in entries(&root)? {
            for fan in entries(&alg)? {
                for file in entries(&fan)? {
                    let name = format!("{}:{}", entry_name(&alg), entry_name(&file));
                    let Ok(digest) = name.parse::<Digest>() else {
                        continue;
                    };
                    if doomed(&digest) {
                        std::fs::remove_file(&file)?;
                        tracing::info!(%digest, "deleted a blob file that no record counts");
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }
}
