//! Uploads in the local spool directory (the local and memory backends):
//! one directory per ingest with its `data` file, appended to and fsynced,
//! and `state.json` beside it, replaced atomically on every `sync`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{blocking, sync_dir, ContentError, FinishedIngest, Kept, Placing, Result, READ_CHUNK};
use crate::oci::{Digest, Digester};

/// What is persisted beside an ingest's data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestState {
    pub owner: String,
    /// Bytes fsynced and acknowledged to the client.
    pub offset: u64,
    pub algorithm: String,
    pub started: u64,
    /// Set by `mark_placing`: the blob this ingest is being moved into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placing: Option<Placing>,
}

impl IngestState {
    /// Replaces the state file atomically; `durable` also fsyncs it, its
    /// directory and the directory holding all ingests.
    pub(super) fn write(&self, dir: &Path, durable: bool) -> std::io::Result<()> {
        let tmp = dir.join("state.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join("state.json"))?;
        if durable {
            sync_dir(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }
    pub(super) fn read(dir: &Path) -> std::io::Result<IngestState> {
        let bytes = std::fs::read(dir.join("state.json"))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

pub(super) struct IngestInner {
    pub(super) file: std::fs::File,
    pub(super) digester: Digester,
    pub(super) offset: u64,
    /// Where the last background flush started: see [`start_writeback`].
    pub(super) written_back: u64,
    pub(super) flushing: Arc<AtomicBool>,
    pub(super) state: IngestState,
}

/// Bytes of an ingest left dirty before a background flush is started. Above
/// the 8 MiB a chunked upload typically sends per PATCH, so that a PATCH's own
/// acknowledging fsync is not doubled by a background one.
const WRITEBACK_EVERY: u64 = 16 * 1024 * 1024;

/// Starts flushing what was appended since the last flush, on another
/// blocking thread through a second handle, without waiting for it; at most
/// one flush per ingest is in flight. The fsync that acknowledges an upload
/// then only waits for the tail instead of the whole blob, and the disk works
/// while the network does. Advisory: if it cannot start, the fsync does more.
fn start_writeback(inner: &mut IngestInner) {
    if inner.offset.saturating_sub(inner.written_back) < WRITEBACK_EVERY
        || inner.flushing.load(Ordering::Acquire)
    {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Ok(file) = inner.file.try_clone() else {
        return;
    };
    let flushing = inner.flushing.clone();
    flushing.store(true, Ordering::Release);
    inner.written_back = inner.offset;
    handle.spawn_blocking(move || {
        let _ = file.sync_data();
        flushing.store(false, Ordering::Release);
    });
}

/// An upload in the local spool: appended to, hashed on the way in, fsynced on `sync`.
pub(super) struct SpoolIngest {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    // Moved onto the blocking pool for each write and back.
    pub(super) inner: Option<Box<IngestInner>>,
}

impl SpoolIngest {
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Bytes written so far (acknowledged or not).
    pub(super) fn offset(&self) -> u64 {
        self.inner.as_ref().map(|i| i.offset).unwrap_or(0)
    }

    /// The offset last made durable by `sync`.
    pub(super) fn acknowledged(&self) -> u64 {
        self.inner.as_ref().map(|i| i.state.offset).unwrap_or(0)
    }

    pub(super) fn owner(&self) -> &str {
        self.inner
            .as_ref()
            .map(|i| i.state.owner.as_str())
            .unwrap_or("")
    }

    /// The digest of every byte written so far (acknowledged or not), in
    /// the algorithm the ingest hashes in.
    pub(super) fn digest_so_far(&self) -> Option<Digest> {
        self.inner.as_ref().map(|i| i.digester.clone().finish())
    }

    fn take(&mut self) -> Result<Box<IngestInner>> {
        self.inner.take().ok_or_else(|| {
            ContentError::Io(std::io::Error::other(
                "ingest poisoned by an earlier failure",
            ))
        })
    }

    /// Appends and hashes `chunk`.
    pub(super) async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let mut inner = self.take()?;
        let (inner, res) = tokio::task::spawn_blocking(move || {
            let res = inner.file.write_all(&chunk);
            if res.is_ok() {
                inner.digester.update(&chunk);
                inner.offset += chunk.len() as u64;
                start_writeback(&mut inner);
            }
            (inner, res)
        })
        .await
        .map_err(|e| ContentError::Io(std::io::Error::other(e)))?;
        // On a failed write the file may hold a partial chunk: roll back to what
        // was hashed, so the ingest stays consistent.
        let mut inner = inner;
        if res.is_err() {
            let _ = inner.file.set_len(inner.offset);
            let _ = inner.file.seek(SeekFrom::Start(inner.offset));
        }
        self.inner = Some(inner);
        res.map_err(Into::into)
    }

    /// Makes everything written so far durable and records it as acknowledged.
    pub(super) async fn sync(&mut self) -> Result<()> {
        let mut inner = self.take()?;
        let dir = self.dir.clone();
        let (inner, res) = tokio::task::spawn_blocking(move || {
            let res = (|| {
                inner.file.sync_data()?;
                inner.written_back = inner.offset;
                let mut st = inner.state.clone();
                st.offset = inner.offset;
                st.write(&dir, true)?;
                inner.state = st;
                Ok::<_, std::io::Error>(())
            })();
            (inner, res)
        })
        .await
        .map_err(|e| ContentError::Io(std::io::Error::other(e)))?;
        self.inner = Some(inner);
        res.map_err(Into::into)
    }

    /// Fsyncs and verifies. On a mismatch the ingest is left as it was, for
    /// the caller to abort; nothing enters the store.
    pub(super) async fn finish(
        mut self,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<FinishedIngest> {
        let inner = self.take()?;
        let expected = expected.clone();
        let id = self.id.clone();
        let dir = self.dir.clone();
        blocking(move || {
            let IngestInner {
                mut file,
                digester,
                offset,
                state,
                ..
            } = *inner;
            file.sync_all()?;
            if let Some(size) = expected_size {
                if size != offset {
                    return Err(ContentError::SizeMismatch {
                        expected: size,
                        actual: offset,
                    });
                }
            }
            let actual = if digester.algorithm() == expected.algorithm() {
                digester.finish()
            } else {
                // Hashed as sha256 on the way in; the client asked for another
                // algorithm at the end: one more pass over the spooled file.
                let mut d = Digester::new(expected.algorithm());
                file.seek(SeekFrom::Start(0))?;
                let mut buf = vec![0u8; READ_CHUNK];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    d.update(&buf[..n]);
                }
                d.finish()
            };
            if actual != expected {
                return Err(ContentError::DigestMismatch { expected, actual });
            }
            Ok(FinishedIngest {
                id,
                digest: actual,
                size: offset,
                kept: Kept::Spool { dir, state },
            })
        })
        .await
    }
}
