//! A client's read of a blob while its fill writes it.
//!
//! The fill's most recent chunks are handed to its followers from memory
//! (`Recent`: the very bytes it hashed and wrote, shared, not read back);
//! a follower that fell further behind reads the ingest's file, and one
//! that joins after the commit reads the stored blob.
//!
//! The last byte of a response waits until the fill has checked the blob's
//! size and digest, so a client never receives a complete body that then
//! fails verification (it would look like a good transfer). The digest is
//! known with upstream's last byte, since the bytes are hashed as they are
//! written; the commit (fsync, rename, record) runs after that, beside the
//! stream, and stays atomic: nothing records a blob before its file is
//! complete and durable. Owns the followers' positions and the window of
//! recent chunks; what a fill fetches and commits is `fill.rs`'s.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;

use super::fill::{Fill, FillState};
use super::ReadGuard;
use crate::service::{ByteRange, IngestData, LocalRegistry, Namespace};

/// Bytes of a fill's latest chunks kept for its followers: eight of the
/// fill's writes, enough for clients keeping pace with upstream, and small
/// enough that many fills at once cost little.
const RECENT_BYTES: usize = 1024 * 1024;

/// The latest chunks a fill received, ending at its `received` mark. A
/// chunk leaves only once it is written, so every byte before the window
/// is in the ingest's file.
#[derive(Debug, Default)]
pub struct Recent {
    /// Offset of the first byte held.
    start: u64,
    chunks: VecDeque<Bytes>,
    held: usize,
    /// Bytes written to the ingest.
    written: u64,
}

/// Where a follower finds its next bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// In memory: these.
    Here(Bytes),
    /// In the ingest's file, up to this offset.
    InFile(u64),
}

impl Recent {
    /// Holds nothing, and goes on from `offset` (where the ingest is).
    pub(super) fn reset(&mut self, offset: u64) {
        self.start = offset;
        self.chunks.clear();
        self.held = 0;
        self.written = offset;
    }

    /// Appends the chunk just received.
    pub(super) fn push(&mut self, chunk: Bytes) {
        self.held += chunk.len();
        self.chunks.push_back(chunk);
        self.trim();
    }

    /// The ingest holds `offset` bytes now.
    pub(super) fn written(&mut self, offset: u64) {
        self.written = offset;
        self.trim();
    }

    /// The end of the bytes received.
    pub(super) fn end(&self) -> u64 {
        self.start + self.held as u64
    }

    /// Drops the oldest chunks past the window's size that are written.
    fn trim(&mut self) {
        while self.held > RECENT_BYTES && self.chunks.len() > 1 {
            let Some(len) = self.chunks.front().map(|c| c.len()) else {
                break;
            };
            if self.start + len as u64 > self.written {
                break;
            }
            self.chunks.pop_front();
            self.held -= len;
            self.start += len as u64;
        }
    }

    /// Where the bytes from `pos` to at most `upto` (exclusive) are: in
    /// memory (within one chunk), or, before the window, in the file. None
    /// when nothing from `pos` is held here.
    pub(super) fn find(&self, pos: u64, upto: u64) -> Option<Found> {
        if pos >= upto {
            return None;
        }
        if pos < self.start {
            return Some(Found::InFile(upto.min(self.start)));
        }
        let mut at = self.start;
        for c in &self.chunks {
            let end = at + c.len() as u64;
            if pos < end {
                let from = (pos - at) as usize;
                let to = (upto.min(end) - at) as usize;
                return Some(Found::Here(c.slice(from..to)));
            }
            at = end;
        }
        None
    }
}

/// A follower's place in a fill.
struct Follower {
    fill: Arc<Fill>,
    rx: watch::Receiver<FillState>,
    data: Option<IngestData>,
    pos: u64,
    end: u64,
    _guard: Arc<ReadGuard>,
    local: Arc<LocalRegistry>,
    from_store: Option<BoxStream<'static, std::io::Result<Bytes>>>,
}

/// Streams `[start, end)` of a blob being filled, following the fill.
pub(super) fn follow(
    fill: Arc<Fill>,
    start: u64,
    end: u64,
    guard: Arc<ReadGuard>,
    local: Arc<LocalRegistry>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let st = Follower {
        rx: fill.state.subscribe(),
        fill,
        data: None,
        pos: start,
        end,
        _guard: guard,
        local,
        from_store: None,
    };
    futures::stream::try_unfold(st, |mut st| async move {
        if st.pos >= st.end {
            return Ok(None);
        }
        if let Some(s) = st.from_store.as_mut() {
            return match s.next().await {
                Some(Ok(b)) => {
                    st.pos += b.len() as u64;
                    Ok(Some((b, st)))
                }
                Some(Err(e)) => Err(e),
                None => Ok(None),
            };
        }
        let Some(available) = st.wait_for_bytes().await? else {
            // Committed before we opened the ingest: read the stored blob.
            st.open_store().await?;
            return Ok(Some((Bytes::new(), st)));
        };
        // Opened even when the bytes come from memory: the open file keeps
        // them readable for a follower that falls behind the window, whatever
        // becomes of the ingest (renamed into the store, or discarded).
        if st.data.is_none() && !st.open_data().await? {
            return Ok(Some((Bytes::new(), st)));
        }
        let upto = available.min(st.end);
        let chunk = match st.fill.find(st.pos, upto) {
            Some(Found::Here(c)) => c,
            Some(Found::InFile(to)) => st.read_file(to).await?,
            // Nothing held (the fill has ended): its file is complete.
            None => st.read_file(upto).await?,
        };
        st.pos += chunk.len() as u64;
        Ok(Some((chunk, st)))
    })
    .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())))
    .boxed()
}

impl Follower {
    /// Waits for bytes past our position: how far we may read, or None
    /// when the fill committed before we opened its ingest.
    async fn wait_for_bytes(&mut self) -> std::io::Result<Option<u64>> {
        loop {
            let (written, verified, outcome) = {
                let s = self.rx.borrow_and_update();
                (s.received.max(s.written), s.verified, s.outcome.clone())
            };
            match &outcome {
                // Verified bytes are good whatever became of the commit.
                Some(Err(e)) if !verified => {
                    return Err(std::io::Error::other(format!(
                        "upstream transfer failed: {e}"
                    )));
                }
                Some(Ok(())) if self.data.is_none() => return Ok(None),
                _ => {}
            }
            // The last byte of a response waits for the verified digest.
            let servable = match verified || matches!(outcome, Some(Ok(()))) {
                true => written,
                false => written.min(self.end - 1),
            };
            if servable > self.pos {
                return Ok(Some(servable));
            }
            if outcome.is_some() {
                return Err(std::io::Error::other(
                    "the fill ended short of the bytes asked for",
                ));
            }
            if self.rx.changed().await.is_err() {
                return Err(std::io::Error::other("fill ended unexpectedly"));
            }
        }
    }

    /// Switches to the stored blob, from our position on.
    async fn open_store(&mut self) -> std::io::Result<()> {
        let range = ByteRange {
            start: self.pos,
            end: Some(self.end - 1),
        };
        let read = self
            .local
            .blob_read(self.fill.repo(), &self.fill.digest, Some(range))
            .await
            .map_err(std::io::Error::other)?;
        self.from_store = Some(read.body);
        Ok(())
    }

    /// Opens the ingest's file; false when it is gone (renamed into the
    /// store by the commit), after waiting for the fill's next news.
    async fn open_data(&mut self) -> std::io::Result<bool> {
        if let Some(d) = self.local.ingest_data(self.fill.ingest_id())? {
            self.data = Some(d);
            return Ok(true);
        }
        if let Some(Err(e)) = &self.rx.borrow().outcome {
            return Err(std::io::Error::other(format!("the fill failed: {e}")));
        }
        let _ = self.rx.changed().await;
        Ok(false)
    }

    /// The next bytes before `upto`, from the ingest's file.
    async fn read_file(&mut self, upto: u64) -> std::io::Result<Bytes> {
        let data = self
            .data
            .as_mut()
            .ok_or_else(|| std::io::Error::other("ingest data vanished"))?;
        let chunk = data.read(self.pos, upto - self.pos).await?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "ingest file shorter than the bytes it reported written",
            ));
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    fn here(n: usize, fill: u8) -> Option<Found> {
        Some(Found::Here(chunk(n, fill)))
    }

    #[test]
    fn the_window_hands_out_what_it_holds_and_sends_the_rest_to_the_file() {
        let mut r = Recent::default();
        r.reset(100);
        r.push(chunk(10, 1));
        r.push(chunk(10, 2));
        assert_eq!(r.end(), 120);
        assert_eq!(
            r.find(90, 120),
            Some(Found::InFile(100)),
            "before the window"
        );
        assert_eq!(r.find(100, 120), here(10, 1), "one chunk at a time");
        assert_eq!(r.find(105, 108), here(3, 1), "clipped to the limit");
        assert_eq!(r.find(112, 120), here(8, 2));
        assert_eq!(r.find(120, 130), None, "past what was received");
        assert_eq!(r.find(110, 110), None, "nothing servable");
    }

    #[test]
    fn the_window_drops_only_written_chunks_past_its_size() {
        let mut r = Recent::default();
        let piece = RECENT_BYTES / 4;
        for i in 0..6u8 {
            r.push(chunk(piece, i));
        }
        assert_eq!(r.held, 6 * piece, "nothing written yet: all held");
        r.written(piece as u64);
        assert_eq!((r.start, r.held), (piece as u64, 5 * piece));
        r.written(6 * piece as u64);
        assert_eq!((r.start, r.held), (2 * piece as u64, RECENT_BYTES));
        let at = 2 * piece as u64;
        assert_eq!(r.find(at, at + 1), here(1, 2));
        assert_eq!(r.find(0, 10), Some(Found::InFile(10)));
        // One chunk larger than the window is still held, alone, once written.
        r.push(chunk(RECENT_BYTES * 2, 9));
        r.written(r.end());
        assert_eq!(r.chunks.len(), 1);
        assert_eq!(r.start, 6 * piece as u64);
    }
}
