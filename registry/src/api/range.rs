//! The two byte-range headers of the protocol, parsed without I/O:
//! `Content-Range` on an upload's PATCH, and `Range` on a blob GET.

use crate::content::ByteRange;

/// `<start>-<end>` (also `bytes <start>-<end>/<total>` and `bytes=<start>-<end>`),
/// inclusive, with `start <= end`; `None` for anything else.
pub fn parse_content_range(raw: &str) -> Option<(u64, u64)> {
    let s = raw.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-')?;
    let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
    (b >= a).then_some((a, b))
}

/// A `Range` that cannot be served from a blob of this size (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A single `Range: bytes=...` request, resolved against `size`: `Ok(None)` means
/// send the whole blob (several ranges, or other units, as HTTP allows).
pub fn parse_range(raw: &str, size: u64) -> Result<Option<ByteRange>, Unsatisfiable> {
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last N bytes.
        let n: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        if n == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        return Ok(Some(ByteRange {
            start: size.saturating_sub(n),
            end: Some(size - 1),
        }));
    }
    let start: u64 = a.parse().map_err(|_| Unsatisfiable)?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse::<u64>().map_err(|_| Unsatisfiable)?)
    };
    if start >= size || end.is_some_and(|e| e < start) {
        return Err(Unsatisfiable);
    }
    Ok(Some(ByteRange {
        start,
        end: end.map(|e| e.min(size - 1)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "(bytes[= ])?[0-9 ]{0,22}-[0-9 ]{0,22}(/[0-9*]{0,5})?(,[0-9-]{0,6})?",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn content_range_never_panics_and_is_ordered(raw in header_text()) {
            if let Some((a, b)) = parse_content_range(&raw) {
                prop_assert!(a <= b);
            }
        }

        #[test]
        fn content_range_round_trips(a in any::<u64>(), len in any::<u64>(), form in 0..3usize) {
            let b = a.saturating_add(len);
            let text = match form {
                0 => format!("{a}-{b}"),
                1 => format!("bytes {a}-{b}/*"),
                _ => format!("bytes={a}-{b}"),
            };
            prop_assert_eq!(parse_content_range(&text), Some((a, b)));
        }

        #[test]
        fn range_is_within_the_blob(raw in header_text(), size in prop_oneof![Just(0u64), 1..1000u64, any::<u64>()]) {
            if let Ok(Some(r)) = parse_range(&raw, size) {
                prop_assert!(r.start < size);
                if let Some(e) = r.end {
                    prop_assert!(r.start <= e && e < size);
                }
            }
        }

        #[test]
        fn range_round_trips(size in 1..u64::MAX, a in any::<u64>(), len in any::<u64>(), suffix in any::<bool>()) {
            let start = a % size;
            if suffix {
                let n = len % size + 1;
                let r = parse_range(&format!("bytes=-{n}"), size);
                prop_assert_eq!(r, Ok(Some(ByteRange { start: size - n, end: Some(size - 1) })));
            } else {
                let end = start.saturating_add(len);
                let r = parse_range(&format!("bytes={start}-{end}"), size);
                prop_assert_eq!(r, Ok(Some(ByteRange { start, end: Some(end.min(size - 1)) })));
                let open = parse_range(&format!("bytes={start}-"), size);
                prop_assert_eq!(open, Ok(Some(ByteRange { start, end: None })));
            }
        }
    }
}
