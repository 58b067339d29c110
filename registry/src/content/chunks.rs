//! Reading local blob files in chunks for response bodies.
//!
//! Each chunk is read on the blocking pool into a buffer allocated by the
//! caller (so buffers come from the async workers' malloc arenas, not from one
//! arena per blocking thread), and a stream reads one chunk ahead of the one
//! it is sending. A process-wide budget caps the bytes read and not yet
//! written to a socket: while it is spent, readers fall back to small chunks,
//! so many concurrent downloads cost a bounded amount of memory and a slow
//! client can never stall a fast one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;

/// A full read: large enough that the blocking-pool hop per chunk is noise.
pub const READ_CHUNK: usize = 512 * 1024;
/// The read size once the budget is spent.
const SMALL_CHUNK: usize = 64 * 1024;
/// Bytes read ahead of the sockets, across all responses of the process.
const BUDGET_BYTES: usize = 16 * 1024 * 1024;
const UNIT: usize = 4096;

static BUDGET: Semaphore = Semaphore::const_new(BUDGET_BYTES / UNIT);

/// A chunk's bytes and its share of the budget, returned when the chunk is dropped.
struct Budgeted {
    buf: Vec<u8>,
    _permit: Option<SemaphorePermit<'static>>,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// A read in flight on the blocking pool; yields the file back with the chunk.
pub type PendingRead = JoinHandle<std::io::Result<(File, Bytes)>>;

/// Starts reading up to `left` bytes (at most one chunk) from `file`, after
/// seeking to `seek_to` if given. The chunk is shorter than asked only at the
/// end of the file.
pub fn start_read(file: File, seek_to: Option<u64>, left: u64) -> PendingRead {
    start_read_within(&BUDGET, file, seek_to, left)
}

fn start_read_within(
    budget: &'static Semaphore,
    mut file: File,
    seek_to: Option<u64>,
    left: u64,
) -> PendingRead {
    let full = left.min(READ_CHUNK as u64) as usize;
    let (want, permit) = match budget.try_acquire_many(full.div_ceil(UNIT) as u32) {
        Ok(p) => (full, Some(p)),
        Err(_) => (full.min(SMALL_CHUNK), None),
    };
    let mut buf = Vec::with_capacity(want);
    tokio::task::spawn_blocking(move || {
        if let Some(pos) = seek_to {
            file.seek(SeekFrom::Start(pos))?;
        }
        // Reads into spare capacity: no zero-fill of the buffer first.
        (&mut file).take(want as u64).read_to_end(&mut buf)?;
        let chunk = Bytes::from_owner(Budgeted {
            buf,
            _permit: permit,
        });
        Ok((file, chunk))
    })
}

/// Waits for a read started by [`start_read`].
pub async fn finish_read(pending: PendingRead) -> std::io::Result<(File, Bytes)> {
    pending.await.map_err(std::io::Error::other)?
}

/// `len` bytes of `file` from `start`, one chunk read ahead.
pub fn file_stream(file: File, start: u64, len: u64) -> BoxStream<'static, std::io::Result<Bytes>> {
    file_stream_within(&BUDGET, file, start, len)
}

fn file_stream_within(
    budget: &'static Semaphore,
    file: File,
    start: u64,
    len: u64,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let first = (len > 0).then(|| start_read_within(budget, file, Some(start), len));
    futures::stream::try_unfold((first, len), move |(pending, left)| async move {
        let Some(pending) = pending else {
            return Ok(None);
        };
        let (file, chunk) = finish_read(pending).await?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob file shorter than its recorded size",
            ));
        }
        let left = left - (chunk.len() as u64).min(left);
        let next = (left > 0).then(|| start_read_within(budget, file, None, left));
        Ok(Some((chunk, (next, left))))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().expect("temporary file");
        f.write_all(bytes).expect("write the temporary file");
        f
    }

    #[tokio::test]
    async fn streams_exact_ranges_across_chunk_boundaries() {
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 777))
            .map(|i| (i % 251) as u8)
            .collect();
        for (start, len) in [
            (0u64, data.len() as u64),
            (1, READ_CHUNK as u64),
            (READ_CHUNK as u64 - 1, 2),
            (5, 0),
        ] {
            let f = file_of(&data);
            let got: Vec<Bytes> = file_stream(f, start, len)
                .try_collect()
                .await
                .expect("the stream reads");
            let got = got.concat();
            assert_eq!(got, &data[start as usize..(start + len) as usize]);
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error() {
        let f = file_of(&[7u8; 1000]);
        let res: std::io::Result<Vec<Bytes>> = file_stream(f, 0, 2000).try_collect().await;
        assert_eq!(
            res.expect_err("a short file fails").kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test]
    async fn a_spent_budget_gives_small_chunks_and_chunks_give_it_back() {
        let budget: &'static Semaphore = Box::leak(Box::new(Semaphore::new(READ_CHUNK / UNIT)));
        let data = vec![1u8; READ_CHUNK * 3];
        // One full chunk fits; while it is held, the rest come small.
        let chunks: Vec<Bytes> = file_stream_within(budget, file_of(&data), 0, data.len() as u64)
            .try_collect()
            .await
            .expect("the stream reads");
        assert_eq!(chunks[0].len(), READ_CHUNK);
        assert!(chunks[1..].iter().all(|c| c.len() == SMALL_CHUNK));
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), data.len());
        assert_eq!(budget.available_permits(), 0);
        drop(chunks);
        assert_eq!(budget.available_permits(), READ_CHUNK / UNIT);
    }
}
