//! A SHA-256 or SHA-512 of an upload's whole parts, whose state can be
//! written down and taken up by another process.
//!
//! S3 cannot read an upload's parts back before it completes, so a process
//! taking over an upload (`bucket.rs`) could only compute its digest by
//! reading the completed object. Parts are whole numbers of hash blocks, so
//! after each part the hash state is only the eight chaining words and the
//! length: `bucket.rs` keeps that in the upload's state object, and whoever
//! goes on hashes only the bytes it sees. Built on sha2's raw compression
//! functions; `finish` adds the standard padding to the bytes past the parts.

use sha2::digest::generic_array::GenericArray;

use super::{ContentError, Result};
use crate::oci::{Algorithm, Digest};

const H256: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const H512: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// The hash of a prefix of whole blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PartHash {
    Sha256 { state: [u32; 8], len: u64 },
    Sha512 { state: [u64; 8], len: u64 },
}

/// The largest block (SHA-512's): parts must be a multiple of it.
pub(super) const BLOCK: u64 = 128;

impl PartHash {
    pub(super) fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => PartHash::Sha256 {
                state: H256,
                len: 0,
            },
            Algorithm::Sha512 => PartHash::Sha512 {
                state: H512,
                len: 0,
            },
        }
    }

    pub(super) fn algorithm(&self) -> Algorithm {
        match self {
            PartHash::Sha256 { .. } => Algorithm::Sha256,
            PartHash::Sha512 { .. } => Algorithm::Sha512,
        }
    }

    /// Bytes hashed so far.
    pub(super) fn len(&self) -> u64 {
        match self {
            PartHash::Sha256 { len, .. } | PartHash::Sha512 { len, .. } => *len,
        }
    }

    /// Hashes `bytes`, a whole number of [`BLOCK`]s.
    pub(super) fn update(&mut self, bytes: &[u8]) {
        debug_assert_eq!(bytes.len() as u64 % BLOCK, 0);
        match self {
            PartHash::Sha256 { state, len } => {
                for block in bytes.chunks_exact(64) {
                    sha2::compress256(state, &[*GenericArray::from_slice(block)]);
                }
                *len += bytes.len() as u64;
            }
            PartHash::Sha512 { state, len } => {
                for block in bytes.chunks_exact(128) {
                    sha2::compress512(state, &[*GenericArray::from_slice(block)]);
                }
                *len += bytes.len() as u64;
            }
        }
    }

    /// The digest of everything hashed followed by `rest` (any length).
    pub(super) fn finish(mut self, rest: &[u8]) -> Result<Digest> {
        let (block, len_bytes) = match self {
            PartHash::Sha256 { .. } => (64, 8),
            PartHash::Sha512 { .. } => (128, 16),
        };
        let whole = rest.len() - rest.len() % block;
        let bits = (self.len() + rest.len() as u64) as u128 * 8;
        // The standard padding: 0x80, zeros, the length in bits, big-endian.
        let mut last = rest[whole..].to_vec();
        last.push(0x80);
        while last.len() % block != block - len_bytes {
            last.push(0);
        }
        last.extend_from_slice(&bits.to_be_bytes()[16 - len_bytes..]);
        let mut blocks = rest[..whole].to_vec();
        blocks.extend_from_slice(&last);
        let hex: String = match &mut self {
            PartHash::Sha256 { state, .. } => {
                for b in blocks.chunks_exact(64) {
                    sha2::compress256(state, &[*GenericArray::from_slice(b)]);
                }
                state.iter().map(|w| format!("{w:08x}")).collect()
            }
            PartHash::Sha512 { state, .. } => {
                for b in blocks.chunks_exact(128) {
                    sha2::compress512(state, &[*GenericArray::from_slice(b)]);
                }
                state.iter().map(|w| format!("{w:016x}")).collect()
            }
        };
        let alg = self.algorithm().as_str();
        format!("{alg}:{hex}")
            .parse()
            .map_err(|e| ContentError::Io(std::io::Error::other(format!("hash state: {e}"))))
    }

    /// `<alg>:<len>:<chaining words in hex>`, for the state object.
    pub(super) fn encode(&self) -> String {
        let words: String = match self {
            PartHash::Sha256 { state, .. } => state.iter().map(|w| format!("{w:08x}")).collect(),
            PartHash::Sha512 { state, .. } => state.iter().map(|w| format!("{w:016x}")).collect(),
        };
        format!("{}:{}:{words}", self.algorithm().as_str(), self.len())
    }

    /// The inverse of [`encode`](Self::encode); None for anything else.
    pub(super) fn decode(s: &str) -> Option<Self> {
        let mut it = s.splitn(3, ':');
        let (alg, len, words) = (it.next()?, it.next()?.parse().ok()?, it.next()?);
        match alg {
            "sha256" if words.len() == 64 => {
                let mut state = [0u32; 8];
                for (i, w) in state.iter_mut().enumerate() {
                    *w = u32::from_str_radix(words.get(i * 8..i * 8 + 8)?, 16).ok()?;
                }
                Some(PartHash::Sha256 { state, len })
            }
            "sha512" if words.len() == 128 => {
                let mut state = [0u64; 8];
                for (i, w) in state.iter_mut().enumerate() {
                    *w = u64::from_str_radix(words.get(i * 16..i * 16 + 16)?, 16).ok()?;
                }
                Some(PartHash::Sha512 { state, len })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sha2_at_every_padding_edge_across_a_handover() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for prefix in [0usize, 128, 256, 1024] {
                for rest in [0usize, 1, 55, 56, 63, 64, 111, 112, 127, 128, 129, 700] {
                    let all = &data[..prefix + rest];
                    let mut h = PartHash::new(alg);
                    h.update(&all[..prefix]);
                    // Written down and taken up again, as another process would.
                    let h = PartHash::decode(&h.encode()).expect("decodes");
                    assert_eq!(
                        h.finish(&all[prefix..]).expect("a digest"),
                        Digest::of(alg, all),
                        "{alg:?} {prefix}+{rest}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        for bad in ["", "sha256:1", "md5:0:00", "sha256:x:00", "sha256:0:zz"] {
            assert!(PartHash::decode(bad).is_none(), "{bad}");
        }
    }
}
