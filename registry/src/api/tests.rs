use super::blobs::parse_range;
use super::*;
use crate::content::ByteRange;

#[test]
fn ranges() {
    assert_eq!(
        parse_range("bytes=0-9", 100).ok().flatten(),
        Some(ByteRange {
            start: 0,
            end: Some(9)
        })
    );
    assert_eq!(
        parse_range("bytes=90-", 100).ok().flatten(),
        Some(ByteRange {
            start: 90,
            end: None
        })
    );
    assert_eq!(
        parse_range("bytes=-10", 100).ok().flatten(),
        Some(ByteRange {
            start: 90,
            end: Some(99)
        })
    );
    assert_eq!(
        parse_range("bytes=50-500", 100).ok().flatten(),
        Some(ByteRange {
            start: 50,
            end: Some(99)
        })
    );
    assert!(parse_range("bytes=100-", 100).is_err());
    assert!(parse_range("bytes=9-1", 100).is_err());
    assert!(parse_range("bytes=x-", 100).is_err());
    assert_eq!(parse_range("bytes=0-1,5-6", 100).ok().flatten(), None);
    assert_eq!(parse_range("items=0-1", 100).ok().flatten(), None);
}

#[test]
fn query_decoding() {
    let q = url_decode_pairs("digest=sha256%3Aab&tag=a&tag=b&empty&x=%zz");
    assert_eq!(q[0], ("digest".into(), "sha256:ab".into()));
    assert_eq!(q[2], ("tag".into(), "b".into()));
    assert_eq!(q[3], ("empty".into(), "".into()));
    assert_eq!(q[4], ("x".into(), "%zz".into()));
}
