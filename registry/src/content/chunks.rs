//! Reading local blob files in chunks for response bodies.
//!
//! Each chunk is read on the blocking pool into a buffer allocated by the
//! caller (so buffers come from the async workers' malloc arenas, not from one
//! arena per blocking thread), and a stream reads one chunk ahead of the one
//! it is sending.
//!
//! Memory is bounded across the process: a chunk holds its bytes until the
//! socket has taken them, and every chunk is paid for, either from a budget
//! shared by all responses (full-size chunks) or, once that is spent, from the
//! stream's own reserve of one small chunk. A stream whose reserve is out
//! waits only for its own client to take that chunk, so a slow client can
//! never stall a fast one, and many concurrent downloads cost at most the
//! budget plus one small chunk each.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;

/// A full read: large enough that the blocking-pool hop per chunk is noise.
pub const READ_CHUNK: usize = 512 * 1024;
/// The read size once the budget is spent.
const SMALL_CHUNK: usize = 64 * 1024;
/// Bytes read ahead of the sockets, across all responses of the process. 4 MiB
/// keeps a 16-client blob GET at full speed (measured: more gave nothing) and
/// bounds the memory of many concurrent downloads.
const BUDGET_BYTES: usize = 4 * 1024 * 1024;
const UNIT: usize = 4096;

static BUDGET: Semaphore = Semaphore::const_new(BUDGET_BYTES / UNIT);

/// What pays for a chunk's buffer; returned when the chunk is dropped.
enum Grant {
    Budget(#[allow(dead_code)] SemaphorePermit<'static>),
    Reserve(#[allow(dead_code)] OwnedSemaphorePermit),
    /// Only if a semaphore were closed, which this module never does.
    Unpaid,
}

/// A chunk's bytes and what pays for them.
struct Paid {
    buf: Vec<u8>,
    _grant: Grant,
}

impl AsRef<[u8]> for Paid {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// The chunks one stream may have read and not yet sent.
#[derive(Clone)]
pub struct ReadQuota {
    budget: &'static Semaphore,
    /// One small chunk of the stream's own.
    reserve: Arc<Semaphore>,
}

impl Default for ReadQuota {
    fn default() -> Self {
        Self::within(&BUDGET)
    }
}

impl ReadQuota {
    fn within(budget: &'static Semaphore) -> Self {
        Self {
            budget,
            reserve: Arc::new(Semaphore::new(1)),
        }
    }

    /// A size for the next read of at most `left` bytes and what pays for it,
    /// if that is possible without waiting.
    fn try_take(&self, left: u64) -> Option<(usize, Grant)> {
        let full = left.min(READ_CHUNK as u64) as usize;
        if let Ok(p) = self.budget.try_acquire_many(full.div_ceil(UNIT) as u32) {
            return Some((full, Grant::Budget(p)));
        }
        let small = full.min(SMALL_CHUNK);
        match self.reserve.clone().try_acquire_owned() {
            Ok(p) => Some((small, Grant::Reserve(p))),
            Err(_) => None,
        }
    }

    /// As [`try_take`](Self::try_take), waiting for the stream's own reserve
    /// (its client taking the chunk it holds) when the budget is spent.
    async fn take(&self, left: u64) -> (usize, Grant) {
        if let Some(t) = self.try_take(left) {
            return t;
        }
        let small = left.min(SMALL_CHUNK as u64) as usize;
        match self.reserve.clone().acquire_owned().await {
            Ok(p) => (small, Grant::Reserve(p)),
            // Neither semaphore is ever closed.
            Err(_) => (small, Grant::Unpaid),
        }
    }
}

/// A read in flight on the blocking pool; yields the file back with the chunk.
type PendingRead = JoinHandle<std::io::Result<(File, Bytes)>>;

/// Starts reading `want` bytes from `file` (fewer only at its end), after
/// seeking to `seek_to` if given.
fn start_read(mut file: File, seek_to: Option<u64>, want: usize, grant: Grant) -> PendingRead {
    let mut buf = Vec::with_capacity(want);
    tokio::task::spawn_blocking(move || {
        if let Some(pos) = seek_to {
            file.seek(SeekFrom::Start(pos))?;
        }
        // Reads into spare capacity: no zero-fill of the buffer first.
        (&mut file).take(want as u64).read_to_end(&mut buf)?;
        let chunk = Bytes::from_owner(Paid { buf, _grant: grant });
        Ok((file, chunk))
    })
}

async fn finish_read(pending: PendingRead) -> std::io::Result<(File, Bytes)> {
    pending.await.map_err(std::io::Error::other)?
}

/// Reads the next chunk (at most `left` bytes) at `pos` of `file`, paid for
/// from `quota`; returns the file with it. The chunk is shorter than asked
/// only at the end of the file.
pub async fn read_chunk(
    file: File,
    pos: u64,
    left: u64,
    quota: &ReadQuota,
) -> std::io::Result<(File, Bytes)> {
    let (want, grant) = quota.take(left).await;
    finish_read(start_read(file, Some(pos), want, grant)).await
}

/// Copies a body's chunks into one buffer, dropping each as it goes.
///
/// Chunks of [`file_stream`] are paid for until dropped, and a stream whose
/// chunks are all held waits for one to be dropped: a consumer that keeps the
/// bytes must copy them, as this does, rather than keep the chunks.
pub async fn collect(
    mut body: BoxStream<'static, std::io::Result<Bytes>>,
    size_hint: u64,
) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(size_hint.min(64 * 1024 * 1024) as usize);
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.into())
}

/// `len` bytes of `file` from `start`, one chunk read ahead. Consumers drop
/// each chunk once it is sent (see [`collect`]).
pub fn file_stream(file: File, start: u64, len: u64) -> BoxStream<'static, std::io::Result<Bytes>> {
    file_stream_within(ReadQuota::default(), file, start, len)
}

/// The read after the chunk being sent.
enum Next {
    Done,
    Reading(PendingRead),
    /// Nothing could pay for a read ahead: read when asked.
    Waiting {
        file: File,
        seek_to: Option<u64>,
    },
}

fn file_stream_within(
    quota: ReadQuota,
    file: File,
    start: u64,
    len: u64,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let first = match len {
        0 => Next::Done,
        _ => ahead(&quota, file, Some(start), len),
    };
    futures::stream::try_unfold((first, len, quota), |(next, left, quota)| async move {
        let pending = match next {
            Next::Done => return Ok(None),
            Next::Reading(p) => p,
            Next::Waiting { file, seek_to } => {
                let (want, grant) = quota.take(left).await;
                start_read(file, seek_to, want, grant)
            }
        };
        let (file, chunk) = finish_read(pending).await?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob file shorter than its recorded size",
            ));
        }
        let left = left - (chunk.len() as u64).min(left);
        let next = match left {
            0 => Next::Done,
            _ => ahead(&quota, file, None, left),
        };
        Ok(Some((chunk, (next, left, quota))))
    })
    .boxed()
}

/// Starts the read ahead if something can pay for it now.
fn ahead(quota: &ReadQuota, file: File, seek_to: Option<u64>, left: u64) -> Next {
    match quota.try_take(left) {
        Some((want, grant)) => Next::Reading(start_read(file, seek_to, want, grant)),
        None => Next::Waiting { file, seek_to },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            let got = collect(file_stream(f, start, len), len)
                .await
                .expect("the stream reads");
            assert_eq!(got, &data[start as usize..(start + len) as usize]);
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error() {
        let f = file_of(&[7u8; 1000]);
        let res = collect(file_stream(f, 0, 2000), 2000).await;
        assert_eq!(
            res.expect_err("a short file fails").kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test]
    async fn a_spent_budget_gives_small_chunks_one_at_a_time() {
        let budget: &'static Semaphore = Box::leak(Box::new(Semaphore::new(READ_CHUNK / UNIT)));
        let quota = ReadQuota::within(budget);
        let data: Vec<u8> = (0..READ_CHUNK * 2).map(|i| (i % 253) as u8).collect();
        let mut stream = file_stream_within(quota.clone(), file_of(&data), 0, data.len() as u64);
        // The first chunk takes the whole budget; the read ahead comes from
        // the stream's reserve.
        let first = stream.next().await.expect("a chunk").expect("reads");
        assert_eq!(first.len(), READ_CHUNK);
        assert_eq!(budget.available_permits(), 0);
        let second = stream.next().await.expect("a chunk").expect("reads");
        assert_eq!(second.len(), SMALL_CHUNK);
        // While the stream holds its small chunk, the next read waits for it.
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await;
        assert!(third.is_err(), "a third chunk was read while two were held");
        drop(second);
        let third = stream.next().await.expect("a chunk").expect("reads");
        assert_eq!(third.len(), SMALL_CHUNK);
        // Returning the budget brings full chunks back.
        drop(first);
        drop(third);
        let mut got = data[..READ_CHUNK + 2 * SMALL_CHUNK].to_vec();
        while let Some(c) = stream.next().await {
            let c = c.expect("reads");
            got.extend_from_slice(&c);
        }
        assert_eq!(got, data);
        assert_eq!(budget.available_permits(), READ_CHUNK / UNIT);
    }

    #[tokio::test]
    async fn other_streams_go_on_while_one_holds_the_whole_budget() {
        let budget: &'static Semaphore = Box::leak(Box::new(Semaphore::new(READ_CHUNK / UNIT)));
        let data = vec![3u8; READ_CHUNK * 2];
        let len = data.len() as u64;
        let mut slow = file_stream_within(ReadQuota::within(budget), file_of(&data), 0, len);
        let held = slow.next().await.expect("a chunk").expect("reads");
        let other = file_stream_within(ReadQuota::within(budget), file_of(&data), 0, len);
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), collect(other, len))
            .await
            .expect("the second stream is not stalled by the first")
            .expect("the stream reads");
        assert_eq!(got, data);
        drop(held);
    }
}
