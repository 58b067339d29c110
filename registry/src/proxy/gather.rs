//! How a fill turns upstream's chunks into the chunks it writes and hands to
//! its followers: at least `min` bytes each, so that a write (a trip to the
//! blocking pool) and a progress update carry a useful amount. A chunk that
//! is already that large, with nothing gathered before it, goes on as it
//! came: the HTTP client's reads from a fast upstream are 400-500 KiB each,
//! and copying every byte once more, into freshly allocated memory, was
//! 3.5% of a node cache's CPU (and a fifth of its page faults) when 32 of
//! them filled from one regional cache (`benches/README.md`, site tier).
//! Owns that rule and nothing else; what a fill does with the chunks is
//! `fill.rs`'s.

use bytes::{Bytes, BytesMut};

/// Gathers small chunks; passes large ones through.
pub(super) struct Gather {
    min: usize,
    buf: BytesMut,
}

impl Gather {
    pub(super) fn new(min: usize) -> Self {
        Self {
            min,
            buf: BytesMut::new(),
        }
    }

    /// Bytes gathered and not yet handed on.
    pub(super) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next chunk from upstream; returns a chunk to hand on once
    /// at least `min` bytes are there.
    pub(super) fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.buf.is_empty() && chunk.len() >= self.min {
            return Some(chunk);
        }
        self.buf.extend_from_slice(&chunk);
        (self.buf.len() >= self.min).then(|| self.buf.split().freeze())
    }

    /// What is left at the end of the body.
    pub(super) fn rest(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    /// Drops what was gathered (the body broke off or overran).
    pub(super) fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_chunk_with_nothing_gathered_is_handed_on_without_a_copy() {
        let mut g = Gather::new(8);
        let big = Bytes::from(vec![7u8; 20]);
        let out = g.push(big.clone()).expect("large enough on its own");
        assert_eq!(out.as_ptr(), big.as_ptr(), "the very bytes upstream sent");
        assert_eq!(out.len(), 20);
        assert_eq!(g.pending(), 0);
        assert!(g.rest().is_none());
    }

    #[test]
    fn small_chunks_are_gathered_in_order_up_to_the_minimum() {
        let mut g = Gather::new(8);
        assert!(g.push(Bytes::from_static(b"abc")).is_none());
        assert!(g.push(Bytes::from_static(b"de")).is_none());
        assert_eq!(g.pending(), 5);
        // A large chunk behind gathered bytes joins them: order is kept.
        let out = g
            .push(Bytes::from_static(b"fghijklmnop"))
            .expect("past min");
        assert_eq!(&out[..], b"abcdefghijklmnop");
        assert_eq!(g.pending(), 0);
        assert!(g.push(Bytes::from_static(b"qr")).is_none());
        assert_eq!(g.rest().as_deref(), Some(&b"qr"[..]));
        assert!(g.rest().is_none(), "handed on once");
    }

    #[test]
    fn clear_drops_what_was_gathered() {
        let mut g = Gather::new(8);
        assert!(g.push(Bytes::from_static(b"abc")).is_none());
        g.clear();
        assert_eq!(g.pending(), 0);
        assert!(g.rest().is_none());
    }
}
