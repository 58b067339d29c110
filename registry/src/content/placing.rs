//! What a placement leaves for start-up to find: on the local backend,
//! placing moves an ingest's data file into the store, so before that the
//! ingest's state notes which blob it becomes (`mark_placing`). If the
//! process dies after the rename and before the caller recorded the blob
//! and removed the ingest, `placed_ingests` finds the blob by that note.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{blob_path, blocking, ContentStore, FinishedIngest, IngestState, Result};
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

impl ContentStore {
    /// Notes in the ingest's state that it is about to become `done.digest`,
    /// before `place_now` moves its data away. Durable when the session had
    /// acknowledged bytes (a client may come back for it); a session that
    /// never acknowledged a byte was never promised to survive a crash.
    pub async fn mark_placing(&self, done: &FinishedIngest) -> Result<()> {
        let mut state = done.state.clone();
        state.placing = Some(Placing {
            digest: done.digest.to_string(),
            size: done.size,
        });
        let dir = done.dir.clone();
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
}
