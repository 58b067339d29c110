//! Reading local blob files in chunks for response bodies.
//!
//! A chunk the page cache holds is read on the calling thread; others go to
//! the blocking pool (see [`start_read`]). Buffers are allocated by the caller,
//! so they come from the async workers' malloc arenas, not from one arena per
//! blocking thread. A stream reads one chunk ahead of the one it is sending.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

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

/// A read started by [`start_read`]: done already, or in flight on the
/// blocking pool. Either way it yields the file back with the chunk.
enum PendingRead {
    Done((File, Bytes)),
    Blocking(JoinHandle<std::io::Result<(File, Bytes)>>),
}

/// Blob bodies being streamed right now, across the process.
static STREAMS: AtomicUsize = AtomicUsize::new(0);

/// Counts a body in [`STREAMS`] while it lives.
struct Streaming;

impl Streaming {
    fn new() -> Self {
        STREAMS.fetch_add(1, Ordering::Relaxed);
        Streaming
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts reading `want` bytes at `pos` of `file` (fewer only at its end).
///
/// A read the stream needs now is done at once on the calling thread when the
/// page cache holds it (`preadv2` with `RWF_NOWAIT`, which never waits for the
/// disk). A read ahead goes to the blocking pool while fewer bodies stream
/// than there are cores, so that it runs beside the sending thread (one fast
/// client gets two cores' worth); with more, it is done inline too, since the
/// cores are busy sending and the thread hand-offs would only cost CPU (they
/// were a quarter of it with 16 clients).
/// Only a read that would wait for the disk always goes to the pool.
fn start_read(file: File, pos: u64, want: usize, grant: Grant, ahead: bool) -> PendingRead {
    let mut buf = Vec::with_capacity(want);
    let spare_core = STREAMS.load(Ordering::Relaxed) < cores();
    if !(ahead && spare_core) && read_cached(&file, pos, &mut buf, want) {
        let chunk = Bytes::from_owner(Paid { buf, _grant: grant });
        return PendingRead::Done((file, chunk));
    }
    let mut file = file;
    PendingRead::Blocking(tokio::task::spawn_blocking(move || {
        file.seek(SeekFrom::Start(pos))?;
        // Reads into spare capacity: no zero-fill of the buffer first.
        (&mut file).take(want as u64).read_to_end(&mut buf)?;
        let chunk = Bytes::from_owner(Paid { buf, _grant: grant });
        Ok((file, chunk))
    }))
}

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Reads up to `want` bytes at `pos` into `buf` if the page cache holds them
/// (or the file ends there); false when the read would wait for the disk.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, pos: u64, buf: &mut Vec<u8>, want: usize) -> bool {
    use rustix::io::{preadv2, ReadWriteFlags};
    // preadv2 takes initialised memory: one memset, cheaper than a thread hop.
    buf.resize(want, 0);
    match preadv2(
        file,
        &mut [std::io::IoSliceMut::new(buf)],
        pos,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) if n > 0 => {
            buf.truncate(n);
            true
        }
        // 0 is the end of the file, or, for some filesystems, "not cached":
        // the blocking read tells them apart.
        _ => {
            buf.clear();
            false
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_: &File, _: u64, _: &mut Vec<u8>, _: usize) -> bool {
    false
}

async fn finish_read(pending: PendingRead) -> std::io::Result<(File, Bytes)> {
    match pending {
        PendingRead::Done(r) => Ok(r),
        PendingRead::Blocking(h) => h.await.map_err(std::io::Error::other)?,
    }
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
    finish_read(start_read(file, pos, want, grant, false)).await
}

/// An ingest's data file, read while it is being written (a fill streaming
/// to the clients that follow it). Holding it open keeps its bytes readable
/// after the file is renamed into the store.
pub struct IngestData {
    file: Option<File>,
    quota: ReadQuota,
}

impl IngestData {
    pub(crate) fn new(file: File) -> Self {
        Self {
            file: Some(file),
            quota: ReadQuota::default(),
        }
    }

    /// Up to `want` bytes at `pos`, paid for like a blob read; fewer only
    /// where the data written so far ends.
    pub async fn read(&mut self, pos: u64, want: u64) -> std::io::Result<Bytes> {
        let file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("an earlier read of this ingest failed"))?;
        let (file, chunk) = read_chunk(file, pos, want, &self.quota).await?;
        self.file = Some(file);
        Ok(chunk)
    }
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
    },
}

fn file_stream_within(
    quota: ReadQuota,
    file: File,
    start: u64,
    len: u64,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let live = Streaming::new();
    // The first chunk is read when the body is first polled: it is needed
    // then, not ahead.
    let first = match len {
        0 => Next::Done,
        _ => Next::Waiting { file },
    };
    let state = (first, start, len, (quota, live));
    futures::stream::try_unfold(state, |(next, pos, left, (quota, live))| async move {
        let pending = match next {
            Next::Done => return Ok(None),
            Next::Reading(p) => p,
            Next::Waiting { file } => {
                let (want, grant) = quota.take(left).await;
                start_read(file, pos, want, grant, false)
            }
        };
        let (file, chunk) = finish_read(pending).await?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob file shorter than its recorded size",
            ));
        }
        let n = (chunk.len() as u64).min(left);
        let (pos, left) = (pos + n, left - n);
        let next = match left {
            0 => Next::Done,
            _ => ahead(&quota, file, pos, left),
        };
        Ok(Some((chunk, (next, pos, left, (quota, live)))))
    })
    .boxed()
}

/// Starts the read ahead if something can pay for it now.
fn ahead(quota: &ReadQuota, file: File, pos: u64, left: u64) -> Next {
    match quota.try_take(left) {
        Some((want, grant)) => Next::Reading(start_read(file, pos, want, grant, true)),
        None => Next::Waiting { file },
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
