//! The ingest lifecycle on `ContentStore`: begin, resume, inspect and abort an upload, and the start-up and expiry sweeps of the spool.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::spool::{IngestInner, SpoolIngest};
use super::{
    blocking, unix_now, ContentError, ContentStore, Held, Ingest, IngestData, IngestState, Result,
    READ_CHUNK,
};
use crate::oci::{Algorithm, Digester};

impl ContentStore {
    pub(super) fn ingest_path(&self, id: &str) -> PathBuf {
        self.ingest_dir.join(id)
    }

    /// Starts an ingest. `id` must be a fresh identifier (the upload UUID);
    /// `owner` is opaque to the store (the service records the repository).
    pub async fn begin_ingest(
        &self,
        id: &str,
        owner: &str,
        algorithm: Algorithm,
    ) -> Result<Ingest> {
        if let Some(b) = &self.bucket {
            let held = Held::Bucket(Box::new(b.begin(id, owner, algorithm).await?));
            return Ok(Ingest { held });
        }
        let dir = self.ingest_path(id);
        let owner = owner.to_string();
        let id = id.to_string();
        blocking(move || {
            if let Some(parent) = dir.parent() {
                // Removed under us (an operator clearing a cache): recreate it.
                std::fs::create_dir_all(parent)?;
            }
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                // Left by a crash before its state was first written (a cache fill's id
                // is fixed, so the next fill of the blob lands here): nothing there was
                // acknowledged, and an id without a readable state is unknown.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && IngestState::read(&dir).is_err() =>
                {
                    std::fs::remove_dir_all(&dir)?;
                    std::fs::create_dir(&dir)?;
                }
                Err(e) => return Err(e.into()),
            }
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(dir.join("data"))?;
            let state = IngestState {
                owner,
                offset: 0,
                algorithm: algorithm.as_str().to_string(),
                started: unix_now(),
                placing: None,
            };
            // Not synced: an ingest becomes durable at its first `sync` (the first
            // acknowledged chunk). A crash before that leaves it cleanly unknown,
            // and monolithic uploads and cache fills never pay for it.
            state.write(&dir, false)?;
            Ok(Ingest::spool(SpoolIngest {
                id,
                dir,
                inner: Some(Box::new(IngestInner {
                    file,
                    digester: Digester::new(algorithm),
                    offset: 0,
                    written_back: 0,
                    flushing: Arc::default(),
                    state,
                })),
            }))
        })
        .await
    }

    /// Re-opens an ingest after a restart (or after it was dropped from memory):
    /// bytes past the last acknowledged offset are discarded, and the
    /// acknowledged prefix is hashed again.
    pub async fn resume_ingest(&self, id: &str) -> Result<Ingest> {
        if let Some(b) = &self.bucket {
            let held = Held::Bucket(Box::new(b.resume(id).await?));
            return Ok(Ingest { held });
        }
        let dir = self.ingest_path(id);
        let id = id.to_string();
        blocking(move || {
            let mut state = IngestState::read(&dir).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ContentError::IngestNotFound(id.clone()),
                _ => ContentError::Io(e),
            })?;
            // A placement that never happened (its data is still here): the
            // session goes on from its acknowledged offset.
            state.placing = None;
            let algorithm = match state.algorithm.as_str() {
                "sha512" => Algorithm::Sha512,
                _ => Algorithm::Sha256,
            };
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join("data"))
                .map_err(|_| ContentError::IngestNotFound(id.clone()))?;
            file.set_len(state.offset)?;
            let mut digester = Digester::new(algorithm);
            file.seek(SeekFrom::Start(0))?;
            let mut buf = vec![0u8; READ_CHUNK];
            let mut left = state.offset;
            while left > 0 {
                let n = file.read(&mut buf[..(left.min(READ_CHUNK as u64) as usize)])?;
                if n == 0 {
                    break;
                }
                digester.update(&buf[..n]);
                left -= n as u64;
            }
            file.seek(SeekFrom::Start(state.offset))?;
            Ok(Ingest::spool(SpoolIngest {
                id,
                dir,
                inner: Some(Box::new(IngestInner {
                    file,
                    digester,
                    offset: state.offset,
                    written_back: state.offset,
                    flushing: Arc::default(),
                    state,
                })),
            }))
        })
        .await
    }

    /// The data file of ingest `id` as written so far, or None when the
    /// ingest is gone (placed or aborted), or is not in a local file (in
    /// the bucket: its parts cannot be read before it completes).
    pub fn ingest_data(&self, id: &str) -> std::io::Result<Option<IngestData>> {
        if self.bucket.is_some() {
            return Ok(None);
        }
        match std::fs::File::open(self.ingest_path(id).join("data")) {
            Ok(f) => Ok(Some(IngestData::new(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Owner and acknowledged offset of an ingest, without opening it.
    pub async fn ingest_state(&self, id: &str) -> Result<Option<IngestState>> {
        if let Some(b) = &self.bucket {
            return b.state(id).await;
        }
        let dir = self.ingest_path(id);
        blocking(move || match IngestState::read(&dir) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// Discards an ingest and its bytes. Unknown ids are fine.
    pub async fn abort_ingest(&self, id: &str) -> Result<()> {
        if let Some(b) = &self.bucket {
            return b.abort(id).await;
        }
        let dir = self.ingest_path(id);
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// `abort_ingest` for drop guards, where nothing can be awaited.
    pub fn abort_ingest_now(&self, id: &str) {
        if let Some(b) = &self.bucket {
            // Nothing can be awaited here: the bucket's objects go in the background.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (b, id) = (b.clone(), id.to_string());
                rt.spawn(async move {
                    if let Err(e) = b.abort(&id).await {
                        tracing::warn!(upload = %id, error = %e, "cannot remove an abandoned upload; the expiry sweep will");
                    }
                });
            }
            return;
        }
        let _ = std::fs::remove_dir_all(self.ingest_path(id));
    }

    /// At start-up: discards ingests that never acknowledged a byte (monolithic
    /// uploads and fresh sessions cut off by a crash). They are "cleanly unknown";
    /// without this their spool would wait for GC's upload TTL. Returns how many.
    /// None in the bucket: other processes sharing it may have uploads
    /// begun a moment ago; the expiry sweep removes abandoned ones there.
    pub fn discard_unacknowledged_ingests(&self) -> Result<usize> {
        if self.bucket.is_some() {
            return Ok(0);
        }
        let mut n = 0;
        let entries = match std::fs::read_dir(&self.ingest_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                // Leftover temporary files of `put_bytes`.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let acked = IngestState::read(&path)
                .map(|s| s.offset > 0)
                .unwrap_or(false);
            if !acked {
                std::fs::remove_dir_all(&path)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Ingests whose state was last written before `older_than` ago.
    pub async fn stale_ingests(&self, older_than: Duration) -> Result<Vec<String>> {
        if let Some(b) = &self.bucket {
            return b.stale(older_than).await;
        }
        let dir = self.ingest_dir.clone();
        blocking(move || {
            let mut out = Vec::new();
            let now = SystemTime::now();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let modified = match entry
                    .path()
                    .join("state.json")
                    .metadata()
                    .and_then(|m| m.modified())
                    .or_else(|_| entry.metadata().and_then(|m| m.modified()))
                {
                    Ok(m) => m,
                    // Finished or cancelled while we looked: not stale, just gone.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                if now.duration_since(modified).unwrap_or_default() > older_than {
                    out.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            Ok(out)
        })
        .await
    }
}
